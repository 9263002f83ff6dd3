"""Frame-correlated diffusion noise (the "mixed" noise prior of Ge et al., 2023, PYoCo).

Frames of a clip share most of their content, so the noise a video model denoises from can
share a component too: frame f gets ``sqrt(rho) * shared + sqrt(1 - rho) * own_f``. Every
frame's noise stays standard normal (the image model sees the noise it was trained on),
while any two frames of a clip correlate by ``rho``: they start out alike, and the temporal
layers only have to learn how the frames differ, not that they show the same object.
The model must be trained and sampled with the same ``rho``; deterministic samplers
(DPM-Solver++, DDIM, Euler) need nothing else.
"""

from __future__ import annotations

import torch


def mix_frame_noise(own: torch.Tensor, shared: torch.Tensor, correlation: float) -> torch.Tensor:
    """own (B, Z, T, h, w) and shared (B, Z, 1, h, w) standard normal -> noise whose frames
    correlate by ``correlation`` (in [0, 1)), each frame still standard normal."""
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"noise correlation must lie in [0, 1), got {correlation}")
    if (
        shared.shape[2] != 1
        or shared.shape[:2] != own.shape[:2]
        or shared.shape[3:] != own.shape[3:]
    ):
        raise ValueError(f"shared noise {tuple(shared.shape)} does not fit {tuple(own.shape)}")
    return correlation**0.5 * shared + (1.0 - correlation) ** 0.5 * own


def frame_correlated_noise(like: torch.Tensor, correlation: float) -> torch.Tensor:
    """Noise shaped like ``like`` (B, Z, T, h, w), frames correlated by ``correlation``."""
    if not correlation:
        return torch.randn_like(like)
    shared = torch.randn_like(like[:, :, :1])
    return mix_frame_noise(torch.randn_like(like), shared, correlation)
