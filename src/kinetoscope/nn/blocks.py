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


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= 32 that divides ``channels``."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual path, optionally shifted by an embedding.

    Args:
        in_channels / out_channels: channel counts.
        emb_dim: width of the conditioning vector added after the first conv (None: unconditioned).
    """

    def __init__(self, in_channels: int, out_channels: int, *, emb_dim: int | None = None) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels) if emb_dim else None
        self.norm2 = group_norm(out_channels)
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
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
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
    """Residual 1D convolutions over time at every pixel (a (3, 1, 1) 3D convolution).

    Acts on frames (B*T, C, H, W) regrouped into clips of ``num_frames``; zero padding in
    time, so a clip's first and last frames see only their existing neighbours.
    """

    def __init__(self, channels: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        padding = (kernel_size // 2, 0, 0)
        self.norm1 = group_norm(channels)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.norm2 = group_norm(channels)
        self.conv2 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity (see AlphaMix)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        """x (B*T, C, H, W) -> (B*T, C, H, W).

        Norms act per frame, so each output frame depends only on frames within the
        convolutions' reach (this is what makes chunked decoding exact).
        """
        h = self._conv(self.conv1, self.norm1(x), num_frames)
        h = self._conv(self.conv2, self.norm2(h), num_frames)
        return x + h

    @staticmethod
    def _conv(conv: nn.Conv3d, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The (k, 1, 1) Conv3d applied as a (k, 1) Conv2d over (time, pixels).

        Same weights and result, but CPU backends have fast 2-D kernels where a 3-D
        convolution falls back to a slow reference path (3x the UNet's conv time).
        """
        width = x.shape[-1]
        h = rearrange(F.silu(x), "(b t) c h w -> b c t (h w)", t=num_frames)
        weight = conv.weight.squeeze(-1)  # (Cout, Cin, k, 1, 1) -> (Cout, Cin, k, 1)
        h = F.conv2d(h, weight, conv.bias, padding=(conv.padding[0], 0))
        return rearrange(h, "b c t (h w) -> (b t) c h w", w=width)
