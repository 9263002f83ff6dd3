"""The guided denoising loop of the Video LDM: one function every sampling mode shares.

``TextToVideoPipeline`` builds the inputs (noise, text states, given frames) for generation,
story segments, continuation and interpolation; this module turns them into clean latents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm


def denoise_latents(
    unet: Any,
    sched: Any,
    noise: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    interval: tuple[float, float],
    emb: torch.Tensor,
    mask: torch.Tensor,
    autocast: torch.autocast,
    progress: bool,
    use_temporal: bool = True,
    context: torch.Tensor | None = None,
    context_at: torch.Tensor | None = None,
    trajectory: torch.Tensor | None = None,
    track_guidance: bool = False,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Guided denoising of ``noise`` (B, Z, T, h, w) -> clean latents with the diffusers
    scheduler ``sched`` (fresh: its timesteps are set here to ``steps``).

    ``context`` (B, Z, k, h, w) holds clean latents of the first k frames; or, with
    ``context_at`` (T,) bool, ``context`` is (B, Z, T, h, w) and its frames where ``context_at``
    is True are the given ones (keyframes, for interpolation). Given frames enter every step as
    they are, with timestep 0, and are returned unchanged. Classifier-free guidance applies at
    the steps whose timestep lies in ``interval`` (fractions of the training schedule); the
    others run the conditional branch alone. ``emb`` and ``mask`` hold the prompts, then (when
    guided) the negative prompts. ``trajectory`` (B, S, T, 2): object tracks for a UNet with
    given-trajectory anchors, the same in both branches (guidance steers by the text alone);
    with ``track_guidance`` the unconditional branch runs without them, so guidance steers
    along the tracks too. With ``init`` (B, Z, T, h, w), a rough clip, sampling starts from it
    noised to the level of the solver's step ``steps - round(strength * steps)`` and runs the
    remaining steps (SDEdit, Meng et al. 2022): ``strength`` 1 is pure noise, lower keeps more
    of the sketch.
    """
    device = noise.device
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    if init is None or strength >= 1.0:
        latents = noise * sched.init_noise_sigma
    else:
        if not strength > 0.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        skip = min(steps - 1, steps - round(strength * steps))
        timesteps = timesteps[skip:]
        if hasattr(sched, "set_begin_index"):  # multistep solvers count their steps
            sched.set_begin_index(skip)
        latents = sched.add_noise(init.to(noise.dtype), noise, timesteps[:1])
    guided = guidance != 1.0
    batch, num_frames = noise.shape[0], noise.shape[2]
    schedule_length = int(sched.config.num_train_timesteps)
    low, high = (bound * schedule_length for bound in interval)
    if context is not None and context_at is None:  # the first k frames
        k = context.shape[2]
        context_at = torch.arange(num_frames, device=device) < k
        context = torch.cat([context, torch.zeros_like(noise[:, :, k:])], dim=2)
    keep = None if context_at is None else context_at.to(device)[None, None, :, None, None]
    for i, t in enumerate(tqdm(timesteps, disable=not progress, desc="denoising")):
        model_in = sched.scale_model_input(latents, t)
        timestep = t
        if keep is not None:
            model_in = torch.where(keep, context, model_in)
            timestep = torch.where(context_at, 0, int(t)).to(device)
            timestep = timestep.expand(model_in.shape[0], num_frames)  # (B, T)
        guide = guided and low <= int(t) <= high
        text_emb, text_mask = (emb, mask) if guide else (emb[:batch], mask[:batch])
        tracks = () if trajectory is None else (trajectory,)
        if guide:
            model_in = torch.cat([model_in, model_in])
            if keep is not None:
                timestep = torch.cat([timestep, timestep])
            tracks = tuple(
                torch.cat([x, torch.full_like(x, float("nan")) if track_guidance else x])
                for x in tracks
            )
        with autocast:
            pred = unet(model_in, timestep, text_emb, text_mask, *tracks, use_temporal=use_temporal)
            pred = pred.float()
        if guide:
            cond, uncond = pred.chunk(2)
            pred = uncond + guidance * (cond - uncond)
        latents = sched.step(pred, t, latents).prev_sample
        if keep is not None:  # the given frames' own updates are discarded
            latents = torch.where(keep, context, latents)
        if callback is not None:
            callback(i, len(timesteps), latents)
    return latents
