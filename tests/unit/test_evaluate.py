"""kinetoscope eval: the report of a (random, so always wrong) tiny model on a world."""

from __future__ import annotations

import json

import torch
from diffusers import DDPMScheduler

from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.eval.evaluate import evaluate, evaluate_variant, wilson_interval
from kinetoscope.pipelines.text_to_video import TextToVideoPipeline


def test_wilson_interval():
    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.9 < high < 0.95
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0


def test_report_of_random_model(tmp_path, fake_text_encoder):
    torch.manual_seed(0)
    vae = VideoAutoencoderKL(channels=(8, 8, 8), latent_channels=4)
    unet = VideoUNet(
        channels=(8, 16),
        attention_levels=(1,),
        temporal_attention_levels=(),
        num_heads=2,
        text_dim=16,
    )
    pipe = TextToVideoPipeline(
        vae=vae,
        unet=unet,
        scheduler_config=dict(DDPMScheduler(num_train_timesteps=50).config),
        defaults={"num_frames": 16, "resolution": 64, "num_inference_steps": 1},
    )
    pipe._text_encoder = fake_text_encoder
    report = evaluate(pipe, world="shapes-1", samples=3, out_dir=tmp_path / "rep", batch_size=2)
    assert report["accuracy"]["overall"]["n"] == 3
    assert report["accuracy"]["overall"]["accuracy"] == 0.0  # a random model shows nothing
    assert set(report["accuracy"]) >= {"color", "shape", "size", "motion", "count", "overall"}
    assert report["protocol"]["samples"] == 3 and report["protocol"]["num_frames"] == 16
    assert report["speed"]["seconds_per_clip"] > 0 and report["speed"]["peak_rss_mb"] > 0
    for name in ("report.json", "report.md", "confusion.png", "samples.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(saved["samples"]) == 3 and all(not s["correct"] for s in saved["samples"])
    # a random model shows no readable object: stability is reported as such, not as a number
    assert saved["temporal"]["identity_stability"] is None
    assert "Identity stability" in (tmp_path / "rep" / "report.md").read_text()
    # A probe's variant is judged under the same protocol: the same prompts and seeds.
    variant = evaluate_variant(pipe, world="shapes-1", samples=3, out_dir=tmp_path / "variant")
    assert variant == {k: v["accuracy"] for k, v in report["accuracy"].items()}
    again = json.loads((tmp_path / "variant" / "report.json").read_text())
    assert [s["prompt"] for s in again["samples"]] == [s["prompt"] for s in saved["samples"]]


def test_a_guidance_interval_is_passed_on_and_recorded(tmp_path, fake_text_encoder):
    from types import SimpleNamespace

    import pytest

    from helpers import tiny_ldm_pipeline
    from kinetoscope.eval.evaluate import sampling_options

    pipe = tiny_ldm_pipeline(fake_text_encoder)
    report = evaluate(
        pipe, world="shapes-1", samples=2, out_dir=tmp_path / "rep", guidance_interval=(0.5, 1)
    )
    assert report["protocol"]["guidance_interval"] == [0.5, 1.0]
    assert report["protocol"]["precision"] == "float32"  # the tiny pipeline's default
    report = evaluate(
        pipe, world="shapes-1", samples=1, out_dir=tmp_path / "bf16", precision="bfloat16"
    )
    assert report["protocol"]["precision"] == "bfloat16"
    for option in ({"guidance_interval": (0, 1)}, {"precision": "bfloat16"}):
        with pytest.raises(ValueError, match="applies to latent diffusion models"):
            sampling_options(
                steps=None, guidance=None, pipe=SimpleNamespace(family="phenaki"), **option
            )
