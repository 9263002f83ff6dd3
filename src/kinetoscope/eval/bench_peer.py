"""The diffusers peer of ``kinetoscope bench``: a size-matched ``TextToVideoSDPipeline``.

diffusers' ModelScope-style text-to-video pipeline (UNet3D + AutoencoderKL) assembled from
random components whose UNet and autoencoder parameter counts match a kinetoscope LDM
(``build_diffusers_peer``, widths found by ``match_widths``), behind the kinetoscope call
convention (``DiffusersPeer``). It gets the same text embeddings (computed by the same text
encoder inside the timed call), latent size, steps, guidance and scheduler as the model it
is compared with. ``kinetoscope.eval.bench`` re-exports these names.

Axes: B batch, T frames, C channels, H W pixels; L text tokens, D text width.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

PEER = "diffusers-peer"
DEFAULT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": False,
}
SHIPPED_UNET = {
    "channels": (32, 64, 96),
    "attention_levels": (1, 2),
    "num_heads": 4,
    "layers_per_level": 1,
    "latent_channels": 4,
}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class PeerOutput:
    """What a peer pipeline returns, like ``PipelineOutput``: uint8 frames per prompt."""

    frames: list[np.ndarray]  # uint8 (T, H, W, 3) per prompt


class DiffusersPeer:
    """diffusers' TextToVideoSDPipeline behind the kinetoscope call convention.

    Prompts are encoded by ``text_encoder`` (the one the kinetoscope model uses) inside the
    call and handed over as ``prompt_embeds`` / ``negative_prompt_embeds``, so no CLIP is
    needed and both systems pay for the same text encoding. Without a text encoder, fixed
    random (2, max_length, text_dim) states stand in.
    """

    family = PEER

    def __init__(
        self,
        pipeline: Any,
        *,
        text_encoder: Any,
        random_states: torch.Tensor,
        defaults: dict[str, Any],
        match: dict[str, Any],
    ) -> None:
        self.pipeline, self.unet, self.vae = pipeline, pipeline.unet, pipeline.vae
        self.text_encoder, self.random_states = text_encoder, random_states
        self.defaults, self.match = dict(defaults), dict(match)
        pipeline.set_progress_bar_config(disable=True)

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        *,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        progress: bool = False,
    ) -> PeerOutput:
        steps = int(num_inference_steps or self.defaults["num_inference_steps"])
        guidance = self.defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        states = self.random_states
        if self.text_encoder is not None:
            states, _ = self.text_encoder.encode([prompt, ""])  # (2, L, D), padding zeroed
        video = self.pipeline(
            height=self.defaults["resolution"],
            width=self.defaults["resolution"],
            num_frames=int(num_frames or self.defaults["num_frames"]),
            num_inference_steps=steps,
            guidance_scale=float(guidance),
            prompt_embeds=states[:1],
            negative_prompt_embeds=states[1:],
            generator=torch.Generator().manual_seed(seed),
            output_type="pt",
            callback=None if callback is None else (lambda i, t, z: callback(i, steps, z)),
        ).frames  # (B, T, C, H, W) in [0, 1]
        frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        return PeerOutput(frames=list(frames.numpy()))


def match_widths(
    build: Callable[[tuple[int, ...]], nn.Module],
    base: Sequence[int],
    target: int,
    *,
    multiple: int = 4,
) -> tuple[tuple[int, ...], int]:
    """Scale the ``base`` widths (rounded to multiples of ``multiple``) so that ``build(widths)``
    has the parameter count closest to ``target``. Returns (widths, count); models are built
    on the meta device, so the search allocates no weights."""

    def widths_at(scale: float) -> tuple[int, ...]:
        return tuple(max(multiple, round(w * scale / multiple) * multiple) for w in base)

    def count(widths: tuple[int, ...]) -> int:
        with torch.device("meta"):
            return count_parameters(build(widths))

    # Parameter count grows about quadratically with width: start there, then search around.
    guess = math.sqrt(target / count(widths_at(1.0)))
    candidates = dict.fromkeys(widths_at(guess * 1.03**k) for k in range(-8, 9))
    return min(((w, count(w)) for w in candidates), key=lambda wc: abs(wc[1] - target))


def _norm_groups(widths: Sequence[int]) -> int:
    """GroupNorm groups for diffusers blocks: the largest of 32, 16, ... dividing every width."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))


def _peer_unet(
    widths: tuple[int, ...], *, shape: dict[str, Any], sample_size: int, text_dim: int
) -> nn.Module:
    """diffusers' UNet3DConditionModel with these level widths and the rest of ``shape``."""
    from diffusers import UNet3DConditionModel

    down = [
        "CrossAttnDownBlock3D" if i in shape["attention_levels"] else "DownBlock3D"
        for i in range(len(widths))
    ]
    return UNet3DConditionModel(
        sample_size=sample_size,
        in_channels=shape["latent_channels"],
        out_channels=shape["latent_channels"],
        down_block_types=down,
        up_block_types=[name.replace("Down", "Up") for name in reversed(down)],
        block_out_channels=widths,
        layers_per_block=shape["layers_per_level"],
        norm_num_groups=_norm_groups(widths),
        cross_attention_dim=text_dim,
        attention_head_dim=shape["num_heads"],  # UNet3D reads it as the number of heads
    )


def _peer_vae(widths: tuple[int, ...], *, latent_channels: int, resolution: int) -> nn.Module:
    """diffusers' AutoencoderKL with these level widths (downsamples 2 ** (levels - 1))."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * len(widths),
        up_block_types=["UpDecoderBlock2D"] * len(widths),
        block_out_channels=widths,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=_norm_groups(widths),
        sample_size=resolution,
    )


def _peer_pipeline(unet: nn.Module, vae: nn.Module, scheduler_config: dict[str, Any] | None) -> Any:
    """TextToVideoSDPipeline without CLIP, sampling with DPM-Solver++ from the schedule."""
    from diffusers import DPMSolverMultistepScheduler, TextToVideoSDPipeline

    scheduler = DPMSolverMultistepScheduler.from_config(
        scheduler_config or DEFAULT_SCHEDULER, algorithm_type="dpmsolver++"
    )
    return TextToVideoSDPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler
    )


def _autocast_forward(forward: Callable[..., Any], dtype: torch.dtype) -> Callable[..., Any]:
    """``forward`` of a diffusers UNet run under CPU/GPU autocast, its sample back in float32."""

    @functools.wraps(forward)
    def run(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(sample.device.type, dtype=dtype):
            out = forward(sample, *args, **kwargs)
        if isinstance(out, tuple):  # return_dict=False, as the pipeline calls it
            return tuple(o.float() for o in out)
        out.sample = out.sample.float()
        return out

    return run


def build_diffusers_peer(
    param_count: int,
    *,
    num_frames: int,
    resolution: int,
    text_dim: int,
    steps: int,
    guidance_scale: float = 4.0,
    vae_param_count: int | None = None,
    unet_config: dict[str, Any] | None = None,
    vae_channels: Sequence[int] = (16, 32, 64),
    max_length: int = 32,
    scheduler_config: dict[str, Any] | None = None,
    text_encoder: Any = None,
    seed: int = 0,
    precision: str = "float32",
) -> DiffusersPeer:
    """diffusers' TextToVideoSDPipeline from random components sized like a kinetoscope LDM.

    Args:
        param_count: our UNet's parameter count. The peer's UNet3D keeps the level count,
            spatial-attention levels, heads and blocks per level of ``unet_config`` (a
            VideoUNet config; default the shipped ldm-mnist sizes) and scales its widths until
            its count is closest (a warning is logged beyond 10% off).
        vae_param_count: match the AutoencoderKL the same way (None: ``vae_channels`` as is).
            It downsamples by 2 ** (len(vae_channels) - 1), so the latents have our size.
        num_frames, resolution, steps, guidance_scale: the call defaults.
        text_dim, max_length: shape of the text states; text_encoder: encodes prompts in the call.
        scheduler_config: DPM-Solver++ from this schedule (default: the shipped LDM's).
        precision: "bfloat16" runs the UNet under bf16 autocast, as a kinetoscope model
            sampling in that precision runs its denoiser (the decoder stays float32).
    """
    shape = {**SHIPPED_UNET, **(unet_config or {})}
    downscale = 2 ** (len(vae_channels) - 1)
    if resolution % 8 or resolution % downscale:
        raise ValueError(f"resolution {resolution} must be divisible by 8 and by {downscale}")
    unet_of = functools.partial(
        _peer_unet, shape=shape, sample_size=resolution // downscale, text_dim=text_dim
    )
    vae_of = functools.partial(
        _peer_vae, latent_channels=shape["latent_channels"], resolution=resolution
    )
    multiple = math.lcm(4, shape["num_heads"])  # widths divisible by the heads
    unet_widths, unet_count = match_widths(
        unet_of, shape["channels"], param_count, multiple=multiple
    )
    vae_widths = tuple(vae_channels)
    if vae_param_count is not None:
        vae_widths, _ = match_widths(vae_of, vae_channels, vae_param_count)
    error = unet_count / param_count - 1
    if abs(error) > 0.10:
        logger.warning(
            "peer UNet: %d parameters, %+.0f%% off %d", unet_count, 100 * error, param_count
        )
    torch.manual_seed(seed)
    unet, vae = unet_of(unet_widths).eval(), vae_of(vae_widths).eval()
    if precision != "float32":
        unet.forward = _autocast_forward(unet.forward, getattr(torch, precision))
    pipeline = _peer_pipeline(unet, vae, scheduler_config)
    match = {
        "target_unet_params": param_count,
        "unet_params": unet_count,
        "unet_widths": list(unet_widths),
        "unet_param_error": error,
        "target_vae_params": vae_param_count,
        "vae_params": count_parameters(vae),
        "vae_widths": list(vae_widths),
        "precision": precision,
    }
    defaults = {
        "num_frames": num_frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "resolution": resolution,
    }
    states = torch.randn(2, max_length, text_dim, generator=torch.Generator().manual_seed(seed))
    return DiffusersPeer(
        pipeline, text_encoder=text_encoder, random_states=states, defaults=defaults, match=match
    )
