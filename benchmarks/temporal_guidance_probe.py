"""Does guiding away from the image model help a Video LDM's motion? Judged on a world.

    python benchmarks/temporal_guidance_probe.py MODEL WORLD SCALE [--samples 100] [-o DIR]

Temporal (skip) guidance: at every denoising step the conditional prediction is pushed away
from the same UNet's prediction with its temporal layers switched off (the image model),
``cond + scale * (cond - spatial)``, before classifier-free guidance. The clips are judged
with ``kinetoscope.eval.evaluate`` on the test split, so the report compares prompt by prompt
with ``kinetoscope compare`` against the model's own report of the same prompts and seeds.
Costs one more (spatial-only) UNet pass per step.
"""

from __future__ import annotations

import argparse
import json

import torch

import kinetoscope
from kinetoscope.eval.evaluate import evaluate_variant


class TemporallyGuided(torch.nn.Module):
    """Wraps a VideoUNet; guided batches hold the conditional half first (as the pipeline
    builds them), and only that half is changed, so CFG then scales the push as well."""

    def __init__(self, unet: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale, self.config = unet, scale, unet.config

    def forward(self, x, timestep, emb, mask, use_temporal: bool = True):
        pred = self.inner(x, timestep, emb, mask, use_temporal=use_temporal)
        if not use_temporal or self.scale == 0:
            return pred
        half = x.shape[0] // 2  # (2B, Z, T, h, w): conditional first, then unconditional
        t = timestep[:half] if torch.is_tensor(timestep) and timestep.ndim > 0 else timestep
        spatial = self.inner(x[:half], t, emb[:half], mask[:half], use_temporal=False)
        pred = pred.clone()
        pred[:half] = pred[:half] + self.scale * (pred[:half] - spatial)
        return pred


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("world")
    parser.add_argument("scale", type=float)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("-o", "--output", default="temporal-guidance-report")
    args = parser.parse_args(argv)
    pipe = kinetoscope.load(args.model)
    pipe.unet = TemporallyGuided(pipe.unet, args.scale)
    accuracy = evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.output)
    print(json.dumps(accuracy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
