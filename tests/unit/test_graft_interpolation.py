"""benchmarks/graft_interpolation.py: a new generator keeps the donor's interpolation model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import load_benchmark, tiny_ldm_pipeline
from kinetoscope.diffusion.unet import VideoUNet

graft = load_benchmark("graft_interpolation")


def test_the_grafted_interpolation_model_interpolates_as_the_donors(fake_text_encoder):
    donor = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    state = donor.unet.temporal_state()
    torch.manual_seed(3)
    donor.interpolation_unet = donor.unet.with_temporal_state(
        {k: v + 0.05 * torch.randn_like(v) for k, v in state.items()}
    )
    receiver = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    config = {**receiver.unet.config, "anchor_levels": (0,), "anchor_read_out": "given"}
    unet = VideoUNet(**{k: v for k, v in config.items() if not k.startswith("_")})
    unet.load_state_dict(donor.unet.spatial_state(), strict=False)
    receiver.unet = receiver.image_unet = unet.eval()
    graft.graft(receiver, donor)
    got = receiver.interpolation_unet.temporal_state()
    for key, value in got.items():
        expected = donor.interpolation_unet.temporal_state().get(key, unet.temporal_state()[key])
        assert torch.equal(value, expected), key
    clip = donor(["the digit 3 is moving left"], seed=0, progress=False).frames[0]
    run = dict(factor=2, seed=0, progress=False)
    assert np.array_equal(
        receiver.interpolate(clip, **run).frames, donor.interpolate(clip, **run).frames
    )
    with torch.no_grad():
        next(receiver.unet.parameters()).add_(1.0)  # another image model
    with pytest.raises(ValueError, match="image model"):
        graft.graft(receiver, donor)
    donor.interpolation_unet = None
    with pytest.raises(ValueError, match="no separate interpolation"):
        graft.graft(receiver, donor)
