"""Fréchet video distance (Unterthiner et al. 2018) with two backbones.

The Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, Eq. 6;
Dowson & Landau 1982) is

    d² = ||μ_a - μ_b||² + Tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^½)

computed here in float64 with ``scipy.linalg.sqrtm``. Backbones:

- ``"world"`` (default): the project's world feature network (``kinetoscope.eval.world_features``,
  shipped weights, 128-d), for the built-in worlds. Frames are resized to 64×64.
- ``"i3d"``: the standard FVD protocol — Kinetics-400 I3D logits of 224×224 frames in [-1, 1]
  (``kinetoscope.eval.i3d``). Needs user-supplied weights (``i3d_weights=PATH``); about 6 s
  per 16-frame clip on one CPU thread.

Scores from different backbones or protocols are not comparable, so each result carries its
``protocol`` dict. A score means little alone: ``real_floor`` measures the distance between two
disjoint real samples of the same world and split, the value a perfect generator would get at
that sample size (Fréchet distances are biased upward for small samples), and it is printed
beside a model's score.

Axes: N clips, T frames, H W height/width, D feature dim.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

BACKBONES = ("world", "i3d")
_SQRTM_RESIDUAL = 1e-4  # relative error of sqrtm above which the product counts as singular
_IMAG_TOLERANCE = 1e-3  # relative size of imaginary parts of the root that is still rounding


@dataclass
class FrechetResult:
    """A Fréchet video distance with what it was measured on."""

    score: float
    backbone: str
    protocol: dict[str, Any] = field(default_factory=dict)
    n_real: int = 0
    n_fake: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"FVD[{self.protocol.get('backbone', self.backbone)}] {self.score:.2f} "
            f"({self.n_real} real vs {self.n_fake} generated clips)"
        )


# ----------------------------------------------------------------------------- the distance


def _as_features(feats: Any, name: str) -> np.ndarray:
    array = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array (N >= 2 samples, D features), got {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return array


def _sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray, *, eps: float) -> np.ndarray:
    """(Σ_a Σ_b)^½, retried with eps on both diagonals when the product is singular."""
    product = cov_a @ cov_b
    root = scipy.linalg.sqrtm(product)
    scale = max(np.linalg.norm(product), np.finfo(np.float64).tiny)
    if (
        not np.isfinite(root).all()
        or np.linalg.norm(root @ root - product) > _SQRTM_RESIDUAL * scale
    ):
        logger.warning("Σ_a Σ_b is singular; adding %g to the covariance diagonals", eps)
        offset = eps * np.eye(len(cov_a))
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        diagonal = np.diagonal(root)
        imag = np.abs(diagonal.imag).max()
        if imag > _IMAG_TOLERANCE * max(1.0, np.abs(diagonal.real).max()):
            raise ValueError(
                f"the covariance product has a square root with imaginary part {imag:.3g}; "
                "the features are degenerate (use more clips than feature dimensions)"
            )
        root = root.real
    return root


def frechet_distance(feats_a: Any, feats_b: Any, *, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feats_a (N, D) and feats_b (M, D).

    Arrays or tensors, computed in float64. ``eps`` is added to both covariance diagonals only
    when Σ_a Σ_b is singular (its square root fails); imaginary parts of the root that are
    rounding noise are dropped, larger ones raise ValueError. The result is >= 0 (rounding
    below zero is reported as 0).
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    if min(len(a), len(b)) <= a.shape[1]:
        logger.warning(
            "%d and %d samples for %d-d features: the covariances are rank-deficient and the "
            "distance is biased upward; compare only with a real_floor of the same sizes",
            len(a),
            len(b),
            a.shape[1],
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)  # (D,)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))  # (D, D)
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = _sqrt_product(cov_a, cov_b, eps=eps)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return max(float(value), 0.0)


# ----------------------------------------------------------------------------- clips -> features


def _clip_frames(clip: Any, index: int) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of an array, a ``Video`` or a ``WorldClip``."""
    frames = clip.frames if hasattr(clip, "frames") else clip
    if isinstance(frames, torch.Tensor):
        raise ValueError(
            f"clip {index} is a tensor; pass uint8 frames (T, H, W, 3), Video objects, or "
            "convert (C, T, H, W) tensors in [-1, 1] with Video.from_tensor"
        )
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"clip {index} must be uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    return frames


def _clip_list(clips: Any, name: str) -> list[np.ndarray]:
    if isinstance(clips, np.ndarray) and clips.ndim == 5:  # (N, T, H, W, 3)
        clips = list(clips)
    if not isinstance(clips, Sequence | np.ndarray) or isinstance(clips, str):
        raise ValueError(f"{name} must be a sequence of clips, got {type(clips).__name__}")
    frames = [_clip_frames(clip, i) for i, clip in enumerate(clips)]
    if len(frames) < 2:
        raise ValueError(f"{name} needs at least 2 clips for a covariance, got {len(frames)}")
    lengths = {f.shape[0] for f in frames}
    if len(lengths) > 1:
        raise ValueError(f"{name} mixes clip lengths {sorted(lengths)}; use one frame count")
    return frames


def _to_tensor(batch: list[np.ndarray], *, size: int | None) -> torch.Tensor:
    """uint8 clips -> (B, 3, T, size, size) in [-1, 1] (bilinear resize when the size differs)."""
    from kinetoscope.video import Video

    tensors = []
    for frames in batch:
        video = Video(frames).to_tensor()  # (C, T, H, W) in [-1, 1]
        if size is not None and video.shape[2:] != (size, size):
            shrink = min(video.shape[2:]) > size
            video = F.interpolate(
                video.transpose(0, 1),  # (T, C, H, W)
                size=(size, size),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            ).transpose(0, 1)
        tensors.append(video)
    return torch.stack(tensors)  # (B, C, T, size, size)


def load_backbone(backbone: str, *, i3d_weights: str | Path | None = None) -> torch.nn.Module:
    """The feature network of ``backbone`` ("world": shipped weights; "i3d": the user's)."""
    if backbone == "world":
        from kinetoscope.eval.world_features import load_world_features

        return load_world_features()
    if backbone == "i3d":
        from kinetoscope.eval.i3d import load_i3d

        return load_i3d(i3d_weights)
    raise ValueError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES)}")


def _protocol(backbone: str, num_frames: int) -> tuple[int | None, dict[str, Any]]:
    """(frame side the clips are resized to before the network, protocol dict)."""
    if backbone == "i3d":
        from kinetoscope.eval.i3d import I3D_PROTOCOL

        return None, {**I3D_PROTOCOL, "num_frames": num_frames}  # i3d_features resizes to 224
    from kinetoscope.eval.world_features import ASSET_NAME, FEATURE_DIM, NUM_FRAMES, RESOLUTION

    if num_frames != NUM_FRAMES:
        logger.warning(
            "world features are trained on %d-frame clips, got %d", NUM_FRAMES, num_frames
        )
    protocol = {
        "backbone": "world-features",
        "resize": RESOLUTION,
        "range": "[-1, 1]",
        "features": f"pooled {FEATURE_DIM}-d ({ASSET_NAME})",
        "num_frames": num_frames,
    }
    return RESOLUTION, protocol


@torch.no_grad()
def clip_features(
    clips: Any,
    *,
    backbone: str = "world",
    model: torch.nn.Module | None = None,
    i3d_weights: str | Path | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Features (N, D) float64 of uint8 clips and the protocol that produced them.

    Args:
        clips: arrays (T, H, W, 3) uint8, ``Video`` or ``WorldClip`` objects, or (N, T, H, W, 3).
        backbone: ``"world"`` or ``"i3d"`` (needs ``i3d_weights`` unless ``model`` is given).
        model: the backbone network if already loaded (``load_backbone``), for repeated calls.
    """
    frames = _clip_list(clips, "clips")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES)}")
    size, protocol = _protocol(backbone, int(frames[0].shape[0]))
    net = (model if model is not None else load_backbone(backbone, i3d_weights=i3d_weights)).eval()
    if backbone == "i3d":
        from kinetoscope.eval.i3d import i3d_features

        def embed(video: torch.Tensor) -> torch.Tensor:
            return i3d_features(net, video)  # (B, 400)
    else:
        embed = net  # (B, 3, T, 64, 64) -> (B, 128)
    out = [
        embed(_to_tensor(frames[begin : begin + batch_size], size=size)).double()
        for begin in range(0, len(frames), batch_size)
    ]
    return torch.cat(out).numpy(), protocol  # (N, D)


def video_frechet_distance(
    real_clips: Any,
    fake_clips: Any,
    *,
    backbone: str = "world",
    i3d_weights: str | Path | None = None,
    batch_size: int = 16,
) -> FrechetResult:
    """Fréchet video distance between real and generated clips under one backbone.

    Both sets must use the same frame count. Sizes may differ (frames are resized by the
    protocol). Raises ValueError for unknown backbones, missing I3D weights or bad clips.
    """
    real = _clip_list(real_clips, "real_clips")
    fake = _clip_list(fake_clips, "fake_clips")
    if real[0].shape[0] != fake[0].shape[0]:
        raise ValueError(
            f"real clips have {real[0].shape[0]} frames and generated clips "
            f"{fake[0].shape[0]}; generate with the real clips' frame count"
        )
    model = load_backbone(backbone, i3d_weights=i3d_weights)
    options = {"backbone": backbone, "model": model, "batch_size": batch_size}
    feats_real, protocol = clip_features(real, **options)
    feats_fake, _ = clip_features(fake, **options)
    score = frechet_distance(feats_real, feats_fake)
    return FrechetResult(score, backbone, protocol, n_real=len(real), n_fake=len(fake))


def world_clips(
    world_name: str,
    *,
    split: str = "test",
    count: int = 256,
    seed: int = 0,
    start: int = 0,
    num_frames: int = 16,
    resolution: int = 64,
) -> list[np.ndarray]:
    """Real clips ``start .. start + count - 1`` of ``WorldDataset(world_name, split, seed)``.

    Clips ``0 .. count - 1`` show the objects of ``eval_prompts(world_name, split=split,
    count=count, seed=seed)``, so they are the reference set for a model's generations.
    """
    from kinetoscope.data.worlds import WorldDataset

    if count < 2:
        raise ValueError(f"count must be >= 2 for a covariance, got {count}")
    ds = WorldDataset(
        world_name,
        split=split,
        size=start + count,
        seed=seed,
        num_frames=num_frames,
        resolution=resolution,
    )
    return [ds[i].frames for i in range(start, start + count)]


def real_floor(
    world_name: str,
    *,
    split: str = "test",
    count: int = 256,
    seed: int = 0,
    backbone: str = "world",
    i3d_weights: str | Path | None = None,
    num_frames: int = 16,
    resolution: int = 64,
    batch_size: int = 16,
) -> FrechetResult:
    """Distance between two disjoint real samples of one world and split (the score floor).

    Compares clips ``0 .. count-1`` (the usual reference set, see ``world_clips``) with clips
    ``count .. 2 count-1`` of the same seed: a generator indistinguishable from the renderer
    scores about this much with ``count`` clips.
    """
    settings = {"split": split, "seed": seed, "num_frames": num_frames, "resolution": resolution}
    first = world_clips(world_name, count=count, start=0, **settings)
    second = world_clips(world_name, count=count, start=count, **settings)
    result = video_frechet_distance(
        first, second, backbone=backbone, i3d_weights=i3d_weights, batch_size=batch_size
    )
    result.protocol["reference"] = (
        f"{world_name} {split} seed {seed}: clips 0-{count - 1} vs {count}-{2 * count - 1}"
    )
    return result
