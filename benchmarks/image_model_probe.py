"""Does a Video LDM's image model draw what the prompt asks? Frame 0 alone, judged.

    python benchmarks/image_model_probe.py RUN_DIR_OR_MODEL [--world mnist-1] [--split test]
        [--count 100] [--guidance 4 8] [--steps 15] [--clauses model|on|off]

Whatever the temporal layers learn, a clip can only be right if its frames show the asked
objects, and with image-first sampling frame 0 comes from the image model alone. This script
draws one frame per evaluation prompt with the temporal layers switched off, repeats it into
a still clip and judges it: the share with the asked identity (digit, or colour/shape/size)
and the right object count bounds the world's score from above.

RUN_DIR_OR_MODEL is a training run directory after its image stage (``vae/`` and
``unet-image/``; the recipe in ``recipe.json`` gives the noise schedule and text encoder) or
any saved LDM pipeline or shipped model name. A Phenaki model draws its frame 0 as its
image-first sampling does: the first time step's tokens on their own (``--steps`` defaults to
the model's own number of MaskGIT steps for it, 15 for an LDM).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from diffusers import DDPMScheduler

import kinetoscope
from kinetoscope.autoencoders.vae import VideoAutoencoderKL
from kinetoscope.config import from_dict
from kinetoscope.data.worlds import eval_prompts
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.eval.evaluate import generate_and_judge, sampling_options
from kinetoscope.pipelines.text_to_video import TextToVideoPipeline
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.recipe import build_pipeline

IDENTITY = {"mnist": ("digit",), "shapes": ("color", "shape", "size")}


def image_stage_pipeline(run: Path) -> TextToVideoPipeline:
    """The pipeline of a run's autoencoder and stage-1 image model, with the run's sampling
    defaults (its ``recipe.json``)."""
    recipe = from_dict(
        LDMRecipe, json.loads((run / "recipe.json").read_text()), where="recipe.json"
    )
    return build_pipeline(
        TextToVideoPipeline,
        recipe,
        defaults={"resolution": recipe.resolution},
        vae=VideoAutoencoderKL.from_pretrained(run / "vae"),
        unet=VideoUNet.from_pretrained(run / "unet-image"),
        scheduler_config=dict(DDPMScheduler(**recipe.scheduler).config),
    )


def image_model_only(pipe: TextToVideoPipeline) -> TextToVideoPipeline:
    """Make every denoiser call of ``pipe`` go to the model frame 0 comes from (its image
    model, kept apart or not) without temporal layers."""
    pipe.unet = pipe.image_unet
    forward = pipe.unet.forward
    pipe.unet.forward = lambda *args, use_temporal: forward(*args, use_temporal=False)
    return pipe


def shares(verdicts: list, world: str) -> str:
    """The shares of verdicts with the asked identity, the asked count, and both."""
    identity = [all(v.attributes[key] for key in IDENTITY[world]) for v in verdicts]
    count = [bool(v.attributes["count"]) for v in verdicts]
    right = {
        "identity": sum(identity),
        "count": sum(count),
        "both": sum(i and c for i, c in zip(identity, count, strict=True)),
    }
    return ", ".join(f"{k} {100 * n / len(verdicts):.0f}%" for k, n in right.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--world", default="mnist-1")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--guidance", type=float, nargs="+", default=[4.0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clauses",
        choices=["model", "on", "off"],
        default="model",
        help="encode prompts clause by clause (on), whole (off), or as the model was trained",
    )
    args = parser.parse_args(argv)

    run = Path(args.model)
    if (run / "unet-image" / "config.json").exists():
        pipe = image_stage_pipeline(run)
    else:
        pipe = kinetoscope.load(args.model)
    phenaki = getattr(pipe, "family", "") == "phenaki"
    if not phenaki:
        pipe = image_model_only(pipe)
    steps = args.steps if args.steps is not None else (None if phenaki else 15)
    if args.clauses != "model":
        pipe.text_clauses = args.clauses == "on"
    world = args.world.split("-")[0]
    prompts = eval_prompts(args.world, split=args.split, count=args.count, seed=args.seed)
    for guidance in args.guidance:
        _, verdicts, _ = generate_and_judge(
            pipe,
            prompts,
            world=args.world,
            seed=args.seed,
            batch_size=8,
            sampling={"num_frames": 1, **sampling_options(steps=steps, guidance=guidance)},
            as_judged=lambda video: np.repeat(video.frames, 8, axis=0),
        )
        print(
            f"{args.world} {args.split}, guidance {guidance:g}, n={len(prompts)}: {shares(verdicts, world)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
