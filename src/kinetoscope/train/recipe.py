"""What the training recipes of every family share: recipe fields, stage budgets, world clips,
caption embeddings and the run of one stage.

A recipe (``LDMRecipe`` in ``train/ldm.py``, ``PhenakiRecipe`` in ``train/phenaki.py``) is a
frozen dataclass read from YAML with strict keys (``kinetoscope.config.from_dict``). The fields
of ``Recipe`` are common to all of them; ``stages`` maps a stage name to a ``StageConfig``.

Axis legend: B batch, C channels, T frames, H/W pixels.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kinetoscope.train.loop import LossFn, train_loop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageConfig:
    """Budget and optimiser settings of one stage."""

    steps: int
    batch_size: int
    lr: float
    minutes: float = 30.0
    ema_decay: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """The fields every family's recipe has: data, text conditioning, clip format, stages.

    ``sampling`` becomes the trained pipeline's defaults; ``text_dropout`` is the probability
    that a training caption is replaced by "" (classifier-free guidance). A stage set to null
    (in a recipe over a ``base:``, or by ``--set stages.NAME=null``) is dropped.
    """

    name: str
    worlds: tuple[str, ...]
    stages: dict[str, Any]
    sampling: dict[str, Any]
    seed: int = 0
    text_encoder: str = "all-MiniLM-L6-v2"
    max_length: int = 32
    text_clauses: bool = False  # encode each clause of a caption alone (kinetoscope.text.clauses)
    num_frames: int = 16
    resolution: int = 64
    fps: float = 8.0
    text_dropout: float = 0.1
    weights_dtype: str = "float32"  # how the trained pipeline stores its weights (or float16)

    def __post_init__(self) -> None:
        kept = {name: stage for name, stage in self.stages.items() if stage is not None}
        object.__setattr__(self, "stages", kept)  # frozen: set once, here
        from kinetoscope.pipelines.base import storage_dtype

        storage_dtype(self.weights_dtype)  # a bad value fails now, not after the training

    def stage(self, name: str) -> StageConfig:
        """The checked ``StageConfig`` of stage ``name`` (ValueError if the recipe lacks it)."""
        from kinetoscope.config import from_dict

        if name not in self.stages:
            raise ValueError(f"recipe {self.name} has no stage '{name}'")
        return from_dict(StageConfig, self.stages[name], where=f"stages.{name}")


def start_run(recipe: Recipe, out_dir: str | Path) -> Path:
    """Create the run directory ``out_dir`` and record ``recipe`` in it as recipe.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    return out


def build_pipeline(
    pipeline_class: type, recipe: Recipe, *, defaults: dict[str, Any], **parts: Any
) -> Any:
    """``pipeline_class`` from trained ``parts`` and the recipe's text encoder.

    The pipeline's sampling defaults are ``defaults``, then ``model_name`` (the recipe's name),
    then the recipe's ``sampling`` section; later keys win.
    """
    return pipeline_class(
        **parts,
        text_encoder=recipe.text_encoder,
        max_length=recipe.max_length,
        text_clauses=recipe.text_clauses,
        defaults={**defaults, "model_name": recipe.name, **recipe.sampling},
    )


def save_pipeline(
    pipeline_class: type, recipe: Recipe, out: Path, *, defaults: dict[str, Any], **parts: Any
) -> Path:
    """``build_pipeline``, saved to out/pipeline with the recipe's ``weights_dtype``; returns
    that path. With a ``prompt_reader`` stage the pipeline gets its prompt reader
    (train/reader.py)."""
    pipe = build_pipeline(pipeline_class, recipe, defaults=defaults, **parts)
    if "prompt_reader" in recipe.stages:
        from kinetoscope.train.reader import train_reader_stage

        pipe.reader = train_reader_stage(recipe, out)
    return pipe.save_pretrained(out / "pipeline", weights_dtype=recipe.weights_dtype)


def train_stage(
    stage: StageConfig,
    *,
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterator[Any],
    out_dir: Path,
    **options: Any,
) -> nn.Module:
    """Train ``model`` within ``stage``'s steps, learning rate and minutes; ``options`` go to
    ``train_loop`` as they are.

    Returns:
        The module to keep: the EMA copy when there is one, else ``model``; frozen, in eval mode.
    """
    state = train_loop(
        model=model,
        loss_fn=loss_fn,
        batches=batches,
        steps=stage.steps,
        lr=stage.lr,
        out_dir=out_dir,
        time_budget_s=stage.minutes * 60.0,
        **options,
    )
    trained = state.ema if state.ema is not None else model
    return trained.requires_grad_(False).eval()


def train_only(model: nn.Module, params: list[nn.Parameter]) -> list[nn.Parameter]:
    """Freeze every weight of ``model`` except ``params`` (a stage that trains one part);
    returns ``params``."""
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


# ----------------------------------------------------------------------------- data


def _world_datasets(recipe: Recipe, split: str = "train") -> list[Any]:
    from kinetoscope.data.worlds import WorldDataset

    return [
        WorldDataset(
            name,
            split=split,
            size=10**9,
            seed=recipe.seed,
            num_frames=recipe.num_frames,
            resolution=recipe.resolution,
            fps=recipe.fps,
        )
        for name in recipe.worlds
    ]


def _to_model_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1] (training-side batch helper)."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
    return tensor.movedim(-1, -3)


def clip_batches(recipe: Recipe, *, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Infinite clips (B, C, T, H, W) drawn uniformly over the recipe's worlds."""
    datasets = _world_datasets(recipe)
    rng = random.Random(seed)
    while True:
        clips = [rng.choice(datasets)[rng.randrange(10**9)] for _ in range(batch_size)]
        video = _to_model_range(np.stack([c.frames for c in clips]))  # (B, T, C, H, W)
        yield video.transpose(1, 2).contiguous()


def clip_at(datasets: Sequence[Any], index: int) -> Any:
    """Clip ``index`` of ``datasets`` taken in turn (the order of the latent caches)."""
    return datasets[index % len(datasets)][index // len(datasets)]


def clip_objects(datasets: Sequence[Any], num_clips: int) -> list[tuple[str, list[dict]]]:
    """(world, objects) of clips 0 .. num_clips - 1 of ``datasets`` taken in turn (the latent
    caches' order), their facts only: nothing is rendered."""
    n = len(datasets)
    return [
        (datasets[i % n].world, datasets[i % n].sample_objects(i // n)) for i in range(num_clips)
    ]


def clip_chunks(
    datasets: Sequence[Any], num_clips: int, *, chunk_size: int = 16, first: int = 0
) -> Iterator[tuple[torch.Tensor, list[list[str]]]]:
    """Clips ``first`` .. ``num_clips`` - 1 of ``datasets`` taken in turn, ``chunk_size`` at a
    time: (video (B, C, T, H, W) in [-1, 1], the caption wordings of each clip). Logs progress."""
    from kinetoscope.data.worlds import caption_wordings

    for start in range(first, num_clips, chunk_size):
        idx = range(start, min(start + chunk_size, num_clips))
        clips = [clip_at(datasets, i) for i in idx]
        video = _to_model_range(np.stack([c.frames for c in clips])).transpose(1, 2)
        yield video, [caption_wordings(c.world, c.objects) for c in clips]
        if start % 800 == 0:
            logger.info("encoded %d / %d clips", start, num_clips)


class CaptionBank:
    """Text embeddings of every caption seen, computed once (training never re-runs the encoder)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self._emb: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = sorted({c for c in captions if c not in self._emb})
        if missing:
            emb, mask = self.encoder.encode(missing)
            for i, text in enumerate(missing):
                self._emb[text] = (emb[i].half(), mask[i])
        emb = torch.stack([self._emb[c][0] for c in captions]).float()
        mask = torch.stack([self._emb[c][1] for c in captions])
        return emb, mask
