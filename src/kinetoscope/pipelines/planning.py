"""Object-track planning of ``TextToVideoPipeline``: the planner's tracks for a window, and the
``fit_start`` option that moves frame 0 so the planned motion keeps it in the frame."""

from __future__ import annotations

import logging
from typing import Any

import torch

from kinetoscope.diffusion.planner import centre_content, fit_start

logger = logging.getLogger(__name__)


class PlanningMixin:
    """Needs ``planner``, ``unet`` and ``defaults`` (``TextToVideoPipeline``)."""

    def _fit_start(
        self,
        context: torch.Tensor,
        noise: torch.Tensor,
        generators: list[torch.Generator],
        denoise: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame 0 (B, Z, 1, h, w) moved so that the motion planned from its content centred,
        where every motion fits, keeps the content in the frame (``fit_start``); the clip's
        noise (B, Z, T, h, w) is rolled by the same cells, since its frames share a component
        with frame 0's (``noise_correlation``) and would draw the object where it was."""
        num_frames = noise.shape[2]
        centred = self._plan(centre_content(context[:, :, 0]), num_frames, generators, denoise)
        if centred is None:
            return context, noise
        first, shift = fit_start(context[:, :, 0], centred[:, :, :num_frames])
        noise = torch.stack([
            n.roll((int(dy), int(dx)), dims=(-2, -1))
            for n, (dx, dy) in zip(noise, shift.tolist(), strict=True)
        ])  # fmt: skip
        return first[:, :, None], noise

    def _plan(
        self,
        first: torch.Tensor,
        num_frames: int,
        generators: list[torch.Generator],
        denoise: dict[str, Any],
    ) -> torch.Tensor | None:
        """(B, S, num_frames, 2) object tracks (region anchors: layouts with the frame-0
        boxes) from the planner for windows whose frame 0 is ``first`` (B, Z, h, w), or None:
        no planner, or a window longer than it plans (a shorter one takes its tracks' start)."""
        if self.planner is None or not self.unet.takes_trajectory:
            return None
        planned = self.planner.config.num_frames
        if num_frames > planned:
            logger.warning(
                "the trajectory planner plans %d frames, not %d: sampling without tracks",
                planned,
                num_frames,
            )
            return None
        batch = first.shape[0]
        emb, mask = denoise["emb"][:batch], denoise["mask"][:batch]  # the prompts, not negatives
        agree = float(self.defaults.get("agree_px", 2.0))
        regions = bool(getattr(self.unet.config, "anchor_regions", False))
        return self.planner.sample(
            first.float(), emb, mask, generators, agree_px=agree, num_frames=num_frames,
            boxes=regions,
        )  # fmt: skip
