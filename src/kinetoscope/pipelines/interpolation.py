"""Window planning of Video LDM's temporal interpolation (Blattmann et al. 2023, §3.1.2).

The N frames of a clip become keyframes, every ``factor``-th latent of an output of
(N - 1) * factor + 1 latents. The latents between keyframes are denoised in windows of at
most the model's length that start and end on a keyframe; this module plans those windows,
builds their given (keyframe) latents and puts the denoised windows back together. The
sampling itself is ``TextToVideoPipeline.interpolate``.

Axis legend: W windows, Z latent channels, T latent frames, h/w latent pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kinetoscope.video import Video


@dataclass(frozen=True)
class WindowPlan:
    """Windows over a clip's keyframe intervals: window w covers intervals
    ``starts[w] .. starts[w] + per_window`` (input frames), ``length`` output latents."""

    starts: list[int]
    per_window: int
    factor: int

    @classmethod
    def over(cls, num_frames: int, *, factor: int, window: int) -> WindowPlan:
        """The fewest windows of at most ``window`` latents covering ``num_frames`` keyframes;
        the last one ends on the last keyframe (it may overlap the one before)."""
        intervals = num_frames - 1
        per_window = min((window - 1) // factor, intervals)  # keyframe intervals per window
        starts = list(range(0, intervals - per_window + 1, per_window))
        if starts[-1] + per_window < intervals:
            starts.append(intervals - per_window)
        return cls(starts=starts, per_window=per_window, factor=factor)

    @property
    def length(self) -> int:
        """Latents in one window, keyframes at both ends included."""
        return self.per_window * self.factor + 1

    def keyframe_mask(self, device: torch.device | str) -> torch.Tensor:
        """(length,) bool: True where a window's latent is a keyframe."""
        return torch.arange(self.length, device=device) % self.factor == 0

    def context(self, keys: torch.Tensor) -> torch.Tensor:
        """(W, Z, length, h, w) given latents of every window from the clip's keyframe latents
        ``keys`` (1, Z, N, h, w); zero where a window's latent is to be denoised."""
        at = self.keyframe_mask(keys.device)
        out = keys.new_zeros((len(self.starts), keys.shape[1], self.length, *keys.shape[3:]))
        for w, start in enumerate(self.starts):
            out[w, :, at] = keys[0, :, start : start + self.per_window + 1]
        return out

    def assemble(self, keys: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """(1, Z, (N - 1) * factor + 1, h, w) latents: ``keys`` (1, Z, N, h, w) at every
        factor-th place, the denoised ``windows`` (W, Z, length, h, w) between them; where two
        windows overlap, the earlier one's latents are kept."""
        num_frames = keys.shape[2]
        out = keys.new_zeros(
            (1, keys.shape[1], (num_frames - 1) * self.factor + 1, *keys.shape[3:])
        )
        out[:, :, :: self.factor] = keys
        for w, start in reversed(list(enumerate(self.starts))):
            first = start * self.factor
            out[0, :, first : first + self.length] = windows[w]
        return out

    def prompts(self, video: Video, prompt: str | None) -> list[str]:
        """The prompt of each window (see ``window_prompt``)."""
        return [window_prompt(video, prompt, s, s + self.per_window) for s in self.starts]


def window_prompt(video: Video, prompt: str | None, first: int, last: int) -> str:
    """The prompt of the interpolation window between input frames ``first`` and ``last``:
    ``prompt`` if given, else the video's own (for a story, that of the segment holding the
    window's middle frame), else ""."""
    if prompt is not None:
        return prompt
    middle = (first + last) / 2
    segments = video.metadata.get("segments") or []
    for segment in segments:
        if segment["start"] <= middle < segment["end"]:
            return str(segment["prompt"])
    if segments:
        return str(segments[-1]["prompt"])
    return str(video.metadata.get("prompt", ""))
