"""Train a prompt reader for a saved pipeline's world and save the pipeline with it.

The reader (``kinetoscope.text.reader``) is trained on noisy and paraphrased training wordings
of the recipe's worlds (training-split compositions only), as its ``prompt_reader`` stage says
(``extra``: ``layers``, ``count``, ``members``, ``threshold``, ``noise``, ``paraphrase``;
``steps`` from the stage); about two minutes on one core, most of it encoding the clauses. The
pipeline is saved with the reader in ``OUT/pipeline`` (weights stored as the recipe's
``weights_dtype``); its held-out reading accuracy is printed.

    OMP_NUM_THREADS=2 python benchmarks/add_reader.py ldm-mnist configs/ldm-mnist.yaml --out runs/ldm-mnist-reader
"""

from __future__ import annotations

from pathlib import Path

from retrain_planner import model_recipe_args  # the script beside this one

import kinetoscope
from kinetoscope.config import load_config
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.reader import train_reader_stage


def main() -> None:
    args = model_recipe_args(
        __doc__.split("\n")[0], "shipped model name or saved pipeline directory"
    )
    pipe = kinetoscope.load(args.model)
    if pipe.family == "ldm":
        recipe = load_config(LDMRecipe, args.recipe, args.set)
    else:
        from kinetoscope.train.phenaki import PhenakiRecipe

        recipe = load_config(PhenakiRecipe, args.recipe, args.set)
    pipe.reader = train_reader_stage(recipe)
    saved = pipe.save_pretrained(Path(args.out) / "pipeline", weights_dtype=recipe.weights_dtype)
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
