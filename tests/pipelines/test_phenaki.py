"""The Phenaki pipeline end to end on a tiny random model (2 MaskGIT steps): generation, seeds,
save/load, story continuation and continue_video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import TINY_CVIVIT
from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.masked import MaskedVideoTransformer
from kinetoscope.pipelines.phenaki import PhenakiPipeline, next_clip_length
from kinetoscope.video import Video, videos_to_tensor

# 16x16 frames, 4x4 token grid, 40 codes; windows of 4 token steps = 7 frames.
TOKENIZER = {**TINY_CVIVIT, "fsq_levels": (8, 5)}
TRANSFORMER = {
    "num_codes": 40,
    "max_time_tokens": 4,
    "height_tokens": 4,
    "width_tokens": 4,
    "text_dim": 16,
    "dim": 32,
    "depth": 1,
    "num_heads": 2,
}
PROMPTS = ["the digit 1 is moving up", "the digit 2 is moving left", "a red circle"]


def make_pipe(fake_text_encoder) -> PhenakiPipeline:
    torch.manual_seed(0)
    tokenizer = CViViT(**TOKENIZER)
    transformer = MaskedVideoTransformer(**TRANSFORMER)
    with torch.no_grad():  # sharper, text-dependent logits than a fresh init
        transformer.to_logits.weight.normal_(0, 0.5)
    pipe = PhenakiPipeline(
        tokenizer=tokenizer,
        transformer=transformer,
        text_encoder="fake",
        max_length=8,
        defaults={
            "num_frames": 4,
            "num_inference_steps": 2,
            "context_frames": 3,
            "model_name": "tiny",
        },
    )
    pipe._text_encoder = fake_text_encoder
    return pipe


@pytest.fixture
def pipe(fake_text_encoder) -> PhenakiPipeline:
    return make_pipe(fake_text_encoder)


def test_call_returns_videos_with_settings(pipe):
    out = pipe(PROMPTS[:2], seed=3, progress=False, negative_prompt="blurry")
    assert len(out.frames) == 2
    video = out.frames[0]
    assert video.frames.shape == (4, 16, 16, 3) and video.frames.dtype == np.uint8
    assert video.fps == 8.0
    meta = video.metadata
    assert meta["seed"] == 3 and out.frames[1].metadata["seed"] == 4
    assert meta["prompt"] == PROMPTS[0] and meta["negative_prompt"] == "blurry"
    assert (meta["model"], meta["family"], meta["steps"], meta["num_frames"]) == (
        "tiny",
        "phenaki",
        2,
        4,
    )
    assert meta["guidance_scale"] == 3.0


def test_even_length_drops_the_last_frame_of_the_next_valid_length(pipe):
    assert [next_clip_length(n) for n in (1, 4, 5, 16)] == [1, 5, 5, 17]
    four = pipe(PROMPTS[0], num_frames=4, seed=1, progress=False).frames[0].frames
    five = pipe(PROMPTS[0], num_frames=5, seed=1, progress=False).frames[0].frames
    assert four.shape[0] == 4 and five.shape[0] == 5
    assert np.array_equal(four, five[:4])


def test_longer_than_one_window_continues(pipe):
    assert pipe.window_frames == 7
    seen = []
    long = pipe(
        PROMPTS[0],
        num_frames=10,
        seed=2,
        progress=False,
        callback=lambda i, n, tokens: seen.append((i, n, tuple(tokens.shape))),
    ).frames[0]
    one_window = pipe(PROMPTS[0], num_frames=7, seed=2, progress=False).frames[0]
    assert long.num_frames == 10
    assert np.array_equal(long.frames[:7], one_window.frames)
    # Two windows of 2 steps each, numbered globally.
    assert [s[:2] for s in seen] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert {s[2] for s in seen} == {(1, 4, 4, 4)}


def test_batch_is_reproducible_sample_by_sample(pipe):
    batch = pipe(PROMPTS[:2], seed=10, progress=False).frames
    alone = pipe(PROMPTS[1], seed=11, progress=False).frames[0]
    assert np.array_equal(batch[1].frames, alone.frames)
    again = pipe(PROMPTS[1], seed=11, progress=False).frames[0]
    assert np.array_equal(again.frames, alone.frames)
    other_seed = pipe(PROMPTS[1], seed=12, progress=False).frames[0]
    assert not np.array_equal(other_seed.frames, alone.frames)
    shared = torch.Generator().manual_seed(5)
    assert len(pipe(PROMPTS[:2], generator=shared, progress=False).frames) == 2


def test_guidance_and_negative_prompt_change_the_output(pipe):
    def frames(**kwargs):
        return pipe(PROMPTS[2], seed=0, progress=False, **kwargs).frames[0].frames

    plain, guided = frames(guidance_scale=1.0), frames(guidance_scale=5.0)
    negative = frames(guidance_scale=5.0, negative_prompt="a blue square")
    assert not np.array_equal(plain, guided) and not np.array_equal(guided, negative)


def test_save_and_load_pretrained(pipe, tmp_path, fake_text_encoder):
    import kinetoscope

    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "PhenakiPipeline" and index["family"] == "phenaki"
    assert (tmp_path / "model" / "tokenizer" / "config.json").is_file()
    assert (tmp_path / "model" / "transformer" / "config.json").is_file()
    loaded = kinetoscope.load(tmp_path / "model")
    assert isinstance(loaded, PhenakiPipeline) and loaded.defaults == pipe.defaults
    loaded._text_encoder = fake_text_encoder
    a = pipe(PROMPTS[0], seed=0, progress=False).frames[0].frames
    b = loaded(PROMPTS[0], seed=0, progress=False).frames[0].frames
    assert np.array_equal(a, b)
    pipe.save_pretrained(tmp_path / "model")  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert not loaded.text_clauses
    pipe.text_clauses = True  # a model trained on clause-wise prompts keeps encoding them so
    pipe.save_pretrained(tmp_path / "model")
    assert kinetoscope.load(tmp_path / "model").text_clauses


def test_story_is_continuous_and_freezes_reencoded_context(pipe):
    fpp, ctx = 4, 3
    windows = []  # tokens after the first step of each window

    def callback(step, total, tokens):
        if step % 2 == 0:
            windows.append(tokens.clone())

    story = pipe.story(
        PROMPTS, frames_per_prompt=fpp, context_frames=ctx, seed=7, callback=callback
    )
    assert story.num_frames == len(PROMPTS) * fpp
    segments = story.metadata["segments"]
    assert [(s["start"], s["end"]) for s in segments] == [(0, 4), (4, 8), (8, 12)]
    assert story.metadata["prompts"] == PROMPTS and story.metadata["seed"] == 7
    # One window per segment here (7-frame windows, 3 context frames -> 4 new frames).
    assert len(windows) == 3
    prefix_steps = 1 + (ctx - 1) // 2
    for n in (1, 2):
        context = story[segments[n - 1]["end"] - ctx : segments[n - 1]["end"]]
        expected = pipe.tokenizer.encode(videos_to_tensor([context]))
        assert torch.equal(windows[n][:, :prefix_steps], expected)


def test_story_equals_generate_then_continue(pipe, tmp_path):
    story = pipe.story(PROMPTS[:2], frames_per_prompt=4, context_frames=3, seed=7, progress=False)
    first = pipe(PROMPTS[0], num_frames=4, seed=7, context_frames=3, progress=False).frames[0]
    first.save(tmp_path / "first")  # PNG frames: lossless
    read = Video.read(tmp_path / "first")
    second = pipe.continue_video(
        read, PROMPTS[1], num_frames=4, context_frames=3, seed=8, progress=False
    )
    assert np.array_equal(story.frames, np.concatenate([first.frames, second.frames]))
    assert second.metadata["continued_from"] == PROMPTS[0]
    assert second.metadata["resized_from"] is None


def test_continue_video_resizes_and_spans_windows(pipe):
    rng = np.random.default_rng(0)
    clip = Video(rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8), fps=12.0)
    new = pipe.continue_video(clip, PROMPTS[2], num_frames=9, seed=0, progress=False)
    assert new.frames.shape == (9, 16, 16, 3)  # 3 windows of 4 new frames, the last cut to 1
    assert new.fps == 12.0 and new.metadata["resized_from"] == [24, 32]
    assert new.metadata["context_frames"] == 3


def test_bad_input_raises(pipe, fake_text_encoder):
    with pytest.raises(ValueError, match="empty prompt"):
        pipe("  ")
    with pytest.raises(ValueError, match="num_frames"):
        pipe("x", num_frames=0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe("x", num_inference_steps=0)
    with pytest.raises(ValueError, match="context_frames must be 1 \\+ 2m"):
        pipe("x", context_frames=2)
    with pytest.raises(ValueError, match="window of 7 frames"):
        pipe("x", context_frames=7)
    with pytest.raises(ValueError, match="list of prompts"):
        pipe.story("one prompt")
    with pytest.raises(ValueError, match="frames_per_prompt"):
        pipe.story(PROMPTS, frames_per_prompt=2, context_frames=3)
    with pytest.raises(ValueError, match="2 negative prompts for 3 prompts"):
        pipe.story(PROMPTS, negative_prompt=["a", "b"])
    short = Video(np.zeros((2, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="context_frames <= 1"):
        pipe.continue_video(short, "x", context_frames=3)
    with pytest.raises(ValueError, match="Video.read"):
        pipe.continue_video(np.zeros((5, 16, 16, 3), dtype=np.uint8), "x")


def test_inconsistent_parts_and_encoders_are_reported(pipe, tmp_path, fake_text_encoder):
    with pytest.raises(ValueError, match="num_codes=40"):
        PhenakiPipeline(
            tokenizer=pipe.tokenizer,
            transformer=MaskedVideoTransformer(**{**TRANSFORMER, "num_codes": 12}),
        )

    class WideEncoder:
        dim = 24

        def encode(self, texts):
            return torch.ones(len(texts), 8, 24), torch.ones(len(texts), 8, dtype=torch.bool)

    pipe._text_encoder = WideEncoder()
    with pytest.raises(ValueError, match="16-dim"):
        pipe("x", progress=False)
    pipe._text_encoder = fake_text_encoder
    pipe.save_pretrained(tmp_path / "model")
    for path in (tmp_path / "model" / "transformer").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="transformer/config.json"):
        PhenakiPipeline.from_pretrained(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        PhenakiPipeline.from_pretrained(tmp_path / "nothing")


def make_tracked_pipe(fake_text_encoder) -> PhenakiPipeline:
    """The tiny pipeline with anchor attentions (random, so tracks matter) and a planner."""
    from kinetoscope.diffusion.planner import TrajectoryPlanner

    pipe = make_pipe(fake_text_encoder)
    torch.manual_seed(1)
    transformer = MaskedVideoTransformer(**TRANSFORMER, anchor_slots=2)
    transformer.load_state_dict(pipe.transformer.state_dict(), strict=False)
    with torch.no_grad():
        for anchor in transformer.anchors:
            anchor.proj_out.weight.normal_(0, 1.0)
    planner = TrajectoryPlanner(latent_channels=2, text_dim=16, num_frames=7, width=32, heads=2)
    with torch.no_grad():
        planner.head.weight.normal_(0, 0.5)  # tracks of a few cells, not near zero
    tracked = PhenakiPipeline(
        tokenizer=pipe.tokenizer,
        transformer=transformer,
        planner=planner,
        text_encoder="fake",
        max_length=8,
        defaults={**pipe.defaults, "first_frame": "image"},
    )
    tracked._text_encoder = fake_text_encoder
    return tracked


def test_a_planner_gives_every_window_tracks_that_save_and_load(tmp_path, fake_text_encoder):
    import kinetoscope

    pipe = make_tracked_pipe(fake_text_encoder)
    plans = []
    plan = pipe._plan
    pipe._plan = lambda run, first, n: (
        plans.append((first.shape, n, plan(run, first, n))) or plans[-1][2]
    )
    a = pipe(PROMPTS[:2], seed=0, progress=False, num_frames=10).frames
    # Two windows: a fresh one planned from its first frame, then a continuation planned from
    # the re-encoded context's first time step.
    assert [(shape, n) for shape, n, _ in plans] == [((2, 4, 4), 7), ((2, 4, 4), 7)]
    tracks = plans[0][2]
    assert tracks.shape == (2, 2, 4, 2) and tracks[:, :, 0].abs().max() == 0
    assert tracks[:, :, 1:].abs().max() > 0.01

    untracked = PhenakiPipeline(
        tokenizer=pipe.tokenizer,
        transformer=pipe.transformer,
        text_encoder="fake",
        max_length=8,
        defaults=pipe.defaults,
    )
    untracked._text_encoder = fake_text_encoder
    b = untracked(PROMPTS[:2], seed=0, progress=False, num_frames=10).frames
    assert not all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b, strict=True))

    pipe._plan = plan
    pipe.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "planner" / "config.json").is_file()
    loaded = kinetoscope.load(tmp_path / "model")
    loaded._text_encoder = fake_text_encoder
    assert loaded.planner is not None and loaded.transformer.takes_trajectory
    c = loaded(PROMPTS[:2], seed=0, progress=False, num_frames=10).frames
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, c, strict=True))


def test_a_window_longer_than_the_planner_plans_samples_without_tracks(fake_text_encoder, caplog):
    pipe = make_tracked_pipe(fake_text_encoder)
    pipe.planner.config.num_frames = 5  # as if planned for shorter clips
    first = torch.zeros(1, 4, 4, dtype=torch.long)
    with caplog.at_level("WARNING"):
        assert pipe._plan(None, first, 7) is None
    assert "plans 5 frames, not 7" in caplog.text


def test_continuation_windows_can_run_without_tracks(fake_text_encoder):
    pipe = make_tracked_pipe(fake_text_encoder)
    pipe.defaults["track_continuations"] = False
    plans = []
    plan = pipe._plan
    pipe._plan = lambda run, first, n: plans.append(n) or plan(run, first, n)
    pipe(PROMPTS[0], seed=0, progress=False, num_frames=10)
    assert plans == [7]  # the first window only


def test_the_agreement_radius_of_the_slots_comes_from_the_defaults(fake_text_encoder):
    pipe = make_tracked_pipe(fake_text_encoder)
    radii = []
    sample = pipe.planner.sample
    pipe.planner.sample = lambda *a, agree_px: (
        radii.append(agree_px) or sample(*a, agree_px=agree_px)
    )
    pipe(PROMPTS[0], seed=0, progress=False)
    pipe.defaults["agree_px"] = 8.0
    pipe(PROMPTS[0], seed=0, progress=False)
    assert radii == [2.0, 8.0]


def test_a_separate_frame_0_transformer_is_saved_loaded_and_checked(tmp_path, fake_text_encoder):
    """The frame-0 transformer (stage transformer_first_frame) travels with the pipeline in
    float16 and must share the clip transformer's configuration, however it was built (a
    configuration read back from disk holds lists where a fresh one holds tuples)."""
    import kinetoscope

    torch.manual_seed(0)
    factorized = {**TRANSFORMER, "code_levels": (8, 5)}
    tokenizer = CViViT(**TOKENIZER)
    transformer = MaskedVideoTransformer(**factorized)
    transformer.save_pretrained(tmp_path / "clip")
    loaded_clip = MaskedVideoTransformer.from_pretrained(tmp_path / "clip")
    frame0 = MaskedVideoTransformer(**factorized)  # tuples in its configuration
    pipe = PhenakiPipeline(
        tokenizer=tokenizer, transformer=loaded_clip, image_transformer=frame0,
        text_encoder="fake", max_length=8, defaults={"num_frames": 4, "num_inference_steps": 2},
    )  # fmt: skip
    pipe.save_pretrained(tmp_path / "model", weights_dtype="float16")
    assert (tmp_path / "model" / "image_transformer" / "config.json").is_file()
    again = kinetoscope.load(tmp_path / "model")
    for name, weight in frame0.state_dict().items():
        assert torch.equal(again.image_transformer.state_dict()[name], weight.half().float())
    assert again.image_transformer is not again.transformer
    with pytest.raises(ValueError, match="frame-0 transformer"):
        PhenakiPipeline(
            tokenizer=tokenizer, transformer=loaded_clip,
            image_transformer=MaskedVideoTransformer(**{**factorized, "depth": 2}),
        )  # fmt: skip


def test_story_segments_are_given_what_the_prompt_reader_read(pipe, monkeypatch):
    from conftest import FakeTextEncoder
    from kinetoscope.text.reader import PromptReader

    torch.manual_seed(0)
    pipe.reader = PromptReader(world="shapes", text_dim=16, members=1, width=8, threshold=0.0)
    # the reader reads with an encoder of its own; the model's encoder records what it is given
    monkeypatch.setattr("kinetoscope.text.load_text_encoder", lambda *a, **k: FakeTextEncoder())
    encoder, given = pipe.text_encoder, []
    encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: given.append(list(texts)) or encode(texts))
    prompts = ["a red circle drifting", "a blue square climbing"]
    read = pipe.read_prompts(prompts)
    assert read != prompts and all(" is moving " in r for r in read)  # canonical captions
    story = pipe.story(prompts, frames_per_prompt=3, seed=0, guidance_scale=1.0)
    texts = {t for g in given for t in g}
    assert set(read) <= texts and not texts & set(prompts)  # never the prompts' own words
    assert story.metadata["prompts"] == prompts and story.metadata["prompts_read"] == read


def test_two_object_prompt_is_composed_from_its_clauses(pipe):
    """``compose_objects``: each clause made alone (clause j from seed s + j * stride), then
    merged by the pixel-wise maximum, as in the LDM pipeline."""
    from kinetoscope.pipelines.compose import CLAUSE_SEED_STRIDE

    two = "the digit 7 is moving up and the digit 2 is moving down"
    composed = pipe(two, seed=2, compose_objects=True, progress=False).frames[0]
    first = pipe("the digit 7 is moving up", seed=2, progress=False).frames[0].frames
    second = pipe("the digit 2 is moving down", seed=2 + CLAUSE_SEED_STRIDE, progress=False)
    assert np.array_equal(composed.frames, np.maximum(first, second.frames[0].frames))
    assert composed.metadata["composed_from"] == [
        "the digit 7 is moving up",
        "the digit 2 is moving down",
    ]
    assert "composed_from" not in pipe(two, seed=2, progress=False).frames[0].metadata
