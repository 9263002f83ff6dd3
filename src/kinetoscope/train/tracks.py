"""Object tracks for given-trajectory anchor attention, and the planner stage that learns them.

A world clip carries each object's per-frame box position. The latent cache holds clip i of the
recipe's worlds taken in turn (``clip_chunks``), so the tracks of cached clip i are those of the
same clip rendered again; ``cache_tracks`` checks that the two agree (by their captions) and
stores the tracks in the cache. Stage ``trajectory_planner`` then trains a ``TrajectoryPlanner``
on (cached frame-0 latents, caption, tracks).

Axis legend: B batch, S object slots, T frames, Z latent channels, h/w latent height/width.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinetoscope.diffusion.planner import TrajectoryPlanner
from kinetoscope.diffusion.trajectories import pack_layout
from kinetoscope.train.loop import atomic_save
from kinetoscope.train.recipe import (
    CaptionBank,
    Recipe,
    _world_datasets,
    clip_at,
    train_stage,
)
from kinetoscope.train.text_augment import WordingAugmenter, stage_augmenter

logger = logging.getLogger(__name__)


def clip_tracks(objects: list[dict], *, slots: int, resolution: int) -> np.ndarray:
    """(S, T, 2) displacement of each object from frame 0, (x, y) in frame widths; slot s
    holds object s mod (number of objects), so a one-object clip fills every slot with it."""
    if not objects or any("positions" not in o for o in objects):
        raise ValueError("tracks need objects with per-frame positions (world clips)")
    positions = [np.asarray(o["positions"], dtype=np.float32) for o in objects]  # (T, 2) each
    return np.stack(
        [(p - p[:1]) / resolution for p in (positions[s % len(objects)] for s in range(slots))]
    )


def clip_boxes(objects: list[dict], *, slots: int, resolution: int) -> np.ndarray:
    """(S, 2, 2) frame-0 box of each object, corners (x0, y0), (x1, y1) in frame widths; slots
    filled as in ``clip_tracks``."""
    if not objects or any("positions" not in o or "box" not in o for o in objects):
        raise ValueError("boxes need objects with per-frame positions and a box size")
    boxes = []
    for s in range(slots):
        obj = objects[s % len(objects)]
        corner = np.asarray(obj["positions"][0], dtype=np.float32)
        boxes.append(np.stack([corner, corner + obj["box"]]) / resolution)
    return np.stack(boxes)


def cache_tracks(recipe: Recipe, cache: dict[str, Any], path: Path, *, slots: int) -> torch.Tensor:
    """The (N, S, T, 2) tracks of the cached clips, computed once and saved in the cache, with
    their frame-0 boxes (N, S, 2, 2) as ``cache["boxes"]`` and each clip's world and objects
    (their facts, without positions) as ``cache["objects"]``."""
    from kinetoscope.data.worlds import caption_wordings

    tracks = cache.get("tracks")
    if tracks is not None and tracks.shape[1] == slots and {"objects", "boxes"} <= set(cache):
        return tracks
    datasets = _world_datasets(recipe)
    wordings, found, boxes, objects = cache["wordings"], [], [], []
    for i in range(len(wordings)):
        clip = clip_at(datasets, i)
        if caption_wordings(clip.world, clip.objects) != wordings[i]:
            raise ValueError(f"cached clip {i} is not the recipe's clip {i}: rebuild the cache")
        found.append(clip_tracks(clip.objects, slots=slots, resolution=recipe.resolution))
        boxes.append(clip_boxes(clip.objects, slots=slots, resolution=recipe.resolution))
        facts = [{k: v for k, v in o.items() if k != "positions"} for o in clip.objects]
        objects.append((clip.world, facts))
        if i % 1000 == 0:
            logger.info("tracks of %d / %d cached clips", i, len(wordings))
    cache["tracks"] = torch.from_numpy(np.stack(found))
    cache["boxes"] = torch.from_numpy(np.stack(boxes))
    cache["objects"] = objects
    atomic_save(cache, path)
    return cache["tracks"]


def given_tracks(cache: dict[str, Any], unet: Any) -> torch.Tensor | None:
    """What a generator's anchors follow in training: None without given-track anchors, the
    cached tracks (N, S, T, 2), or with ``anchor_regions`` their layout with the frame-0 boxes
    (N, S, T + 2, 2)."""
    if not unet.takes_trajectory or "tracks" not in cache:
        return None
    if not getattr(unet.config, "anchor_regions", False):
        return cache["tracks"]
    if "boxes" not in cache:
        raise ValueError("region anchors need the cache's frame-0 boxes: rebuild its tracks")
    return pack_layout(cache["tracks"].float(), cache["boxes"].float())


def planner_batches(
    cache: dict[str, Any],
    tracks: torch.Tensor,
    bank: CaptionBank,
    *,
    batch_size: int,
    seed: int,
    augment: tuple[WordingAugmenter, Any] | None = None,
    with_boxes: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Infinite (frame-0 latents (B, Z, h, w), text_emb, text_mask, tracks (B, S, T, 2)), and
    with ``with_boxes`` the clips' frame-0 boxes (B, S, 2, 2).

    With ``augment`` = (augmenter, encoder), the captions are the augmenter's noisy wordings of
    each clip's objects (``cache["objects"]``), encoded by ``encoder`` (no cache: they rarely
    repeat); without, one of the clip's cached training wordings."""
    rng = random.Random(seed)
    latents, wordings = cache["latents"], cache["wordings"]
    boxes = cache["boxes"] if with_boxes else None
    while True:
        idx = [rng.randrange(len(wordings)) for _ in range(batch_size)]
        if augment is None:
            emb, mask = bank([rng.choice(wordings[i]) for i in idx])
        else:
            augmenter, encoder = augment
            emb, mask = encoder.encode([augmenter(*cache["objects"][i], rng) for i in idx])
        batch = (latents[idx, :, 0].float().contiguous(), emb, mask, tracks[idx].float())
        yield (*batch, boxes[idx].float()) if boxes is not None else batch


def train_planner(
    recipe: Recipe,
    out: Path,
    cache: dict[str, Any],
    tracks: torch.Tensor,
    bank: CaptionBank,
    *,
    latent_channels: int,
    text_dim: int,
) -> TrajectoryPlanner:
    """Stage ``trajectory_planner``: its ``extra`` may set the planner's ``modes``, ``width``,
    ``layers``, ``heads``, ``boxes`` and ``text_layers`` (the text encoder's hidden states it
    reads, concatenated per token, e.g. ``[0, -1]``: the token embeddings and the last layer;
    default the last layer, as ``bank`` encodes); its slots are the tracks' and its length the
    recipe's clips'."""
    stage = recipe.stage("trajectory_planner")
    options = dict(stage.extra)
    augment = stage_augmenter(recipe, options)  # text_augment / text_paraphrase
    for key in ("text_augment", "text_paraphrase"):
        options.pop(key, None)
    unknown = set(options) - {"modes", "width", "layers", "heads", "boxes", "text_layers"}
    if unknown:
        raise ValueError(f"unknown trajectory_planner extra key(s) {sorted(unknown)}")
    if options.get("text_layers"):
        from kinetoscope.text import load_text_encoder

        options["text_layers"] = [int(i) for i in options["text_layers"]]
        encoder = load_text_encoder(
            recipe.text_encoder,
            max_length=recipe.max_length,
            clauses=recipe.text_clauses,
            layers=options["text_layers"],
        )
        bank, text_dim = CaptionBank(encoder), encoder.dim
    torch.manual_seed(recipe.seed + 7)
    planner = TrajectoryPlanner(
        latent_channels=latent_channels,
        text_dim=text_dim,
        num_frames=recipe.num_frames,
        slots=tracks.shape[1],
        **options,
    )

    def loss_fn(model, batch):
        return model.loss(*batch)

    return train_stage(
        stage,
        model=planner,
        loss_fn=loss_fn,
        batches=planner_batches(
            cache,
            tracks,
            bank,
            batch_size=stage.batch_size,
            seed=recipe.seed + 7,
            augment=augment,
            with_boxes=planner.config.boxes,
        ),  # fmt: skip
        out_dir=out / "stage-trajectory_planner",
        ema_decay=stage.ema_decay,
    )
