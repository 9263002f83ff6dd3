"""Autocast twins: low-precision matmul weights stored once, the same outputs as autocast."""

from __future__ import annotations

import torch

from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.nn.precision import AutocastTwins, autocast_twin

TINY_UNET = dict(
    channels=(16, 32),
    attention_levels=(1,),
    temporal_attention_levels=(0, 1),
    spacetime_attention_levels=(1,),
    temporal_conditioning=True,
    scale_shift=True,
    num_heads=2,
    text_dim=16,
)


def _unet_and_inputs():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET).eval()
    with torch.no_grad():  # trained-looking weights: no zero-initialised output anywhere
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sample = torch.randn(2, 4, 3, 8, 8)
    timestep = torch.tensor([[0, 500, 500], [0, 500, 500]])
    emb, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    return unet, (sample, timestep, emb, mask)


def test_twin_is_bit_identical_to_the_model_under_autocast():
    unet, inputs = _unet_and_inputs()
    twin = autocast_twin(unet, torch.bfloat16)
    assert twin.conv_in.weight.dtype == torch.bfloat16
    assert unet.conv_in.weight.dtype == torch.float32  # the model itself is untouched
    assert any(p.dtype == torch.float32 for p in twin.parameters())  # norms stay float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = unet(*inputs)
        got = twin(*inputs)
    assert expected.dtype == torch.bfloat16 and torch.equal(got, expected)
    with torch.inference_mode():
        full = unet(*inputs)
    assert not torch.equal(full, expected.float())  # autocast really rounded


def test_twins_are_cached_until_the_weights_change():
    unet, inputs = _unet_and_inputs()
    twins = AutocastTwins()
    first = twins.get(unet, torch.bfloat16)
    assert twins.get(unet, torch.bfloat16) is first
    with torch.no_grad():
        unet.conv_in.weight.add_(1.0)  # e.g. a training step
    second = twins.get(unet, torch.bfloat16)
    assert second is not first
    assert torch.equal(second.conv_in.weight, unet.conv_in.weight.bfloat16())
    unet.load_state_dict({k: v.clone() for k, v in unet.state_dict().items()})
    assert twins.get(unet, torch.bfloat16) is not second
