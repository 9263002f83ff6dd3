"""The Phenaki training recipe end to end on tiny overrides (a few steps per stage), its
token cache and batches, and the shipped recipe files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

import kinetoscope.train.phenaki as phenaki_train
from kinetoscope.config import apply_overrides, from_dict
from kinetoscope.pipelines.phenaki import PhenakiPipeline
from kinetoscope.train.ldm import CaptionBank
from kinetoscope.train.phenaki import (
    PhenakiRecipe,
    load_token_cache,
    token_batches,
    train_phenaki,
)

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
    video = phenaki_train._to_model_range(clip.frames[None]).transpose(1, 2)  # (1, C, T, H, W)
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


@pytest.mark.parametrize("world", ["mnist", "shapes"])
def test_shipped_recipes_parse(world):
    data = yaml.safe_load((CONFIGS / f"phenaki-{world}.yaml").read_text())
    assert data["family"] == "phenaki"
    recipe = from_dict(PhenakiRecipe, dict(data))  # family may stay in the mapping
    assert recipe.worlds == (f"{world}-1", f"{world}-2") and recipe.token_steps == 9
    assert recipe.sampling["num_frames"] == 16
    total = sum(recipe.stage(name).minutes for name in ("tokenizer", "transformer"))
    assert total <= 80  # + token cache and report stay under 90 minutes
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
