"""Sinusoidal embeddings for diffusion timesteps and token positions."""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(
    positions: torch.Tensor, dim: int, *, max_period: float = 10_000.0
) -> torch.Tensor:
    """Embed scalar positions (N,) (timesteps or indices) as (N, dim) sin/cos features."""
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=positions.device)
        / half
    )
    angles = positions.float()[:, None] * freqs[None, :]  # (N, half)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)
