"""Contract tests for the C-ViViT tokenizer and the FSQ quantizer (tiny configs, seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_CVIVIT
from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.autoencoders.quantizers import FSQ

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cvivit(seed: int = 0) -> CViViT:
    torch.manual_seed(seed)
    return CViViT(**TINY_CVIVIT).eval()


def random_video(num_frames: int, *, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, num_frames, 16, 16, generator=generator) * 2 - 1


# --- FSQ -------------------------------------------------------------------------------------


def test_fsq_codebook_size_and_round_trip():
    fsq = FSQ([8, 5, 5, 5])
    assert fsq.num_codes == 1000 and fsq.dim == 4
    indices = torch.arange(fsq.num_codes)
    codes = fsq.indices_to_codes(indices)
    assert codes.shape == (1000, 4)
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    assert len({tuple(c.tolist()) for c in codes}) == 1000  # all codes distinct


def test_fsq_quantize_lands_on_grid_and_matches_indices():
    fsq = FSQ([8, 5, 5, 5])
    z = torch.randn(64, 4) * 3
    codes, indices = fsq(z)
    assert indices.min() >= 0 and indices.max() < 1000
    assert torch.equal(fsq.indices_to_codes(indices), codes)
    # Extreme inputs reach the outermost levels: 8 levels -> {-1, ..., 0.75}, 5 -> {-1, ..., 1}.
    extremes, _ = fsq(torch.tensor([[-50.0] * 4, [50.0] * 4]))
    assert torch.equal(extremes[0], torch.tensor([-1.0, -1.0, -1.0, -1.0]))
    assert torch.equal(extremes[1], torch.tensor([0.75, 1.0, 1.0, 1.0]))


def test_fsq_straight_through_gradient():
    fsq = FSQ([8, 5, 5, 5])
    z = torch.randn(16, 4, requires_grad=True)
    fsq.quantize(z).sum().backward()
    z_ref = z.detach().clone().requires_grad_(True)
    (fsq.bound(z_ref) / torch.tensor([4.0, 2.0, 2.0, 2.0])).sum().backward()
    assert torch.allclose(z.grad, z_ref.grad)
    assert (z.grad.abs() > 0).all()


def test_fsq_rejects_bad_input():
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])
    fsq = FSQ([4, 3])
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        fsq.indices_to_codes(torch.tensor([12]))


# --- C-ViViT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 3, 5, 17])
def test_shapes(num_frames):
    model = tiny_cvivit()
    video = random_video(num_frames)
    steps = 1 + (num_frames - 1) // 2
    assert model.tokens_shape(num_frames, 16, 16) == (steps, 4, 4)
    indices = model.encode(video)
    assert indices.shape == (2, steps, 4, 4) and indices.dtype == torch.long
    assert indices.min() >= 0 and indices.max() < model.num_codes
    assert model.decode_indices(indices).shape == video.shape
    recon, forward_indices = model(video)
    assert recon.shape == video.shape and torch.equal(forward_indices, indices)


@pytest.mark.parametrize(("num_frames", "hint"), [(16, "15 or 17"), (2, "1 or 3"), (0, "1")])
def test_invalid_lengths_name_nearest_valid(num_frames, hint):
    model = tiny_cvivit()
    with pytest.raises(ValueError, match=hint):
        model.encode(torch.zeros(1, 3, num_frames, 16, 16))


def test_invalid_resolution():
    with pytest.raises(ValueError, match="image_size"):
        tiny_cvivit().encode(torch.zeros(1, 3, 3, 32, 32))


def test_num_codes():
    assert tiny_cvivit().num_codes == 1000
    assert CViViT(**TINY_CVIVIT, fsq_levels=(4, 3)).num_codes == 12


def test_deterministic_under_seed():
    video = random_video(5)
    a, b = tiny_cvivit(seed=3), tiny_cvivit(seed=3)
    recon_a, idx_a = a(video)
    recon_b, idx_b = b(video)
    assert torch.equal(idx_a, idx_b) and torch.equal(recon_a, recon_b)
    assert not torch.equal(tiny_cvivit(seed=4)(video)[0], recon_a)


def test_save_load_equal(tmp_path):
    model = tiny_cvivit()
    model.save_pretrained(tmp_path)
    loaded = CViViT.from_pretrained(tmp_path).eval()
    assert loaded.config.fsq_levels == [8, 5, 5, 5]
    video = random_video(5)
    recon, indices = model(video)
    recon_loaded, indices_loaded = loaded(video)
    assert torch.equal(indices, indices_loaded)
    assert torch.equal(recon, recon_loaded)


def test_gradients_reach_every_parameter():
    model = tiny_cvivit().train()
    video = random_video(5)
    recon, _ = model(video)
    F.mse_loss(recon, video).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_encoder_is_causal_in_time():
    """Changing frames 5.. leaves time steps 0..2 (frames 0; 1-2; 3-4) exactly unchanged."""
    model = tiny_cvivit()
    video = random_video(9, seed=5)
    changed = video.clone()
    changed[:, :, 5:] = random_video(4, seed=6)
    with torch.no_grad():
        lat, lat_changed = model.encode_latents(video), model.encode_latents(changed)
    assert lat.shape[1] == 5
    assert torch.allclose(lat[:, :3], lat_changed[:, :3], atol=1e-6, rtol=0)
    assert torch.equal(model.encode(video)[:, :3], model.encode(changed)[:, :3])
    assert (lat[:, 3:] - lat_changed[:, 3:]).abs().max() > 1e-3  # later steps do see the change


def test_decoder_is_causal_in_time():
    """Changing tokens of time steps 3.. leaves decoded frames 0..4 unchanged."""
    model = tiny_cvivit()
    generator = torch.Generator().manual_seed(0)
    indices = torch.randint(0, model.num_codes, (1, 5, 4, 4), generator=generator)
    changed = indices.clone()
    changed[:, 3:] = torch.randint(0, model.num_codes, (1, 2, 4, 4), generator=generator)
    with torch.no_grad():
        video, video_changed = model.decode_indices(indices), model.decode_indices(changed)
    assert torch.allclose(video[:, :, :5], video_changed[:, :, :5], atol=1e-6, rtol=0)
    assert (video[:, :, 5:] - video_changed[:, :, 5:]).abs().max() > 1e-3


def test_prefix_of_clip_equals_clip_of_prefix():
    """The first P time steps of a clip's tokens are the tokens of its first 1+2(P-1) frames."""
    model = tiny_cvivit()
    video = random_video(9, seed=7)
    assert torch.equal(model.encode(video)[:, :3], model.encode(video[:, :, :5]))


def test_overfits_constant_colour_clip():
    torch.manual_seed(0)
    model = CViViT(**TINY_CVIVIT).train()
    video = torch.empty(1, 3, 5, 16, 16)
    video[:, 0], video[:, 1], video[:, 2] = 0.6, -0.3, 0.1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        recon, _ = model(video)
        loss = F.mse_loss(recon, video)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])
