"""Retrain only the trajectory planner of a saved LDM pipeline, on its recipe's data.

The planner's stage is the cheapest of a recipe (minutes), and what it reads in a prompt decides
the motion of a clip; an experiment with its options need not rerun the denoiser stages. The
recipe's training clips are encoded by the pipeline's own autoencoder (``num_latent_clips``,
cached in ``OUT/latents.pt``), their object tracks computed, the stage
``trajectory_planner`` run as the recipe (with ``--set`` overrides) says, and the pipeline
saved with the new planner in ``OUT/pipeline`` (weights stored as the recipe's
``weights_dtype``). Rerunning resumes the stage from its checkpoint.

    OMP_NUM_THREADS=1 python benchmarks/retrain_planner.py ldm-mnist configs/ldm-mnist.yaml \\
        --out runs/ldm-mnist-tl --set 'stages.trajectory_planner.extra.text_layers=[0,-1]'
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import kinetoscope
from kinetoscope.config import load_config
from kinetoscope.text import load_text_encoder
from kinetoscope.train.latents import build_latent_cache
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.recipe import CaptionBank, start_run
from kinetoscope.train.tracks import cache_tracks, train_planner


def model_recipe_args(description: str, model_help: str) -> argparse.Namespace:
    """MODEL RECIPE --out DIR [--set a.b=value ...]: the arguments of the scripts that train
    one part of a saved pipeline again (this one, add_reader.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", help=model_help)
    parser.add_argument("recipe", help="the recipe the model was trained with (configs/*.yaml)")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--set", action="append", default=[], help="recipe override a.b=value")
    return parser.parse_args()


def main() -> None:
    args = model_recipe_args(
        __doc__.split("\n")[0], "shipped model name or saved LDM pipeline directory"
    )
    pipe = kinetoscope.load(args.model)
    if getattr(pipe, "family", None) != "ldm" or not pipe.unet.takes_trajectory:
        raise SystemExit(f"{args.model} is not an LDM pipeline whose denoiser takes tracks")
    recipe = load_config(LDMRecipe, args.recipe, args.set)
    out = start_run(recipe, args.out)
    cache_path = out / "latents.pt"
    if cache_path.exists():
        cache = torch.load(cache_path, weights_only=False)
    else:
        cache = build_latent_cache(recipe, pipe.vae, cache_path)
    tracks = cache_tracks(recipe, cache, cache_path, slots=int(pipe.unet.config.anchor_heads))
    encoder = load_text_encoder(
        recipe.text_encoder,
        max_length=recipe.max_length,
        cache_dir=out / "text-cache",
        clauses=recipe.text_clauses,
    )
    pipe.planner = train_planner(
        recipe,
        out,
        cache,
        tracks,
        CaptionBank(encoder),
        latent_channels=pipe.vae.config.latent_channels,
        text_dim=encoder.dim,
    ).eval()
    saved = pipe.save_pretrained(Path(out) / "pipeline", weights_dtype=recipe.weights_dtype)
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
