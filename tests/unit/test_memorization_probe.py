"""benchmarks/memorization_probe.py: loss on cached clips against fresh clips of the same worlds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from helpers import load_benchmark, tiny_ldm_pipeline
from kinetoscope.config import load_config
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.recipe import _world_datasets, clip_chunks

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _recipe() -> LDMRecipe:
    recipe = load_config(LDMRecipe, CONFIGS / "ldm-mnist.yaml")
    return replace(recipe, num_frames=3, resolution=32)


def test_fresh_clips_are_the_ones_after_the_cache(fake_text_encoder):
    probe = load_benchmark("memorization_probe")
    recipe = _recipe()
    vae = tiny_ldm_pipeline(fake_text_encoder).vae
    latents, wordings = probe.fresh_clips(recipe, vae, start=20, count=5)  # crosses a chunk edge
    videos, words = zip(*clip_chunks(_world_datasets(recipe), 25), strict=True)
    every = torch.cat(videos)
    all_words = [w for chunk in words for w in chunk]
    with torch.no_grad():
        assert torch.allclose(latents, vae.encode(every[20:25]), atol=1e-5)
        assert not torch.allclose(latents, vae.encode(every[15:20]), atol=1e-2)
    assert wordings == all_words[20:25]


class ZeroUNet(torch.nn.Module):
    """Predicts zero velocity: its loss is the mean square of the target."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def forward(self, noisy, t, emb, mask, *, use_temporal):
        self.calls.append(t.clone())
        return torch.zeros_like(noisy)


def test_losses_leave_frame_zero_out_and_repeat_exactly(fake_text_encoder):
    probe = load_benchmark("memorization_probe")
    pipe = tiny_ldm_pipeline(fake_text_encoder)
    pipe.unet = ZeroUNet()
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    latents = torch.randn(3, 4, 4, 2, 2)
    words = [["the digit 1 is moving up"]] * 3
    first = probe.losses(pipe, scheduler, latents, words, [10, 90], 0.5, seed=0, batch=2)
    again = probe.losses(pipe, scheduler, latents, words, [10, 90], 0.5, seed=0, batch=2)
    assert first.shape == (2, 3) and torch.equal(first, again)
    # frame 0 enters clean at timestep 0 and is left out of the loss: changing it alone
    # cannot change a zero predictor's loss
    moved = latents.clone()
    moved[:, :, 0] += 5.0
    assert torch.equal(
        probe.losses(pipe, scheduler, moved, words, [10, 90], 0.5, seed=0, batch=2), first
    )
    assert all(bool((t[:, 0] == 0).all()) and bool((t[:, 1:] > 0).all()) for t in pipe.unet.calls)
    # ... while the later frames' content does change it
    later = latents.clone()
    later[:, :, 1:] += 5.0
    assert not torch.allclose(
        probe.losses(pipe, scheduler, later, words, [10, 90], 0.5, seed=0, batch=2), first
    )
