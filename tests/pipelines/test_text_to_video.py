"""The Video LDM pipeline end to end on a tiny random model (2 sampling steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_ldm_pipeline
from kinetoscope.pipelines.text_to_video import TextToVideoPipeline
from kinetoscope.video import Video


@pytest.fixture
def pipe(fake_text_encoder):
    return tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)


def test_call_returns_videos_with_settings(pipe):
    out = pipe(
        ["the digit 1 is moving up", "a red circle"],
        seed=3,
        progress=False,
        negative_prompt="blurry",
    )
    assert len(out.frames) == 2
    video = out.frames[0]
    assert video.frames.shape == (4, 16, 16, 3) and video.frames.dtype == np.uint8
    assert video.metadata["seed"] == 3 and out.frames[1].metadata["seed"] == 4
    assert video.metadata["negative_prompt"] == "blurry"
    assert video.metadata["model"] == "tiny"


def test_batch_is_reproducible_sample_by_sample(pipe):
    batch = pipe(
        ["the digit 1 is moving up", "the digit 2 is moving left"], seed=10, progress=False
    ).frames
    alone = pipe("the digit 2 is moving left", seed=11, progress=False).frames[0]
    assert np.array_equal(batch[1].frames, alone.frames)
    again = pipe("the digit 2 is moving left", seed=11, progress=False).frames[0]
    assert np.array_equal(again.frames, alone.frames)


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddim", "euler"])
def test_schedulers_and_callback(pipe, scheduler):
    seen = []
    pipe(
        "a red circle",
        seed=0,
        scheduler=scheduler,
        progress=False,
        callback=lambda i, n, z: seen.append((i, n, z.shape)),
    )
    assert [s[0] for s in seen] == [0, 1] and all(s[1] == 2 for s in seen)
    assert seen[0][2] == (1, 4, 4, 8, 8)


def test_guidance_changes_output_and_negative_prompt_matters(pipe):
    a = pipe("a red circle", seed=0, guidance_scale=1.0, progress=False).frames[0].frames
    b = pipe("a red circle", seed=0, guidance_scale=5.0, progress=False).frames[0].frames
    c = (
        pipe("a red circle", seed=0, guidance_scale=5.0, negative_prompt="blue", progress=False)
        .frames[0]
        .frames
    )
    assert not np.array_equal(a, b) and not np.array_equal(b, c)


def test_guidance_interval_guides_only_the_steps_inside_it(pipe):
    """Steps outside the interval run the conditional branch alone (batch B, not 2B)."""
    batches, forward = [], pipe.unet.forward

    def counting(sample, timestep, *args, **kwargs):
        batches.append((int(torch.as_tensor(timestep).max()), sample.shape[0]))
        return forward(sample, timestep, *args, **kwargs)

    pipe.unet.forward = counting
    length = pipe.scheduler_config["num_train_timesteps"]
    latents = []
    pipe(
        "a red circle",
        seed=0,
        guidance_scale=5.0,
        progress=False,
        callback=lambda i, n, z: latents.append(z.clone()),
    )
    timesteps = [t for t, _ in batches]
    assert [b for _, b in batches] == [2, 2] and timesteps[0] > timesteps[1]
    middle = (timesteps[0] + timesteps[1]) / 2 / length  # guide the first step only
    batches.clear()
    half = pipe(
        "a red circle",
        seed=0,
        guidance_scale=5.0,
        guidance_interval=(middle, 1.0),
        progress=False,
        callback=lambda i, n, z: latents.append(z.clone()),
    )
    assert batches == [(timesteps[0], 2), (timesteps[1], 1)]
    assert half.frames[0].metadata["guidance_interval"] == [middle, 1.0]
    assert torch.equal(latents[0], latents[2])  # the same guided first step
    assert not torch.equal(latents[1], latents[3])  # then an unguided one
    # An interval that holds no step samples exactly as no guidance at all.
    none = pipe("a red circle", seed=0, guidance_interval=(0.999, 1.0), progress=False)
    plain = pipe("a red circle", seed=0, guidance_scale=1.0, progress=False)
    assert np.array_equal(none.frames[0].frames, plain.frames[0].frames)
    for bad in [(0.5, 0.5), (-0.1, 1.0), (0.2, 1.5), (0.3,), "ab"]:
        with pytest.raises(ValueError, match="guidance_interval"):
            pipe("a red circle", seed=0, guidance_interval=bad, progress=False)


def test_chunked_decoding_matches(pipe):
    a = pipe("a red circle", seed=0, progress=False).frames[0].frames.astype(int)
    b = (
        pipe("a red circle", seed=0, decode_chunk_size=1, progress=False)
        .frames[0]
        .frames.astype(int)
    )
    assert np.abs(a - b).max() <= 1


def test_bad_input_raises(pipe):
    with pytest.raises(ValueError, match="empty prompt"):
        pipe("  ")
    with pytest.raises(ValueError, match="scheduler"):
        pipe("x", scheduler="nope")
    with pytest.raises(ValueError, match="num_frames"):
        pipe("x", num_frames=0)


def test_save_and_load_pretrained(pipe, tmp_path, fake_text_encoder):
    pipe.save_pretrained(tmp_path / "model")
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "model")
    loaded._text_encoder = fake_text_encoder
    a = pipe("a red circle", seed=0, progress=False).frames[0].frames
    b = loaded("a red circle", seed=0, progress=False).frames[0].frames
    assert np.array_equal(a, b)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_float16_storage_halves_the_weights_and_loads_as_float32(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "full")
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.save_pretrained(tmp_path / "half", weights_dtype="float16")
    for k, v in pipe.unet.state_dict().items():  # saving does not round the live pipeline
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    sizes = {
        name: sum(f.stat().st_size for f in (tmp_path / name).rglob("*.safetensors"))
        for name in ("full", "half")
    }
    assert 0.45 < sizes["half"] / sizes["full"] < 0.55
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "half")
    for k, v in loaded.unet.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k].half().to(v.dtype))
    with pytest.raises(ValueError, match="weights_dtype"):
        pipe.save_pretrained(tmp_path / "bad", weights_dtype="int8")


def _with_interpolation_model(pipe: TextToVideoPipeline) -> TextToVideoPipeline:
    """``pipe`` plus a separate interpolation model: its temporal weights perturbed."""
    state = pipe.unet.temporal_state()
    generator = torch.Generator().manual_seed(1)
    state = {k: v + 0.3 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
    return TextToVideoPipeline(
        vae=pipe.vae,
        unet=pipe.unet,
        scheduler_config=pipe.scheduler_config,
        text_encoder=pipe.text_encoder_name,
        max_length=pipe.max_length,
        defaults=pipe.defaults,
        interpolation_temporal=state,
    )


def test_a_separate_interpolation_model_interpolates_and_nothing_else(
    pipe, tmp_path, fake_text_encoder
):
    both = _with_interpolation_model(pipe)
    both._text_encoder = fake_text_encoder
    clip = pipe("a red circle", seed=0, progress=False).frames[0]
    # generation, story and continuation keep the generator
    assert np.array_equal(
        both("a red circle", seed=0, progress=False).frames[0].frames, clip.frames
    )
    assert np.array_equal(
        both.story(["a red circle", "a blue square"], frames_per_prompt=3, progress=False).frames,
        pipe.story(["a red circle", "a blue square"], frames_per_prompt=3, progress=False).frames,
    )
    # interpolation runs on the interpolation model: as if it were the pipeline's UNet
    alone = _with_interpolation_model(pipe)
    alone.unet = alone.interpolation_unet
    alone._text_encoder = fake_text_encoder
    smooth = both.interpolate(clip, factor=2, seed=0, progress=False).frames
    assert np.array_equal(smooth, alone.interpolate(clip, factor=2, seed=0, progress=False).frames)
    assert not np.array_equal(
        smooth, pipe.interpolate(clip, factor=2, seed=0, progress=False).frames
    )
    # only the temporal weights are saved beside the UNet, and they load back exactly
    both.save_pretrained(tmp_path / "model")
    extra = tmp_path / "model" / "interpolation" / "temporal.safetensors"
    unet_file = next((tmp_path / "model" / "unet").glob("*.safetensors"))
    assert extra.stat().st_size < unet_file.stat().st_size
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "model")
    for (name, a), b in zip(
        both.interpolation_unet.named_parameters(),
        loaded.interpolation_unet.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    plain = TextToVideoPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "plain"))
    assert plain.interpolation_unet is None and not (tmp_path / "plain" / "interpolation").exists()


@pytest.mark.parametrize("kind", ["temporal", "spatial"])
def test_temporal_and_spatial_weights_must_fit_the_unet(pipe, kind):
    get, put = getattr(pipe.unet, f"{kind}_state"), getattr(pipe.unet, f"with_{kind}_state")
    state = get()
    temporal = pipe.unet.temporal_parameter_names()
    assert (set(state) == temporal) == (kind == "temporal")
    assert set(pipe.unet.spatial_state()) | temporal == set(pipe.unet.state_dict())
    other = next(k for k in pipe.unet.state_dict() if k not in state)
    with pytest.raises(ValueError, match="unexpected"):
        put({**state, other: pipe.unet.state_dict()[other]})
    with pytest.raises(ValueError, match="missing"):
        put(dict(list(state.items())[1:]))
    name = next(k for k, v in state.items() if v.ndim > 1)
    with pytest.raises(ValueError, match="other shapes"):
        put({**state, name: state[name][:1]})
    twin = put({k: torch.zeros_like(v) for k, v in state.items()})
    assert twin is not pipe.unet
    assert all(bool(v.eq(0).all()) for v in getattr(twin, f"{kind}_state")().values())
    assert all(torch.equal(v, get()[k]) for k, v in state.items())  # the original is unchanged
    rest = getattr(twin, f"{'spatial' if kind == 'temporal' else 'temporal'}_state")()
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in rest.items())


def test_load_reports_missing_model(tmp_path):
    import kinetoscope

    with pytest.raises(FileNotFoundError, match="Known models"):
        kinetoscope.load(tmp_path / "nothing-here")


def test_bfloat16_precision_stays_close_to_float32_and_is_recorded(pipe):
    prompt = "the digit 1 is moving up"
    full = pipe(prompt, seed=5, progress=False).frames[0]
    half = pipe(prompt, seed=5, progress=False, precision="bfloat16").frames[0]
    assert full.metadata["precision"] == "float32" and half.metadata["precision"] == "bfloat16"
    diff = np.abs(full.frames.astype(int) - half.frames.astype(int))
    assert diff.mean() < 3.0  # bf16 rounding of the denoiser, not a different sample
    assert diff.max() > 0  # and the denoiser really ran in bf16
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        pipe(prompt, progress=False, precision="float8")


def test_bfloat16_sampling_uses_the_autocast_twin_and_matches_plain_autocast(pipe, monkeypatch):
    from kinetoscope.nn.precision import AutocastTwins

    prompt = "the digit 1 is moving up"
    twin = pipe(prompt, seed=5, progress=False, precision="bfloat16").frames[0]
    made = [m for m in pipe._autocast_twins._twins.values()]
    assert len(made) == 1  # one twin (of the generator), reused by both passes
    monkeypatch.setattr(AutocastTwins, "get", lambda self, model, dtype: model)
    plain = pipe(prompt, seed=5, progress=False, precision="bfloat16").frames[0]
    assert np.array_equal(twin.frames, plain.frames)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_the_device_has_it(pipe, monkeypatch, native):
    import torch

    from kinetoscope.pipelines import text_to_video
    from kinetoscope.pipelines.text_to_video import resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    expected = "bfloat16" if native else "float32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("float32", torch.device("cpu")) == "float32"  # as asked
    video = pipe("a red circle", seed=0, progress=False, precision="auto").frames[0]
    assert video.metadata["precision"] == expected  # the precision it ran in, not "auto"
    assert not text_to_video.native_bfloat16(torch.device("meta"))


@pytest.mark.parametrize("scheduler", ["dpmpp", "euler"])
def test_image_first_frame_is_the_image_models_frame_and_stays_fixed(pipe, scheduler):
    """first_frame="image": frame 0 comes from the image model alone, then every step of the
    video pass keeps it as given (a clean context frame)."""
    import torch

    from kinetoscope.pipelines.base import randn, sample_generators

    with torch.no_grad():  # temporal layers as after training: the video model != image model
        for param in pipe.unet.temporal_parameters():
            if param.dim() > 0 and not param.any():
                param.normal_(0, 0.2)
    seen = []
    out = pipe(
        "a red circle",
        seed=5,
        scheduler=scheduler,
        first_frame="image",
        guidance_scale=3.0,
        progress=False,
        callback=lambda i, n, z: seen.append(z.clone()),
    )
    assert out.frames[0].metadata["first_frame"] == "image"
    # Two passes of 2 steps: the image pass (1 frame) then the video pass (4 frames).
    assert [z.shape[2] for z in seen] == [4, 4]  # the callback follows the video pass only
    assert torch.equal(seen[0][:, :, :1], seen[1][:, :, :1])
    generators, _ = sample_generators(1, seed=5, generator=None, device="cpu")
    noise = randn((4, 4, 8, 8), generators, "cpu", torch.float32)
    emb, mask = pipe.text_encoder.encode(["a red circle", ""])
    image = pipe._denoise(
        noise[:, :, :1],
        scheduler=scheduler,
        steps=2,
        guidance=3.0,
        interval=(0.0, 1.0),
        emb=emb,
        mask=mask,
        autocast=pipe._autocast("float32"),
        progress=False,
        use_temporal=False,
    )
    assert torch.allclose(seen[-1][:, :, :1], image)
    joint = []
    pipe(
        "a red circle",
        seed=5,
        scheduler=scheduler,
        guidance_scale=3.0,
        progress=False,
        callback=lambda i, n, z: joint.append(z),
    )
    assert not torch.allclose(joint[-1][:, :, :1], image, atol=1e-4)
    with pytest.raises(ValueError, match="first_frame"):
        pipe("a red circle", first_frame="last", progress=False)


def test_frame_correlated_noise_is_reproducible_sample_by_sample(pipe, monkeypatch):
    """A model trained with frame-correlated noise samples from it: the pipeline draws one
    more noise frame per sample (the shared part), still from that sample's own seed."""
    prompts = ["the digit 1 is moving up", "the digit 2 is moving left"]
    independent = pipe(prompts, seed=10, progress=False).frames
    drawn = []
    import kinetoscope.pipelines.text_to_video as t2v

    real_mix = t2v.mix_frame_noise
    monkeypatch.setattr(
        t2v,
        "mix_frame_noise",
        lambda own, shared, rho: drawn.append(rho) or real_mix(own, shared, rho),
    )
    pipe.defaults["noise_correlation"] = 0.5
    batch = pipe(prompts, seed=10, progress=False).frames
    alone = pipe(prompts[1], seed=11, progress=False).frames[0]
    assert drawn == [0.5, 0.5]

    # batched and single forward passes differ by float rounding, which this random
    # epsilon-model's top timestep amplifies: allow one grey level
    def gap(a, b):
        return np.abs(a.frames.astype(int) - b.frames.astype(int)).max()

    assert gap(batch[1], alone) <= 1
    assert gap(batch[1], independent[1]) > 10


STORY = ["the digit 1 is moving up", "the digit 1 is moving left"]


def _wake_temporal_layers(pipe):
    """Random weights where the UNet's temporal layers start at zero, as after training."""
    import torch

    with torch.no_grad():
        for param in pipe.unet.temporal_parameters():
            if param.dim() > 0 and not param.any():
                param.normal_(0, 0.2)


def test_story_continues_from_the_clean_last_latents(pipe):
    """Segment 1 is pipe(prompt 1); each window of segment 2 keeps the story's last k latents
    unchanged at every step (context-frame prediction) and denoises the frames after them."""
    import torch

    first = []
    pipe(STORY[0], seed=7, progress=False, callback=lambda i, n, z: first.append(z.clone()))
    seen = []
    story = pipe.story(
        STORY,
        frames_per_prompt=4,
        context_frames=2,
        seed=7,
        progress=False,
        callback=lambda i, n, z: seen.append(z.clone()),
    )
    assert story.num_frames == 8 and story.frames.shape == (8, 16, 16, 3)
    meta = story.metadata
    assert [(s["start"], s["end"]) for s in meta["segments"]] == [(0, 4), (4, 8)]
    assert meta["prompts"] == STORY and meta["seed"] == 7 and meta["context_frames"] == 2
    # 2 steps for segment 1, then 2 windows (4-frame window, 2 context -> 2 new frames) x 2 steps.
    assert [z.shape[2] for z in seen] == [4, 4, 4, 4, 4, 4]
    assert all(torch.equal(a, b) for a, b in zip(seen[:2], first, strict=True))
    segment_1 = seen[1]
    window_1, window_2 = seen[2:4], seen[4:6]
    for z in window_1:
        assert torch.equal(z[:, :, :2], segment_1[:, :, 2:])
    for z in window_2:  # its context: the two frames window 1 just made
        assert torch.equal(z[:, :, :2], window_1[-1][:, :, 2:])
    # the new frames depend on the context they continue
    _wake_temporal_layers(pipe)
    seen = []
    pipe.story(
        STORY,
        frames_per_prompt=4,
        context_frames=2,
        seed=7,
        progress=False,
        callback=lambda i, n, z: seen.append(z.clone()),
    )
    other = []
    pipe.story(
        STORY,
        frames_per_prompt=4,
        context_frames=1,
        seed=7,
        progress=False,
        callback=lambda i, n, z: other.append(z.clone()),
    )
    assert not torch.allclose(other[3][:, :, 2:], seen[3][:, :, 2:])


def test_one_prompt_story_is_the_plain_generation(pipe):
    alone = pipe(STORY[0], seed=3, progress=False).frames[0]
    story = pipe.story(STORY[:1], frames_per_prompt=4, seed=3, progress=False)
    assert np.array_equal(story.frames, alone.frames)


def test_continue_video_resizes_and_spans_windows(pipe):
    rng = np.random.default_rng(0)
    clip = Video(rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8), fps=12.0)
    seen = []
    new = pipe.continue_video(
        clip,
        STORY[1],
        num_frames=5,
        seed=0,
        progress=False,
        callback=lambda i, n, z: seen.append(z),
    )
    assert new.frames.shape == (5, 16, 16, 3)
    assert [z.shape[2] for z in seen] == [4, 4, 4, 4, 3, 3]  # 2 + 2 + 1 new frames
    meta = new.metadata
    assert new.fps == 12.0 and meta["resized_from"] == [24, 32] and meta["context_frames"] == 2
    assert meta["first_frame"] == "context"
    again = pipe.continue_video(clip, STORY[1], num_frames=5, seed=0, progress=False)
    assert np.array_equal(again.frames, new.frames)
    _wake_temporal_layers(pipe)  # zero-initialised, they would let no frame see another
    new = pipe.continue_video(clip, STORY[1], num_frames=5, seed=0, progress=False)
    shifted = Video(np.roll(clip.frames, 8, axis=2), fps=12.0)
    assert not np.array_equal(
        pipe.continue_video(shifted, STORY[1], num_frames=5, seed=0, progress=False).frames,
        new.frames,
    )


def test_story_and_continue_reject_bad_input(pipe):
    clip = Video(np.zeros((1, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="list of prompts"):
        pipe.story(STORY[0])
    with pytest.raises(ValueError, match="no new frame"):
        pipe.story(STORY, frames_per_prompt=4, context_frames=4, progress=False)
    with pytest.raises(ValueError, match="shorter than context_frames"):
        pipe.story(STORY, frames_per_prompt=1, context_frames=2, progress=False)
    with pytest.raises(ValueError, match="1 frame"):
        pipe.continue_video(clip, STORY[0], progress=False)
    with pytest.raises(ValueError, match="Video"):
        pipe.continue_video(clip.frames, STORY[0], progress=False)
