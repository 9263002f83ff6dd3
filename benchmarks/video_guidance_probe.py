"""Does the video pass of image-first sampling want another guidance scale than frame 0?

    python benchmarks/video_guidance_probe.py MODEL WORLD SCALE [--samples 100] [-o DIR]

With ``first_frame: image`` the pipeline draws frame 0 with the image model, then the clip
with the temporal layers, both at the model's guidance scale. This probe keeps frame 0's
scale and guides the clip pass with SCALE instead, and judges the clips on the test split under
the protocol of the shipped reports (``kinetoscope compare`` pairs them prompt by prompt).
"""

from __future__ import annotations

import argparse
import json

import kinetoscope
from kinetoscope.eval.evaluate import evaluate_variant


def guide_video_pass(pipe, scale: float) -> None:
    """Make ``pipe`` guide its temporal (clip) passes with ``scale``; frame 0 keeps its own."""
    denoise = pipe._denoise

    def patched(noise, **options):
        if options.get("use_temporal", True):
            options["guidance"] = scale
        return denoise(noise, **options)

    pipe._denoise = patched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("world")
    parser.add_argument("scale", type=float)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("-o", "--output", default="video-guidance-report")
    args = parser.parse_args(argv)
    pipe = kinetoscope.load(args.model)
    if pipe.family != "ldm" or pipe.defaults.get("first_frame") != "image":
        parser.error("the probe needs a latent diffusion model that draws frame 0 first")
    if args.scale == 1.0:
        parser.error("a scale of 1 turns guidance off, and the pipeline encodes prompts for it")
    guide_video_pass(pipe, args.scale)
    accuracy = evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.output)
    print(json.dumps(accuracy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
