"""One training loop for every stage of every family.

A task supplies ``loss_fn(model, batch) -> (loss, logs)`` and an infinite iterator of
batches; the loop owns the optimiser, the EMA copy, logging, atomic checkpoints, resume and
an optional wall-clock budget (so a recipe can be sized to finish inside a session).
Only parameters with ``requires_grad`` are optimised.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class TrainState:
    """What a run leaves behind: the step reached, seconds spent, last logged values."""

    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    ema: nn.Module | None = None


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside ``path``, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, over trainable parameters."""
    for ema_p, p in zip(ema.parameters(), model.parameters(), strict=True):
        if p.requires_grad:
            ema_p.lerp_(p.detach(), 1.0 - decay)


def _load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    state: TrainState,
) -> None:
    """Resume from ``path``: weights, optimiser, EMA, step, seconds and the torch RNG state."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict(ckpt["ema"])
    state.step, state.seconds = ckpt["step"], ckpt["seconds"]
    torch.set_rng_state(ckpt["rng"])
    logger.info("resumed from %s at step %d", path, state.step)


def _save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
    state: TrainState,
) -> None:
    """Everything ``_load_checkpoint`` restores, written atomically to ``path``."""
    atomic_save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "step": state.step,
            "seconds": state.seconds,
            "rng": torch.get_rng_state(),
        },
        path,
    )


def _set_learning_rates(
    optimizer: torch.optim.Optimizer,
    base_lrs: list[float],
    *,
    step: int,
    steps: int,
    warmup_steps: int,
    elapsed_s: float,
    time_budget_s: float | None,
) -> None:
    """Set each group's lr to its base lr x linear warm-up x cosine decay (floored at 0.05)."""
    warm = min(1.0, (step + 1) / max(warmup_steps, 1))
    # Cosine decay over whichever budget (steps or wall clock) runs out first.
    progress = step / steps
    if time_budget_s:
        progress = max(progress, elapsed_s / time_budget_s)
    decay = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * warm * max(decay, 0.05)


def _backward_and_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    groups: list[dict[str, Any]],
    grad_clip: float,
) -> None:
    """One optimiser step on ``loss``, gradients clipped to norm ``grad_clip`` (0: no clipping)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], grad_clip)
    optimizer.step()


def _log_averages(state: TrainState, running: dict[str, float], log_every: int) -> None:
    """Append the means of the last ``log_every`` steps' values to the history and log them."""
    averaged = {k: v / log_every for k, v in running.items()}
    state.history.append({"step": state.step, "seconds": state.seconds, **averaged})
    logger.info(
        "step %d  %.0fs  %s",
        state.step,
        state.seconds,
        "  ".join(f"{k}={v:.4f}" for k, v in averaged.items()),
    )


def train_loop(
    *,
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterator[Any],
    steps: int,
    lr: float,
    out_dir: str | Path,
    ema_decay: float | None = None,
    log_every: int = 50,
    checkpoint_every: int = 500,
    resume: bool = True,
    time_budget_s: float | None = None,
    weight_decay: float = 0.0,
    warmup_steps: int = 100,
    param_groups: list[dict[str, Any]] | None = None,
    grad_clip: float = 1.0,
) -> TrainState:
    """Train ``model`` for ``steps`` steps (or until ``time_budget_s``), resuming if possible.

    Args:
        param_groups: optional optimiser groups (each with "params" and e.g. "lr"); by default
            every parameter with ``requires_grad``.
    Returns:
        The final TrainState (``ema`` holds the EMA model when ``ema_decay`` is set).
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if not any(g["params"] for g in groups):
        raise ValueError("nothing to train: no parameter has requires_grad=True")
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    base_lrs = [g.get("lr", lr) for g in optimizer.param_groups]
    ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay else None
    state = TrainState(ema=ema)
    parts = {"model": model, "optimizer": optimizer, "ema": ema, "state": state}
    if resume and ckpt_path.exists():
        _load_checkpoint(ckpt_path, **parts)
    model.train()
    started = time.perf_counter() - state.seconds
    running: dict[str, float] = {}
    while state.step < steps:
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            logger.info("time budget of %.0f s reached at step %d", time_budget_s, state.step)
            break
        _set_learning_rates(
            optimizer,
            base_lrs,
            step=state.step,
            steps=steps,
            warmup_steps=warmup_steps,
            elapsed_s=time.perf_counter() - started,
            time_budget_s=time_budget_s,
        )
        loss, logs = loss_fn(model, next(batches))
        if not torch.isfinite(loss):
            _save_checkpoint(ckpt_path, **parts)
            raise FloatingPointError(
                f"loss became {loss.item()} at step {state.step}; checkpoint kept at {ckpt_path}. "
                "Lower the learning rate or check the data."
            )
        _backward_and_step(loss, optimizer, groups=groups, grad_clip=grad_clip)
        if ema is not None:
            ema_update(ema, model, ema_decay if state.step > warmup_steps else 0.0)
        state.step += 1
        for key, value in {"loss": loss.item(), **logs}.items():
            running[key] = running.get(key, 0.0) + value
        if state.step % log_every == 0:
            state.seconds = time.perf_counter() - started
            _log_averages(state, running, log_every)
            running = {}
        if state.step % checkpoint_every == 0:
            state.seconds = time.perf_counter() - started
            _save_checkpoint(ckpt_path, **parts)
    state.seconds = time.perf_counter() - started
    # A stage that trained nothing (steps: 0) leaves nothing to resume: a later run in a copy of
    # this folder would otherwise resume that untouched state over its own init_*_from weights.
    if state.step:
        _save_checkpoint(ckpt_path, **parts)
    model.eval()
    return state
