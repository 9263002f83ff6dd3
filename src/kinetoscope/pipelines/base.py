"""What every inference pipeline shares: prompt checks, seeds, text conditioning, save/load.

Seeds: sample i of a batch generated with seed s uses ``torch.Generator().manual_seed(s + i)``,
so any sample can be reproduced on its own. Text: prompts and negative prompts (or "" for
the unconditional branch of classifier-free guidance) go through the model's text encoder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import kinetoscope

if TYPE_CHECKING:
    from kinetoscope.video import Video

MODEL_INDEX = "model_index.json"


@dataclass
class PipelineOutput:
    """Result of a pipeline call: one ``Video`` per prompt."""

    frames: list[Video]


def normalize_prompts(prompt: str | list[str], negative_prompt: str | list[str] | None):
    """Check prompts and pair each with a negative prompt ("" when none). Returns two lists."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompt given: pass a non-empty string or list of strings")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError(
                f"empty prompt {p!r}: describe the video you want, e.g. 'the digit 7 is moving up'"
            )
    if negative_prompt is None:
        negatives = [""] * len(prompts)
    elif isinstance(negative_prompt, str):
        negatives = [negative_prompt] * len(prompts)
    else:
        negatives = list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
    return prompts, negatives


def sample_generators(
    batch: int, *, seed: int | list[int] | None, generator: torch.Generator | None, device: Any
) -> tuple[list[torch.Generator], list[int | None]]:
    """One generator per sample (seed + i), or the caller's single generator shared by all."""
    if generator is not None:
        return [generator] * batch, [None] * batch
    if seed is None:
        seed = random.randrange(2**31)
    seeds = [seed + i for i in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds for {batch} prompts")
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds], seeds


def randn(
    shape: tuple[int, ...], generators: list[torch.Generator], device: Any, dtype: Any
) -> torch.Tensor:
    """(B, *shape) standard normal noise, sample i from generators[i] (drawn on CPU for portability)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)


def read_model_index(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MODEL_INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a saved kinetoscope model (no {MODEL_INDEX}); "
            "pass a model name from `kinetoscope models` or a directory written by save_pretrained"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is corrupt ({err}); re-save or re-train the model") from err


class AtomicDirectory:
    """Write a directory under a temporary name and move it into place on success."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)


def write_model_index(directory: Path, class_name: str, **fields: Any) -> None:
    index = {"_class_name": class_name, "kinetoscope_version": kinetoscope.__version__, **fields}
    (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2))


def model_fingerprint(directory: str | Path) -> str:
    """Short sha256 over a saved model's files (reported with every evaluation)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class LazyTextEncoder:
    """Mixin: ``text_encoder`` loads ``text_encoder_name`` on first use and keeps it."""

    _text_encoder = None

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from kinetoscope.text import load_text_encoder

            self._text_encoder = load_text_encoder(
                self.text_encoder_name, max_length=self.max_length
            )
        return self._text_encoder
