"""The Phenaki training recipe end to end on tiny overrides (a few steps per stage), its
token cache and batches, and the shipped recipe files."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

import kinetoscope.train.phenaki as phenaki_train
import kinetoscope.train.phenaki_tokenizer as phenaki_tokenizer
from kinetoscope.config import apply_overrides, from_dict
from kinetoscope.masked import MaskedVideoTransformer
from kinetoscope.pipelines.phenaki import PhenakiPipeline
from kinetoscope.train.ldm import CaptionBank
from kinetoscope.train.phenaki import (
    PhenakiRecipe,
    load_token_cache,
    token_batches,
    train_phenaki,
)
from kinetoscope.train.recipe import _to_model_range

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_recipe(**changes) -> PhenakiRecipe:
    data = {
        "name": "phenaki-tiny",
        "worlds": ["shapes-1"],
        "num_frames": 5,
        "resolution": 32,
        "num_token_clips": 12,
        "tokenizer": {
            "patch_size": 8,
            "dim": 32,
            "num_heads": 2,
            "spatial_depth": 1,
            "temporal_depth": 1,
            "fsq_levels": [8, 5],
        },
        "transformer": {"dim": 32, "depth": 1, "num_heads": 2},
        "sampling": {"num_frames": 4, "num_inference_steps": 2, "context_frames": 1},
        "stages": {
            "tokenizer": {"steps": 3, "batch_size": 2, "lr": 1e-3, "extra": {"log_every": 1}},
            "transformer": {
                "steps": 3,
                "batch_size": 4,
                "lr": 1e-3,
                "ema_decay": 0.9,
                "extra": {"continuation_fraction": 0.5, "max_prefix_steps": 2, "log_every": 1},
            },
        },
        **changes,
    }
    return from_dict(PhenakiRecipe, data)


@pytest.fixture
def fake_encoder(monkeypatch, fake_text_encoder):
    monkeypatch.setattr(phenaki_train, "load_text_encoder", lambda *a, **k: fake_text_encoder)
    return fake_text_encoder


def test_recipe_trains_end_to_end_and_resumes(tmp_path, fake_encoder):
    recipe = tiny_recipe()
    pipeline_dir = train_phenaki(recipe, tmp_path / "run")
    run = tmp_path / "run"
    assert pipeline_dir == run / "pipeline"
    report = json.loads((run / "tokenizer_report.json").read_text())
    assert set(report["shapes-1"]) == {"psnr", "codebook_usage", "perplexity"}
    assert 0 < report["shapes-1"]["codebook_usage"] <= 1
    for stage in ("stage-tokenizer", "stage-transformer"):
        assert torch.load(run / stage / "checkpoint.pt", weights_only=False)["step"] == 3

    # The cache holds the tokenizer's tokens of the training clips, with their wordings.
    pipe = PhenakiPipeline.from_pretrained(pipeline_dir)
    cache = torch.load(run / "tokens.pt", weights_only=False)
    assert cache["tokens"].shape == (12, 3, 4, 4) and len(cache["wordings"]) == 12
    clip = phenaki_train._world_datasets(recipe)[0][0]
    video = _to_model_range(clip.frames[None]).transpose(1, 2)  # (1, C, T, H, W)
    assert torch.equal(cache["tokens"][0].long(), pipe.tokenizer.encode(video)[0])
    assert clip.caption in cache["wordings"][0]

    pipe._text_encoder = fake_encoder
    assert pipe.defaults["model_name"] == "phenaki-tiny" and pipe.resolution == 32
    video = pipe("a small red circle is moving left", seed=0, progress=False).frames[0]
    assert video.frames.shape == (4, 32, 32, 3)
    story = pipe.story(["a red circle", "a blue square"], frames_per_prompt=4, progress=False)
    assert story.num_frames == 8

    # Re-running resumes: finished stages and the cache are loaded, not rebuilt.
    weights = run / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors"
    before, cache_time = weights.read_bytes(), (run / "tokens.pt").stat().st_mtime_ns
    train_phenaki(recipe, run)
    assert weights.read_bytes() == before
    assert (run / "tokens.pt").stat().st_mtime_ns == cache_time
    # A cache made by another tokenizer is rebuilt, not reused.
    assert load_token_cache(recipe, run, pipe.tokenizer)["tokenizer"] == cache["tokenizer"]
    torch.save({**cache, "tokenizer": "other"}, run / "tokens.pt")
    rebuilt = load_token_cache(recipe, run, pipe.tokenizer)
    assert rebuilt["tokenizer"] == cache["tokenizer"]
    assert torch.equal(rebuilt["tokens"], cache["tokens"])


def test_token_batches_mix_generation_and_continuation(fake_text_encoder):
    cache = {
        "tokens": torch.randint(0, 40, (6, 3, 2, 2), dtype=torch.int16),
        "wordings": [[f"clip {i}", f"the clip {i}"] for i in range(6)],
    }
    batches = token_batches(
        cache,
        CaptionBank(fake_text_encoder),
        batch_size=64,
        continuation_fraction=0.5,
        max_prefix_steps=2,
        seed=0,
    )
    tokens, emb, mask, prefix = next(batches)
    assert tokens.shape == (64, 3, 2, 2) and tokens.dtype == torch.long
    assert emb.shape == (64, 8, 16) and mask.shape == (64, 8)
    assert set(prefix.tolist()) == {0, 1, 2}
    assert 16 < int((prefix > 0).sum()) < 48


def test_image_batches_train_on_cached_single_frames(tmp_path, fake_encoder):
    """Joint image-video training: the cache holds each clip's chosen frames encoded as one-frame
    clips, the stage mixes batches of them in, and ``first_frame="image"`` samples through them."""
    stages = tiny_recipe().stages
    extra = {**stages["transformer"]["extra"], "image_fraction": 0.5, "image_frames": [0, 4]}
    recipe = tiny_recipe(
        stages={**stages, "transformer": {**stages["transformer"], "extra": extra}},
        sampling={
            "num_frames": 4,
            "num_inference_steps": 2,
            "context_frames": 1,
            "first_frame": "image",
        },
    )
    run = tmp_path / "run"
    pipe = PhenakiPipeline.from_pretrained(train_phenaki(recipe, run))
    cache = torch.load(run / "tokens.pt", weights_only=False)
    assert cache["image_frames"] == [0, 4] and cache["image_tokens"].shape == (12, 2, 4, 4)
    clip = phenaki_train._world_datasets(recipe)[0][0]
    video = _to_model_range(clip.frames[None]).transpose(1, 2)  # (1, C, T, H, W)
    assert torch.equal(
        cache["image_tokens"][0, 1].long(), pipe.tokenizer.encode(video[:, :, 4:5])[0, 0]
    )
    # The first frame is coded on its own, so its image tokens are the clip's first time step.
    assert torch.equal(cache["image_tokens"][:, 0], cache["tokens"][:, 0])

    bank = CaptionBank(fake_encoder)
    batches = token_batches(
        cache,
        bank,
        batch_size=4,
        continuation_fraction=0.0,
        max_prefix_steps=1,
        seed=0,
        image_fraction=0.5,
        image_batch_size=10,
    )
    shapes = {tuple(next(batches)[0].shape) for _ in range(40)}
    assert shapes == {(4, 3, 4, 4), (10, 1, 4, 4)}

    # A cache without images is rebuilt for a recipe that asks for them.
    torch.save(
        {k: v for k, v in cache.items() if k not in ("image_frames", "image_tokens")},
        run / "tokens.pt",
    )
    assert load_token_cache(recipe, run, pipe.tokenizer)["image_frames"] == [0, 4]

    pipe._text_encoder = fake_encoder
    assert pipe.defaults["first_frame"] == "image"
    steps = []
    out = pipe(
        "a red circle", seed=0, progress=False, callback=lambda i, n, t: steps.append((i, n))
    )
    # Two decoding passes of 2 steps: the first frame's tokens, then the clip.
    assert [n for _, n in steps] == [4] * 4 and out.frames[0].metadata["first_frame"] == "image"
    # Its first frame is the image sampled on its own with the same seed.
    image = pipe("a red circle", seed=0, progress=False, num_frames=1).frames[0]
    assert out.frames[0].frames.shape == (4, 32, 32, 3)
    joint = pipe("a red circle", seed=0, progress=False, first_frame="joint").frames[0]
    assert joint.metadata["first_frame"] == "joint"
    with pytest.raises(ValueError, match="first_frame"):
        pipe("a red circle", first_frame="last", progress=False)
    assert image.num_frames == 1
    # (the decoder is causal too, so frame 0 depends only on the first time step's tokens)
    diff = out.frames[0].frames[0].astype(int) - image.frames[0].astype(int)
    assert abs(diff).max() <= 1


def test_image_settings_are_checked(tmp_path, fake_encoder):
    stages = tiny_recipe().stages
    extra = {**stages["transformer"]["extra"], "image_fraction": 0.5, "image_frames": [9]}
    recipe = tiny_recipe(
        stages={**stages, "transformer": {**stages["transformer"], "extra": extra}}
    )
    with pytest.raises(ValueError, match="image_frames"):
        train_phenaki(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "stage-tokenizer").exists()
    extra = {**extra, "image_fraction": 1.5, "image_frames": [0]}
    recipe = tiny_recipe(
        stages={**stages, "transformer": {**stages["transformer"], "extra": extra}}
    )
    with pytest.raises(ValueError, match="image_fraction"):
        train_phenaki(recipe, tmp_path / "run")
    with pytest.raises(ValueError, match="unknown stage"):
        train_phenaki(tiny_recipe(stages={**stages, "vae": stages["tokenizer"]}), tmp_path / "run")


def test_init_from_starts_the_transformer_from_saved_weights(tmp_path, fake_encoder):
    run = tmp_path / "first"
    first = PhenakiPipeline.from_pretrained(train_phenaki(tiny_recipe(), run))
    stages = tiny_recipe().stages
    extra = {**stages["transformer"]["extra"], "init_from": str(run / "transformer")}
    grown = tmp_path / "grown"
    grown.mkdir()
    shutil.copytree(run / "tokenizer", grown / "tokenizer")
    recipe = tiny_recipe(
        stages={**stages, "transformer": {**stages["transformer"], "steps": 0, "extra": extra}}
    )
    second = PhenakiPipeline.from_pretrained(train_phenaki(recipe, grown))
    for (name, a), b in zip(
        first.transformer.state_dict().items(),
        second.transformer.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_a_decoder_stage_fine_tunes_the_tokenizer_decoder_and_keeps_the_tokens(
    tmp_path, fake_encoder
):
    run = tmp_path / "run"
    base = tiny_recipe()
    first = phenaki_train.train_tokenizer(base, run)
    shutil.move(run / "tokenizer", run / "tokenizer-encoder")
    stage = {"steps": 4, "batch_size": 2, "lr": 1e-2, "extra": {"log_every": 1}}
    recipe = tiny_recipe(stages={**base.stages, "tokenizer_decoder": stage})
    tuned = phenaki_train.train_tokenizer(recipe, run)
    assert (
        torch.load(run / "stage-tokenizer-decoder" / "checkpoint.pt", weights_only=False)["step"]
        == 4
    )
    decoder = {id(p) for p in tuned.decoder_parameters()}
    before, after = dict(first.named_parameters()), dict(tuned.named_parameters())
    moved = {name for name, p in after.items() if not torch.equal(p, before[name])}
    assert moved and moved <= {name for name, p in after.items() if id(p) in decoder}
    assert any(name.startswith("decoder.") for name in moved) and "dec_pos" in moved
    assert not any(name.startswith(("encoder.", "embed_", "to_latent", "enc_")) for name in moved)
    clip = phenaki_train._world_datasets(base)[0][0]
    video = _to_model_range(clip.frames[None]).transpose(1, 2)
    assert torch.equal(first.encode(video), tuned.encode(video))
    assert not torch.allclose(
        first.decode_indices(first.encode(video)), tuned.decode_indices(tuned.encode(video))
    )
    # Finished: the next call loads out/tokenizer.
    again = phenaki_train.train_tokenizer(recipe, run)
    assert all(
        torch.equal(a, b) for a, b in zip(again.parameters(), tuned.parameters(), strict=True)
    )


@pytest.mark.parametrize("world", ["mnist", "shapes"])
def test_shipped_recipes_parse(world):
    data = yaml.safe_load((CONFIGS / f"phenaki-{world}.yaml").read_text())
    assert data["family"] == "phenaki"
    recipe = from_dict(PhenakiRecipe, dict(data))  # family may stay in the mapping
    assert recipe.worlds == (f"{world}-1", f"{world}-2") and recipe.token_steps == 9
    assert recipe.sampling["num_frames"] == 16 and recipe.sampling["first_frame"] == "image"
    # One command: the clip-only transformer, the same transformer with image batches, then
    # with object tracks (and the planner that proposes them), the frame-0 transformer and the
    # prompt reader.
    assert list(recipe.stages) == [
        "tokenizer", "transformer", "transformer_finetune", "trajectory_planner",
        "transformer_tracks", "transformer_first_frame", "prompt_reader",
    ]  # fmt: skip
    assert recipe.transformer["anchor_slots"] == 2 and recipe.weights_dtype == "float16"
    # The shipped fine-tunings: a quarter of the steps on images for mnist, half for shapes.
    expected = {"mnist": 0.25, "shapes": 0.5}[world]
    assert recipe.stage("transformer_finetune").extra["image_fraction"] == expected
    # The header states the recipe's time: its stages' caps plus about 2 minutes of cache and
    # report (over the 90-minute budget; see the header).
    total = sum(recipe.stage(name).minutes for name in recipe.stages)
    stated = re.search(r"About (\d+) minutes", (CONFIGS / f"phenaki-{world}.yaml").read_text())
    assert stated and int(stated.group(1)) == total + 2
    without = from_dict(
        PhenakiRecipe, apply_overrides(dict(data), ["stages.transformer_finetune=null"])
    )
    assert "transformer_finetune" not in without.stages
    data.pop("family")
    overridden = from_dict(
        PhenakiRecipe, apply_overrides(data, ["stages.tokenizer.steps=5", "seed=3"])
    )
    assert overridden.stage("tokenizer").steps == 5 and overridden.seed == 3


def test_recipe_rejects_bad_settings():
    with pytest.raises(ValueError, match="1 \\+ 2k"):
        tiny_recipe(num_frames=16)
    with pytest.raises(ValueError, match="family: phenaki"):
        tiny_recipe(family="ldm")
    with pytest.raises(ValueError, match="image_size"):
        tiny_recipe(tokenizer={"image_size": 64})
    with pytest.raises(ValueError, match="no stage 'transformer'"):
        tiny_recipe(stages={}).stage("transformer")
    with pytest.raises(ValueError, match="unknown key"):
        from_dict(PhenakiRecipe, {"name": "x", "vae": {}})


def test_bad_prefix_setting_is_reported(tmp_path, fake_encoder):
    recipe = tiny_recipe()
    stages = {**recipe.stages}
    stages["transformer"] = {**stages["transformer"], "extra": {"max_prefix_steps": 3}}
    recipe = tiny_recipe(stages=stages)
    with pytest.raises(ValueError, match="max_prefix_steps"):
        train_phenaki(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # rejected before any training


def test_cli_trains_a_phenaki_recipe(tmp_path, fake_encoder, capsys):
    from kinetoscope.cli import main

    recipe = asdict(tiny_recipe())
    recipe["stages"]["tokenizer"]["steps"] = recipe["stages"]["transformer"]["steps"] = 1
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"family": "phenaki", **recipe}))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "trained pipeline saved" in capsys.readouterr().out
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()


def test_a_finetune_stage_equals_a_second_run_started_from_the_first(tmp_path, fake_encoder):
    """``transformer_finetune`` continues stage 3 in the same command, exactly as a second run
    of stage 3 with the finetune's settings and ``init_from`` on the first run's transformer."""
    stages = tiny_recipe().stages
    extra = {**stages["transformer"]["extra"], "image_fraction": 0.5, "image_frames": [0, 4]}
    finetune = {**stages["transformer"], "steps": 4, "lr": 5e-3, "extra": extra}
    one = tmp_path / "one"
    train_phenaki(tiny_recipe(stages={**stages, "transformer_finetune": finetune}), one)
    assert torch.load(one / "stage-transformer" / "checkpoint.pt", weights_only=False)["step"] == 3
    ckpt = torch.load(one / "stage-transformer-finetune" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4

    first = tmp_path / "first"
    train_phenaki(tiny_recipe(), first)
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "tokenizer", second / "tokenizer")
    init = {**extra, "init_from": str(first / "transformer")}
    train_phenaki(
        tiny_recipe(stages={**stages, "transformer": {**finetune, "extra": init}}), second
    )

    def weights(path):
        return MaskedVideoTransformer.from_pretrained(path).state_dict()

    for ours, theirs in (
        (one / "transformer-base", first / "transformer"),
        (one / "transformer", second / "transformer"),
    ):
        expected = weights(theirs)
        assert all(torch.equal(v, expected[k]) for k, v in weights(ours).items()), ours
    moved = weights(one / "transformer")
    assert any(not torch.equal(v, weights(first / "transformer")[k]) for k, v in moved.items())
    # The pipeline holds the fine-tuned transformer.
    shipped = PhenakiPipeline.from_pretrained(one / "pipeline").transformer.state_dict()
    assert all(torch.equal(v, moved[k]) for k, v in shipped.items())

    with pytest.raises(ValueError, match="init_from"):
        bad = {**finetune, "extra": init}
        train_phenaki(tiny_recipe(stages={**stages, "transformer_finetune": bad}), tmp_path / "bad")
    with pytest.raises(ValueError, match="different image_frames"):
        other = {**finetune, "extra": {**extra, "image_frames": [0]}}
        both = {**stages["transformer"], "extra": extra}
        recipe = tiny_recipe(stages={**stages, "transformer": both, "transformer_finetune": other})
        train_phenaki(recipe, tmp_path / "bad")


def track_recipe(**changes) -> PhenakiRecipe:
    """The tiny recipe with given-track anchors, a planner stage and image-first sampling."""
    stages = tiny_recipe().stages
    extra = {**stages["transformer"]["extra"], "track_dropout": 0.5}
    settings = {
        "transformer": {"dim": 32, "depth": 1, "num_heads": 2, "anchor_slots": 2},
        "stages": {
            **stages,
            "trajectory_planner": {"steps": 3, "batch_size": 4, "lr": 1e-3},
            "transformer": {**stages["transformer"], "extra": extra},
        },
        "sampling": {
            "num_frames": 4,
            "num_inference_steps": 2,
            "context_frames": 1,
            "first_frame": "image",
        },
    }
    return tiny_recipe(**{**settings, **changes})


def test_a_recipe_with_object_tracks_trains_anchors_and_a_planner(tmp_path, fake_encoder):
    """Anchors train on the cached clips' own tracks; the planner learns them from the first
    time step's codes, and the saved pipeline samples with both."""
    recipe = track_recipe()
    run = tmp_path / "run"
    pipe = PhenakiPipeline.from_pretrained(train_phenaki(recipe, run))
    assert pipe.transformer.takes_trajectory and pipe.planner is not None
    assert pipe.planner.config.latent_channels == 2  # FSQ (8, 5): two code channels
    assert pipe.planner.config.num_frames == 5
    assert (
        torch.load(run / "stage-trajectory_planner" / "checkpoint.pt", weights_only=False)["step"]
        == 3
    )
    cache = torch.load(run / "tokens.pt", weights_only=False)
    clip = phenaki_train._world_datasets(recipe)[0][0]
    start = torch.tensor(clip.objects[0]["positions"][0], dtype=torch.float32)
    for t in range(5):  # the cached tracks are the clips' own moves, in frame widths
        moved = torch.tensor(clip.objects[0]["positions"][t], dtype=torch.float32) - start
        assert torch.allclose(cache["tracks"][0, 0, t], moved / 32)

    bank = CaptionBank(fake_encoder)
    batches = token_batches(
        cache, bank, batch_size=64, continuation_fraction=0.0, max_prefix_steps=1, seed=0,
        tracks=cache["tracks"], track_dropout=0.5,
    )  # fmt: skip
    tokens, _, _, _, tracks = next(batches)
    assert tracks.shape == (64, 2, 3, 2)  # per token time step
    dropped = tracks.isnan().flatten(1).all(1)
    assert 10 < int(dropped.sum()) < 54 and not tracks[~dropped].isnan().any()
    assert tracks[~dropped][:, :, 0].abs().max() == 0  # the first step is where they start

    pipe._text_encoder = fake_encoder
    seen = []
    forward = pipe.transformer.forward
    pipe.transformer.forward = lambda *a: seen.append(a[3] if len(a) > 3 else None) or forward(*a)
    pipe("a red circle", seed=0, progress=False)
    assert seen[0] is None  # the first frame, drawn as an image, has no tracks yet
    assert seen[-1].shape == (2, 2, 3, 2) and not seen[-1][:1].isnan().any()
    assert seen[-1][1:].isnan().all()  # the unconditional branch runs without
    story = pipe.story(["a red circle", "a blue square"], frames_per_prompt=4, progress=False)
    assert story.num_frames == 8


def test_tracks_need_both_the_anchors_and_the_planner(tmp_path, fake_encoder):
    with pytest.raises(ValueError, match="trajectory_planner"):
        stages = {k: v for k, v in track_recipe().stages.items() if k != "trajectory_planner"}
        train_phenaki(track_recipe(stages=stages), tmp_path / "a")
    with pytest.raises(ValueError, match="anchor_slots"):
        train_phenaki(
            track_recipe(transformer={"dim": 32, "depth": 1, "num_heads": 2}), tmp_path / "b"
        )


def test_tokenizer_image_batches_hold_single_frames_of_drawn_clips(tmp_path, fake_encoder):
    from kinetoscope.train.recipe import clip_batches

    recipe = tiny_recipe()
    plain = phenaki_tokenizer.tokenizer_batches(recipe, batch_size=2, seed=0)
    reference = clip_batches(recipe, batch_size=2, seed=0)
    for _ in range(3):  # without image batches: exactly the clip batches
        assert torch.equal(next(plain), next(reference))
    mixed = phenaki_tokenizer.tokenizer_batches(
        recipe, batch_size=2, seed=0, image_fraction=0.5, image_batch_size=10
    )
    batches = [next(mixed) for _ in range(30)]
    assert {tuple(b.shape) for b in batches} == {(2, 3, 5, 32, 32), (10, 3, 1, 32, 32)}
    images = clip_batches(recipe, batch_size=3, seed=1)  # the clips the images come from
    first = next(images)
    image_batch = next(b for b in batches if b.shape[2] == 1)
    for k in range(4):  # the first clip's four frames
        assert any(torch.equal(image_batch[k, :, 0], first[0, :, t]) for t in range(5))

    stages = recipe.stages
    tokenizer = {**stages["tokenizer"], "extra": {"image_fraction": 0.5, "image_batch_size": 6}}
    run = tmp_path / "run"
    train_phenaki(tiny_recipe(stages={**stages, "tokenizer": tokenizer}), run)
    assert torch.load(run / "stage-tokenizer" / "checkpoint.pt", weights_only=False)["step"] == 3
    bad = {**stages["tokenizer"], "extra": {"image_fraction": 1.0}}
    with pytest.raises(ValueError, match="image_fraction"):
        train_phenaki(tiny_recipe(stages={**stages, "tokenizer": bad}), tmp_path / "bad")


def test_a_tracks_stage_continues_a_model_trained_as_if_it_had_no_anchors(tmp_path, fake_encoder):
    """With ``transformer_tracks``, the stages before it train exactly as a model without
    anchors, and the tracks stage exactly as a run that grows that model's result (init_from)."""
    stages = tiny_recipe().stages
    tracks_stage = {
        **stages["transformer"],
        "extra": {**stages["transformer"]["extra"], "track_dropout": 0.5},
    }
    recipe = track_recipe(
        stages={**track_recipe().stages, "transformer": stages["transformer"],
                "transformer_tracks": tracks_stage},
    )  # fmt: skip
    one = tmp_path / "one"
    pipe = PhenakiPipeline.from_pretrained(train_phenaki(recipe, one))
    assert pipe.transformer.takes_trajectory and pipe.planner is not None

    plain = tmp_path / "plain"
    train_phenaki(tiny_recipe(sampling=recipe.sampling), plain)
    grown = tmp_path / "grown"
    grown.mkdir()
    shutil.copytree(plain / "tokenizer", grown / "tokenizer")
    init = {**tracks_stage["extra"], "init_from": str(plain / "transformer")}
    train_phenaki(
        track_recipe(stages={**recipe.stages, "transformer": {**tracks_stage, "extra": init},
                             "transformer_tracks": None}),
        grown,
    )  # fmt: skip

    def weights(path):
        return MaskedVideoTransformer.from_pretrained(path).state_dict()

    base, before = weights(one / "transformer-base"), weights(plain / "transformer")
    assert set(base) - set(before) == {k for k in base if k.startswith("anchors.")}
    assert all(torch.equal(before[k], base[k]) for k in before)  # trained as without anchors
    assert all(not v.any() for k, v in base.items() if "proj_out" in k)  # anchors untouched
    final, expected = weights(one / "transformer"), weights(grown / "transformer")
    assert all(torch.equal(v, expected[k]) for k, v in final.items())
    assert any(not torch.equal(final[k], base[k]) for k in base if "proj_out" in k)

    with pytest.raises(ValueError, match="transformer_tracks needs"):
        no_anchors = {"dim": 32, "depth": 1, "num_heads": 2}
        bad = {k: v for k, v in recipe.stages.items() if k != "trajectory_planner"}
        train_phenaki(tiny_recipe(transformer=no_anchors, stages=bad), tmp_path / "bad")


def test_a_first_frame_stage_draws_frame_0_with_its_own_transformer(tmp_path, fake_encoder):
    """transformer_first_frame tunes a copy of the final transformer on first-frame tokens (no
    tracks, nothing frozen); the pipeline saves it apart and draws frame 0's tokens with it,
    the clip with the transformer as before. A finished run given the stage afterwards keeps
    its tokenizer and clip transformer."""
    plain_run, run = tmp_path / "plain", tmp_path / "run"
    plain = PhenakiPipeline.from_pretrained(train_phenaki(track_recipe(), plain_run))
    assert plain.image_transformer is plain.transformer
    shutil.copytree(plain_run, run)
    shutil.rmtree(run / "pipeline")
    stage = {"steps": 3, "batch_size": 4, "lr": 1e-3, "extra": {"clips": 10, "log_every": 1}}
    recipe = track_recipe(stages={**track_recipe().stages, "transformer_first_frame": stage})
    pipe = PhenakiPipeline.from_pretrained(train_phenaki(recipe, run))
    assert (run / "pipeline" / "image_transformer" / "config.json").is_file()

    first = torch.load(run / "first-frame-tokens.pt", weights_only=False)
    clips = torch.load(run / "tokens.pt", weights_only=False)
    assert first["tokens"].shape == (10, 1, *clips["tokens"].shape[2:])
    assert torch.equal(first["tokens"][:, 0], clips["tokens"][:10, 0])  # causal: the same
    for name, weight in plain.transformer.state_dict().items():
        assert torch.equal(pipe.transformer.state_dict()[name], weight), name
    tuned = pipe.image_transformer.state_dict()
    assert any(not torch.equal(tuned[n], w) for n, w in plain.transformer.state_dict().items())

    pipe._text_encoder = fake_encoder
    calls = []
    for model in (pipe.transformer, pipe.image_transformer):
        forward = model.forward

        def spy(*a, model=model, forward=forward):
            calls.append((model is pipe.image_transformer, a[0].shape[1]))
            return forward(*a)

        model.forward = spy
    pipe("a red circle", seed=0, progress=False)
    frame0 = {n for is_image, n in calls if is_image}
    clip = {n for is_image, n in calls if not is_image}
    assert frame0 and clip and max(frame0) < min(clip)  # one time step, then the whole clip

    with pytest.raises(ValueError, match="clips must be a positive integer"):
        bad = {**stage, "extra": {"clips": -1}}
        train_phenaki(
            track_recipe(stages={**track_recipe().stages, "transformer_first_frame": bad}),
            tmp_path / "bad",
        )


def test_a_planner_stage_with_text_layers_reads_its_own_encoding(
    tmp_path, fake_encoder, monkeypatch
):
    """``text_layers`` in the planner stage: the planner trains on the encoder loaded with
    those layers (twice as wide here), says so in its config, and sampling encodes its
    prompts the same way while the transformer keeps the plain encoding."""
    from conftest import FakeTextEncoder

    class Wide(FakeTextEncoder):
        fingerprint, dim = "fake-32", 32

    loaded = []

    def load(name, **options):
        loaded.append(options.get("layers"))
        return Wide() if options.get("layers") else fake_encoder

    monkeypatch.setattr("kinetoscope.text.load_text_encoder", load)
    base = track_recipe()
    stages = dict(base.stages)
    planner = {"steps": 3, "batch_size": 4, "lr": 1e-3, "extra": {"text_layers": [0, -1]}}
    recipe = track_recipe(stages={**stages, "trajectory_planner": planner})
    pipe = PhenakiPipeline.from_pretrained(train_phenaki(recipe, tmp_path / "run"))
    assert [0, -1] in loaded
    assert pipe.planner.config.text_layers == [0, -1] and pipe.planner.config.text_dim == 32
    pipe._text_encoder = fake_encoder
    widths = []
    sample = pipe.planner.sample
    pipe.planner.sample = lambda first, emb, *a, **k: (
        widths.append(emb.shape[-1]) or sample(first, emb, *a, **k)
    )
    pipe("a red circle", seed=0, progress=False)
    assert widths == [32]
