"""Object-wise composition: a prompt about several objects generated one object at a time.

A model that draws one object well may still blend two (the two-object worlds' clips mix the
objects' identities and motions, the experiments README). With ``compose_objects`` a prompt of
several clauses (``split_clauses`` of what the model is given, after the prompt reader) is
generated clause by clause, each clause a one-object clip of its own, and the clips are merged
by keeping the pixel-wise maximum. That merge is exactly how the built-in worlds draw
overlapping objects on their black background (``specs/worlds.md``), so it is the shipped world
models' default; for footage with a background it is not a faithful merge, and models trained
on a folder of clips leave it off.

Clause ``j`` of the sample with seed ``s`` draws from seed ``s + j * CLAUSE_SEED_STRIDE``, so
clause 0 is the sample the prompt would give alone and samples stay reproducible one by one.
With ``compose_candidates`` k > 1 each later clause is drawn k times and the draw that overlaps
least with the objects already placed is kept: the worlds put their objects at different
positions, and two objects drawn on top of each other read as one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from kinetoscope.text.clauses import split_clauses
from kinetoscope.video import Video

CLAUSE_SEED_STRIDE = 1_000_003
CANDIDATE_SEED_STRIDE = 10_007
CONTENT_LEVEL = 64  # a pixel whose brightest channel is above this holds content


def object_clauses(prompts: list[str]) -> list[list[str]]:
    """Each prompt's object clauses (``split_clauses``): one clause for a one-object prompt."""
    return [split_clauses(p) for p in prompts]


def max_composite(videos: list[Video]) -> np.ndarray:
    """The frames (T, H, W, 3) of ``videos`` merged by their pixel-wise maximum."""
    lengths = {v.frames.shape for v in videos}
    if len(lengths) != 1:
        raise ValueError(f"cannot merge clips of different shapes {sorted(lengths)}")
    return np.maximum.reduce([v.frames for v in videos])


def content_mask(frames: np.ndarray, num_frames: int | None = None) -> torch.Tensor:
    """(T, H, W) float, 1 where a clip's frames (T, H, W, 3) hold content: the brightest
    channel above ``CONTENT_LEVEL`` (the first ``num_frames`` frames, if given)."""
    return torch.from_numpy(frames[:num_frames].max(-1) > CONTENT_LEVEL).float()


def content_overlap(a: np.ndarray, b: np.ndarray, *, margin: int = 2) -> int:
    """How much two clips' content (T, H, W, 3) would touch if merged: over all frames, the
    pixels where both clips hold content (``content_mask``) after growing each clip's content
    by ``margin`` pixels (objects that only touch also read as one blob)."""
    masks = torch.stack([content_mask(a), content_mask(b)])  # (2, T, H, W)
    grown = torch.nn.functional.max_pool2d(masks, 2 * margin + 1, stride=1, padding=margin)
    return int((grown[0] * grown[1]).sum())


def occupied_cells(videos: list[Video], num_frames: int, cell: int) -> torch.Tensor:
    """(B, T, h, w) bool: the cells of ``cell`` x ``cell`` pixels (grown by one cell) where
    ``videos``' first ``num_frames`` frames hold content (a pipeline's ``keep_clear``)."""
    if any(v.num_frames < num_frames for v in videos):
        raise ValueError(f"keep_clear videos need {num_frames} frames")
    masks = torch.stack([content_mask(v.frames, num_frames) for v in videos])
    cells = torch.nn.functional.max_pool2d(masks, cell)
    return torch.nn.functional.max_pool2d(cells, 3, stride=1, padding=1) > 0


def compose_clauses(
    pipe: Any,
    generate: Callable[..., Any],
    prompts: list[str],
    negatives: list[str],
    *,
    seed: int | list[int] | None,
    generator: torch.Generator | None,
) -> list[Video] | None:
    """Videos for ``prompts`` made object by object, or None when every prompt (as the model
    is given it, ``pipe.read_prompts``) is about one object.

    ``generate(clauses, negative_prompt=..., seed=..., generator=...)`` is the pipeline's own
    call without composition; it makes clause j of every prompt in one batch, each clip with the
    negative prompt of its prompt, clause after clause. A pipeline that ``keeps_clear`` is given
    the clips kept so far for every later clause (``keep_clear``: it places the new object where
    its planned motion meets the least of them). With the model's ``compose_candidates`` k > 1,
    every later clause is also made k times (candidate m from seed ``s + j * CLAUSE_SEED_STRIDE
    + m * CANDIDATE_SEED_STRIDE``) and the candidate whose content overlaps least with the
    clips kept so far (``content_overlap``; ties: the earliest) is kept: the worlds draw objects
    at different positions, and merged objects that touch read as one. Each returned video
    keeps the metadata of its first clause's clip with the prompt's own ``prompt``,
    ``prompt_read``, ``seed``, the clauses it was composed from (``composed_from``) and the
    kept clips' seeds (``clause_seeds``)."""
    from kinetoscope.pipelines.base import check_count, sample_generators

    read = pipe.read_prompts(prompts)
    clauses = object_clauses(read)
    if all(len(c) == 1 for c in clauses):
        return None
    count = check_count("compose_candidates", int(pipe.defaults.get("compose_candidates", 1)))
    _, seeds = sample_generators(len(prompts), seed=seed, generator=generator, device=pipe.device)
    kept: list[list[Video]] = [[] for _ in prompts]
    kept_seeds: list[list[int | None]] = [[] for _ in prompts]
    for j in range(max(len(c) for c in clauses)):  # clause j of every prompt, in one batch
        flat, flat_negatives, flat_seeds, owners = [], [], [], []
        for index, (parts, negative, base) in enumerate(
            zip(clauses, negatives, seeds, strict=True)
        ):
            if j >= len(parts):
                continue
            for m in range(1 if j == 0 else count):
                flat.append(parts[j])
                flat_negatives.append(negative)
                offset = j * CLAUSE_SEED_STRIDE + m * CANDIDATE_SEED_STRIDE
                flat_seeds.append(None if base is None else base + offset)
                owners.append(index)
        merged = {i: max_composite(kept[i]) for i in dict.fromkeys(owners)} if j > 0 else {}
        extra: dict[str, Any] = {}
        if merged and getattr(pipe, "keeps_clear", False):
            extra["keep_clear"] = [Video(merged[i]) for i in owners]
        made = generate(
            flat,
            negative_prompt=flat_negatives,
            seed=None if generator is not None else flat_seeds,
            generator=generator,
            **extra,
        )
        for index in dict.fromkeys(owners):
            options = [
                (video, s)
                for video, s, owner in zip(made.frames, flat_seeds, owners, strict=True)
                if owner == index
            ]
            if len(options) > 1:  # the candidate that overlaps least with what is kept
                costs = [content_overlap(merged[index], video.frames) for video, _ in options]
                options = [options[costs.index(min(costs))]]
            kept[index].append(options[0][0])
            kept_seeds[index].append(options[0][1])
    videos = []
    for index, (prompt, reading, negative, base) in enumerate(
        zip(prompts, read, negatives, seeds, strict=True)
    ):
        parts = kept[index]
        metadata = dict(parts[0].metadata)
        metadata.pop("prompt_read", None)
        metadata.update(prompt=prompt, negative_prompt=negative, seed=base)
        if reading != prompt:
            metadata["prompt_read"] = reading
        if len(parts) > 1:
            metadata["composed_from"] = clauses[index]
            metadata["clause_seeds"] = kept_seeds[index]
        videos.append(Video(max_composite(parts), fps=parts[0].fps, metadata=metadata))
    return videos


def composable(call: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a pipeline's ``__call__(prompt, *, negative_prompt, seed, generator,
    compose_objects, **options)`` so that, with ``compose_objects`` on (None: the model's
    default), a batch with a prompt about several objects is made object by object
    (``compose_objects``); otherwise, and for the clauses themselves, the call runs as it is."""

    @functools.wraps(call)
    def wrapper(
        pipe: Any,
        prompt: str | list[str],
        *,
        negative_prompt: str | list[str] | None = None,
        seed: int | list[int] | None = None,
        generator: torch.Generator | None = None,
        compose_objects: bool | None = None,
        **options: Any,
    ) -> Any:
        from kinetoscope.pipelines.base import PipelineOutput, normalize_prompts

        plain = functools.partial(call, pipe, compose_objects=False, **options)
        if (
            pipe.defaults.get("compose_objects", False)
            if compose_objects is None
            else compose_objects
        ):
            prompts, negatives = normalize_prompts(prompt, negative_prompt)
            videos = compose_clauses(
                pipe, plain, prompts, negatives, seed=seed, generator=generator
            )
            if videos is not None:
                return PipelineOutput(frames=videos)
        return plain(prompt, negative_prompt=negative_prompt, seed=seed, generator=generator)

    return wrapper
