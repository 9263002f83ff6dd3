"""Seed a training run folder from a saved (or shipped) LDM pipeline.

Experiments that continue a shipped model's temporal stage need the run folder its recipe
made: the autoencoder (``vae/``) and the image model (``unet-image/``). Run folders are not
kept in the repository, so this rebuilds those two from the pipeline itself; the latent and
text caches are rebuilt by ``kinetoscope train`` from them (same seeds, same clips).

    python benchmarks/seed_run.py ldm-mnist runs/ldm-mnist-anc

A float16-stored model seeds a float32 run whose weights are the stored ones exactly, so
``init_temporal_from: <model>/unet`` with ``same_image_model: true`` accepts it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import kinetoscope
from kinetoscope.hub import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped model name or saved pipeline directory")
    parser.add_argument("out", type=Path, help="run folder to create")
    args = parser.parse_args()
    pipe = kinetoscope.load(args.model)
    if type(pipe).__name__ != "TextToVideoPipeline":
        parser.error(f"{args.model} is not a latent diffusion (TextToVideoPipeline) model")
    for name in ("vae", "unet-image"):
        if (args.out / name).exists():
            parser.error(f"{args.out / name} exists; seed an empty folder")
    args.out.mkdir(parents=True, exist_ok=True)
    pipe.vae.float().save_pretrained(args.out / "vae")
    pipe.unet.float().save_pretrained(args.out / "unet-image")
    print(f"seeded {args.out} from {resolve_model(args.model)}: vae/, unet-image/")


if __name__ == "__main__":
    main()
