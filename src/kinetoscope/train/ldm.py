"""Training recipe of the latent video diffusion family (Video LDM, Blattmann et al. 2023).

Stages, each resumable and bounded by steps and minutes:
  1. ``vae``          image KL autoencoder on single frames (L1 + L2 + small KL).
  2. ``vae_temporal`` only the decoder's temporal layers, on clips (§3.1.1): reconstruction
                      plus a loss on frame-to-frame differences, so decoded video does not flicker.
  2b. ``vae_decoder`` (optional) every decoder weight, spatial and temporal, on clips with the
                      same loss; the encoder stays frozen, so the latent space and any denoiser
                      trained on it are unchanged (a decoder can be improved after the fact).
  3. ``latents``      encode a fixed set of training clips once (posterior means), so the
                      denoiser never pays for the encoder (train/latents.py).
  4. ``unet_image``   the image model (spatial weights) on single latent frames.
  5. ``unet_temporal`` spatial weights frozen; only temporal layers and alphas, on clips.
  6. ``unet_interpolation`` (optional) the same temporal layers fine-tuned further with a share
                      of interpolation batches (keyframes given, the frames between denoised),
                      so one model both generates and interpolates. Its ``extra`` keys default
                      to stage 5's, so it states only what changes.
  7. ``unet_first_frame`` (optional) a copy of the image model tuned on the first frames of
                      clips only: the model image-first sampling draws frame 0 with
                      (train/first_frame.py).
Text embeddings are computed once per distinct caption and kept in memory (and on disk
through the text encoder's cache). Classifier-free guidance: captions are dropped to ""
with probability ``text_dropout``. A denoiser stage whose ``extra`` sets ``text_augment`` or
``text_paraphrase`` reads noisy and paraphrased wordings instead, as the planner can
(train/latents.py, train/text_augment.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.noise import frame_correlated_noise
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.train.first_frame import first_frame_clips, train_first_frame
from kinetoscope.train.latents import build_latent_cache, caption_augment, latent_batches
from kinetoscope.train.recipe import (
    CaptionBank,
    Recipe,
    StageConfig,
    clip_batches,
    save_pipeline,
    start_run,
    train_only,
    train_stage,
)
from kinetoscope.train.weights import load_spatial_weights, load_temporal_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LDMRecipe(Recipe):
    """Everything that defines a shipped latent-diffusion model: the shared ``Recipe`` fields,
    the VideoAutoencoderKL, VideoUNet and DDPMScheduler options, and the size of the latent
    cache."""

    vae: dict[str, Any]
    unet: dict[str, Any]
    scheduler: dict[str, Any]
    num_latent_clips: int = 4000


# ----------------------------------------------------------------------------- data


def frame_batches(recipe: LDMRecipe, *, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Infinite single frames (N, C, H, W), a few per clip."""
    per_clip = 4
    for clips in clip_batches(recipe, batch_size=max(batch_size // per_clip, 1), seed=seed):
        frames = clips.transpose(1, 2).flatten(0, 1)  # (B*T, C, H, W)
        pick = torch.randperm(frames.shape[0])[:batch_size]
        yield frames[pick]


# ----------------------------------------------------------------------------- losses


def vae_loss(vae: VideoAutoencoderKL, frames: torch.Tensor, *, kl_weight: float):
    mean, logvar = vae.encode_frames(frames)
    z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
    recon = vae.decode_frames(z)
    rec = F.l1_loss(recon, frames) + F.mse_loss(recon, frames)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return rec + kl_weight * kl, {"rec": rec.item(), "kl": kl.item()}


def vae_temporal_loss(vae: VideoAutoencoderKL, clips: torch.Tensor, *, diff_weight: float):
    with torch.no_grad():
        latents = vae.encode(clips)
    recon = vae.decode(latents)
    rec = F.l1_loss(recon, clips) + F.mse_loss(recon, clips)
    diff = F.l1_loss(recon.diff(dim=2), clips.diff(dim=2))
    return rec + diff_weight * diff, {"rec": rec.item(), "diff": diff.item()}


def denoising_loss(
    unet,
    scheduler,
    latents,
    text_emb,
    text_mask,
    *,
    use_temporal: bool,
    context_frames: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    high_noise_fraction: float = 0.0,
    high_noise_start: float = 0.75,
    noise_correlation: float = 0.0,
    trajectory: torch.Tensor | None = None,
):
    """Denoising loss; latents (B, Z, T, h, w), one timestep per clip.

    The target follows the scheduler's ``prediction_type``: the noise ("epsilon") or the
    velocity ("v_prediction", sqrt(a) * noise - sqrt(1 - a) * latents; Salimans & Ho 2022),
    which stays well conditioned at the high-noise end of a cosine schedule where an
    epsilon model's estimate of the clean latents is amplified by 1 / sqrt(a).

    ``context_frames`` (B,) gives each clip k >= 0 leading context frames (Video LDM §3.1.2,
    prediction models): they enter clean with timestep 0 and are left out of the loss, so
    the model learns to continue given frames; the rest share the clip's timestep. ``known``
    (B, T) bool marks given frames anywhere instead, e.g. every s-th frame (keyframes), so the
    model learns to fill in the frames between them: temporal interpolation (§3.1.2), with
    the same per-frame timesteps.

    Timesteps are uniform, except that a share ``high_noise_fraction`` of the clips draw
    theirs from the top of the schedule, [``high_noise_start`` * T, T). That is where the
    prompt decides what the clip shows (the layout and the motion): at lower noise the
    noisy clip itself reveals them, so a uniform draw spends most of its signal elsewhere.

    ``noise_correlation`` > 0 correlates the noise across frames (the mixed noise prior of
    ``kinetoscope.diffusion.noise``); the pipeline must then sample with the same value.
    ``trajectory`` (B, S, T, 2): object tracks for a UNet with given-trajectory anchors.
    """
    noise = frame_correlated_noise(latents, noise_correlation)
    t = draw_timesteps(
        latents.shape[0],
        scheduler.config.num_train_timesteps,
        high_noise_fraction=high_noise_fraction,
        high_noise_start=high_noise_start,
    )
    noisy = scheduler.add_noise(latents, noise, t)
    tracks = () if trajectory is None else (trajectory,)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        raise ValueError(f"prediction_type {kind!r} is not supported; use epsilon or v_prediction")
    if context_frames is not None:
        if known is not None:
            raise ValueError("give context_frames or known, not both")
        frames = torch.arange(latents.shape[2], device=latents.device)
        known = frames[None, :] < context_frames.to(latents.device)[:, None]  # (B, T)
    if known is None:
        pred = unet(noisy, t, text_emb, text_mask, *tracks, use_temporal=use_temporal)
        return F.mse_loss(pred, target)
    is_context = known.to(latents.device).bool()
    if is_context.all(dim=1).any():
        raise ValueError("every clip needs at least one frame to denoise besides its context")
    ctx = is_context[:, None, :, None, None]
    noisy = torch.where(ctx, latents, noisy)
    frame_t = torch.where(is_context, 0, t.to(latents.device)[:, None])  # (B, T)
    pred = unet(noisy, frame_t, text_emb, text_mask, *tracks, use_temporal=use_temporal)
    weight = (~ctx).expand_as(pred).float()
    return ((pred - target) ** 2 * weight).sum() / weight.sum()


def draw_timesteps(
    batch: int, num_timesteps: int, *, high_noise_fraction: float, high_noise_start: float
) -> torch.Tensor:
    """(B,) training timesteps: uniform, a share ``high_noise_fraction`` from the top range."""
    if not 0.0 <= high_noise_fraction <= 1.0 or not 0.0 <= high_noise_start < 1.0:
        raise ValueError("high_noise_fraction must lie in [0, 1] and high_noise_start in [0, 1)")
    t = torch.randint(0, num_timesteps, (batch,))
    if high_noise_fraction:
        high = torch.randint(int(high_noise_start * num_timesteps), num_timesteps, (batch,))
        t = torch.where(torch.rand(batch) < high_noise_fraction, high, t)
    return t


def draw_context_frames(batch: int, *, fraction: float, max_frames: int) -> torch.Tensor:
    """(B,) context-frame counts: 0 with probability 1 - ``fraction``, else 1..``max_frames``."""
    counts = torch.randint(1, max_frames + 1, (batch,))
    return torch.where(torch.rand(batch) < fraction, counts, torch.zeros_like(counts))


def keyframe_batch(
    latents: torch.Tensor, strides: list[int] | tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """An interpolation batch: a stride s from ``strides``, a window of s * m + 1 frames (m as
    large as the clip allows, at a random offset) and its keyframes, every s-th frame from the
    first to the last. Returns (latents of the window, (B, window) bool known-frame mask)."""
    num_frames = latents.shape[2]
    stride = int(strides[torch.randint(len(strides), ()).item()])
    if not 2 <= stride < num_frames:
        raise ValueError(f"interpolation strides must lie in 2..{num_frames - 1}, got {stride}")
    length = stride * ((num_frames - 1) // stride) + 1
    start = int(torch.randint(num_frames - length + 1, ()).item())
    known = torch.arange(length, device=latents.device) % stride == 0
    return latents[:, :, start : start + length], known.expand(latents.shape[0], length)


@torch.inference_mode()
def latent_statistics(vae: VideoAutoencoderKL, recipe: LDMRecipe) -> dict[str, Any]:
    """Per-channel mean (latent_shift) and 1 / std (scaling_factor) of the encoder's means
    on 256 training frames: the diffusion model then sees zero-mean, unit-variance latents."""
    frames = next(frame_batches(recipe, batch_size=256, seed=recipe.seed + 1))
    mean, _ = vae.encode_frames(frames)  # (N, Z, h, w)
    shift = mean.mean(dim=(0, 2, 3))
    scale = 1.0 / (mean - shift[None, :, None, None]).std()
    return {"scaling_factor": float(scale), "latent_shift": [float(v) for v in shift]}


# ----------------------------------------------------------------------------- stages


def train_vae(recipe: LDMRecipe, out: Path) -> VideoAutoencoderKL:
    """Stages 1-2 (and 2b when the recipe has ``vae_decoder``); the result is saved to out/vae.

    With a decoder stage, the stage-2 autoencoder is kept in out/vae-temporal first: a run
    folder holding a trained autoencoder there gets only its decoder fine-tuned.
    """
    final = out / "vae"
    if (final / "config.json").exists():
        return VideoAutoencoderKL.from_pretrained(final)
    decoder_stage = "vae_decoder" in recipe.stages
    temporal_dir = out / "vae-temporal" if decoder_stage else final
    if (temporal_dir / "config.json").exists():
        vae = VideoAutoencoderKL.from_pretrained(temporal_dir)
    else:
        vae = _train_vae_temporal(recipe, out, _train_vae_image(recipe, out))
        vae.save_pretrained(temporal_dir)
    if decoder_stage:
        vae = _train_clip_stage(recipe, out, vae, "vae_decoder", vae.decoder_parameters())
        vae.save_pretrained(final)
    return vae


def _train_vae_image(recipe: LDMRecipe, out: Path) -> Path:
    """Stage 1, the per-frame autoencoder (temporal layers untouched); returns where it is."""
    image_dir = out / "vae-image"
    if (image_dir / "config.json").exists():
        return image_dir
    torch.manual_seed(recipe.seed)
    vae = VideoAutoencoderKL(**recipe.vae)
    stage = recipe.stage("vae")
    kl_weight = float(stage.extra.get("kl_weight", 1e-6))
    for p in vae.temporal_parameters():
        p.requires_grad_(False)
    vae = train_stage(
        stage,
        model=vae,
        loss_fn=lambda m, b: vae_loss(m, b, kl_weight=kl_weight),
        batches=frame_batches(recipe, batch_size=stage.batch_size, seed=recipe.seed),
        out_dir=out / "stage-vae",
    )
    vae.register_to_config(**latent_statistics(vae, recipe))
    vae.save_pretrained(image_dir)
    return image_dir


def _train_vae_temporal(recipe: LDMRecipe, out: Path, image_dir: Path) -> VideoAutoencoderKL:
    """Stage 2: fresh temporal layers on the stage-1 autoencoder, trained on clips."""
    image = VideoAutoencoderKL.from_pretrained(image_dir)
    torch.manual_seed(recipe.seed + 2)
    fresh = VideoAutoencoderKL(
        **{
            **recipe.vae,
            "scaling_factor": image.config.scaling_factor,
            "latent_shift": image.config.latent_shift,
        }
    )
    vae = load_spatial_weights(fresh, image_dir)
    return _train_clip_stage(recipe, out, vae, "vae_temporal", vae.temporal_parameters())


def _train_clip_stage(
    recipe: LDMRecipe,
    out: Path,
    vae: VideoAutoencoderKL,
    name: str,
    params: list[torch.nn.Parameter],
) -> VideoAutoencoderKL:
    """Train only ``params`` of ``vae`` on clips (reconstruction + frame differences)."""
    stage = recipe.stage(name)
    train_only(vae, params)
    diff_weight = float(stage.extra.get("diff_weight", 1.0))
    seed = recipe.seed + {"vae_temporal": 2}.get(name, 7)
    return train_stage(
        stage,
        model=vae,
        loss_fn=lambda m, b: vae_temporal_loss(m, b, diff_weight=diff_weight),
        batches=clip_batches(recipe, batch_size=stage.batch_size, seed=seed),
        out_dir=out / f"stage-{name.replace('_', '-')}",
        param_groups=_temporal_groups(params, stage),
        ema_decay=stage.ema_decay,
    )


def _temporal_groups(params: list[torch.nn.Parameter], stage: StageConfig) -> list[dict[str, Any]]:
    """Optimiser groups of a stage that trains ``params`` (temporal layers, or the autoencoder's
    decoder): weights at the stage lr, the scalar mix logits ``alpha_lr_scale`` times faster."""
    scale = float(stage.extra.get("alpha_lr_scale", 20.0))
    return [
        {"params": [p for p in params if p.dim() > 0]},
        {"params": [p for p in params if p.dim() == 0], "lr": stage.lr * scale},
    ]


def _unet_stage(
    recipe, out, unet, scheduler, cache, bank, name: str, *, temporal: bool
) -> VideoUNet:
    stage = _interpolation_stage(recipe) if name == "unet_interpolation" else recipe.stage(name)
    if name == "unet_image" and stage.extra.get("init_from"):
        # Continue a saved image model (its spatial weights) instead of starting afresh; a
        # checkpoint of this stage, if there is one, replaces them when it resumes.
        unet = load_spatial_weights(unet, Path(stage.extra["init_from"]))
    if name == "unet_temporal" and stage.extra.get("init_temporal_from"):
        # (stage 6 inherits stage 5's extra keys, but continues from stage 5's weights.) A
        # checkpoint of this stage, if there is one, replaces these weights when it resumes.
        unet = load_temporal_weights(
            unet,
            stage.extra["init_temporal_from"],
            same_image_model=bool(stage.extra.get("same_image_model", True)),
        )
    if temporal:
        groups = _temporal_groups(train_only(unet, unet.temporal_parameters()), stage)
        spatial_scale = spatial_lr_scale(stage)
        if spatial_scale:
            # A joint video stage: the spatial weights adapt to clips too, at a lower rate.
            # Frame 0 stays the image model's (the pipeline keeps its weights apart).
            spatial = unet.spatial_parameters()
            for p in spatial:
                p.requires_grad_(True)
            groups.append({"params": spatial, "lr": stage.lr * spatial_scale})
    else:
        unet.requires_grad_(True)
        for p in unet.temporal_parameters():
            p.requires_grad_(False)
        groups = None

    context_fraction = float(stage.extra.get("context_fraction", 0.0)) if temporal else 0.0
    max_context = int(stage.extra.get("max_context_frames", 1))
    # A share of the batches teaches interpolation: keyframes every s-th frame, the rest noisy.
    interpolation = float(stage.extra.get("interpolation_fraction", 0.0)) if temporal else 0.0
    strides = list(stage.extra.get("interpolation_strides", [2, 4]))
    noise_options = {  # timestep draw and frame correlation of the noise
        "high_noise_fraction": float(stage.extra.get("high_noise_fraction", 0.0)),
        "high_noise_start": float(stage.extra.get("high_noise_start", 0.75)),
        "noise_correlation": noise_correlation(stage) if temporal else 0.0,
    }
    from kinetoscope.train.tracks import given_tracks

    if context_fraction and not 1 <= max_context < recipe.num_frames:
        raise ValueError(f"max_context_frames must lie in 1..{recipe.num_frames - 1}")

    def loss_fn(model, batch):
        latents, emb, mask, *track = batch
        given: dict[str, torch.Tensor] = {}
        if track and track[0] is not None:
            given["trajectory"] = track[0]
        if interpolation and torch.rand(()).item() < interpolation:
            given.pop("trajectory", None)  # tracks start at frame 0, windows elsewhere
            latents, given["known"] = keyframe_batch(latents, strides)
        elif context_fraction:
            given["context_frames"] = draw_context_frames(
                latents.shape[0], fraction=context_fraction, max_frames=max_context
            )
        loss = denoising_loss(
            model,
            scheduler,
            latents,
            emb,
            mask,
            use_temporal=temporal,
            **given,
            **noise_options,
        )
        return loss, {}

    return train_stage(
        stage,
        model=unet,
        loss_fn=loss_fn,
        batches=latent_batches(
            cache,
            bank,
            batch_size=stage.batch_size,
            frames=recipe.num_frames if temporal else None,
            dropout=recipe.text_dropout,
            seed=recipe.seed
            + {"unet_image": 3, "unet_temporal": 4, "unet_first_frame": 7}.get(name, 6),
            tracks=given_tracks(cache, unet) if temporal else None,
            track_dropout=float(stage.extra.get("track_dropout", 0.1)),
            augment=caption_augment(recipe, stage, cache),
            motion_swap=float(stage.extra.get("text_motion_swap", 0.0)),
        ),
        out_dir=out / f"stage-{name}",
        ema_decay=stage.ema_decay,
        param_groups=groups,
    )


def spatial_lr_scale(stage: StageConfig) -> float:
    """A temporal stage's learning-rate factor for the spatial weights (extra key
    ``spatial_lr_scale``): 0, the default, freezes them as Video LDM's stage 2 does; above 0
    the stage trains them as well, ``stage.lr`` times this factor."""
    scale = float(stage.extra.get("spatial_lr_scale", 0.0))
    if scale < 0:
        raise ValueError(f"spatial_lr_scale must be >= 0, got {scale}")
    return scale


def noise_correlation(stage: StageConfig) -> float:
    """The frame correlation of the noise a temporal stage trains with (extra key
    ``noise_correlation``, default 0: independent frames)."""
    return float(stage.extra.get("noise_correlation", 0.0))


LDM_STAGES = (
    "vae",
    "vae_temporal",
    "vae_decoder",
    "unet_image",
    "unet_temporal",
    "unet_interpolation",
    "unet_first_frame",
    "trajectory_planner",
    "prompt_reader",
)


def check_stages(recipe: LDMRecipe) -> None:
    """Reject unknown stage names and an interpolation stage that changes the noise prior
    (the pipeline samples with one), before any training."""
    unknown = set(recipe.stages) - set(LDM_STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; an LDM recipe has {LDM_STAGES}")
    if "unet_first_frame" in recipe.stages:
        first_frame_clips(recipe)
    if "unet_interpolation" in recipe.stages:
        interpolation = _interpolation_stage(recipe)
        if _separate_interpolation(recipe) and spatial_lr_scale(interpolation):
            raise ValueError(
                "a separate interpolation model shares the generator's spatial weights: "
                "its stage cannot train them (spatial_lr_scale must be 0)"
            )


def _interpolation_stage(recipe: LDMRecipe) -> StageConfig:
    """Stage 6's config, its ``extra`` keys defaulting to stage 5's."""
    temporal = recipe.stage("unet_temporal")
    stage = recipe.stage("unet_interpolation")
    inherited = {k: v for k, v in temporal.extra.items() if k != "spatial_lr_scale"}
    stage = dataclasses.replace(stage, extra={**inherited, **stage.extra})
    if noise_correlation(stage) != noise_correlation(temporal):
        raise ValueError("unet_interpolation must keep unet_temporal's noise_correlation")
    return stage


def _separate_interpolation(recipe: LDMRecipe) -> bool:
    """Whether the interpolation stage trains its own temporal layers (extra key ``separate``)."""
    value = recipe.stage("unet_interpolation").extra.get("separate", False)
    if not isinstance(value, bool):
        raise ValueError(f"unet_interpolation's separate must be true or false, got {value!r}")
    return value


def train_ldm(recipe: LDMRecipe, out_dir: str | Path) -> Path:
    """Run every stage of ``recipe`` (resuming finished ones) and save the pipeline to out_dir/pipeline."""
    check_stages(recipe)
    out = start_run(recipe, out_dir)
    vae = train_vae(recipe, out)
    cache_path = out / "latents.pt"
    if cache_path.exists():
        cache = torch.load(cache_path, weights_only=False)
    else:
        cache = build_latent_cache(recipe, vae, cache_path)
    from kinetoscope.text import load_text_encoder

    encoder = load_text_encoder(
        recipe.text_encoder,
        max_length=recipe.max_length,
        cache_dir=out / "text-cache",
        clauses=recipe.text_clauses,
    )
    bank = CaptionBank(encoder)
    scheduler = DDPMScheduler(**recipe.scheduler)
    torch.manual_seed(recipe.seed)
    unet = VideoUNet(
        text_dim=encoder.dim, latent_channels=vae.config.latent_channels, **recipe.unet
    )
    image_dir = out / "unet-image"
    if not (image_dir / "config.json").exists():
        unet = _unet_stage(recipe, out, unet, scheduler, cache, bank, "unet_image", temporal=False)
        unet.save_pretrained(image_dir)
    torch.manual_seed(recipe.seed + 5)
    unet = VideoUNet(
        text_dim=encoder.dim, latent_channels=vae.config.latent_channels, **recipe.unet
    )
    unet = load_spatial_weights(unet, image_dir)
    extras: dict[str, Any] = {}
    if unet.takes_trajectory:
        # Anchors that follow given tracks: the data's in training, a planner's at sampling.
        from kinetoscope.train.tracks import cache_tracks, train_planner

        slots = int(unet.config.anchor_heads)
        tracks = cache_tracks(recipe, cache, cache_path, slots=slots)
        extras["planner"] = train_planner(
            recipe, out, cache, tracks, bank,
            latent_channels=vae.config.latent_channels, text_dim=encoder.dim,
        )  # fmt: skip
    unet = _unet_stage(recipe, out, unet, scheduler, cache, bank, "unet_temporal", temporal=True)
    if spatial_lr_scale(recipe.stage("unet_temporal")):
        # The clips changed the spatial weights: frame 0 still comes from the image model.
        extras["image_spatial"] = load_spatial_weights(
            copy.deepcopy(unet), image_dir
        ).spatial_state()
    if "unet_interpolation" in recipe.stages:
        # separate: true trains a second set of temporal layers for interpolation (Video LDM's
        # own interpolation model); the generator keeps stage 5's.
        generator = copy.deepcopy(unet) if _separate_interpolation(recipe) else None
        unet = _unet_stage(
            recipe, out, unet, scheduler, cache, bank, "unet_interpolation", temporal=True
        )
        if generator is not None:
            extras["interpolation_temporal"] = unet.temporal_state()
            unet = generator
    if "unet_first_frame" in recipe.stages:
        # Frame 0 of image-first sampling from an image model tuned on first frames only
        # (train/first_frame.py); the generator is not touched.
        extras["image_spatial"] = train_first_frame(
            recipe, out, unet, vae, scheduler, bank, image_dir
        )
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

    return save_pipeline(
        TextToVideoPipeline,
        recipe,
        out,
        defaults={
            "num_frames": recipe.num_frames,
            "fps": recipe.fps,
            "resolution": recipe.resolution,  # the trained size, unless sampling says otherwise
            "noise_correlation": noise_correlation(recipe.stage("unet_temporal")),
        },
        vae=vae,
        unet=unet,
        scheduler_config=dict(scheduler.config),
        **extras,
    )
