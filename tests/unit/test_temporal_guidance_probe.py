"""benchmarks/temporal_guidance_probe.py: the guided UNet pushes only the conditional half."""

from __future__ import annotations

import torch

from helpers import load_benchmark
from kinetoscope.diffusion.unet import VideoUNet


def test_guidance_changes_only_the_conditional_half_by_the_temporal_difference():
    probe = load_benchmark("temporal_guidance_probe")
    torch.manual_seed(0)
    unet = VideoUNet(channels=(16, 32), attention_levels=(1,), temporal_attention_levels=(0, 1),
                     num_heads=2, text_dim=16).eval()  # fmt: skip
    with torch.no_grad():  # zero-initialised outputs (temporal, conv_out): weights, as if trained
        for p in unet.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0, 0.2)
    x = torch.randn(4, 4, 3, 8, 8)  # (2B, Z, T, h, w): B=2 conditional, then unconditional
    t, emb, mask = torch.tensor(500), torch.randn(4, 5, 16), torch.ones(4, 5, dtype=torch.bool)
    with torch.no_grad():
        plain = unet(x, t, emb, mask)
        spatial = unet(x[:2], t, emb[:2], mask[:2], use_temporal=False)
        guided = probe.TemporallyGuided(unet, 0.5)(x, t, emb, mask)
        off = probe.TemporallyGuided(unet, 0.0)(x, t, emb, mask)
        image = probe.TemporallyGuided(unet, 0.5)(x, t, emb, mask, use_temporal=False)
    assert not torch.allclose(plain[:2], spatial, atol=1e-4)  # the temporal layers matter
    torch.testing.assert_close(guided[:2], plain[:2] + 0.5 * (plain[:2] - spatial))
    torch.testing.assert_close(guided[2:], plain[2:])
    torch.testing.assert_close(off, plain)
    torch.testing.assert_close(image, unet(x, t, emb, mask, use_temporal=False))
