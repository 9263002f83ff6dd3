"""Stage 1 of the Phenaki recipe (``kinetoscope.train.phenaki``): the C-ViViT tokenizer, its
optional decoder fine-tuning, its batches (clips, and single frames with ``image_fraction``),
its loss and its report.

Axis legend: B batch, C channels, T frames, H/W pixels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.train.recipe import (
    StageConfig,
    _to_model_range,
    clip_batches,
    train_only,
    train_stage,
)

if TYPE_CHECKING:
    from kinetoscope.train.phenaki import PhenakiRecipe


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(recon.clamp(-1, 1), target).item()
    return 10.0 * math.log10(4.0 / max(mse, 1e-10))


def tokenizer_loss(tokenizer: CViViT, clips: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + L2 reconstruction of clips (B, C, T, H, W); logs PSNR and the share of codes used."""
    recon, indices = tokenizer(clips)
    loss = F.l1_loss(recon, clips) + F.mse_loss(recon, clips)
    with torch.no_grad():
        logs = {
            "psnr": psnr(recon, clips),
            "usage": indices.unique().numel() / tokenizer.num_codes,
        }
    return loss, logs


@torch.no_grad()
def tokenizer_report(
    tokenizer: CViViT,
    worlds: Sequence[str],
    *,
    num_frames: int,
    clips: int = 32,
    split: str = "test",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per world: reconstruction PSNR (dB), share of the codebook used, and token perplexity
    over ``clips`` clips of ``split``."""
    from kinetoscope.data.worlds import WorldDataset

    tokenizer.eval()
    report = {}
    for name in worlds:
        dataset = WorldDataset(
            name,
            split=split,
            seed=seed,
            num_frames=num_frames,
            resolution=tokenizer.config.image_size,
        )
        frames = np.stack([dataset[i].frames for i in range(clips)])  # (N, T, H, W, C)
        video = _to_model_range(frames).transpose(1, 2)  # (N, C, T, H, W)
        recons, counts = [], torch.zeros(tokenizer.num_codes)
        for chunk in video.split(8):
            recon, indices = tokenizer(chunk)
            recons.append(recon)
            counts += torch.bincount(indices.flatten(), minlength=tokenizer.num_codes)
        probs = counts / counts.sum()
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum().item()
        report[name] = {
            "psnr": round(psnr(torch.cat(recons), video), 2),
            "codebook_usage": round(float((counts > 0).float().mean()), 4),
            "perplexity": round(math.exp(entropy), 1),
        }
    return report


def build_tokenizer(recipe: PhenakiRecipe) -> CViViT:
    """A freshly initialised C-ViViT with the recipe's sizes."""
    return CViViT(**{**recipe.tokenizer, "image_size": recipe.resolution})


def train_tokenizer(recipe: PhenakiRecipe, out: Path) -> CViViT:
    """Stage 1, and 1b when the recipe has ``tokenizer_decoder`` (skipped when out/tokenizer
    exists). With the decoder stage, a run folder holding a trained tokenizer in
    out/tokenizer-encoder gets only its decoder fine-tuned."""
    final = out / "tokenizer"
    if (final / "config.json").exists():
        return CViViT.from_pretrained(final).eval()
    if "tokenizer_decoder" not in recipe.stages:
        return _train_tokenizer_full(recipe, out, final)
    first = out / "tokenizer-encoder"
    if (first / "config.json").exists():
        tokenizer = CViViT.from_pretrained(first)
    else:
        tokenizer = _train_tokenizer_full(recipe, out, first)
    stage = recipe.stage("tokenizer_decoder")
    params = train_only(tokenizer, tokenizer.decoder_parameters())
    tokenizer = train_stage(
        stage,
        model=tokenizer.train(),
        loss_fn=tokenizer_loss,
        batches=clip_batches(recipe, batch_size=stage.batch_size, seed=recipe.seed + 5),
        out_dir=out / "stage-tokenizer-decoder",
        param_groups=[{"params": params}],
        ema_decay=stage.ema_decay,
        **_loop_options(stage),
    )
    tokenizer.save_pretrained(final)
    return tokenizer


IMAGES_PER_CLIP = 4  # frames an image batch takes from each clip it draws


def tokenizer_batches(
    recipe: PhenakiRecipe,
    *,
    batch_size: int,
    seed: int,
    image_fraction: float = 0.0,
    image_batch_size: int = 0,
) -> Iterator[torch.Tensor]:
    """Infinite tokenizer batches: clips (B, C, T, H, W), or with probability ``image_fraction``
    ``image_batch_size`` single frames as one-frame clips (B, C, 1, H, W), ``IMAGES_PER_CLIP``
    random frames of each clip drawn.

    C-ViViT codes a frame on its own exactly as a clip's first time step, a path a clip batch
    trains with one frame in T; image batches train it as the Phenaki paper does (joint image
    and video training). Without them the clips are those of ``clip_batches``.
    """
    clips = clip_batches(recipe, batch_size=batch_size, seed=seed)
    if not image_fraction:
        yield from clips
        return
    rng = random.Random(seed + 1)
    per_batch = math.ceil(image_batch_size / IMAGES_PER_CLIP)
    images = clip_batches(recipe, batch_size=per_batch, seed=seed + 1)
    while True:
        if rng.random() >= image_fraction:
            yield next(clips)
            continue
        video = next(images)  # (b, C, T, H, W)
        frames = [
            (i, rng.randrange(video.shape[2]))
            for i in range(per_batch)
            for _ in range(IMAGES_PER_CLIP)
        ][:image_batch_size]
        yield torch.stack([video[i, :, t : t + 1] for i, t in frames])


def tokenizer_image_fraction(recipe: PhenakiRecipe) -> float:
    """The tokenizer stage's share of image batches, checked."""
    fraction = float(recipe.stage("tokenizer").extra.get("image_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"stages.tokenizer.extra.image_fraction must be in [0, 1), got {fraction}")
    return fraction


def _train_tokenizer_full(recipe: PhenakiRecipe, out: Path, final: Path) -> CViViT:
    """Stage 1, every tokenizer weight; saved to ``final``. Its ``extra`` may set
    ``image_fraction`` and ``image_batch_size`` (default: as many frames as a clip batch)."""
    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer(recipe)
    stage = recipe.stage("tokenizer")
    image_fraction = tokenizer_image_fraction(recipe)
    tokenizer = train_stage(
        stage,
        model=tokenizer,
        loss_fn=tokenizer_loss,
        batches=tokenizer_batches(
            recipe,
            batch_size=stage.batch_size,
            seed=recipe.seed,
            image_fraction=image_fraction,
            image_batch_size=int(
                stage.extra.get("image_batch_size", stage.batch_size * recipe.num_frames)
            ),
        ),
        out_dir=out / "stage-tokenizer",
        ema_decay=stage.ema_decay,
        **_loop_options(stage),
    )
    tokenizer.save_pretrained(final)
    return tokenizer


def _loop_options(stage: StageConfig) -> dict[str, int]:
    """Logging and checkpoint cadence from ``extra`` (defaults of train_loop otherwise)."""
    keys = ("log_every", "checkpoint_every", "warmup_steps")
    return {k: int(stage.extra[k]) for k in keys if k in stage.extra}
