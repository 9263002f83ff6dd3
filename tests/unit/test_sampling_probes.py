"""benchmarks/cross_frame_probe.py and video_guidance_probe.py: what each changes, and only that."""

from __future__ import annotations

import pytest
import torch

from helpers import load_benchmark
from kinetoscope.diffusion.unet import SpatialTransformer


@pytest.mark.parametrize("mode", ["both", "first"])
def test_cross_frame_attention_leaves_frame_0_and_single_frames_as_they_were(mode):
    probe = load_benchmark("cross_frame_probe")
    torch.manual_seed(0)
    module = SpatialTransformer(16, num_heads=2, context_dim=8).eval()
    with torch.no_grad():
        for p in module.parameters():  # zero-initialised output layers: weights, as if trained
            if p.dim() > 0 and not p.any():
                p.normal_(0, 0.3)
    clips, frames = 2, 3
    x = torch.randn(clips * frames, 16, 4, 4)
    context, mask = torch.randn(clips, 5, 8), torch.ones(clips, 5, dtype=torch.bool)
    with torch.no_grad():
        plain = module(x, context, mask).view(clips, frames, 16, 4, 4)
        single = module(x[::frames], context, mask)
        probe.use_cross_frame_attention(torch.nn.Sequential(module), mode)
        crossed = module(x, context, mask).view(clips, frames, 16, 4, 4)
        single_crossed = module(x[::frames], context, mask)
    torch.testing.assert_close(crossed[:, 0], plain[:, 0])  # frame 0 reads only itself
    torch.testing.assert_close(single_crossed, single)  # the image model's pass is unchanged
    assert not torch.allclose(crossed[:, 1:], plain[:, 1:], atol=1e-4)  # later frames read it
    with pytest.raises(ValueError, match="mode"):
        probe.use_cross_frame_attention(module, "last")


def test_video_guidance_changes_the_scale_of_the_clip_pass_only():
    probe = load_benchmark("video_guidance_probe")
    calls = []

    class FakePipe:
        def _denoise(self, noise, **options):
            calls.append((options.get("use_temporal", True), options["guidance"]))
            return noise

    pipe = FakePipe()
    probe.guide_video_pass(pipe, 7.0)
    pipe._denoise(None, guidance=4.0, use_temporal=False)  # frame 0 by the image model
    pipe._denoise(None, guidance=4.0)  # the clip
    assert calls == [(False, 4.0), (True, 7.0)]


def test_a_tail_scheduler_steps_from_the_restart_timestep_to_the_end():
    from diffusers import DPMSolverMultistepScheduler

    probe = load_benchmark("restart_probe")
    config = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
              "prediction_type": "v_prediction"}  # fmt: skip
    full = DPMSolverMultistepScheduler(**config)
    full.set_timesteps(15)
    tail = probe.TailScheduler(DPMSolverMultistepScheduler(**config), 4)
    tail.set_timesteps(15)
    assert torch.equal(tail.timesteps, full.timesteps[4:])
    x0 = torch.randn(2, 4)
    a = tail.alphas_cumprod[int(tail.timesteps[0])]
    latents, visited = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(2, 4), []
    for t in tail.timesteps:
        ab = tail.alphas_cumprod[int(t)]
        v = (ab.sqrt() * latents - x0) / (1 - ab).sqrt()  # a perfect denoiser, as a v-prediction
        latents = tail.step(v, t, latents).prev_sample
        visited.append(tail.step_index)
    assert visited == list(range(5, 16))  # the full schedule's steps 4..14, then the end
    torch.testing.assert_close(latents, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="restart step"):
        probe.TailScheduler(DPMSolverMultistepScheduler(**config), 15).set_timesteps(15)
