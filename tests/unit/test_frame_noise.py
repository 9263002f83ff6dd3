"""Frame-correlated noise: each frame standard normal, frames correlated as asked."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from kinetoscope.diffusion.noise import frame_correlated_noise, mix_frame_noise
from kinetoscope.train.ldm import denoising_loss


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_frames_stay_standard_normal_and_correlate_by_rho(rho):
    torch.manual_seed(0)
    noise = frame_correlated_noise(torch.empty(512, 2, 4, 8, 8), rho)
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.var().item() - 1.0) < 0.01
    for f in range(1, 4):
        corr = torch.corrcoef(torch.stack([noise[:, :, 0].flatten(), noise[:, :, f].flatten()]))
        assert abs(corr[0, 1].item() - rho) < 0.01
    channels = torch.corrcoef(torch.stack([noise[:, 0].flatten(), noise[:, 1].flatten()]))
    assert abs(channels[0, 1].item()) < 0.01  # only frames share noise, not channels


def test_mix_is_the_weighted_sum_and_checks_its_input():
    own, shared = torch.randn(2, 3, 5, 4, 4), torch.randn(2, 3, 1, 4, 4)
    mixed = mix_frame_noise(own, shared, 0.36)
    assert torch.allclose(mixed, 0.6 * shared + 0.8 * own)
    assert torch.equal(mix_frame_noise(own, shared, 0.0), own)
    with pytest.raises(ValueError, match="correlation"):
        mix_frame_noise(own, shared, 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        mix_frame_noise(own, own, 0.5)


def test_denoising_loss_trains_on_the_correlated_noise():
    """An oracle that knows the correlated noise predicts the target exactly; one that
    assumes independent frames does not."""
    sched = DDPMScheduler(num_train_timesteps=100, prediction_type="epsilon")
    latents = torch.randn(3, 4, 6, 8, 8)

    def oracle(rho):
        def predict(noisy, t, emb, mask, *, use_temporal):
            torch.manual_seed(5)  # the loss draws its noise first, from this seed
            return frame_correlated_noise(latents, rho)

        return predict

    def loss(model_rho, train_rho):
        torch.manual_seed(5)
        return denoising_loss(
            oracle(model_rho), sched, latents, None, None,
            use_temporal=True, noise_correlation=train_rho,
        ).item()  # fmt: skip

    assert loss(0.7, 0.7) < 1e-10
    assert loss(0.0, 0.7) > 0.1
