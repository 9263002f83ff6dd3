"""The Phenaki speed benchmark's pieces: our random pipeline from a recipe, the size-matched
phenaki-pytorch peer (skipped when that package is not importable), ratios and the report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import TINY_CVIVIT
from kinetoscope.eval import bench, bench_phenaki_peer
from kinetoscope.eval.bench_report import RATIO_KEYS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_phenaki.py"
TINY_RECIPE = {
    "family": "phenaki",
    "name": "phenaki-tiny",
    "worlds": ["mnist-1"],
    "text_encoder": "fake",
    "max_length": 8,
    "num_frames": 5,
    "resolution": 16,
    "tokenizer": {k: v for k, v in TINY_CVIVIT.items() if k != "image_size"},
    "transformer": {"dim": 32, "depth": 1, "num_heads": 2, "mlp_mult": 4},
    "sampling": {"num_frames": 4, "num_inference_steps": 2, "guidance_scale": 2.0},
    "stages": {"tokenizer": {"steps": 1, "batch_size": 1, "lr": 1.0e-3}},
}


def write_recipe(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def tiny_pipe(tmp_path):
    return bench.build_pipeline_from_recipe(write_recipe(tmp_path, TINY_RECIPE), text_dim=16)


@pytest.fixture(scope="module")
def phenaki_pytorch():
    if importlib.util.find_spec("phenaki_pytorch") is None:
        pytest.skip("phenaki-pytorch is not installed")
    try:
        return bench_phenaki_peer.import_phenaki_pytorch()
    except ImportError as error:
        pytest.skip(f"phenaki-pytorch is not importable: {error}")


def peer_kwargs(match: dict) -> dict:
    """build_phenaki_peer's size arguments from a phenaki_match dict."""
    return {k: v for k, v in match.items() if k not in ("text_encoder", "max_length")}


class SpyTextEncoder:
    """Wraps the fake encoder and records every batch it encodes."""

    def __init__(self, encoder) -> None:
        self.encoder, self.calls = encoder, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.encoder.encode(texts)


# ----------------------------------------------------------------------------- our side


def test_recipe_builds_our_pipeline_with_its_sizes_and_defaults(tiny_pipe):
    assert tiny_pipe.family == "phenaki"
    assert tiny_pipe.tokenizer.grid == 4 and tiny_pipe.resolution == 16
    assert tiny_pipe.transformer.max_time_tokens == 3  # 5 frames = 1 + 2 * 2
    assert tiny_pipe.transformer.num_codes == tiny_pipe.tokenizer.num_codes == 1000
    assert tiny_pipe.defaults["num_inference_steps"] == 2
    assert tiny_pipe.defaults["num_frames"] == 4
    match = bench_phenaki_peer.phenaki_match(tiny_pipe)
    assert match["tokenizer_params"] == bench.count_parameters(tiny_pipe.tokenizer)
    assert match["transformer_params"] == bench.count_parameters(tiny_pipe.transformer)
    assert match["tokenizer_shape"]["dim"] == 32 and match["transformer_shape"]["depth"] == 1
    assert (match["text_dim"], match["max_length"], match["text_encoder"]) == (16, 8, "fake")


def test_shipped_recipe_defaults_are_a_16_frame_clip():
    pipe = bench.build_pipeline_from_recipe(ROOT / "configs" / "phenaki-mnist.yaml", text_dim=384)
    recipe = yaml.safe_load((ROOT / "configs" / "phenaki-mnist.yaml").read_text())
    assert pipe.defaults["num_frames"] == 16 and pipe.resolution == 64
    assert pipe.defaults["num_inference_steps"] == recipe["sampling"]["num_inference_steps"]
    assert pipe.defaults["guidance_scale"] == recipe["sampling"]["guidance_scale"]
    # With object tracks, as shipped: random anchors and a random planner of the recipe's sizes.
    assert pipe.transformer.takes_trajectory and pipe.planner.config.slots == 2
    assert pipe.planner.config.latent_channels == pipe.tokenizer.quantizer.dim


def test_recipe_builder_rejects_unknown_families(tmp_path):
    with pytest.raises(ValueError, match="unknown family 'gan'"):
        bench.build_pipeline_from_recipe(
            write_recipe(tmp_path, {**TINY_RECIPE, "family": "gan"}), text_dim=16
        )


# ----------------------------------------------------------------------------- the peer


def test_peer_matches_our_parameter_counts(phenaki_pytorch, tiny_pipe):
    match = bench_phenaki_peer.phenaki_match(tiny_pipe)
    peer = bench_phenaki_peer.build_phenaki_peer(
        **peer_kwargs(match), num_frames=5, steps=2, max_length=8
    )
    info = peer.match
    for part in ("tokenizer", "transformer"):
        assert info[f"target_{part}_params"] == match[f"{part}_params"]
        assert info[f"{part}_params"] == bench.count_parameters(getattr(peer, part))
        assert abs(info[f"{part}_param_error"]) <= bench_phenaki_peer.PARAM_TOLERANCE, part
    assert isinstance(peer.tokenizer, phenaki_pytorch.CViViT)
    assert isinstance(peer.transformer, phenaki_pytorch.MaskGit)
    assert bench.pipeline_parameter_counts(peer) == {
        "tokenizer": info["tokenizer_params"],
        "transformer": info["transformer_params"],
    }


def test_peer_encodes_text_in_the_call_and_reports_every_step(
    phenaki_pytorch, tiny_pipe, fake_text_encoder
):
    encoder = SpyTextEncoder(fake_text_encoder)
    match = bench_phenaki_peer.phenaki_match(tiny_pipe)
    peer = bench_phenaki_peer.build_phenaki_peer(
        **peer_kwargs(match), num_frames=5, steps=3, max_length=8, text_encoder=encoder
    )
    steps = []
    out = peer("a red circle", seed=1, callback=lambda i, n, z: steps.append((i, n, z.shape[1])))
    (frames,) = out.frames
    assert frames.shape == (5, 16, 16, 3) and frames.dtype == np.uint8
    assert steps == [(0, 3, 48), (1, 3, 48), (2, 3, 48)]  # 3 time steps x 4 x 4 tokens
    assert encoder.calls == [["a red circle"]]
    again = peer("a red circle", seed=1, num_inference_steps=3)
    assert np.array_equal(again.frames[0], frames)  # same seed, same clip
    with pytest.raises(ValueError, match="1 \\+ 2k"):
        peer("a red circle", num_frames=4)


def test_run_system_dispatches_the_phenaki_peer(phenaki_pytorch, tiny_pipe):
    match = {**bench_phenaki_peer.phenaki_match(tiny_pipe), "text_encoder": None}
    spec = {
        "system": bench_phenaki_peer.PHENAKI_PEER,
        "name": "peer",
        "match": match,
        "num_frames": 3,
        "steps": 2,
        "guidance_scale": 3.0,
        "repeats": 1,
        "warmup": 0,
        "threads": torch.get_num_threads(),
    }
    result = bench.run_system(spec)
    assert result["system"] == "phenaki-peer" and result["callbacks_per_clip"] == 2
    assert result["params"]["transformer"] == result["match"]["transformer_params"]
    assert result["steps"] == 2 and result["num_frames"] == 3 and result["seconds_per_clip"] > 0


# ----------------------------------------------------------------------------- report


def fake_result(name: str, *, step: float, clip: float, mb: float = 600.0, **extra) -> dict:
    return {
        "name": name,
        "num_frames": 17,
        "steps": 25,
        "guidance_scale": 3.0,
        "seconds_per_step": step,
        "seconds_per_clip": clip,
        "cpu_seconds_per_step": 2 * step,
        "cpu_seconds_per_clip": 2 * clip,
        "before_denoise_seconds": 0.05,
        "after_denoise_seconds": 0.1,
        "peak_rss_mb": mb,
        "threads": 2,
        "repeats": 3,
        "warmup": 1,
        "prompt": "p",
        "load_average": [1.0, 1.0, 1.0],
        "params": {"tokenizer": 1_000, "transformer": 2_000},
        **extra,
    }


def test_compare_phenaki_ratios_and_targets():
    ours = fake_result("ours", step=0.05, clip=1.0, num_frames=16, steps=12)
    like = fake_result("like", step=0.05, clip=2.0)
    peer = fake_result("peer", step=0.4, clip=10.0)
    summary = bench_phenaki_peer.compare_phenaki(ours, like, peer)
    ratios = summary["ratios_peer_over_ours"]
    assert set(ratios["default"]) == set(RATIO_KEYS)
    assert ratios["default"]["seconds_per_clip"] == pytest.approx(10.0)
    assert ratios["like_for_like"]["seconds_per_clip"] == pytest.approx(5.0)
    assert ratios["like_for_like"]["cpu_seconds_per_step"] == pytest.approx(8.0)
    assert summary["speedup"] == pytest.approx(10.0)
    assert list(summary["targets"].values()) == [True, True]
    slow_and_big = fake_result("ours", step=0.1, clip=3.0, mb=2000.0)
    assert list(
        bench_phenaki_peer.compare_phenaki(slow_and_big, like, peer)["targets"].values()
    ) == [
        False,
        False,
    ]


def test_report_prints_the_table_ratios_and_verdicts():
    spec = importlib.util.spec_from_file_location("bench_phenaki", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    match = {
        "target_tokenizer_params": 1_000,
        "tokenizer_params": 1_050,
        "tokenizer_dim": 128,
        "tokenizer_param_error": 0.05,
        "target_transformer_params": 2_000,
        "transformer_params": 1_900,
        "transformer_dim": 188,
        "transformer_param_error": -0.05,
    }
    results = [
        fake_result("ours default", step=0.05, clip=1.0, num_frames=16, steps=12),
        fake_result("ours like", step=0.05, clip=2.0),
        fake_result("peer", step=0.4, clip=10.0, match=match, text_encoder="enc"),
    ]
    summary = bench_phenaki_peer.compare_phenaki(*results)
    text = script.report(results, summary, "random weights")
    lines = text.splitlines()
    table = [line for line in lines if line.startswith(("ours default", "ours like", "peer "))]
    assert len(table) == 6  # the time table and the CPU table
    assert "   16    12   0.050    1.00" in table[0]
    assert "ratio peer/ours, default generation (>1 = ours faster): seconds_per_step 8.00" in text
    assert "seconds_per_clip 5.00" in text  # like for like
    assert "ours 1,000, peer 1,050 (dim 128, +5.0%)" in text
    assert "ours 2,000, peer 1,900 (dim 188, -5.0%)" in text
    assert lines[-2].startswith("PASS  ours >= 4x faster") and lines[-1].startswith("PASS  peak")
