"""The benchmark runner on tiny random systems (timings are checked for sense, never for speed)."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import tiny_ldm_pipeline
from kinetoscope.eval import bench, bench_report

TIMING_KEYS = (
    "seconds_per_clip",
    "seconds_per_step",
    "denoise_seconds",
    "after_denoise_seconds",
    "cpu_seconds_per_clip",
    "cpu_seconds_per_step",
    "peak_rss_mb",
    "rss_before_mb",
)
TINY_UNET = {
    "channels": (16, 32),
    "attention_levels": (1,),
    "num_heads": 2,
    "layers_per_level": 1,
    "latent_channels": 4,
}


@pytest.fixture
def pipe(fake_text_encoder):
    return tiny_ldm_pipeline(fake_text_encoder)


def test_measure_generation_reports_positive_consistent_times(pipe):
    result = bench.measure_generation(
        pipe,
        prompt="the digit 1 is moving up",
        num_frames=4,
        steps=3,
        guidance_scale=4.0,
        repeats=2,
    )
    for key in TIMING_KEYS:
        assert result[key] > 0, key
    assert len(result["clip_seconds"]) == 2
    assert result["denoise_seconds"] == pytest.approx(3 * result["seconds_per_step"])
    # the denoising loop and the decode both happen inside the timed call
    assert (
        result["seconds_per_clip"] >= result["after_denoise_seconds"] + result["seconds_per_step"]
    )
    assert result["peak_rss_mb"] >= result["rss_before_mb"] * 0.99
    assert result["peak_rss_delta_mb"] >= 0
    assert result["threads"] == torch.get_num_threads()
    assert (result["steps"], result["num_frames"], result["guidance_scale"]) == (3, 4, 4.0)


def test_measure_generation_counts_every_step_callback(pipe):
    calls = []

    def counting(prompt, **kwargs):
        calls.append(kwargs["num_inference_steps"])
        return pipe(prompt, **kwargs)

    bench.measure_generation(
        counting, prompt="a", num_frames=2, steps=2, guidance_scale=1.0, repeats=2, warmup=1
    )
    assert calls == [2, 2, 2]


def test_measure_generation_rejects_bad_settings(pipe):
    with pytest.raises(ValueError, match="at least 2 steps"):
        bench.measure_generation(pipe, prompt="a", num_frames=2, steps=1, guidance_scale=1.0)
    with pytest.raises(ValueError, match="repeats"):
        bench.measure_generation(
            pipe, prompt="a", num_frames=2, steps=2, guidance_scale=1.0, repeats=0
        )

    def silent(prompt, **kwargs):  # a pipeline that never calls back cannot be split into steps
        return None

    with pytest.raises(RuntimeError, match="called back 0 times"):
        bench.measure_generation(silent, prompt="a", num_frames=2, steps=2, guidance_scale=1.0)


def test_write_results_writes_json_and_plot(tmp_path):
    results = [
        {"name": "ours", "seconds_per_step": 0.1, "seconds_per_clip": 2.0, "peak_rss_mb": 500.0},
        {"name": "peer", "seconds_per_step": 0.2, "seconds_per_clip": 3.5, "peak_rss_mb": 600.0},
    ]
    json_path, png_path = bench_report.write_results(
        results, tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    )
    assert json.loads(json_path.read_text()) == {"results": results, "summary": {}}
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "r.json",
        "r.png",
    ]  # no temp files


def test_format_table_lists_every_system(pipe):
    result = bench.measure_generation(
        pipe, prompt="a", num_frames=2, steps=2, guidance_scale=1.0, repeats=1
    )
    rows = [
        {"name": "tiny", "params": bench.pipeline_parameter_counts(pipe), **result},
        {"name": "other", **result},
    ]
    rows[0]["precision"] = "bfloat16"
    table = bench_report.format_table(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("tiny") and table[3].startswith("other")
    assert f"{bench.count_parameters(pipe.unet):,d}" in table[2]
    assert table[2].endswith("bfloat16") and table[3].endswith(" -")


def test_match_widths_finds_the_closest_count():
    def mlp(widths):
        return torch.nn.Sequential(*(torch.nn.Linear(w, w) for w in widths))

    target = bench.count_parameters(mlp((48, 96)))
    widths, count = bench.match_widths(mlp, (16, 32), target)
    assert widths == (48, 96) and count == target


def test_diffusers_peer_matches_a_tiny_unet_and_generates(pipe):
    target = bench.count_parameters(pipe.unet)
    peer = bench.build_diffusers_peer(
        target,
        num_frames=4,
        resolution=16,
        text_dim=16,
        steps=2,
        max_length=8,
        unet_config=TINY_UNET,
        vae_channels=(8, 16),
        vae_param_count=bench.count_parameters(pipe.vae),
    )
    assert abs(peer.match["unet_params"] / target - 1) <= 0.10
    assert peer.match["unet_params"] == bench.count_parameters(peer.unet)
    assert peer.pipeline.vae_scale_factor == pipe.vae.downscale
    steps = []
    out = peer("a red circle", callback=lambda i, n, z: steps.append((i, n, tuple(z.shape))))
    assert out.frames[0].shape == (4, 16, 16, 3) and out.frames[0].dtype.name == "uint8"
    assert steps == [(0, 2, (1, 4, 4, 8, 8)), (1, 2, (1, 4, 4, 8, 8))]  # same latent size as ours
    result = bench.measure_generation(
        peer, prompt="a", num_frames=4, steps=2, guidance_scale=4.0, repeats=1
    )
    assert result["seconds_per_step"] > 0


def test_run_system_measures_a_peer_in_process():
    match = {
        "param_count": 60_000,
        "unet_config": TINY_UNET,
        "vae_channels": [8, 16],
        "text_dim": 16,
        "resolution": 16,
        "max_length": 8,
    }
    spec = {
        "system": bench.PEER,
        "match": match,
        "num_frames": 2,
        "steps": 2,
        "guidance_scale": 2.0,
        "repeats": 1,
        "warmup": 0,
        "threads": torch.get_num_threads(),
    }
    result = bench.run_system(spec)
    assert (
        result["name"] == bench.PEER and result["params"]["unet"] == result["match"]["unet_params"]
    )
    assert result["steps"] == 2 and result["seconds_per_clip"] > 0
    assert result["match"]["precision"] == "float32"


def test_a_bfloat16_peer_runs_its_unet_under_autocast(pipe):
    """A model whose denoiser runs in bf16 is compared with a peer whose UNet does too."""
    kwargs = dict(
        num_frames=2, resolution=16, text_dim=16, steps=2, max_length=8, unet_config=TINY_UNET,
        vae_channels=(8, 16),
    )  # fmt: skip
    target = bench.count_parameters(pipe.unet)
    full = bench.build_diffusers_peer(target, **kwargs)
    half = bench.build_diffusers_peer(target, precision="bfloat16", **kwargs)
    assert half.match["precision"] == "bfloat16"
    sample = torch.randn(1, 4, 2, 8, 8)
    states = torch.randn(1, 8, 16)
    with torch.inference_mode():
        ref = full.unet(sample, 500, encoder_hidden_states=states, return_dict=False)[0]
        out = half.unet(sample, 500, encoder_hidden_states=states, return_dict=False)[0]
        dict_out = half.unet(sample, 500, encoder_hidden_states=states).sample
    assert out.dtype == dict_out.dtype == torch.float32  # cast back for the scheduler
    assert torch.equal(out, dict_out)
    assert 0 < (out - ref).abs().max() < 0.1 * ref.abs().max()  # same weights, bf16 rounding


def test_bench_models_needs_names():
    with pytest.raises(ValueError, match="no model"):
        bench.bench_models([])


def test_compare_pairs_each_model_with_its_peer():
    def row(name, system, step, clip, mb=500.0):
        return {
            "name": name,
            "system": system,
            "seconds_per_step": step,
            "seconds_per_clip": clip,
            "cpu_seconds_per_step": 2 * step,
            "cpu_seconds_per_clip": 2 * clip,
            "peak_rss_mb": mb,
        }

    results = [
        row("a", "kinetoscope", 0.1, 1.2),
        row("peer of a", "peer", 0.2, 3.0),
        row("b", "kinetoscope", 0.4, 9.0, mb=2000.0),
    ]
    first, second = bench_report.compare_all(results, peer_system="peer")
    assert first["ratios_peer_over_ours"]["seconds_per_step"] == pytest.approx(2.0)
    assert all(first["targets"].values())
    assert "ratios_peer_over_ours" not in second  # b has no peer after it
    assert not any(second["targets"].values())  # 9 s per clip, 2 GB
    text = bench_report.format_summary([first, second])
    assert "a: ratio peer/ours" in text and "FAIL  peak memory <= 1.5 GB" in text


def test_a_random_ldm_pipeline_from_a_tracked_recipe_has_its_planner():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pipe = bench.build_pipeline_from_recipe(root / "configs" / "ldm-mnist.yaml", text_dim=384)
    assert pipe.unet.takes_trajectory and pipe.planner is not None
    assert pipe.planner.config.slots == pipe.unet.config.anchor_heads
    assert pipe.planner.config.num_frames == 16 and pipe.defaults["agree_px"] == 8.0
