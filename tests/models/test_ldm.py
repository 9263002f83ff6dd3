"""Contract tests of the latent video diffusion family on tiny configs."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from helpers import copy_by_position_only
from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.trajectories import grid_positions
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.train.ldm import denoising_loss, vae_loss, vae_temporal_loss

TINY_UNET = dict(
    channels=(16, 32),
    attention_levels=(1,),
    temporal_attention_levels=(0, 1),
    num_heads=2,
    text_dim=16,
)
TINY_VAE = dict(channels=(8, 16), latent_channels=4)


def text(batch: int, length: int = 8, dim: int = 16):
    emb = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, length // 2 :] = False
    return emb, mask


def test_vae_shapes_and_downscale():
    vae = VideoAutoencoderKL(**TINY_VAE)
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (2, 4, 5, 16, 16)
    assert vae.decode(latents).shape == video.shape


def test_latent_shift_and_scale_are_inverted_by_decode():
    torch.manual_seed(0)
    plain = VideoAutoencoderKL(**TINY_VAE).eval()
    shifted = VideoAutoencoderKL(**TINY_VAE, scaling_factor=2.0, latent_shift=(0.5, -1, 0, 3))
    shifted.load_state_dict(plain.state_dict())
    video = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        z = plain.encode(video)
        shift = torch.tensor([0.5, -1.0, 0.0, 3.0])[None, :, None, None, None]
        torch.testing.assert_close(shifted.encode(video), (z - shift) * 2.0)
        torch.testing.assert_close(shifted.decode(shifted.encode(video)), plain.decode(z))
    with pytest.raises(ValueError, match="latent_shift has 2 values"):
        VideoAutoencoderKL(**TINY_VAE, latent_shift=(0.0, 1.0)).encode(video)


def test_latent_statistics_give_zero_mean_unit_variance(monkeypatch):
    from kinetoscope.train import ldm

    torch.manual_seed(0)
    vae = VideoAutoencoderKL(**TINY_VAE).eval()
    frames = torch.rand(16, 3, 32, 32) * 2 - 1
    monkeypatch.setattr(ldm, "frame_batches", lambda recipe, **_: iter([frames]))
    stats = ldm.latent_statistics(vae, recipe=type("R", (), {"seed": 0})())
    vae.register_to_config(**stats)
    with torch.no_grad():
        z = vae.encode(frames[:, :, None])  # (16, Z, 1, h, w)
    assert z.mean(dim=(0, 2, 3, 4)).abs().max() < 1e-4
    assert abs(z.std().item() - 1.0) < 1e-3


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_denoising_loss_targets_follow_prediction_type(kind):
    sched = DDPMScheduler(num_train_timesteps=100, prediction_type=kind)
    latents = torch.randn(3, 4, 2, 8, 8)
    seen = {}

    def oracle(noisy, t, emb, mask, *, use_temporal):  # returns the exact target
        seen["t"] = t
        torch.manual_seed(5)
        noise = torch.randn_like(latents)
        if kind == "epsilon":
            return noise
        return sched.get_velocity(latents, noise, t)

    torch.manual_seed(5)
    loss = denoising_loss(oracle, sched, latents, None, None, use_temporal=False)
    assert loss.item() < 1e-10  # the oracle saw the same noise: its prediction is exact
    with pytest.raises(ValueError, match="not supported"):
        denoising_loss(
            oracle,
            DDPMScheduler(num_train_timesteps=100, prediction_type="sample"),
            latents,
            None,
            None,
            use_temporal=False,
        )


def perturb_temporal(model: torch.nn.Module) -> None:
    """Give the zero-initialised temporal outputs non-zero weights (as after training)."""
    with torch.no_grad():
        for p in model.temporal_parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0, 0.2)


def saved_trained_unet(directory) -> VideoUNet:
    """A tiny UNet with non-zero temporal outputs (seed 0), saved to ``directory``."""
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET)
    perturb_temporal(unet)
    torch.nn.init.normal_(unet.conv_out.weight, std=0.1)  # zero-initialised: outputs all 0
    unet.save_pretrained(directory)
    return unet


def test_a_grown_unet_starts_out_computing_what_the_trained_one_did(tmp_path):
    """init_temporal_from: level 0's per-pixel temporal convs widened to (3, 3, 3)."""
    from kinetoscope.train.weights import load_temporal_weights

    trained = saved_trained_unet(tmp_path / "unet")
    torch.manual_seed(1)
    grown = VideoUNet(**TINY_UNET, wide_temporal_levels=(0,))
    widened = [n for n, p in grown.named_parameters() if p.dim() == 5 and p.shape[-1] == 3]
    assert widened  # level 0 has (3, 3, 3) kernels now
    with pytest.raises(ValueError, match="spatial weight"):
        load_temporal_weights(grown, tmp_path / "unet")  # another image model
    spatial = {
        k: v for k, v in trained.state_dict().items() if k not in grown.temporal_parameter_names()
    }
    grown.load_state_dict(spatial, strict=False)
    load_temporal_weights(grown, tmp_path / "unet")
    x = torch.randn(1, 4, 5, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        assert torch.allclose(
            grown(x, torch.tensor([700]), emb, mask),
            trained(x, torch.tensor([700]), emb, mask),
            atol=1e-5,
        )
    # the widened kernels' outer taps start at zero and are free to train
    weight = dict(grown.named_parameters())[widened[0]]
    assert not weight[..., 0, :].any() and weight[..., 1, 1].any()
    other = VideoUNet(**{**TINY_UNET, "channels": (16, 24)})
    with pytest.raises(ValueError):
        load_temporal_weights(other, tmp_path / "unet")


def test_temporal_layers_can_move_to_a_continued_image_model(tmp_path):
    """same_image_model=False: the temporal weights are copied onto other spatial ones."""
    from kinetoscope.train.weights import load_temporal_weights

    trained = saved_trained_unet(tmp_path / "unet")
    torch.manual_seed(1)
    other = VideoUNet(**TINY_UNET)  # another image model, fresh temporal layers
    fresh = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="spatial weight"):
        load_temporal_weights(other, tmp_path / "unet")
    assert all(torch.equal(v, fresh[k]) for k, v in other.state_dict().items())  # untouched
    load_temporal_weights(other, tmp_path / "unet", same_image_model=False)
    state, saved = other.state_dict(), trained.state_dict()
    temporal = other.temporal_parameter_names()
    for name, value in fresh.items():  # temporal layers taken, the image model left as it was
        assert torch.equal(state[name], saved[name] if name in temporal else value)


def test_temporal_layers_load_from_a_float16_save_of_the_same_image_model(tmp_path):
    """A model stored with weights_dtype float16 still counts as the same image model."""
    from kinetoscope.train.weights import load_temporal_weights

    trained = saved_trained_unet(tmp_path / "unet")
    torch.nn.Module.to(trained, torch.float16).save_pretrained(tmp_path / "half")
    torch.manual_seed(1)
    grown = VideoUNet(**TINY_UNET)
    temporal = grown.temporal_parameter_names()
    full = VideoUNet.from_pretrained(tmp_path / "unet").state_dict()
    grown.load_state_dict({k: v for k, v in full.items() if k not in temporal}, strict=False)
    load_temporal_weights(grown, tmp_path / "half")
    for name, value in grown.state_dict().items():
        expected = full[name].half().float() if name in temporal else full[name]
        assert torch.equal(value, expected), name
    torch.manual_seed(2)
    other = VideoUNet(**TINY_UNET)  # another image model: still refused
    with pytest.raises(ValueError, match="spatial weight"):
        load_temporal_weights(other, tmp_path / "half")


def test_vae_starts_as_image_decoder_and_alpha_mixes():
    torch.manual_seed(0)
    vae = VideoAutoencoderKL(**TINY_VAE)
    latents = torch.randn(1, 4, 6, 8, 8)
    with torch.no_grad():
        assert torch.allclose(vae.decode(latents), vae.decode(latents, temporal=False), atol=1e-6)
        assert all(abs(mix.alpha.item() - 0.5) < 1e-6 for mix in vae.dec_mix)
        perturb_temporal(vae)
        mixed = vae.decode(latents)
        assert not torch.allclose(mixed, vae.decode(latents, temporal=False), atol=1e-4)
        for mix in vae.dec_mix:  # alpha -> 1 recovers the image decoder
            mix.mix_logit.fill_(30.0)
        assert torch.allclose(vae.decode(latents), vae.decode(latents, temporal=False), atol=1e-5)


def test_chunked_decoding_matches_full_decoding():
    torch.manual_seed(0)
    vae = VideoAutoencoderKL(**TINY_VAE).eval()
    perturb_temporal(vae)
    with torch.no_grad():
        latents = torch.randn(1, 4, 11, 8, 8)
        full = vae.decode(latents)
        for chunk in (1, 3, 4, 11):
            assert torch.allclose(vae.decode_chunked(latents, chunk_size=chunk), full, atol=1e-5)


def test_unet_shapes_determinism_and_image_mode():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET).eval()
    x = torch.randn(2, 4, 6, 8, 8)
    emb, mask = text(2)
    with torch.no_grad():
        a = unet(x, torch.tensor([3, 500]), emb, mask)
        b = unet(x, torch.tensor([3, 500]), emb, mask)
        # alpha = 1 at init: the video model equals the image model frame by frame.
        image = unet(x, torch.tensor([3, 500]), emb, mask, use_temporal=False)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert torch.allclose(a, image, atol=1e-5)


def test_unet_rejects_indivisible_latents():
    unet = VideoUNet(**TINY_UNET)
    emb, mask = text(1)
    with pytest.raises(ValueError, match="divisible"):
        unet(torch.randn(1, 4, 2, 7, 7), torch.tensor([1]), emb, mask)


def test_save_load_roundtrip(tmp_path):
    unet = VideoUNet(**TINY_UNET)
    vae = VideoAutoencoderKL(**TINY_VAE)
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    unet2 = VideoUNet.from_pretrained(tmp_path / "unet")
    vae2 = VideoAutoencoderKL.from_pretrained(tmp_path / "vae")
    for a, b in ((unet, unet2), (vae, vae2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET)
    perturb_temporal(unet)
    with torch.no_grad():  # the zero-initialised output conv, as after a few steps of training
        unet.conv_out.weight.normal_(0, 0.1)
    sched = DDPMScheduler(num_train_timesteps=100)
    emb, mask = text(2)
    denoising_loss(unet, sched, torch.randn(2, 4, 4, 8, 8), emb, mask, use_temporal=True).backward()
    missing = [
        n
        for n, p in unet.named_parameters()
        if p.grad is None or not p.grad.any() or not torch.isfinite(p.grad).all()
    ]
    assert not missing, missing
    vae = VideoAutoencoderKL(**TINY_VAE)
    perturb_temporal(vae)
    frames = torch.rand(4, 3, 16, 16) * 2 - 1
    vae_loss(vae, frames, kl_weight=1e-3)[0].backward()
    vae_temporal_loss(vae, torch.rand(1, 3, 4, 16, 16) * 2 - 1, diff_weight=1.0)[0].backward()
    missing = [n for n, p in vae.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_a_stage_of_zero_steps_leaves_no_checkpoint(tmp_path):
    """``steps: 0`` trains nothing and must leave nothing to resume: a later run in a copy of
    the folder would otherwise resume that untouched state over its own ``init_*_from``."""
    from kinetoscope.train.loop import train_loop

    unet = VideoUNet(**TINY_UNET)
    emb, mask = text(1)
    options = dict(
        model=unet,
        loss_fn=lambda model, batch: (model(*batch).square().mean(), {}),
        batches=iter(lambda: (torch.randn(1, 4, 2, 8, 8), torch.tensor([5]), emb, mask), None),
        lr=1e-3,
        out_dir=tmp_path,
        warmup_steps=1,
    )
    assert train_loop(steps=0, **options).step == 0
    assert not (tmp_path / "checkpoint.pt").exists()
    assert train_loop(steps=1, **options).step == 1
    assert (tmp_path / "checkpoint.pt").exists()


def test_stage_two_changes_no_spatial_weight(tmp_path):
    """Stage 2 of the recipe (temporal layers only) leaves every spatial weight bit-identical."""
    from kinetoscope.train.loop import train_loop

    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET)
    with torch.no_grad():  # as after stage 1: the zero-initialised output conv has been trained
        unet.conv_out.weight.normal_(0, 0.1)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    temporal_ids = {id(p) for p in unet.temporal_parameters()}
    unet.requires_grad_(False)
    for p in unet.temporal_parameters():
        p.requires_grad_(True)
    sched = DDPMScheduler(num_train_timesteps=100)
    emb, mask = text(2)

    def batches():
        while True:
            yield torch.randn(2, 4, 4, 8, 8), emb, mask

    def loss_fn(model, batch):
        return denoising_loss(model, sched, *batch, use_temporal=True), {}

    train_loop(
        model=unet,
        loss_fn=loss_fn,
        batches=batches(),
        steps=5,
        lr=1e-2,
        out_dir=tmp_path,
        warmup_steps=1,
    )
    changed_spatial = [
        n
        for n, p in unet.named_parameters()
        if id(p) not in temporal_ids and not torch.equal(p, before[n])
    ]
    changed_temporal = [
        n
        for n, p in unet.named_parameters()
        if id(p) in temporal_ids and not torch.equal(p, before[n])
    ]
    assert not changed_spatial, changed_spatial
    assert changed_temporal, "stage 2 trained nothing"
    assert len(unet.spatial_parameters()) + len(unet.temporal_parameters()) == len(
        list(unet.parameters())
    )


def test_stage_two_starts_from_stage_one_spatial_weights(tmp_path):
    from kinetoscope.train.weights import load_spatial_weights

    image = saved_trained_unet(tmp_path / "unet-image")
    torch.manual_seed(1)
    video = load_spatial_weights(VideoUNet(**TINY_UNET), tmp_path / "unet-image")
    temporal = video.temporal_parameter_names()
    image_state, video_state = image.state_dict(), video.state_dict()
    assert all(
        torch.equal(image_state[k], video_state[k]) for k in video_state if k not in temporal
    )
    # fresh temporal layers: zero-initialised outputs, so the video model equals the image model
    x = torch.randn(1, 4, 3, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        assert torch.allclose(
            video(x, torch.tensor([10]), emb, mask),
            image(x, torch.tensor([10]), emb, mask, use_temporal=False),
            atol=1e-5,
        )


@pytest.mark.parametrize("kernel", [3, (3, 3, 3), (5, 3, 3)])
def test_temporal_conv_block_equals_a_zero_padded_conv3d(kernel):
    """The 2-D convolution paths compute exactly the Conv3d their weights describe."""
    import torch.nn.functional as F
    from einops import rearrange

    from kinetoscope.nn.blocks import TemporalConvBlock

    torch.manual_seed(0)
    block = TemporalConvBlock(8, kernel_size=kernel)
    torch.nn.init.normal_(block.conv2.weight, std=0.1)
    x = torch.randn(2 * 6, 8, 10, 10)

    def conv3d(conv, frames):
        clips = rearrange(F.silu(frames), "(b t) c h w -> b c t h w", t=6)
        out = F.conv3d(clips, conv.weight, conv.bias, padding=conv.padding)
        return rearrange(out, "b c t h w -> (b t) c h w")

    expected = x + conv3d(block.conv2, block.norm2(conv3d(block.conv1, block.norm1(x))))
    assert torch.allclose(block(x, num_frames=6), expected, atol=1e-5)
    # The UNet's channels-last frames: the same result, and gradients flow to the input.
    x_last = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = block(x_last, num_frames=6)
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().sum().backward()
    x_dense = x.clone().requires_grad_(True)
    block(x_dense, num_frames=6).square().sum().backward()
    assert torch.allclose(x_last.grad, x_dense.grad, atol=1e-4)


def test_spatio_temporal_kernel_can_shift_content_between_frames():
    """A (3, 3, 3) kernel can copy the previous frame one pixel to the right; (3, 1, 1) cannot."""
    from kinetoscope.nn.blocks import TemporalConvBlock

    frames = torch.zeros(4, 1, 5, 5)
    frames[0, 0, 2, 1] = 1.0  # a dot in frame 0, nothing in later frames
    for kernel, reaches in (((3, 3, 3), True), ((3, 1, 1), False)):
        conv = TemporalConvBlock(1, kernel_size=kernel).conv1
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0, 0, kernel[1] // 2, 0] = 1.0  # read frame t-1 at (y, x-1)
        silu_dot = torch.nn.functional.silu(torch.tensor(1.0))
        out = TemporalConvBlock._conv(conv, frames, 4)
        assert torch.isclose(out[1, 0, 2, 2], silu_dot) == reaches
        assert torch.isclose(out[1, 0, 2, 1], silu_dot) != reaches


def test_temporal_conv_block_rejects_even_or_anisotropic_kernels():
    from kinetoscope.nn.blocks import TemporalConvBlock

    for kernel in (2, (3, 2, 2), (3, 3, 1)):
        with pytest.raises(ValueError, match="kernel_size"):
            TemporalConvBlock(4, kernel_size=kernel)


def test_spatio_temporal_unet_starts_as_the_image_model_and_round_trips(tmp_path):
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET, temporal_kernel=(3, 3, 3), temporal_conditioning=True).eval()
    conv = unet.down_blocks[0].temporal_conv
    assert conv.conv1.kernel_size == (3, 3, 3)
    assert {id(p) for p in conv.emb_proj.parameters()} <= {
        id(p) for p in unet.temporal_parameters()
    }
    x = torch.randn(1, 4, 5, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        video = unet(x, torch.tensor([400]), emb, mask)
        image = unet(x, torch.tensor([400]), emb, mask, use_temporal=False)
        assert torch.allclose(video, image, atol=1e-5)
        perturb_temporal(unet)
        moved = unet(x, torch.tensor([400]), emb, mask)
    unet.save_pretrained(tmp_path / "unet")
    loaded = VideoUNet.from_pretrained(tmp_path / "unet").eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.tensor([400]), emb, mask), moved)


def test_conditioned_temporal_convolutions_get_gradients_and_see_the_embedding():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET, temporal_kernel=(3, 3, 3), temporal_conditioning=True)
    perturb_temporal(unet)
    with torch.no_grad():
        unet.conv_out.weight.normal_(0, 0.1)
    sched = DDPMScheduler(num_train_timesteps=100)
    emb, mask = text(2)
    latents = torch.randn(2, 4, 4, 8, 8)
    denoising_loss(unet, sched, latents, emb, mask, use_temporal=True).backward()
    for name, p in unet.named_parameters():
        if "temporal_conv" in name:
            assert p.grad is not None and p.grad.any(), name
    # The timestep reaches the temporal branch through emb_proj: zeroing it changes the output.
    block = unet.down_blocks[0]
    x, e = torch.randn(4, 16, 8, 8), torch.randn(4, 4 * 16)
    with torch.no_grad():
        before = block.temporal_conv(x, num_frames=4, emb=e)
        block.temporal_conv.emb_proj.weight.zero_()
        block.temporal_conv.emb_proj.bias.zero_()
        after = block.temporal_conv(x, num_frames=4, emb=e)
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="pass emb"):
        block.temporal_conv(x, num_frames=4)


def test_per_frame_timesteps_match_a_shared_timestep_and_are_checked():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET, norm_group_size=4, scale_shift=True).eval()
    perturb_temporal(unet)
    with torch.no_grad():  # the zero-initialised output conv, as after training
        unet.conv_out.weight.normal_(0, 0.1)
    x = torch.randn(2, 4, 3, 8, 8)
    emb, mask = text(2)
    with torch.no_grad():
        shared = unet(x, torch.tensor([7, 300]), emb, mask)
        per_frame = unet(x, torch.tensor([[7, 7, 7], [300, 300, 300]]), emb, mask)
        mixed = unet(x, torch.tensor([[0, 7, 7], [300, 300, 300]]), emb, mask)
    assert torch.allclose(shared, per_frame, atol=1e-6)
    assert not torch.allclose(shared[0], mixed[0], atol=1e-4)
    assert torch.allclose(shared[1], mixed[1], atol=1e-6)  # clip 1 is unchanged
    with pytest.raises(ValueError, match="per-frame timesteps"):
        unet(x, torch.zeros(2, 4, dtype=torch.long), emb, mask)


class _Recorder(torch.nn.Module):
    """Stands in for the UNet: records its inputs and predicts a learnable constant."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.seen = None

    def forward(self, sample, timestep, text_emb, text_mask, *, use_temporal):
        self.seen = (sample.detach().clone(), timestep)
        return torch.zeros_like(sample) + self.bias


def test_context_frames_enter_clean_at_timestep_zero_and_leave_the_loss():
    from kinetoscope.train.ldm import draw_context_frames

    torch.manual_seed(0)
    sched = DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    latents = torch.randn(2, 4, 5, 8, 8)
    emb, mask = text(2)
    model = _Recorder()
    context = torch.tensor([2, 0])
    torch.manual_seed(1)
    loss = denoising_loss(
        model, sched, latents, emb, mask, use_temporal=True, context_frames=context
    )
    sample, timestep = model.seen
    assert torch.equal(sample[0, :, :2], latents[0, :, :2])  # clean context
    assert not torch.allclose(sample[0, :, 2:], latents[0, :, 2:])  # noised rest
    assert not torch.allclose(sample[1, :, :1], latents[1, :, :1])  # clip 1 has no context
    assert timestep.shape == (2, 5) and timestep[0, :2].eq(0).all()
    assert timestep[0, 2:].eq(timestep[0, 2]).all() and timestep[1].eq(timestep[1, 0]).all()
    # The loss is the mean over denoised frames only: recompute it from the recorded target.
    torch.manual_seed(1)
    noise = torch.randn_like(latents)
    t = torch.randint(0, 100, (2,))
    target = sched.get_velocity(latents, noise, t)
    keep = torch.ones(2, 1, 5, 1, 1, dtype=torch.bool)
    keep[0, :, :2] = False
    expected = (target**2 * keep).sum() / (keep.expand_as(target)).sum()
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="at least one frame"):
        denoising_loss(
            model, sched, latents, emb, mask, use_temporal=True, context_frames=torch.tensor([5, 1])
        )
    counts = draw_context_frames(4000, fraction=0.75, max_frames=2)
    assert set(counts.tolist()) == {0, 1, 2}
    assert abs((counts == 0).float().mean().item() - 0.25) < 0.03


def test_keyframes_anywhere_enter_clean_and_leave_the_loss():
    from kinetoscope.train.ldm import keyframe_batch

    torch.manual_seed(0)
    sched = DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    latents = torch.randn(2, 4, 5, 8, 8)
    emb, mask = text(2)
    model = _Recorder()
    known = torch.tensor([[True, False, True, False, True]] * 2)
    torch.manual_seed(1)
    loss = denoising_loss(model, sched, latents, emb, mask, use_temporal=True, known=known)
    sample, timestep = model.seen
    assert torch.equal(sample[:, :, ::2], latents[:, :, ::2])  # keyframes clean
    assert not torch.allclose(sample[:, :, 1::2], latents[:, :, 1::2])  # the frames between
    assert timestep[:, ::2].eq(0).all() and timestep[:, 1::2].gt(0).any()
    torch.manual_seed(1)
    noise = torch.randn_like(latents)
    target = sched.get_velocity(latents, noise, torch.randint(0, 100, (2,)))
    assert torch.allclose(loss, (target[:, :, 1::2] ** 2).mean())  # only the frames between
    with pytest.raises(ValueError, match="not both"):
        denoising_loss(
            model, sched, latents, emb, mask, use_temporal=True, known=known,
            context_frames=torch.tensor([1, 1]),
        )  # fmt: skip
    clips = torch.randn(3, 4, 16, 2, 2)
    for _ in range(20):
        window, given = keyframe_batch(clips, [2, 4])
        stride = int(given[0, 1:].nonzero()[0]) + 1  # distance to the second keyframe
        assert stride in (2, 4) and window.shape[2] == {2: 15, 4: 13}[stride]
        assert given.shape == (3, window.shape[2]) and given[:, -1].all()
        assert given[0].tolist() == [i % stride == 0 for i in range(window.shape[2])]
        starts = [s for s in range(16) if torch.equal(clips[:, :, s], window[:, :, 0])]
        assert len(starts) == 1 and torch.equal(
            window, clips[:, :, starts[0] : starts[0] + window.shape[2]]
        )
    with pytest.raises(ValueError, match="strides must lie in 2..15"):
        keyframe_batch(clips, [1])


def test_group_norm_group_sizes():
    from kinetoscope.nn.blocks import group_norm

    assert [group_norm(c).num_groups for c in (32, 64, 96, 160, 3)] == [32, 32, 32, 32, 1]
    assert [group_norm(c, min_group_size=4).num_groups for c in (32, 64, 96, 8, 3)] == [
        8,
        16,
        16,
        2,
        1,
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_norm_keeps_channels_last_and_computes_the_dense_norm(dtype):
    from kinetoscope.nn.blocks import group_norm

    norm = group_norm(32, min_group_size=4)
    with torch.no_grad():
        norm.weight.normal_(generator=torch.Generator().manual_seed(0))
        norm.bias.normal_(generator=torch.Generator().manual_seed(1))
    norm = norm.to(dtype)
    x = torch.randn(6, 32, 8, 8, generator=torch.Generator().manual_seed(2)).to(dtype) * 3 + 1
    dense = torch.nn.functional.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    out = norm(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, dense)
    assert norm(x).is_contiguous() and torch.equal(norm(x), dense)


def test_unet_runs_its_convolutions_channels_last_with_the_dense_result():
    torch.manual_seed(0)
    unet = VideoUNet(**TINY_UNET, spacetime_attention_levels=(1,), wide_temporal_levels=(0,))
    unet.eval()
    layouts = []
    for module in unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(
                lambda m, args, out: layouts.append(
                    args[0].is_contiguous(memory_format=torch.channels_last)
                )
            )
    sample = torch.randn(2, 4, 3, 8, 8)
    emb, mask = text(2)
    with torch.no_grad():
        out = unet(sample, torch.tensor([10, 500]), emb, mask)
    assert layouts and all(layouts)
    # The same network on dense activations: its convolutions as plain functions.
    dense = VideoUNet(**TINY_UNET, spacetime_attention_levels=(1,), wide_temporal_levels=(0,))
    dense.load_state_dict(unet.state_dict())
    dense.eval()
    for module in dense.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.forward = lambda x, m=module: m._conv_forward(x.contiguous(), m.weight, m.bias)
    with torch.no_grad():
        reference = dense(sample, torch.tensor([10, 500]), emb, mask)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("group_size", "scale_shift", "sees_timestep"), [
    (1, False, False), (4, False, True), (1, True, True), (4, True, True)
])  # fmt: skip
def test_timestep_reaches_the_features_unless_the_norm_erases_it(
    group_size, scale_shift, sees_timestep
):
    """An embedding added before a one-channel-per-group norm is cancelled exactly; larger
    groups or FiLM scale-shift keep it (this is why new recipes use both)."""
    torch.manual_seed(0)
    unet = VideoUNet(
        channels=(32,),
        attention_levels=(),
        temporal_attention_levels=(),
        num_heads=2,
        text_dim=16,
        norm_group_size=group_size,
        scale_shift=scale_shift,
    ).eval()
    with torch.no_grad():
        unet.conv_out.weight.normal_(0, 0.1)
    x = torch.randn(1, 4, 2, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        early, late = (unet(x, torch.tensor([t]), emb, mask) for t in (10, 900))
    assert (not torch.allclose(early, late, atol=1e-4)) == sees_timestep


def test_high_noise_timesteps_keep_their_share_and_range():
    from kinetoscope.train.ldm import draw_timesteps

    torch.manual_seed(0)
    uniform = draw_timesteps(20000, 1000, high_noise_fraction=0.0, high_noise_start=0.75)
    mixed = draw_timesteps(20000, 1000, high_noise_fraction=0.5, high_noise_start=0.75)
    assert uniform.min() >= 0 and mixed.max() <= 999
    top_uniform = (uniform >= 750).float().mean().item()
    top_mixed = (mixed >= 750).float().mean().item()
    assert abs(top_uniform - 0.25) < 0.02
    assert abs(top_mixed - (0.5 + 0.5 * 0.25)) < 0.02  # half drawn high, half uniform
    with pytest.raises(ValueError, match="high_noise"):
        draw_timesteps(4, 1000, high_noise_fraction=1.5, high_noise_start=0.75)


def test_temporal_spatial_positions_tell_pixels_apart_and_start_as_the_image_model(tmp_path):
    torch.manual_seed(0)
    model = VideoUNet(**TINY_UNET, temporal_spatial_positions=True).eval()
    latents = torch.randn(1, 4, 3, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        assert torch.allclose(
            model(latents, 500, emb, mask), model(latents, 500, emb, mask, use_temporal=False)
        )
    block = model.down_blocks[0].temporal_attn
    assert block.spatial_positions
    grid = grid_positions(block.channels, 8, 8, torch.device("cpu"))  # (h*w, C)
    assert grid.shape == (64, 16)
    assert torch.cdist(grid, grid).add(torch.eye(64) * 1e3).min() > 1e-3  # all pixels differ
    # A uniform input: without positions every pixel's sequence is the same and so is the
    # output; with them (and a trained, non-zero output projection) the pixels differ.
    x = torch.ones(3, 16, 8, 8)
    for positions, expect_uniform in ((False, True), (True, False)):
        torch.manual_seed(1)
        layer = type(block)(16, num_heads=2, context_dim=16, spatial_positions=positions)
        torch.nn.init.normal_(layer.proj_out.weight)
        with torch.no_grad():
            out = layer(x, emb, mask, num_frames=3)
        spread = (out - out.mean(dim=(2, 3), keepdim=True)).abs().max().item()
        assert (spread < 1e-5) == expect_uniform
    model.save_pretrained(tmp_path)
    assert VideoUNet.from_pretrained(tmp_path).config.temporal_spatial_positions


def test_spacetime_attention_links_any_place_and_frame_per_pixel_attention_does_not():
    from kinetoscope.diffusion.unet import TemporalTransformer

    emb, mask = text(1)
    x = torch.randn(4, 16, 4, 4)  # one clip of 4 frames
    changed = x.clone()
    changed[0, :, 0, 0] += torch.randn(16)  # frame 0, pixel (0, 0)
    for spacetime in (False, True):
        torch.manual_seed(0)
        layer = TemporalTransformer(16, num_heads=2, context_dim=16, spacetime=spacetime)
        torch.nn.init.normal_(layer.proj_out.weight)
        layer.norm = torch.nn.Identity()  # per-frame norm statistics would link all pixels
        with torch.no_grad():
            moved = layer(changed, emb, mask, num_frames=4) - layer(x, emb, mask, num_frames=4)
        moved = moved.abs().amax(1)  # (T, h, w)
        assert moved[3, 0, 0] > 0  # the same pixel in a later frame: both modes
        assert (moved[3, 2, 3] > 0) == spacetime  # another place in a later frame
    torch.manual_seed(0)
    model = VideoUNet(**TINY_UNET, spacetime_attention_levels=(1,)).eval()
    latents = torch.randn(2, 4, 3, 8, 8)
    emb2, mask2 = text(2)
    with torch.no_grad():  # zero-initialised outputs: starts as the image model
        assert torch.allclose(
            model(latents, 500, emb2, mask2), model(latents, 500, emb2, mask2, use_temporal=False)
        )
    assert model.down_blocks[1].temporal_attn.spacetime
    assert not model.down_blocks[0].temporal_attn.spacetime


def test_motion_bias_points_each_query_along_the_prompted_trajectory():
    from kinetoscope.diffusion.trajectories import MotionBias

    torch.manual_seed(0)
    bias_layer = MotionBias(16, num_heads=2)
    emb, mask = text(1)
    frames, size = 5, 8
    # At initialisation: every head prefers the same place in every frame, for any prompt.
    bias = bias_layer(emb, mask, num_frames=frames, height=size, width=size)
    assert bias.shape == (1, 2, frames * size * size, frames * size * size)
    grid = bias[0, 0].reshape(frames, size, size, frames, size, size)
    query = (4, 5, 6)  # frame, row, column
    for frame in range(frames):
        best = grid[query][frame].flatten().argmax().item()
        assert divmod(best, size) == (5, 6)
    # A prompt-given velocity of one cell per frame to the right in head 1 (x, y order):
    # from frame 4, column 6, the content came from column 6 - (4 - s) in frame s.
    with torch.no_grad():
        bias_layer.net[-1].bias[4:6] = torch.tensor([1.0 / size, 0.0])
    velocity, _ = bias_layer.motion(emb, mask)
    torch.testing.assert_close(velocity[0, 1], torch.tensor([1.0 / size, 0.0]))
    grid = bias_layer(emb, mask, num_frames=frames, height=size, width=size)
    grid = grid[0, 1].reshape(frames, size, size, frames, size, size)
    for frame in range(frames):
        best = grid[query][frame].flatten().argmax().item()
        assert divmod(best, size) == (5, 6 - (4 - frame))
    # Against the formula evaluated pair by pair, for random velocities and spreads.
    torch.nn.init.normal_(bias_layer.net[-1].weight)
    frames, height, width = 3, 2, 4
    bias = bias_layer(emb, mask, num_frames=frames, height=height, width=width)[0]
    velocity, spread = bias_layer.motion(emb, mask)
    coords = [(t, y, x) for t in range(frames) for y in range(height) for x in range(width)]
    for head in range(2):
        (vx, vy), (sx, sy) = velocity[0, head].tolist(), spread[0, head].tolist()
        for q, (tq, yq, xq) in enumerate(coords):
            for k, (tk, yk, xk) in enumerate(coords):
                ex = (xk - xq + vx * width * (tq - tk)) / sx
                ey = (yk - yq + vy * height * (tq - tk)) / sy
                assert abs(bias[head, q, k].item() + 0.5 * (ex * ex + ey * ey)) < 1e-4


def test_motion_bias_is_trained_in_stage_two_and_reaches_the_output():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="spacetime"):
        VideoUNet(**TINY_UNET, motion_bias=True)
    model = VideoUNet(**TINY_UNET, spacetime_attention_levels=(1,), motion_bias=True)
    layer = model.down_blocks[1].temporal_attn
    assert layer.motion_bias is not None and model.down_blocks[0].temporal_attn.motion_bias is None
    names = model.temporal_parameter_names()
    assert any("motion_bias" in n for n in names)
    latents = torch.randn(2, 4, 3, 8, 8)
    emb, mask = text(2)
    with torch.no_grad():  # zero-initialised outputs: starts as the image model
        torch.testing.assert_close(
            model(latents, 500, emb, mask), model(latents, 500, emb, mask, use_temporal=False)
        )
    torch.nn.init.normal_(layer.proj_out.weight)
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)  # the output layer starts at zero too
    model(latents, 500, emb, mask).square().mean().backward()
    # Gradients flow through the attention logits to the prompt-reading layer and the spreads
    # (the layers before the zero-initialised last one get theirs once it moves).
    bias_layer = layer.motion_bias
    for param in (bias_layer.net[-1].weight, bias_layer.net[-1].bias, bias_layer.log_spread):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_anchor_bias_is_the_motion_bias_towards_the_first_frame():
    """MotionBias.anchor equals the full space-time bias restricted to frame 0's keys."""
    from kinetoscope.diffusion.trajectories import MotionBias

    torch.manual_seed(0)
    bias_layer = MotionBias(16, num_heads=2)
    torch.nn.init.normal_(bias_layer.net[-1].weight)
    torch.nn.init.normal_(bias_layer.net[-1].bias, std=0.3)
    emb, mask = text(2)
    frames, height, width = 4, 3, 5
    full = bias_layer(emb, mask, num_frames=frames, height=height, width=width)
    anchor = bias_layer.anchor(emb, mask, num_frames=frames, height=height, width=width)
    assert anchor.shape == (2, 2, frames * height * width, height * width)
    torch.testing.assert_close(anchor, full[..., : height * width])


def test_anchor_attention_copies_the_first_frame_along_the_prompted_velocity():
    """With its bias sharp and a velocity of one cell per frame to the right, a frame's output
    at a place is frame 0's content one cell to the left per elapsed frame."""
    from kinetoscope.diffusion.trajectories import AnchorAttention

    torch.manual_seed(0)
    frames, size, channels = 4, 8, 16
    layer = AnchorAttention(channels, num_heads=2, context_dim=16)
    emb, mask = text(1)
    with torch.no_grad():
        layer.motion_bias.net[-1].bias.copy_(torch.tensor([1 / size, 0, 0, 0] * 2))
        layer.motion_bias.log_spread.fill_(math.log(0.05))  # the bias alone decides
    copy_by_position_only(layer)
    x = torch.zeros(frames, channels, size, size)
    x[0, :, 2, 1] = 1.0  # frame 0 shows one feature at row 2, column 1
    out = layer(x, emb, mask, num_frames=frames) - x
    for frame in range(frames):
        peak = out[frame].sum(0).flatten().argmax().item()
        assert divmod(peak, size) == (2, 1 + frame)
        assert out[frame, :, 2, 1 + frame].sum() > 0.99 * channels


def test_anchor_attention_grows_a_trained_unet_without_changing_it(tmp_path):
    """init_temporal_from into a UNet with anchor attention: the new weights start fresh, the
    model computes what the saved one did, and stage 2 trains them."""
    from kinetoscope.train.weights import load_temporal_weights

    trained = saved_trained_unet(tmp_path / "unet")
    torch.manual_seed(1)
    grown = VideoUNet(**TINY_UNET, anchor_levels=(0,))
    names = grown.temporal_parameter_names()
    assert any(".temporal_anchor." in n for n in names)
    assert grown.down_blocks[0].temporal_anchor is not None
    assert grown.down_blocks[1].temporal_anchor is None  # level 1 has none
    spatial = {k: v for k, v in trained.state_dict().items() if k not in names}
    grown.load_state_dict(spatial, strict=False)
    load_temporal_weights(grown, tmp_path / "unet")
    x = torch.randn(1, 4, 5, 8, 8)
    emb, mask = text(1)
    with torch.no_grad():
        torch.testing.assert_close(
            grown(x, torch.tensor([700]), emb, mask), trained(x, torch.tensor([700]), emb, mask)
        )
    anchor = grown.down_blocks[0].temporal_anchor
    torch.nn.init.normal_(anchor.proj_out.weight)
    grown(x, torch.tensor([700]), emb, mask).square().mean().backward()
    for param in (anchor.to_q.weight, anchor.motion_bias.net[-1].bias, anchor.proj_out.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    # a saved UNet that lacks other weights is still refused
    with pytest.raises(ValueError, match="lacks"):
        other = VideoUNet(**TINY_UNET, spacetime_attention_levels=(1,), motion_bias=True)
        other.load_state_dict(spatial, strict=False)
        load_temporal_weights(other, tmp_path / "unet")  # its motion bias is not an anchor's


def test_anchor_attention_equals_attention_with_the_explicit_bias():
    """The extra query/key channels reproduce softmax(q k / sqrt(E) + MotionBias.anchor) v."""
    from kinetoscope.diffusion.trajectories import AnchorAttention

    torch.manual_seed(0)
    frames, height, width, channels, heads = 3, 4, 6, 16, 2
    layer = AnchorAttention(channels, num_heads=heads, context_dim=16)
    torch.nn.init.normal_(layer.motion_bias.net[-1].weight, std=0.3)
    torch.nn.init.normal_(layer.motion_bias.net[-1].bias, std=0.3)
    emb, mask = text(2)
    q = torch.randn(2, heads, frames * height * width, channels // heads)
    k = torch.randn(2, heads, height * width, channels // heads)
    v = torch.randn(2, heads, height * width, channels // heads)
    bias = layer.motion_bias.anchor(emb, mask, num_frames=frames, height=height, width=width)
    expected = torch.softmax(q @ k.transpose(-1, -2) * (channels // heads) ** -0.5 + bias, -1) @ v
    displacement, spread = layer._motion(emb, mask, None, num_frames=frames, batch=2)
    q2, k2 = layer._with_trajectory(q, k, displacement, spread, height, width)
    got = torch.nn.functional.scaled_dot_product_attention(q2, k2, v, scale=1.0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_motion_bias_attention_read_out_starts_as_the_mean_and_can_pick_one_word():
    from kinetoscope.diffusion.trajectories import MotionBias

    torch.manual_seed(0)
    mean = MotionBias(16, num_heads=2)
    attention = MotionBias(16, num_heads=2, read_out="attention")
    attention.load_state_dict(mean.state_dict(), strict=False)  # same MLP, zero read queries
    torch.nn.init.normal_(mean.net[-1].weight)
    attention.net[-1].weight.data.copy_(mean.net[-1].weight)
    emb, mask = text(2)
    mask[0, 5:] = False  # padding must not count
    for got, expected in zip(attention.motion(emb, mask), mean.motion(emb, mask), strict=True):
        torch.testing.assert_close(got, expected)
    # Head 1's query aimed at token 2: its velocity is the MLP's reading of that token alone.
    with torch.no_grad():
        attention.read_query[1] = 50 * emb[0, 2] / emb[0, 2].norm()
    velocity, _ = attention.motion(emb[:1], mask[:1])
    alone, _ = mean.motion(emb[:1, 2:3], torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(velocity[0, 1], alone[0, 1], atol=1e-4, rtol=1e-3)
    assert not torch.allclose(velocity[0, 0], alone[0, 0], atol=1e-3)  # head 0 still the mean
    with pytest.raises(ValueError, match="read_out"):
        MotionBias(16, num_heads=2, read_out="max")


def test_anchor_velocities_saturate_and_a_sink_can_take_the_attention():
    from kinetoscope.diffusion.trajectories import AnchorAttention, MotionBias

    torch.manual_seed(0)
    emb, mask = text(1)
    bounded = MotionBias(16, num_heads=2, max_speed=0.05)
    with torch.no_grad():
        bounded.net[-1].bias.copy_(torch.tensor([10.0, -0.01, 0, 0, -10.0, 0.001, 0, 0]))
    velocity, _ = bounded.motion(emb, mask)
    torch.testing.assert_close(velocity[0, :, 0], torch.tensor([0.05, -0.05]))  # saturated
    torch.testing.assert_close(velocity[0, :, 1], torch.tensor([-0.01, 0.001]), rtol=0.02, atol=0)
    with pytest.raises(ValueError, match="max_speed"):
        MotionBias(16, num_heads=2, max_speed=0.0)
    frames, size, channels = 3, 4, 8
    layer = AnchorAttention(channels, num_heads=2, context_dim=16, sink=True)
    shift = 10.0 * (torch.arange(channels) == 0).float()[:, None, None]
    x = torch.randn(frames, channels, size, size) + shift  # feature 0 stands out everywhere
    sink_value = torch.arange(channels, dtype=torch.float)
    with torch.no_grad():
        torch.nn.init.normal_(layer.proj_out.weight)
        layer.to_q.weight.zero_()
        layer.norm = torch.nn.Identity()
        layer.to_q.weight[:, 0] = 1.0  # every query channel is feature 0, about 10...
        layer.sink[0].zero_()
        layer.sink[0][:, 0] = 1e4  # ...which the sink key matches far better than any place
        layer.sink[1].copy_(sink_value.view(2, channels // 2))
        out = layer(x, emb, mask, num_frames=frames) - x
        expected = layer.proj_out(sink_value)  # every query reads the sink's value
    torch.testing.assert_close(out, expected[None, :, None, None].expand_as(out))


def test_a_fixed_trajectory_bank_gives_each_head_its_velocity_for_every_prompt(tmp_path):
    from kinetoscope.diffusion.trajectories import MotionBias

    bank = [[1 / 32, 0.0], [-1 / 32, 0.0], [0.0, 1 / 32], [0.0, -1 / 32]]
    bias_layer = MotionBias(16, num_heads=4, read_out="fixed", velocities=bank)
    emb, mask = text(3)
    velocity, spread = bias_layer.motion(emb, mask)
    torch.testing.assert_close(velocity, torch.tensor(bank).expand(3, 4, 2))
    torch.testing.assert_close(spread, torch.full((3, 4, 2), 1.5))
    assert bias_layer.net is None and "fixed_velocity" not in bias_layer.state_dict()
    with pytest.raises(ValueError, match="velocities"):
        MotionBias(16, num_heads=4, read_out="fixed")
    with pytest.raises(ValueError, match="per head"):
        MotionBias(16, num_heads=2, read_out="fixed", velocities=bank)
    options = dict(anchor_levels=(0,), anchor_read_out="fixed", anchor_velocities=bank)
    with pytest.raises(ValueError, match="anchor_heads"):
        VideoUNet(**TINY_UNET, **options)
    torch.manual_seed(0)
    model = VideoUNet(**TINY_UNET, **options, anchor_heads=4)
    model.save_pretrained(tmp_path)  # the bank is configuration, not weights
    again = VideoUNet.from_pretrained(tmp_path)
    velocity, _ = again.down_blocks[0].temporal_anchor.motion_bias.motion(emb, mask)
    torch.testing.assert_close(velocity, torch.tensor(bank).expand(3, 4, 2))
