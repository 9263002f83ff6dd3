"""Text-to-video inference with a latent video diffusion model (Video LDM).

prompt -> text encoder -> guided denoising of (B, Z, T, h, w) latents with a diffusers
scheduler (DPM-Solver++ by default; DDIM and Euler selectable) -> temporal decoder -> Video.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from tqdm.auto import tqdm

from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.noise import mix_frame_noise
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.pipelines.base import (
    Pipeline,
    PipelineOutput,
    StepCallback,
    normalize_prompts,
    randn,
    sample_generators,
)
from kinetoscope.video import videos_from_tensor

logger = logging.getLogger(__name__)

SCHEDULERS = {
    "dpmpp": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++"),
    "ddim": lambda cfg: DDIMScheduler.from_config(cfg),
    "euler": lambda cfg: EulerDiscreteScheduler.from_config(cfg),
}

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class TextToVideoPipeline(Pipeline):
    """Video LDM pipeline in the diffusers call convention.

    Args:
        vae: the video autoencoder (temporal decoder included).
        unet: the denoiser.
        scheduler_config: the training noise schedule (diffusers scheduler config dict).
        text_encoder: name or local directory of the text encoder the UNet was trained with.
        max_length: text tokens per prompt.
        defaults: sampling defaults (num_frames, fps, num_inference_steps, guidance_scale, ...).
    """

    family = "ldm"
    default_options = {
        "num_frames": 16,
        "fps": 8.0,
        "num_inference_steps": 15,
        "guidance_scale": 4.0,
        "precision": "float32",
        "first_frame": "joint",
        "noise_correlation": 0.0,
    }
    components = {"vae": VideoAutoencoderKL, "unet": VideoUNet}
    device_component = "unet"

    def __init__(
        self,
        *,
        vae: VideoAutoencoderKL,
        unet: VideoUNet,
        scheduler_config: dict[str, Any],
        text_encoder: str = "all-MiniLM-L6-v2",
        max_length: int = 32,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(text_encoder=text_encoder, max_length=max_length, defaults=defaults)
        self.vae = vae.eval()
        self.unet = unet.eval()
        self.scheduler_config = dict(scheduler_config)

    # ------------------------------------------------------------------ persistence
    @classmethod
    def _load_extras(cls, directory: Path) -> dict[str, Any]:
        """The noise schedule saved in ``scheduler/scheduler_config.json``."""
        path = directory / "scheduler" / "scheduler_config.json"
        return {"scheduler_config": json.loads(path.read_text())}

    def _save_extras(self, directory: Path) -> None:
        """Write the noise schedule to ``scheduler/scheduler_config.json``."""
        (directory / "scheduler").mkdir()
        (directory / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(self.scheduler_config, indent=2)
        )

    def make_scheduler(self, name: str):
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        return SCHEDULERS[name](self.scheduler_config)

    # ------------------------------------------------------------------ sampling
    def _autocast(self, precision: str) -> torch.autocast:
        """The autocast context of the denoiser for ``precision`` (disabled for float32)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {sorted(PRECISIONS)}")
        dtype = PRECISIONS[precision]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
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
    ) -> PipelineOutput:
        """Generate one video per prompt.

        Args:
            prompt: a prompt or a list of prompts.
            num_frames: frames per video (default: the model's training length).
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight (1 disables guidance).
            negative_prompt: replaces the empty prompt in the unconditional branch.
            seed: base seed; sample i uses seed + i (or pass one seed per prompt).
            generator: a single torch.Generator shared by the batch (instead of seed).
            scheduler: "dpmpp" (DPM-Solver++ multistep), "ddim" or "euler".
            decode_chunk_size: decode at most this many frames at a time (bounds memory).
            callback: called as callback(step_index, num_steps, latents) after every step.
            precision: "float32" (default), or "bfloat16" to run the denoiser under bf16
                autocast: about 1.4x faster on CPUs with native bf16 (AVX512-BF16, AMX) and
                GPUs; latents, the scheduler and the decoder stay float32.
            first_frame: "joint" denoises all frames together; "image" first draws frame 0
                with the image model alone (the temporal layers off), then denoises the
                other frames with it as a clean context frame (the model's context-frame
                prediction), so the motion is laid out from a fixed first frame. Models
                trained with context frames default to "image".
        Returns:
            PipelineOutput whose ``frames`` holds one Video per prompt.
        """
        prompts, negatives = normalize_prompts(prompt, negative_prompt)
        num_frames = self._count_option(num_frames, "num_frames")
        steps = self._count_option(num_inference_steps, "num_inference_steps")
        guidance = float(self._option(guidance_scale, "guidance_scale"))
        fps = float(fps or self.defaults["fps"])
        precision = self._option(precision, "precision")
        autocast = self._autocast(precision)  # checked before any work
        first_frame = self._option(first_frame, "first_frame")
        if first_frame not in ("joint", "image"):
            raise ValueError(f"first_frame must be 'joint' or 'image', got {first_frame!r}")

        batch = len(prompts)
        generators, seeds = sample_generators(
            batch, seed=seed, generator=generator, device=self.device
        )
        guided = guidance != 1.0
        texts = prompts + negatives if guided else prompts
        emb, mask = self.text_encoder.encode(texts)
        emb, mask = emb.to(self.device), mask.to(self.device)
        latent_size = self.defaults.get("resolution", 64) // self.vae.downscale
        shape = (self.unet.config.latent_channels, num_frames, latent_size, latent_size)
        correlation = float(self.defaults["noise_correlation"])
        if correlation:  # one more frame per sample: the component the frames share
            drawn = randn(
                (shape[0], num_frames + 1, *shape[2:]), generators, self.device, torch.float32
            )
            noise = mix_frame_noise(drawn[:, :, 1:], drawn[:, :, :1], correlation)
        else:
            noise = randn(shape, generators, self.device, torch.float32)
        denoise = dict(
            scheduler=scheduler, steps=steps, guidance=guidance, emb=emb, mask=mask,
            autocast=autocast, progress=progress,
        )  # fmt: skip
        context = None
        if first_frame == "image" and num_frames > 1:
            context = self._denoise(noise[:, :, :1], use_temporal=False, **denoise)
        latents = self._denoise(noise, context=context, callback=callback, **denoise)
        video = self.vae.decode_chunked(latents, chunk_size=decode_chunk_size).clamp(-1.0, 1.0)
        videos = self._stamp(
            videos_from_tensor(video),
            prompts,
            negatives,
            seeds,
            fps=fps,
            steps=steps,
            guidance_scale=guidance,
            scheduler=scheduler,
            num_frames=num_frames,
            precision=precision,
            first_frame=first_frame,
        )
        return PipelineOutput(frames=videos)

    def _denoise(
        self,
        noise: torch.Tensor,
        *,
        scheduler: str,
        steps: int,
        guidance: float,
        emb: torch.Tensor,
        mask: torch.Tensor,
        autocast: torch.autocast,
        progress: bool,
        use_temporal: bool = True,
        context: torch.Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Guided denoising of ``noise`` (B, Z, T, h, w) -> clean latents.

        ``context`` (B, Z, k, h, w) holds clean latents of the first k frames: they enter
        every step as they are, with timestep 0, and are returned unchanged.
        """
        sched = self.make_scheduler(scheduler)
        sched.set_timesteps(steps, device=self.device)
        latents = noise * sched.init_noise_sigma
        guided = guidance != 1.0
        known = 0 if context is None else context.shape[2]
        for i, t in enumerate(tqdm(sched.timesteps, disable=not progress, desc="denoising")):
            model_in = sched.scale_model_input(latents, t)
            timestep = t
            if known:
                model_in = torch.cat([context, model_in[:, :, known:]], dim=2)
                frames = (model_in.shape[0], model_in.shape[2])  # (B, T)
                timestep = torch.full(frames, int(t), device=self.device)
                timestep[:, :known] = 0
            if guided:
                model_in = torch.cat([model_in, model_in])
                if known:
                    timestep = torch.cat([timestep, timestep])
            with autocast:
                pred = self.unet(model_in, timestep, emb, mask, use_temporal=use_temporal).float()
            if guided:
                cond, uncond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            latents = sched.step(pred, t, latents).prev_sample
            if known:  # the context frames' own updates are discarded
                latents = torch.cat([context, latents[:, :, known:]], dim=2)
            if callback is not None:
                callback(i, steps, latents)
        return latents
