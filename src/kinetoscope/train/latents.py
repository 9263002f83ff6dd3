"""The LDM's latent caches: training clips encoded once, and the batches drawn from them.

``build_latent_cache`` encodes a fixed set of training clips (posterior means, float16) with
their caption wordings, so the denoiser never pays for the encoder; ``latent_batches`` draws
(latents, text embedding, mask[, tracks]) from such a cache, with captions from the cache's
wordings or, for a stage that asks (``caption_augment``), from a ``WordingAugmenter``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from kinetoscope.train.loop import atomic_save
from kinetoscope.train.recipe import (
    CaptionBank,
    Recipe,
    StageConfig,
    _world_datasets,
    clip_chunks,
    clip_objects,
)
from kinetoscope.train.text_augment import stage_augmenter


def build_latent_cache(recipe: Recipe, vae: Any, path: Path) -> dict[str, Any]:
    """Encode ``num_latent_clips`` training clips once; store latents (fp16) and their wordings."""
    latents, wordings = [], []
    vae.eval()
    for video, chunk_wordings in clip_chunks(_world_datasets(recipe), recipe.num_latent_clips):
        with torch.inference_mode():
            latents.append(vae.encode(video).half())
        wordings.extend(chunk_wordings)
    cache = {"latents": torch.cat(latents), "wordings": wordings}
    atomic_save(cache, path)
    return cache


def latent_batches(
    cache: dict[str, Any],
    bank: CaptionBank,
    *,
    batch_size: int,
    frames: int | None,
    dropout: float,
    seed: int,
    tracks: torch.Tensor | None = None,
    track_dropout: float = 0.0,
    augment: tuple[Any, Any, list] | None = None,
    motion_swap: float = 0.0,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Infinite (latents (B, Z, T', h, w), text_emb, text_mask); T' = 1 random frame if frames is None.

    With ``tracks`` (N, S, T, 2) of the cached clips, each batch also carries its clips' tracks,
    or None (the whole batch) with probability ``track_dropout``: the model then also learns
    to denoise without them. With ``augment`` = (augmenter, encoder, each cached clip's
    (world, objects)), the captions are the augmenter's wordings, encoded by ``encoder``; then
    with ``motion_swap`` = p each object of a batch that carries tracks is worded with another
    motion with probability p (``swap_motions``): the tracks, not the words, say how it moves."""
    if motion_swap and (augment is None or tracks is None):
        raise ValueError("motion_swap needs tracks and caption augmentation")
    rng = random.Random(seed)
    latents, wordings = cache["latents"], cache["wordings"]
    while True:
        idx = [rng.randrange(len(wordings)) for _ in range(batch_size)]
        batch = latents[idx].float().contiguous()  # cached latents may be channels-last
        if frames is None:
            t = torch.tensor([rng.randrange(batch.shape[2]) for _ in idx])
            batch = batch[torch.arange(batch_size), :, t][:, :, None]  # (B, Z, 1, h, w)
        if augment is None:
            captions = ["" if rng.random() < dropout else rng.choice(wordings[i]) for i in idx]
            emb, mask = bank(captions)
            given = tracks is not None and rng.random() >= track_dropout
        else:
            augmenter, encoder, objects = augment
            given = tracks is not None and rng.random() >= track_dropout  # the swap needs it
            swap = motion_swap if given else 0.0
            captions = [
                "" if rng.random() < dropout
                else augmenter(objects[i][0], swap_motions(objects[i][1], swap, rng), rng)
                for i in idx
            ]  # fmt: skip
            emb, mask = encoder.encode(captions)
        if tracks is None:
            yield batch, emb, mask
        else:
            yield batch, emb, mask, tracks[idx].float() if given else None


def swap_motions(objects: list[dict], p: float, rng: random.Random) -> list[dict]:
    """``objects`` with each one's motion replaced, with probability ``p``, by another motion
    drawn uniformly (the rest of its facts kept)."""
    from kinetoscope.data.worlds.common import MOTIONS

    if not p:
        return objects
    return [
        {**o, "motion": rng.choice([m for m in MOTIONS if m != o["motion"]])}
        if rng.random() < p else o
        for o in objects
    ]  # fmt: skip


def caption_augment(recipe: Recipe, stage: StageConfig, cache: dict[str, Any]):
    """(augmenter, encoder, each cached clip's (world, objects)) for a stage whose ``extra`` sets
    ``text_augment``, ``text_paraphrase`` (train/text_augment.py) or ``text_motion_swap``, else
    None."""
    augment = stage_augmenter(recipe, stage.extra)
    if augment is None:
        return None
    from kinetoscope.data.worlds import caption_wordings

    objects = clip_objects(_world_datasets(recipe), len(cache["wordings"]))
    for i, (world, objs) in enumerate(objects):
        if caption_wordings(world, objs) != cache["wordings"][i]:
            raise ValueError(f"cached clip {i} is not the recipe's clip {i}: rebuild the cache")
    return (*augment, objects)
