"""Window planning of Video LDM's temporal interpolation (Blattmann et al. 2023, §3.1.2).

The N frames of a clip become keyframes, every ``factor``-th latent of an output of
(N - 1) * factor + 1 latents. The latents between keyframes are denoised in windows of at
most the model's length that start and end on a keyframe; this module plans those windows,
builds their given (keyframe) latents and puts the denoised windows back together;
``InterpolationMixin.interpolate`` samples them (``TextToVideoPipeline.interpolate``).

Axis legend: W windows, Z latent channels, T latent frames, h/w latent pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kinetoscope.pipelines.base import (
    StepCallback,
    fit_video,
    normalize_prompts,
    sample_generators,
)
from kinetoscope.video import Video, videos_from_tensor

INTERPOLATION_BATCH = 8  # interpolation windows denoised together


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


class InterpolationMixin:
    """``interpolate`` for ``TextToVideoPipeline``: it uses the pipeline's autoencoder, its
    settings, noise and denoising steps, and ``interpolation_unet`` (None: the generator's)."""

    @torch.inference_mode()
    def interpolate(
        self,
        video: Video,
        *,
        factor: int = 2,
        prompt: str | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        negative_prompt: str | None = None,
        scheduler: str = "dpmpp",
        decode_chunk_size: int | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        precision: str | None = None,
    ) -> Video:
        """``video`` at ``factor`` times its frame rate (Video LDM's temporal interpolation).

        The N input frames (centre-cropped and resized to the model's resolution when needed)
        are encoded and become keyframes, every ``factor``-th latent of the output; the
        ``factor - 1`` latents between each two are denoised given them, at timestep 0, in
        windows of at most the model's length that start and end on a keyframe (sampled together,
        ``INTERPOLATION_BATCH`` windows at a time). The prompt conditions the new frames; by default each window takes the one in
        the video's metadata (for a story, the prompt of the segment the window is in), else
        "". Needs a model trained with interpolation batches (the recipe's
        ``unet_interpolation`` stage); with a separate interpolation model
        (``interpolation_temporal``), its temporal layers denoise here. Returns (N - 1) * factor + 1 frames at
        ``factor`` times the input's fps. Every frame is decoded from the latents, keyframes
        included (they are the autoencoder's round trip of the input), so the temporal decoder
        sees the whole clip. Other arguments as in ``__call__``.
        """
        if not isinstance(video, Video) or video.num_frames < 2:
            raise ValueError("interpolate needs a Video of at least 2 frames")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an integer >= 2, got {factor!r}")
        if factor >= self.window:
            raise ValueError(
                f"factor {factor} leaves no room for two keyframes in the model's "
                f"{self.window}-frame window; use at most {self.window - 1}"
            )
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_interval=guidance_interval,
            fps=video.fps * factor,
            precision=precision,
            first_frame=None,
            scheduler=scheduler,
        )
        fitted, resized = fit_video(video, self.defaults.get("resolution", 64))
        keys = self.vae.encode(fitted.to_tensor()[None].to(self.device))  # (1, Z, N, h, w)
        plan = WindowPlan.over(video.num_frames, factor=factor, window=self.window)
        context, context_at = plan.context(keys), plan.keyframe_mask(self.device)
        generators, seeds = sample_generators(
            len(plan.starts), seed=seed, generator=generator, device=self.device
        )
        prompts, negatives = normalize_prompts(
            plan.prompts(video, prompt), negative_prompt, allow_empty=True
        )
        if not any(prompts + negatives):  # no text: guidance would change nothing
            settings["guidance"] = 1.0
        noise, parts = self._noise(plan.length, generators), []
        for i in range(0, len(plan.starts), INTERPOLATION_BATCH):  # bounded memory for long videos
            part = slice(i, i + INTERPOLATION_BATCH)
            denoise = self._denoise_options(settings, prompts[part], negatives[part], progress)
            parts.append(
                self._denoise(
                    noise[part],
                    context=context[part],
                    context_at=context_at,
                    callback=callback,
                    unet=self.interpolation_unet,
                    **denoise,
                )
            )
        out = plan.assemble(keys, torch.cat(parts))
        chunk = decode_chunk_size or self.window
        decoded = self.vae.decode_chunked(out, chunk_size=chunk).clamp(-1.0, 1.0)
        (result,) = videos_from_tensor(decoded)
        settings["first_frame"] = "keyframes"
        self._stamp(
            [result],
            [prompt if prompt is not None else video.metadata.get("prompt", "")],
            negatives[:1],
            seeds[:1],
            fps=settings["fps"],
            **self._metadata(settings),
            num_frames=result.num_frames,
            interpolation_factor=factor,
            interpolated_from={"num_frames": video.num_frames, "fps": video.fps},
            resized_from=[video.height, video.width] if resized else None,
        )
        return result
