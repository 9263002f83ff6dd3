"""Temporal metrics that need no pretrained network.

- ``flicker``: mean absolute difference between consecutive frames (in [0, 255] units),
  as in VBench's temporal-flickering measure; lower is steadier. Judged against the same
  number on real clips of the world, since objects that move change pixels too.
- ``flicker_error``: mean |(x̂[t+1] - x̂[t]) - (x[t+1] - x[t])| between a reconstruction and its
  source, which isolates flicker an autoencoder adds.
- ``psnr``: peak signal-to-noise ratio of uint8 frames.
- ``identity_stability``: for the worlds, how steadily each judged object keeps one identity
  over the frames: the mean share of its readable frames that agree with its majority
  reading (digit class; or colour and shape), from the judge's verdicts. 1.0 = never changes.
"""

from __future__ import annotations

import numpy as np


def _as_float(frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got shape {frames.shape}")
    return frames.astype(np.float32)


def flicker(frames: np.ndarray) -> float:
    """Mean |frame[t+1] - frame[t]| over a clip (T, H, W, 3) uint8; 0 for a single frame."""
    x = _as_float(frames)
    if len(x) < 2:
        return 0.0
    return float(np.abs(np.diff(x, axis=0)).mean())


def flicker_error(recon: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error between the frame-to-frame differences of two clips."""
    a, b = _as_float(recon), _as_float(target)
    if a.shape != b.shape:
        raise ValueError(f"clips differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(np.diff(a, axis=0) - np.diff(b, axis=0)).mean())


def psnr(recon: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of uint8 frames (inf when identical)."""
    mse = float(((_as_float(recon) - _as_float(target)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def identity_stability(verdicts: list) -> float | None:
    """Mean identity share over every judged object of ``verdicts`` (judge Verdicts); None
    when no object's identity could be read at all."""
    shares = [
        share
        for verdict in verdicts
        for obj in verdict.objects
        for share in obj.get("identity_share", {}).values()
    ]
    return float(np.mean(shares)) if shares else None
