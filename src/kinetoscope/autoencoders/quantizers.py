"""Finite scalar quantization (FSQ; Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE
Made Simple", §3).

FSQ replaces a learned codebook by a fixed grid: each of the d latent channels is bounded
and rounded to one of ``levels[i]`` values, so the implicit codebook has ``prod(levels)``
entries, every code is used, and no commitment loss or codebook updates are needed.
Rounding passes gradients straight through (§3.1).

Per channel i with L = levels[i] and half width W = L // 2:

    bounded  = tanh(z + shift) * (L - 1)(1 + eps) / 2 - offset   # offset = 0.5 for even L, else 0
    integer  = round(bounded)                                     # in {-W, ..., L - 1 - W}
    code     = integer / W                                        # in [-1, 1]
    digit    = integer + W                                        # in {0, ..., L - 1}
    index    = sum_i digit_i * prod(levels[:i])                   # mixed-radix number

Axis legend: ... any leading axes, d = len(levels) code channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class FSQ(nn.Module):
    """Finite scalar quantizer over the last axis.

    Args:
        levels: number of values per channel, each >= 2 (e.g. ``(8, 5, 5, 5)`` -> 1000 codes).
        eps: widens the tanh bound slightly so the outermost values are reachable.
    """

    def __init__(self, levels: Sequence[int], *, eps: float = 1e-3) -> None:
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty list of ints >= 2, got {levels}")
        self.levels_list = levels
        self.eps = eps
        basis = [math.prod(levels[:i]) for i in range(len(levels))]
        # Buffers are derived from ``levels`` (kept in the owner's config), so not persistent.
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)

    @property
    def dim(self) -> int:
        """Number of code channels d."""
        return len(self.levels_list)

    @property
    def num_codes(self) -> int:
        """Size of the implicit codebook, ``prod(levels)``."""
        return math.prod(self.levels_list)

    def _half_width(self, like: torch.Tensor) -> torch.Tensor:
        return (self.levels // 2).to(like.dtype)  # (d,)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z (..., d) into (-W - 1/2, L - 1 - W + 1/2) per channel, before rounding."""
        levels = self.levels.to(z.dtype)
        half_range = (levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_range)
        return torch.tanh(z + shift) * half_range - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., d) float -> codes (..., d) on the grid in [-1, 1], straight-through gradient."""
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / self._half_width(z)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., d) on the grid -> indices (...) long in [0, num_codes)."""
        if codes.shape[-1] != self.dim:
            raise ValueError(
                f"codes must have {self.dim} channels on the last axis, got {codes.shape}"
            )
        half_width = self._half_width(codes)
        digits = (codes * half_width + half_width).round().long()  # (..., d) in [0, L)
        return (digits * self.basis).sum(dim=-1)

    def indices_to_digits(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) long -> per-channel levels (..., d) long, channel i in [0, L_i)."""
        if indices.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"FSQ indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(
                f"FSQ indices must lie in [0, {self.num_codes}), got range "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return (indices.long()[..., None] // self.basis) % self.levels

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...) long -> codes (..., d) float in [-1, 1]."""
        digits = self.indices_to_digits(indices)  # (..., d)
        half_width = self._half_width(torch.empty((), dtype=torch.float32))
        return (digits.float() - half_width) / half_width

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (..., d) -> (codes (..., d) with straight-through gradient, indices (...) long)."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ expects {self.dim} channels on the last axis, got {z.shape}")
        codes = self.quantize(z)
        return codes, self.codes_to_indices(codes.detach())
