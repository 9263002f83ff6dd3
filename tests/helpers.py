"""Tiny model configs and builders shared by several test files.

Imported as ``helpers``: pytest puts tests/ on ``sys.path`` because tests/conftest.py lives
there (and tests/ has no ``__init__.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from diffusers import DDPMScheduler

from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.diffusion.planner import TrajectoryPlanner, content_boxes
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

# C-ViViT on 16x16 frames: a 4x4 token grid, 1000 codes (the default FSQ levels).
TINY_CVIVIT = {
    "image_size": 16,
    "patch_size": 4,
    "dim": 32,
    "num_heads": 2,
    "spatial_depth": 1,
    "temporal_depth": 1,
}


# A two-level Video LDM UNet over 16-wide text states.
TINY_UNET = {
    "channels": (16, 32),
    "attention_levels": (1,),
    "temporal_attention_levels": (1,),
    "num_heads": 2,
    "text_dim": 16,
}


def tiny_ldm_pipeline(text_encoder, *, conv_out_std: float | None = None) -> TextToVideoPipeline:
    """A random Video LDM pipeline (seed 0): 4 frames of 16x16, 2 DDPM-family steps.

    Args:
        text_encoder: the encoder the pipeline uses (16-dim, e.g. conftest's FakeTextEncoder).
        conv_out_std: if given, re-draw the UNet's zero-initialised output conv with this
            std, so predictions (and hence guidance and prompts) change the output.
    """
    torch.manual_seed(0)
    vae = VideoAutoencoderKL(channels=(8, 16), latent_channels=4)
    unet = VideoUNet(**TINY_UNET)
    if conv_out_std is not None:
        with torch.no_grad():
            unet.conv_out.weight.normal_(0, conv_out_std)
    sched = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    return _tiny_pipeline(vae, unet, sched, text_encoder, model_name="tiny")


def _tiny_pipeline(vae, unet, sched, text_encoder, *, planner=None, **defaults):
    """A pipeline of these tiny parts: 4 frames of 16x16, 2 steps, 8 text tokens."""
    pipe = TextToVideoPipeline(
        vae=vae,
        unet=unet,
        scheduler_config=dict(sched.config),
        text_encoder="fake",
        max_length=8,
        defaults={"num_frames": 4, "resolution": 16, "num_inference_steps": 2, **defaults},
        planner=planner,
    )
    pipe._text_encoder = text_encoder
    return pipe


def copy_by_position_only(anchor) -> None:
    """Set an ``AnchorAttention`` so only its trajectory bias decides where a query reads:
    zero query/key content, the features themselves as values and output, no norm."""
    channels = anchor.channels
    with torch.no_grad():
        anchor.to_q.weight.zero_()
        anchor.to_kv.weight.zero_()
        anchor.to_kv.weight[channels:].copy_(torch.eye(channels))  # values: the features
        anchor.proj_out.weight.copy_(torch.eye(channels))
    anchor.norm = torch.nn.Identity()


def load_benchmark(name: str) -> ModuleType:
    """The script benchmarks/<name>.py imported as a module (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The same UNet with anchors at its finest level that follow given object tracks (two slots).
TRACKED_UNET = {**TINY_UNET, "anchor_levels": (0,), "anchor_heads": 2, "anchor_read_out": "given"}


def tracked_pipeline(text_encoder, *, planner: bool = True, regions: bool = False):
    """A tiny pipeline whose generator's anchors follow given tracks, with a random planner
    (``regions``: region anchors and a planner that proposes frame-0 boxes)."""
    torch.manual_seed(0)
    unet = VideoUNet(**TRACKED_UNET, anchor_regions=regions)
    with torch.no_grad():
        unet.conv_out.weight.normal_(0, 0.2)
        unet.down_blocks[0].temporal_anchor.proj_out.weight.normal_(0, 0.5)
    proposals = TrajectoryPlanner(latent_channels=4, text_dim=16, num_frames=4, width=16,
                                  layers=1, heads=2, boxes=regions)  # fmt: skip
    with torch.no_grad():
        proposals.head.weight.normal_(0, 0.5)  # tracks of a few cells
    vae = VideoAutoencoderKL(channels=(8, 16), latent_channels=4)
    sched = DDPMScheduler(num_train_timesteps=100)
    return _tiny_pipeline(vae, unet, sched, text_encoder, first_frame="image",
                          planner=proposals if planner else None)  # fmt: skip


def spy_start(
    pipe, drawn: list[torch.Tensor], plans: list, calls: list, *, down: float = 0.3
) -> None:
    """The pipeline's image model 'draws' ``drawn`` (one (Z, 1, h, w) frame per draw, the
    draws of one sample after each other); the planner always plans a move down by ``down``
    frame heights. ``calls`` collects the denoising passes' arguments, ``plans`` the frames 0
    the planner was given."""
    denoise = pipe._denoise

    def spy(noise, **options):
        calls.append({**options, "noise": noise.clone()})
        if options.get("use_temporal", True) is False:
            return torch.stack(drawn[: noise.shape[0]])
        return denoise(noise, **options)

    def plan(first, emb, mask, generators, **kwargs):
        plans.append(first.clone())
        frames = kwargs["num_frames"]
        track = torch.stack([torch.zeros(frames), torch.linspace(0, down, frames)], dim=-1)
        return track[None, None].expand(first.shape[0], 2, frames, 2).clone()

    pipe._denoise, pipe.planner.sample = spy, plan
    # boxes read from the latents themselves (the tiny random autoencoder's pixels say nothing)
    pipe._content_boxes = lambda first: content_boxes(first)[1]
