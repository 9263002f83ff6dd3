"""Text-to-video inference with a latent video diffusion model (Video LDM).

prompt -> text encoder -> guided denoising of (B, Z, T, h, w) latents with a diffusers
scheduler (DPM-Solver++ by default; DDIM and Euler selectable) -> temporal decoder -> Video.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.noise import mix_frame_noise
from kinetoscope.diffusion.planner import TrajectoryPlanner, track_sketch
from kinetoscope.diffusion.sampling import denoise_latents
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.nn.graphs import DenoiserGraphs
from kinetoscope.nn.precision import (  # noqa: F401 (resolve_precision: imported from here too)
    PRECISION_CHOICES,
    PRECISIONS,
    AutocastTwins,
    native_bfloat16,
    resolve_precision,
)
from kinetoscope.pipelines.base import (
    Pipeline,
    PipelineOutput,
    StepCallback,
    check_continuation,
    check_story_context,
    fit_video,
    normalize_prompts,
    randn,
    sample_generators,
    segment_generator,
    story_prompts,
)
from kinetoscope.pipelines.compose import composable, occupied_cells
from kinetoscope.pipelines.interpolation import InterpolationMixin
from kinetoscope.pipelines.planning import PlanningMixin
from kinetoscope.video import Video, videos_from_tensor

SCHEDULERS = {
    "dpmpp": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++"),
    "ddim": lambda cfg: DDIMScheduler.from_config(cfg),
    "euler": lambda cfg: EulerDiscreteScheduler.from_config(cfg),
}

INTERPOLATION_WEIGHTS = Path("interpolation") / "temporal.safetensors"
IMAGE_WEIGHTS = Path("image") / "spatial.safetensors"


class TextToVideoPipeline(PlanningMixin, InterpolationMixin, Pipeline):
    """Video LDM pipeline in the diffusers call convention.

    Args:
        vae: the video autoencoder (temporal decoder included).
        unet: the denoiser.
        scheduler_config: the training noise schedule (diffusers scheduler config dict).
        text_encoder: name or local directory of the text encoder the UNet was trained with.
        max_length: text tokens per prompt.
        text_clauses: encode prompts clause by clause (``kinetoscope.text.clauses``), as the
            model was trained.
        defaults: sampling defaults (num_frames, fps, num_inference_steps, guidance_scale, ...).
        interpolation_temporal: optional temporal weights of a separate interpolation model
            on the same image model (``VideoUNet.temporal_state`` of a UNet trained with
            interpolation batches, as Video LDM trains its interpolation model apart from the
            generator). ``interpolate`` then uses them; generation, story and continuation
            keep ``unet``'s. Without them, ``interpolate`` uses ``unet``.
        image_spatial: optional spatial weights of the image model (``VideoUNet.spatial_state``),
            when a joint video stage trained ``unet``'s spatial weights on clips as well.
            Image-first sampling then draws frame 0 with them (and no temporal layers), the
            rest with ``unet``. Without them, frame 0 comes from ``unet``'s own spatial weights.
    """

    family = "ldm"
    default_options = {
        "num_frames": 16,
        "fps": 8.0,
        "num_inference_steps": 15,
        "guidance_scale": 4.0,
        "guidance_interval": [0.0, 1.0],
        "precision": "float32",
        "first_frame": "joint",
        "noise_correlation": 0.0,
        "context_frames": 2,
        "track_guidance": False,  # guidance steers along planned tracks too (uncond: none)
        "start_candidates": 1,  # > 1: frame 0 drawn that often, a draw the motion fits kept
        "fit_start": False,  # frame 0 moved so the planned motion keeps it in the frame
        "track_start": 1.0,  # < 1: start from frame 0 moved along the planned track, noised
        "compose_objects": False,  # several objects made one by one, merged (compose.py)
        "compose_candidates": 1,  # > 1: later objects drawn that often, the least overlap kept
    }
    components = {"vae": VideoAutoencoderKL, "unet": VideoUNet}
    device_component = "unet"
    keeps_clear = True  # __call__ takes keep_clear (object-wise composition places objects)

    def __init__(
        self,
        *,
        vae: VideoAutoencoderKL,
        unet: VideoUNet,
        scheduler_config: dict[str, Any],
        text_encoder: str = "all-MiniLM-L6-v2",
        max_length: int = 32,
        text_clauses: bool = False,
        defaults: dict[str, Any] | None = None,
        interpolation_temporal: dict[str, torch.Tensor] | None = None,
        image_spatial: dict[str, torch.Tensor] | None = None,
        planner: TrajectoryPlanner | None = None,
    ) -> None:
        super().__init__(
            text_encoder=text_encoder,
            max_length=max_length,
            defaults=defaults,
            text_clauses=text_clauses,
        )
        self.vae = vae.eval()
        self.unet = unet.eval()
        self._autocast_twins = AutocastTwins()
        # Traced denoiser graphs for long runs; ``pipe.graphs.after = None`` turns them off.
        self.graphs = DenoiserGraphs()
        self.scheduler_config = dict(scheduler_config)
        self.interpolation_unet: VideoUNet | None = None
        if interpolation_temporal is not None:
            self.interpolation_unet = unet.with_temporal_state(interpolation_temporal).eval()
        # The model frame 0 of image-first sampling comes from (a UNet run without its
        # temporal layers): the generator itself unless the image model is kept apart.
        self.image_unet: VideoUNet = unet
        if image_spatial is not None:
            self.image_unet = unet.with_spatial_state(image_spatial).eval()
        # Object tracks for a generator whose anchors follow given ones, proposed from the
        # prompt and frame 0 (image-first sampling); without a planner they run as identities.
        self.planner = None if planner is None else planner.to(self.device).eval()

    # ------------------------------------------------------------------ persistence
    @classmethod
    def _load_extras(cls, directory: Path) -> dict[str, Any]:
        """The noise schedule saved in ``scheduler/scheduler_config.json``, the separate
        interpolation model's temporal weights in ``interpolation/`` and the image model's
        spatial weights in ``image/``, if there are any."""
        from safetensors.torch import load_file

        path = directory / "scheduler" / "scheduler_config.json"
        extras: dict[str, Any] = {"scheduler_config": json.loads(path.read_text())}
        weights = directory / INTERPOLATION_WEIGHTS
        if weights.is_file():
            extras["interpolation_temporal"] = load_file(weights)
        if (directory / IMAGE_WEIGHTS).is_file():
            extras["image_spatial"] = load_file(directory / IMAGE_WEIGHTS)
        return {**extras, **cls._load_planner(directory)}

    def _save_extras(self, directory: Path, dtype: torch.dtype | None) -> None:
        """Write the noise schedule to ``scheduler/scheduler_config.json``, and the separate
        interpolation model's temporal weights (only those: it shares the rest with ``unet``)."""
        from safetensors.torch import save_file

        (directory / "scheduler").mkdir()
        (directory / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(self.scheduler_config, indent=2)
        )
        parts = []
        if self.interpolation_unet is not None:
            parts.append((self.interpolation_unet.temporal_state(), INTERPOLATION_WEIGHTS))
        if self.image_unet is not self.unet:
            parts.append((self.image_unet.spatial_state(), IMAGE_WEIGHTS))
        self._save_planner(directory, dtype)
        for state, path in parts:
            (directory / path).parent.mkdir()
            save_file(
                {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in state.items()},
                directory / path,
            )

    def to(self, device: str | torch.device) -> TextToVideoPipeline:
        """Move every component, and the interpolation and image models if any, to ``device``."""
        super().to(device)
        if self.interpolation_unet is not None:
            self.interpolation_unet.to(device)
        self.image_unet.to(device)
        return self

    def make_scheduler(self, name: str):
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        return SCHEDULERS[name](self.scheduler_config)

    # ------------------------------------------------------------------ sampling
    def _autocast(self, precision: str) -> torch.autocast:
        """The autocast context of the denoiser for a resolved ``precision`` (disabled for
        float32)."""
        dtype = PRECISIONS[precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    @composable
    @torch.inference_mode()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        negative_prompt: str | list[str] | None = None,
        seed: int | list[int] | None = None,
        generator: torch.Generator | None = None,
        scheduler: str = "dpmpp",
        decode_chunk_size: int | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
        precision: str | None = None,
        first_frame: str | None = None,
        compose_objects: bool | None = None,
        keep_clear: list[Video] | None = None,
    ) -> PipelineOutput:
        """Generate one video per prompt.

        Args:
            prompt: a prompt or a list of prompts.
            num_frames: frames per video (default: the model's training length).
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight (1 disables guidance).
            guidance_interval: (low, high) fractions of the training noise schedule: guidance
                applies only at steps whose timestep t has low * T <= t <= high * T (T the
                schedule's length); the other steps run the conditional branch alone, at
                about half the cost (guidance in a limited interval, Kynkäänniemi et al.
                2024). Default: the model's, (0, 1) = every step.
            negative_prompt: replaces the empty prompt in the unconditional branch.
            seed: base seed; sample i uses seed + i (or pass one seed per prompt).
            generator: a single torch.Generator shared by the batch (instead of seed).
            scheduler: "dpmpp" (DPM-Solver++ multistep), "ddim" or "euler".
            decode_chunk_size: decode at most this many frames at a time (bounds memory).
            callback: called as callback(step_index, num_steps, latents) after every step.
            precision: "float32", "bfloat16" (the denoiser under bf16 autocast: about 1.4x
                faster on CPUs with native bf16, AMX or AVX512-BF16, and on GPUs; latents,
                the scheduler and the decoder stay float32) or "auto" (bfloat16 where it
                is native, else float32). Default: the model's.
            first_frame: "joint" denoises all frames together; "image" first draws frame 0
                with the image model alone (the temporal layers off), then denoises the
                other frames with it as a clean context frame (the model's context-frame
                prediction), so the motion is laid out from a fixed first frame. Models
                trained with context frames default to "image".
            compose_objects: generate a prompt about several objects one object (clause) at a
                time and merge the clips by their pixel-wise maximum, as the built-in worlds
                draw overlapping objects (``kinetoscope.pipelines.compose``). Default: the
                model's (on for the shipped world models, off otherwise).
            keep_clear: one video per prompt whose content the new clip's objects should keep
                clear of: of the ``start_candidates`` draws of frame 0 that need the least
                move (none: the planned motion fits), the one whose planned motion meets the
                least of that content is kept (object-wise composition places each later
                object so).
        Returns:
            PipelineOutput whose ``frames`` holds one Video per prompt.
        """
        prompts, negatives = normalize_prompts(prompt, negative_prompt)
        del compose_objects  # handled by @composable
        num_frames = self._count_option(num_frames, "num_frames")
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_interval=guidance_interval,
            fps=fps,
            precision=precision,
            first_frame=first_frame,
            scheduler=scheduler,
        )
        generators, seeds = sample_generators(
            len(prompts), seed=seed, generator=generator, device=self.device
        )
        denoise = self._denoise_options(settings, prompts, negatives, progress)
        if keep_clear is not None:
            denoise["keep_clear"] = occupied_cells(keep_clear, num_frames, self.vae.downscale)
        latents = self._first_latents(
            num_frames, generators, denoise, first_frame=settings["first_frame"], callback=callback
        )
        video = self.vae.decode_chunked(latents, chunk_size=decode_chunk_size).clamp(-1.0, 1.0)
        videos = self._stamp(
            videos_from_tensor(video),
            prompts,
            negatives,
            seeds,
            fps=settings["fps"],
            **self._metadata(settings),
            num_frames=num_frames,
        )
        return PipelineOutput(frames=videos)

    @torch.inference_mode()
    def story(
        self,
        prompts: list[str],
        *,
        frames_per_prompt: int = 16,
        context_frames: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        negative_prompt: str | list[str] | None = None,
        scheduler: str = "dpmpp",
        decode_chunk_size: int | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
        precision: str | None = None,
        first_frame: str | None = None,
    ) -> Video:
        """One continuous video telling ``prompts`` in order, ``frames_per_prompt`` frames each.

        Segment 1 is sampled as ``pipe(prompts[0])``. Each later segment is context-frame
        prediction: the last ``context_frames`` latents of the story so far enter the denoiser
        clean (timestep 0), and the segment's frames are denoised after them under the next
        prompt, in windows of at most the model's training length. The whole story is decoded
        at once, so the temporal decoder sees across the joins. Segment i draws its noise from
        ``seed + i`` (unless a ``generator`` is given); other arguments as in ``__call__``, and
        ``negative_prompt`` may be one string or one per prompt.

        Returns:
            A Video of ``len(prompts) * frames_per_prompt`` frames whose metadata lists the
            prompts and each segment's [start, end) frame range.
        """
        prompts, negatives = story_prompts(prompts, negative_prompt, frames_per_prompt)
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_interval=guidance_interval,
            fps=fps,
            precision=precision,
            first_frame=first_frame,
            scheduler=scheduler,
        )
        k = self._context_frames(context_frames)
        check_story_context(len(prompts), frames_per_prompt, k)
        story, segments = None, []
        for i, (p, n) in enumerate(zip(prompts, negatives, strict=True)):
            gen = segment_generator(seed, i, generator)
            denoise = self._denoise_options(settings, [p], [n], progress)
            if story is None:
                story = self._first_latents(
                    frames_per_prompt, [gen], denoise,
                    first_frame=settings["first_frame"], callback=callback,
                )  # fmt: skip
            else:
                new = self._continue_latents(
                    story[:, :, -k:], frames_per_prompt, [gen], denoise, callback=callback
                )
                story = torch.cat([story, new], dim=2)
            end = story.shape[2]
            segments.append({"prompt": p, "start": end - frames_per_prompt, "end": end})
        chunk = decode_chunk_size or self.window
        (video,) = videos_from_tensor(
            self.vae.decode_chunked(story, chunk_size=chunk).clamp(-1.0, 1.0)
        )
        return self._stamp_story(
            video,
            prompts=prompts,
            negatives=negatives,
            segments=segments,
            seed=seed,
            generator=generator,
            fps=settings["fps"],
            frames_per_prompt=frames_per_prompt,
            **self._metadata(settings),
            context_frames=k,
        )

    @torch.inference_mode()
    def continue_video(
        self,
        video: Video,
        prompt: str,
        *,
        num_frames: int = 16,
        context_frames: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        negative_prompt: str | None = None,
        scheduler: str = "dpmpp",
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
        precision: str | None = None,
    ) -> Video:
        """The ``num_frames`` frames that follow ``video`` under ``prompt``.

        ``video`` (e.g. ``Video.read(path)``) is centre-cropped and resized to the model's
        resolution when needed. Its last ``context_frames`` frames are encoded and become the
        clean context of context-frame prediction, as in ``story``. Returns only the new frames
        (decoded after the context, so the temporal decoder sees it), so
        ``Video.concat([video, new])`` is the whole clip when sizes match. Other arguments as
        in ``__call__``; fps defaults to the input's.
        """
        check_continuation(video, prompt, num_frames)
        prompts, negatives = normalize_prompts(prompt, negative_prompt)
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            guidance_interval=guidance_interval,
            fps=video.fps if fps is None else fps,
            precision=precision,
            first_frame=None,
            scheduler=scheduler,
        )
        k = self._context_frames(context_frames)
        if video.num_frames < k:
            raise ValueError(
                f"the video has {video.num_frames} frame(s) but context_frames={k}; "
                f"pass a longer clip or context_frames <= {video.num_frames}"
            )
        fitted, resized = fit_video(video[-k:], self.defaults.get("resolution", 64))
        context = self.vae.encode(fitted.to_tensor()[None].to(self.device))
        generators, seeds = sample_generators(1, seed=seed, generator=generator, device=self.device)
        denoise = self._denoise_options(settings, prompts, negatives, progress)
        new = self._continue_latents(context, num_frames, generators, denoise, callback=callback)
        decoded = self.vae.decode_chunked(torch.cat([context, new], dim=2), chunk_size=self.window)
        (out,) = videos_from_tensor(decoded[:, :, k:].clamp(-1.0, 1.0))
        settings["first_frame"] = "context"
        self._stamp(
            [out],
            prompts,
            negatives,
            seeds,
            fps=settings["fps"],
            **self._metadata(settings),
            context_frames=k,
            num_frames=num_frames,
            continued_from=video.metadata.get("prompt"),
            resized_from=[video.height, video.width] if resized else None,
        )
        return out

    # ------------------------------------------------------------------ sampling steps
    @property
    def window(self) -> int:
        """Frames the denoiser sees at once when continuing: the model's training length."""
        return int(self.defaults["num_frames"])

    def _context_frames(self, value: int | None) -> int:
        """Checked context length of a continuation (default: the model's)."""
        k = self._count_option(value, "context_frames")
        if k >= self.window:
            raise ValueError(
                f"context_frames={k} leaves no new frame in the model's {self.window}-frame "
                "window; use fewer"
            )
        return k

    def _settings(self, **given: Any) -> dict[str, Any]:
        """Checked sampling settings: given values, else the model's defaults."""
        first_frame = self._option(given.pop("first_frame"), "first_frame")
        if first_frame not in ("joint", "image"):
            raise ValueError(f"first_frame must be 'joint' or 'image', got {first_frame!r}")
        precision = resolve_precision(
            self._option(given.pop("precision"), "precision"), self.device
        )
        scheduler = given.pop("scheduler")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {sorted(SCHEDULERS)}")
        settings = {
            "steps": self._count_option(given.pop("num_inference_steps"), "num_inference_steps"),
            "guidance": float(self._option(given.pop("guidance_scale"), "guidance_scale")),
            "guidance_interval": self._guidance_interval(given.pop("guidance_interval")),
            "fps": float(given.pop("fps") or self.defaults["fps"]),
            "precision": precision,
            "autocast": self._autocast(precision),  # checked before any work
            "first_frame": first_frame,
            "scheduler": scheduler,
        }
        return settings

    def _guidance_interval(self, value: Any) -> tuple[float, float]:
        """The checked (low, high) guidance interval (given, else the model's default)."""
        value = self.defaults.get("guidance_interval", (0.0, 1.0)) if value is None else value
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError) as err:
            message = f"guidance_interval must be two numbers (low, high), got {value!r}"
            raise ValueError(message) from err
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"guidance_interval needs 0 <= low < high <= 1, got {value!r}")
        return low, high

    @staticmethod
    def _metadata(settings: dict[str, Any]) -> dict[str, Any]:
        """The settings recorded in a video's metadata."""
        return {
            "steps": settings["steps"],
            "guidance_scale": settings["guidance"],
            "guidance_interval": list(settings["guidance_interval"]),
            "scheduler": settings["scheduler"],
            "precision": settings["precision"],
            "first_frame": settings["first_frame"],
        }

    def _denoise_options(
        self, settings: dict[str, Any], prompts: list[str], negatives: list[str], progress: bool
    ) -> dict[str, Any]:
        """The keyword arguments of ``_denoise`` for these prompts (text encoded once, as the
        prompt reader, if any, rewrites them)."""
        guided, precision = settings["guidance"] != 1.0, settings["precision"]
        prompts = self.read_prompts(prompts)
        emb, mask = self.text_encoder.encode(prompts + negatives if guided else prompts)
        plan_text = self.planner_text(prompts)
        return dict(
            scheduler=settings["scheduler"], steps=settings["steps"],
            guidance=settings["guidance"], interval=settings["guidance_interval"],
            emb=emb.to(self.device), mask=mask.to(self.device),
            autocast=settings["autocast"], progress=progress,
            low_precision=None if precision == "float32" else PRECISIONS[precision],
            track_guidance=bool(self.defaults.get("track_guidance", False)),
            plan_text=None if plan_text is None else tuple(t.to(self.device) for t in plan_text),
        )  # fmt: skip

    def _noise(self, num_frames: int, generators: list[torch.Generator]) -> torch.Tensor:
        """(B, Z, num_frames, h, w) starting noise, frame-correlated as the model was trained."""
        latent_size = self.defaults.get("resolution", 64) // self.vae.downscale
        shape = (self.unet.config.latent_channels, num_frames, latent_size, latent_size)
        correlation = float(self.defaults["noise_correlation"])
        if not correlation:
            return randn(shape, generators, self.device, torch.float32)
        # One more frame per sample: the component the frames share.
        drawn = randn(
            (shape[0], num_frames + 1, *shape[2:]), generators, self.device, torch.float32
        )
        return mix_frame_noise(drawn[:, :, 1:], drawn[:, :, :1], correlation)

    def _first_latents(
        self,
        num_frames: int,
        generators: list[torch.Generator],
        denoise: dict[str, Any],
        *,
        first_frame: str,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        """Latents of new clips: all frames jointly, or frame 0 by the image model first."""
        noise = self._noise(num_frames, generators)
        context, tracks = None, None
        if first_frame == "image" and num_frames > 1:
            context, noise = self._draw_start(noise, generators, denoise)
            if self.defaults.get("fit_start", False):
                context, noise = self._fit_start(context, noise, generators, denoise)
            tracks = self._plan(context[:, :, 0], num_frames, generators, denoise)
        start = float(self.defaults.get("track_start", 1.0))
        if tracks is not None and start < 1.0:
            init = track_sketch(context[:, :, 0], tracks[:, 0, :num_frames])
            denoise = {**denoise, "init": init, "strength": start}
        return self._denoise(
            noise, context=context, trajectory=tracks, callback=callback, **denoise
        )

    def _continue_latents(
        self,
        context: torch.Tensor,
        num_frames: int,
        generators: list[torch.Generator],
        denoise: dict[str, Any],
        *,
        callback: StepCallback | None,
    ) -> torch.Tensor:
        """``num_frames`` latents after the clean ``context`` (B, Z, k, h, w).

        Windows of at most ``self.window`` frames: the last k latents so far, then new ones.
        """
        k, history, new = context.shape[2], context, []
        remaining = num_frames
        while remaining:
            count = min(remaining, self.window - k)
            noise = self._noise(k + count, generators)
            # No tracks here. Planned from the window's oldest context frame (session 30, 30
            # stories) they put more segments right (44% against 39%) but kept the digit in
            # fewer stories (57% against 70%) and made the joins jump (frame difference 9.0
            # against 7.2 inside the segments; without them 6.1 against 6.6).
            latents = self._denoise(noise, context=history[:, :, -k:], callback=callback, **denoise)
            new.append(latents[:, :, k:])
            history = latents
            remaining -= count
        return torch.cat(new, dim=2)

    def _denoise(
        self,
        noise: torch.Tensor,
        *,
        scheduler: str,
        unet: VideoUNet | None = None,
        low_precision: torch.dtype | None = None,
        plan_text: Any = None,
        keep_clear: Any = None,
        **options: Any,
    ) -> torch.Tensor:
        """Guided denoising of ``noise`` (B, Z, T, h, w) -> clean latents with a fresh
        ``scheduler`` and ``unet`` (default: the generator; with ``low_precision``, the
        autocast dtype, its ``autocast_twin``); the options as in
        ``kinetoscope.diffusion.sampling.denoise_latents`` (``plan_text``, the planner's own
        encoding of the prompts, is for ``_plan``; ``keep_clear`` for ``_draw_start``)."""
        model = self.unet if unet is None else unet
        if low_precision is not None:  # the same outputs, without per-call weight casts
            model = self._autocast_twins.get(model, low_precision)
        # The same outputs again, traced once a signature recurs (see DenoiserGraphs).
        denoiser = self.graphs.for_pass(model)
        return denoise_latents(denoiser, self.make_scheduler(scheduler), noise, **options)
