"""Stage ``prompt_reader``: a ``PromptReader`` of the recipe's world (kinetoscope.text.reader).

It needs no clips: its captions are drawn from the training split's compositions of the
recipe's worlds and worded as the planner's are (noised, paraphrased), and it trains in about
two minutes on one core, most of it encoding the clauses once. Its ``extra`` keys: ``layers``
(the text encoder's hidden states read, default the last), ``count`` (clauses), ``members``,
``threshold``, ``noise`` and ``paraphrase`` (the wording shares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kinetoscope.train.recipe import Recipe, StageConfig

DEFAULT_STAGE = StageConfig(steps=1000, batch_size=64, lr=2.0e-3)
EXTRA_KEYS = {"layers", "count", "members", "threshold", "noise", "paraphrase"}


def train_reader_stage(recipe: Recipe, out: Path | None = None) -> Any:
    """The trained reader of ``recipe``'s worlds, as its ``prompt_reader`` stage (or, when it
    has none, the defaults) says; with a run directory ``out``, saved in out/prompt-reader and
    read back from there when a run resumes."""
    from kinetoscope.text.reader import PromptReader, build_reader

    done = None if out is None else Path(out) / "prompt-reader"
    if done is not None and (done / "config.json").is_file():
        return PromptReader.from_pretrained(done).eval()

    stage = recipe.stage("prompt_reader") if "prompt_reader" in recipe.stages else DEFAULT_STAGE
    extra = dict(stage.extra)
    unknown = set(extra) - EXTRA_KEYS
    if unknown:
        raise ValueError(f"unknown prompt_reader extra key(s) {sorted(unknown)}")
    layers = tuple(int(i) for i in extra.pop("layers", [-1]))
    reader = build_reader(
        list(recipe.worlds),
        text_encoder=recipe.text_encoder,
        max_length=recipe.max_length,
        layers=layers,
        steps=stage.steps,
        batch_size=stage.batch_size,
        lr=stage.lr,
        minutes=stage.minutes,
        seed=recipe.seed,
        **extra,
    )
    if done is not None:
        reader.save_pretrained(done)
    return reader
