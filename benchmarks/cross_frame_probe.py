"""Does cross-frame attention to frame 0 keep a Video LDM's object whole? Judged on a world.

    python benchmarks/cross_frame_probe.py MODEL WORLD [--mode both|first] [--samples 100] [-o DIR]

At sampling time only (no training), the UNet's spatial self-attention lets every frame read
frame 0 as well: its keys and values are the frame's own tokens and frame 0's ("both"), or
frame 0's alone ("first", as in zero-shot video editing). With image-first sampling frame 0
is the finished image, so each later frame can take its object's appearance from it instead of
drawing a new one. The clips are judged on the test split under the protocol of the shipped
reports, so ``kinetoscope compare`` pairs the result prompt by prompt with the model's report.
"""

from __future__ import annotations

import argparse
import json

import torch
from einops import rearrange

import kinetoscope
from kinetoscope.diffusion.unet import SpatialTransformer
from kinetoscope.eval.evaluate import evaluate_variant


def cross_frame_forward(module: SpatialTransformer, mode: str):
    """A forward for ``module`` whose self-attention reads frame 0 of each clip too."""
    block = module.block

    def forward(x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor):
        height, width = x.shape[-2:]
        frames = x.shape[0] // context.shape[0]  # each clip's frames share its prompt
        tokens = rearrange(module.proj_in(module.norm(x)), "n c h w -> n (h w) c")
        normed = block.norm_self(tokens)
        clips = normed.view(-1, frames, *normed.shape[1:])
        first = clips[:, :1].expand_as(clips).reshape_as(normed)
        keys = first if mode == "first" else torch.cat([normed, first], dim=1)
        tokens = tokens + block.self_attn(normed, keys)
        if block.cross_attn is not None:
            tokens = tokens + block.cross_attn(
                block.norm_cross(tokens), context, context_mask=context_mask
            )
        tokens = tokens + block.mlp(block.norm_mlp(tokens))
        return x + module.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=height, w=width))

    return forward


def use_cross_frame_attention(unet: torch.nn.Module, mode: str) -> int:
    """Switch every SpatialTransformer of ``unet`` to cross-frame attention; returns how many."""
    if mode not in ("both", "first"):
        raise ValueError(f"mode must be 'both' or 'first', got {mode!r}")
    modules = [m for m in unet.modules() if isinstance(m, SpatialTransformer)]
    for module in modules:
        module.forward = cross_frame_forward(module, mode)
    return len(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("world")
    parser.add_argument("--mode", choices=["both", "first"], default="both")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("-o", "--output", default="cross-frame-report")
    args = parser.parse_args(argv)
    pipe = kinetoscope.load(args.model)
    if pipe.family != "ldm":
        parser.error("the probe needs a latent diffusion model")
    # Frame 0's own pass is a one-frame clip: attending to itself twice changes nothing.
    use_cross_frame_attention(pipe.unet, args.mode)
    pipe.graphs.after = None  # eager: the patched forwards run as they are
    accuracy = evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.output)
    print(json.dumps(accuracy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
