"""Convolutional building blocks shared by the video autoencoder and the diffusion UNet.

Axis legend: B batch, T frames, C channels, H height, W width.
Spatial blocks see frames as images (B*T, C, H, W); temporal blocks regroup them into
clips with ``num_frames`` and mix their output into the spatial stream through a learned
``alpha`` (Video LDM, Blattmann et al. 2023, §3: z' = alpha * z + (1 - alpha) * temporal(z)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

CHANNELS_LAST = torch.channels_last


def group_norm(channels: int, *, min_group_size: int = 1) -> nn.GroupNorm:
    """GroupNorm with the largest power-of-two group count <= 32 that divides ``channels``
    into groups of at least ``min_group_size`` channels.

    With groups of one channel (``min_group_size=1`` on 32 channels) the norm removes each
    channel's mean, and with it anything added per channel before it, such as an embedding.
    """
    groups = next(
        (g for g in (32, 16, 8, 4, 2) if channels % g == 0 and channels // g >= min_group_size), 1
    )
    return GroupNorm(groups, channels, eps=1e-6)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that keeps a channels-last input channels-last.

    The UNet runs its 2-D convolutions on channels-last activations, where CPU kernels are
    several times faster; the CPU group norm is the one layer that is slower there (6-17x in
    bfloat16 at the UNet's sizes), so it normalises a dense copy and hands back channels-last.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=CHANNELS_LAST):
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=CHANNELS_LAST)


class EmbeddingInjection(nn.Linear):
    """How a conditioning vector enters a block between its two convolutions.

    ``scale_shift=False`` adds a projection of it to the features before the second norm
    (a per-channel shift that a GroupNorm with small groups largely cancels). True
    modulates the normalised features instead, h = norm(h) * (1 + scale) + shift (FiLM,
    as in Dhariwal & Nichol 2021), which no norm can undo. (A Linear, so the weights keep
    the ``emb_proj.weight`` names of earlier models.)
    """

    def __init__(self, emb_dim: int, channels: int, *, scale_shift: bool) -> None:
        super().__init__(emb_dim, 2 * channels if scale_shift else channels)
        self.scale_shift = scale_shift

    def inject(self, h: torch.Tensor, emb: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """h (N, C, H, W), emb (N, E) -> ``norm`` applied with the embedding injected."""
        e = self(F.silu(emb))[:, :, None, None]
        if not self.scale_shift:
            return norm(h + e)
        scale, shift = e.chunk(2, dim=1)
        return norm(h) * (1.0 + scale) + shift


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual path, optionally shifted by an embedding.

    Args:
        in_channels / out_channels: channel counts.
        emb_dim: width of the conditioning vector injected after the first conv (None:
            unconditioned).
        norm_group_size: smallest number of channels per GroupNorm group.
        scale_shift: inject the embedding as FiLM scale and shift (see EmbeddingInjection).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        emb_dim: int | None = None,
        norm_group_size: int = 1,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, min_group_size=norm_group_size)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = (
            EmbeddingInjection(emb_dim, out_channels, scale_shift=scale_shift) if emb_dim else None
        )
        self.norm2 = group_norm(out_channels, min_group_size=norm_group_size)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, Cin, H, W), emb (N, E) -> (N, Cout, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb_proj is not None and emb is not None:
            h = self.emb_proj.inject(h, emb, self.norm2)
        else:
            h = self.norm2(h)
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Downsample(nn.Conv2d):
    """Stride-2 3x3 convolution: (N, C, H, W) -> (N, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, stride=2, padding=1)


class Upsample(nn.Module):
    """Nearest x2 upsampling then a 3x3 convolution: (N, C, H, W) -> (N, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AlphaMix(nn.Module):
    """Learned blend ``alpha * spatial + (1 - alpha) * temporal`` with alpha = sigmoid(logit).

    Every temporal branch in this project is a residual whose output projection starts at
    zero, so at initialisation temporal(z) == z and the blend returns z for any alpha: the
    network starts as the image model. Alpha itself starts at 0.5 so that gradients reach
    the temporal layers from the first step (an alpha pinned at 1 would block them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.mix_logit = nn.Parameter(torch.zeros(()))

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.mix_logit)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha
        return alpha * spatial + (1.0 - alpha) * temporal


class TemporalConvBlock(nn.Module):
    """Residual 3D convolutions over time: (k, 1, 1) per pixel by default, or (k, s, s).

    Acts on frames (B*T, C, H, W) regrouped into clips of ``num_frames``; zero padding in
    time, so a clip's first and last frames see only their existing neighbours. A spatial
    extent ``s > 1`` lets a frame read its neighbours' features from nearby positions, so
    the block can move content by up to s // 2 pixels per frame (a per-pixel kernel can only
    fade it in and out).

    Args:
        channels: C.
        kernel_size: k, or (k, s, s) with odd k and s.
        emb_dim: width of a per-frame conditioning vector (timestep and pooled text in the
            UNet) injected between the two convolutions, as in ``ResBlock``; None: unconditioned.
        norm_group_size / scale_shift: as in ``ResBlock``.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | tuple[int, int, int] = 3,
        emb_dim: int | None = None,
        norm_group_size: int = 1,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        kernel = (kernel_size, 1, 1) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel) != 3 or kernel[1] != kernel[2] or any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be odd k or (k, s, s) with odd k, s; got {kernel}")
        padding = tuple(k // 2 for k in kernel)
        self.norm1 = group_norm(channels, min_group_size=norm_group_size)
        self.conv1 = nn.Conv3d(channels, channels, kernel, padding=padding)
        self.emb_proj = (
            EmbeddingInjection(emb_dim, channels, scale_shift=scale_shift) if emb_dim else None
        )
        self.norm2 = group_norm(channels, min_group_size=norm_group_size)
        self.conv2 = nn.Conv3d(channels, channels, kernel, padding=padding)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity (see AlphaMix)
        nn.init.zeros_(self.conv2.bias)

    def forward(
        self, x: torch.Tensor, *, num_frames: int, emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B*T, C, H, W), emb (B*T, E) -> (B*T, C, H, W).

        Norms act per frame, so each output frame depends only on frames within the
        convolutions' reach (this is what makes chunked decoding exact).
        """
        h = self._conv(self.conv1, self.norm1(x), num_frames)
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("this temporal block is conditioned: pass emb")
            h = self.emb_proj.inject(h, emb, self.norm2)
        else:
            h = self.norm2(h)
        h = self._conv(self.conv2, h, num_frames)
        return x + h

    @staticmethod
    def _conv(conv: nn.Conv3d, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The Conv3d computed with 2-D convolutions (same weights, same result).

        They run on the UNet's channels-last frames as they are (a Conv3d would need 5-D
        clips, and the CPU conv3d backward crashes on channels-last ones). A (k, 1, 1) kernel
        runs as a (k, 1) conv over (time, pixels); a (k, s, s) kernel as an (s, s) conv over
        each frame stacked with its k - 1 zero-padded time neighbours along the channels,
        written straight into channels-last memory (a bf16 (3, 3, 3) conv of 32 frames of
        32 x 16 x 16: 0.64 ms, against 0.69 ms for a Conv3d of dense clips and 1.8 ms for a
        dense stack of the channels-last frames).
        """
        k, s, _ = conv.kernel_size
        x = F.silu(x)
        if s == 1:
            width = x.shape[-1]
            h = rearrange(x, "(b t) c h w -> b c t (h w)", t=num_frames)
            weight = conv.weight.squeeze(-1)  # (Cout, Cin, k, 1, 1) -> (Cout, Cin, k, 1)
            h = F.conv2d(h, weight, conv.bias, padding=(conv.padding[0], 0))
            return rearrange(h, "b c t (h w) -> (b t) c h w", w=width)
        frames, channels, height, width = x.shape
        clips = x.permute(0, 2, 3, 1).reshape(-1, num_frames, height, width, channels)
        stacked = x.new_zeros(*clips.shape[:-1], k * channels)  # (b, t, h, w, k*c)
        for j in range(k):  # tap j reads frame t + j - k // 2; outside the clip it reads zeros
            shift = j - k // 2
            first, last = max(0, -shift), min(num_frames, num_frames - shift)
            stacked[:, first:last, ..., j * channels : (j + 1) * channels] = clips[
                :, first + shift : last + shift
            ]
        stacked = stacked.view(frames, height, width, k * channels).permute(0, 3, 1, 2)
        weight = rearrange(conv.weight, "o i k h w -> o (k i) h w")
        return F.conv2d(stacked, weight, conv.bias, padding=s // 2)
