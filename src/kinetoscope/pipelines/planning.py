"""Object-track planning of ``TextToVideoPipeline``: the planner's tracks for a window, the
``start_candidates`` option that draws frame 0 several times and keeps a draw from which the
planned motion stays in the frame, and the ``fit_start`` option that moves frame 0 so that it
does."""

from __future__ import annotations

import logging
from typing import Any

import torch

from kinetoscope.diffusion.planner import (
    Boxes,
    centre_content,
    fit_start,
    pixel_boxes,
    start_shifts,
    track_overlap,
)

logger = logging.getLogger(__name__)


class PlanningMixin:
    """Needs ``planner``, ``unet``, ``image_unet``, ``vae``, ``defaults``, ``_noise`` and
    ``_denoise`` (``TextToVideoPipeline``)."""

    def _content_boxes(self, first: torch.Tensor) -> Boxes:
        """Where frame 0's latents (B, Z, h, w) hold content, read from its decoded pixels
        (``pixel_boxes``), in latent cells."""
        frames = self.vae.decode(first[:, :, None].float(), temporal=False)[:, :, 0]
        return pixel_boxes(frames.clamp(-1.0, 1.0), self.vae.downscale)

    def _draw_start(
        self,
        noise: torch.Tensor,
        generators: list[torch.Generator],
        denoise: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame 0 (B, Z, 1, h, w) drawn by the image model from the clip's noise (B, Z, T, h, w)
        -> (frame 0, the clip's noise).

        With ``start_candidates`` k > 1 (and a planner) each sample draws frame 0 from k clip
        noises (its own first, then k - 1 more from its generator), all in one batch, and keeps
        the first draw whose content stays inside the frame all along the motion planned from
        its content centred (``start_shifts``), else the one that needs the least move; the
        clip then continues from that draw's noise. An image model draws objects anywhere,
        also where the asked motion would carry them out of the frame; another draw, unlike a
        moved frame (``fit_start``), is a frame the model made. With ``keep_clear`` among the
        options ((B, T, h, w) bool, cells another object already fills; object-wise
        composition), of the draws that need the least move (none: the motion fits where it
        was drawn) the one whose planned motion meets the fewest of those cells is kept."""
        count = int(self.defaults.get("start_candidates", 1))
        if count < 1:
            raise ValueError(f"start_candidates must be >= 1, got {count}")
        usable = count > 1 and self.planner is not None and self.unet.takes_trajectory
        draws = [noise]
        if usable:
            draws += [self._noise(noise.shape[2], generators) for _ in range(count - 1)]
        batch = noise.shape[0]
        options = dict(denoise)
        if len(draws) > 1:
            for key in ("emb", "mask"):  # prompts (then negatives), once per draw
                parts = denoise[key].split(batch)
                options[key] = torch.cat(
                    [p.repeat(len(draws), *[1] * (p.dim() - 1)) for p in parts]
                )
        firsts = self._denoise(
            torch.cat(draws)[:, :, :1], use_temporal=False, unet=self.image_unet, **options
        )
        if len(draws) == 1:
            return firsts, noise
        firsts = firsts.unflatten(0, (len(draws), batch))  # (k, B, Z, 1, h, w)
        num_frames = noise.shape[2]
        every = self._content_boxes(firsts.flatten(0, 1)[:, :, 0])  # one decode for all
        boxes = [every[k * batch : (k + 1) * batch] for k in range(len(draws))]
        centred = centre_content(firsts[0, :, :, 0], boxes=boxes[0])
        centred = self._plan(centred, num_frames, generators, denoise)
        if centred is None:
            return firsts[0], noise
        clear = denoise.get("keep_clear")  # (B, T, h, w) cells to keep clear, or None
        size = torch.tensor([noise.shape[-1], noise.shape[-2]], dtype=torch.float32)
        moves = centred[:, :, :num_frames].float().cpu() * size  # (B, S, T, 2) in cells
        costs = []
        for first, draw_boxes in zip(firsts, boxes, strict=True):
            shifts, feasible = start_shifts(
                first[:, :, 0], centred[:, :, :num_frames], boxes=draw_boxes
            )
            cost = shifts.abs().sum(-1).float()
            if clear is not None:  # among draws needing the same move, the fewest cells met
                met = [
                    0 if box is None else track_overlap(box, track, occupied)
                    for box, track, occupied in zip(draw_boxes, moves, clear, strict=True)
                ]
                cost = cost.double() * 1e6 + torch.tensor(met, dtype=torch.float64)
            costs.append(torch.where(feasible, cost, torch.full_like(cost, float("inf"))))
        pick = torch.stack(costs).argmin(0).tolist()  # ties: the earliest draw
        first = torch.stack([firsts[k, b] for b, k in enumerate(pick)])
        return first, torch.stack([draws[k][b] for b, k in enumerate(pick)])

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
        boxes = self._content_boxes(context[:, :, 0])
        centred = centre_content(context[:, :, 0], boxes=boxes)
        centred = self._plan(centred, num_frames, generators, denoise)
        if centred is None:
            return context, noise
        first, shift = fit_start(context[:, :, 0], centred[:, :, :num_frames], boxes=boxes)
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
        own = denoise.get("plan_text")  # the planner's own encoding (its text_layers), if any
        emb, mask = own if own is not None else (denoise["emb"], denoise["mask"])
        emb, mask = emb[:batch], mask[:batch]  # the prompts, not negatives
        agree = float(self.defaults.get("agree_px", 2.0))
        regions = bool(getattr(self.unet.config, "anchor_regions", False))
        return self.planner.sample(
            first.float(), emb, mask, generators, agree_px=agree, num_frames=num_frames,
            boxes=regions,
        )  # fmt: skip
