"""What one Phenaki generation carries through its windows: the resolved sampling settings, a
progress bar over every MaskGIT step and the text, generators and settings every window shares
(``PhenakiPipeline``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from kinetoscope.pipelines.base import StepCallback


@dataclass(frozen=True)
class RunSettings:
    steps: int
    guidance: float
    temperature: float
    choice_temperature: float
    context_frames: int
    fps: float
    first_frame: str = "joint"

    def metadata(self) -> dict[str, Any]:
        """The settings every generated video records, in metadata order."""
        return {
            "steps": self.steps,
            "guidance_scale": self.guidance,
            "temperature": self.temperature,
            "context_frames": self.context_frames,
            "first_frame": self.first_frame,
        }

    def total_steps(self, windows: int, *, fresh: bool) -> int:
        """MaskGIT steps of ``windows`` windows; a fresh start with ``first_frame="image"``
        decodes the first frame's tokens on their own first (one more pass of ``steps``)."""
        return self.steps * (windows + int(fresh and self.first_frame == "image"))


class RunProgress:
    """One tqdm bar and a global step count over every MaskGIT step of every window."""

    def __init__(self, total: int, *, enabled: bool, callback: StepCallback | None) -> None:
        self.total, self.step, self.callback = total, 0, callback
        self.bar = tqdm(total=total, disable=not enabled, desc="decoding tokens")

    def __call__(self, _step: int, _num_steps: int, tokens: torch.Tensor) -> None:
        if self.callback is not None:
            self.callback(self.step, self.total, tokens)
        self.step += 1
        self.bar.update(1)

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


@dataclass(frozen=True)
class Run:
    """What every window of one generation shares."""

    # text_emb (B, L, D), text_mask, null_emb, null_mask; plan_emb / plan_mask for a planner
    # that reads other layers of the text encoder
    text: dict[str, torch.Tensor | None]
    generators: list[torch.Generator]
    settings: RunSettings
    progress: RunProgress
