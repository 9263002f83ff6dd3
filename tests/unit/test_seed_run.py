"""benchmarks/seed_run.py: a run folder rebuilt from a saved pipeline."""

from __future__ import annotations

import sys

import pytest
import torch

from helpers import load_benchmark, tiny_ldm_pipeline
from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.train.weights import load_spatial_weights


def test_a_seeded_run_holds_the_pipelines_autoencoder_and_image_model(
    fake_text_encoder, tmp_path, monkeypatch
):
    seed_run = load_benchmark("seed_run")
    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.1)
    pipe.save_pretrained(tmp_path / "model")
    monkeypatch.setattr(sys, "argv", ["seed_run", str(tmp_path / "model"), str(tmp_path / "run")])
    seed_run.main()
    vae = VideoAutoencoderKL.from_pretrained(tmp_path / "run" / "vae")
    for name, value in pipe.vae.state_dict().items():
        assert torch.equal(vae.state_dict()[name], value), name
    # what the temporal stage starts from: the image model's spatial weights
    torch.manual_seed(5)
    fresh = VideoUNet(**pipe.unet.config)
    load_spatial_weights(fresh, tmp_path / "run" / "unet-image")
    saved = dict(pipe.unet.named_parameters())
    for param in pipe.unet.spatial_parameters():
        name = next(n for n, p in saved.items() if p is param)
        assert torch.equal(dict(fresh.named_parameters())[name], param), name
    with pytest.raises(SystemExit):  # never over an existing run
        seed_run.main()
