"""Noisy wordings of world captions, so a model that reads prompts learns their facts, not their
templates.

A world clip's captions come from a handful of templates ("the digit {d} is moving {m}", "a {d}
going {m}", ...). A small model trained on them keys on the exact token states of those
sentences, and a prompt worded otherwise ("a written six drifting leftward") reads as none of
them: the trajectory planner of ``ldm-mnist`` proposed the asked motion for 100% of canonical
test captions and for 73% of the evaluation's held-out wordings (session 31,
``benchmarks/planner_probe.py --wording eval``).

``WordingAugmenter`` renders a training template with easy-data-augmentation noise (random
deletion, replacement and insertion of words; Wei and Zou 2019) applied to the template's own
words only: every word that states a fact (the digit, its motion, a shape's colour, ...) is kept
as it is and in order, and the random words come from the text encoder's vocabulary without
any word that states a fact of the world. No evaluation template or its words are used.

Noise alone keeps every motion in the one word the templates use for it, so a model learns that
exactly "up" means up and reads any other word near it as something else: the planner of
``ldm-mnist`` (session 34) turned "upward" into "up and down" in a third of the held-out test
clips. ``paraphrase`` renders a share of the captions from ``PARAPHRASE_SUBJECTS`` and
``MOTION_PARAPHRASES`` instead: other words for the same motions ("rising", "sinking", "from
side to side", ...). None of their words occurs in an evaluation template (a test checks it);
the evaluation's own words stay unseen.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from kinetoscope.data.worlds.captions import (
    DIGIT_WORDS,
    JOINER,
    MNIST_EVAL_TEMPLATES,
    MOTION_FORMS,
    SHAPES_EVAL_TEMPLATES,
    _fields,
    _templates,
)
from kinetoscope.data.worlds.shapes import COLORS, SHAPES, SIZES

FIELD = re.compile(r"\{(\w+)\}")

# Training-only wordings of each motion, as the predicate after a subject ("the digit 7 is
# rising"). Their words are not in any evaluation template.
MOTION_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "left": ("sliding left", "shifting left", "moving toward the left edge", "going left"),
    "right": ("sliding right", "shifting right", "moving toward the right edge", "going right"),
    "up": ("rising", "climbing", "ascending", "moving toward the top", "going to the top"),
    "down": ("falling", "sinking", "descending", "moving toward the bottom", "dropping"),
    "left and right": (
        "bouncing from side to side",
        "moving side to side",
        "swinging left and right",
        "bouncing between the left and right edges",
    ),
    "up and down": ("bouncing up and down", "bobbing up and down", "swinging up and down"),
}
# Subjects of the paraphrased clauses, over the same fields as the caption templates.
PARAPHRASE_SUBJECTS: dict[str, tuple[str, ...]] = {
    "mnist": ("the digit {d} is", "digit {word},", "a {d}", "the {word}", "number {d} is"),
    "shapes": (
        "a {size} {color} {shape} is",
        "the {color} {shape}, {size},",
        "{size} {color} {shape}",
    ),
}


def evaluation_words() -> set[str]:
    """Every word of the evaluation-only templates' own text ("travels", "numeral", ...), never
    used as noise: a noise word may not teach the evaluation's wordings."""
    words = set()
    for template in MNIST_EVAL_TEMPLATES + SHAPES_EVAL_TEMPLATES:
        words.update(FIELD.sub(" ", template).replace(",", " ").split())
    return words


def fact_words() -> set[str]:
    """Every word that can state a fact in a world caption (digits, motions in all their forms,
    colours, shapes, sizes): never inserted as noise."""
    words = {str(d) for d in range(10)} | set(DIGIT_WORDS)
    for forms in MOTION_FORMS.values():
        for form in forms:
            words.update(form.split())
    words.update(COLORS, SHAPES, SIZES)
    return words


def vocabulary_words(encoder: Any, *, min_length: int = 3) -> list[str]:
    """Whole lower-case words of the text encoder's tokenizer vocabulary (found on ``encoder``
    or the encoders it wraps), without fact words and evaluation-template words: the noise
    words."""
    seen = set()
    while encoder is not None and id(encoder) not in seen:
        seen.add(id(encoder))
        tokenizer = getattr(encoder, "tokenizer", None)
        if tokenizer is not None:
            facts = fact_words() | evaluation_words()
            return sorted(
                word
                for word in tokenizer.get_vocab()
                if word.isalpha() and word.islower() and len(word) >= min_length
                and word not in facts
            )  # fmt: skip
        encoder = getattr(encoder, "base", None) or getattr(encoder, "encoder", None)
    raise ValueError("no tokenizer vocabulary found on the text encoder")


class WordingAugmenter:
    """Random noisy training wordings of a clip's objects.

    With probability ``p`` a caption is noised: each template word is deleted with probability
    ``p_delete`` or replaced by a random vocabulary word with ``p_replace``, and up to
    ``max_insert`` random words are inserted between template words. Facts stay whole: a
    "left and right" is never cut, and objects stay joined by " and ".
    """

    def __init__(
        self,
        vocabulary: list[str],
        *,
        p: float = 0.5,
        p_delete: float = 0.15,
        p_replace: float = 0.15,
        max_insert: int = 2,
        paraphrase: float = 0.0,
    ) -> None:
        if not vocabulary:
            raise ValueError("the augmenter needs a non-empty vocabulary")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not 0.0 <= paraphrase <= 1.0:
            raise ValueError(f"paraphrase must be in [0, 1], got {paraphrase}")
        self.paraphrase = paraphrase
        self.vocabulary = list(vocabulary)
        self.p, self.p_delete, self.p_replace = p, p_delete, p_replace
        self.max_insert = max_insert

    def __call__(self, world: str, objects: list[dict], rng: random.Random) -> str:
        """One wording of ``objects`` (a world's object dicts): with probability ``paraphrase``
        paraphrased (each clause a random subject and motion paraphrase), else from a random
        training template; then noised with probability ``p``, else as it is."""
        template = rng.choice(_templates(world, eval_only=False))
        paraphrased = rng.random() < self.paraphrase
        noisy = rng.random() < self.p
        clauses = []
        for obj in objects:
            fields = _fields(world, obj)
            if paraphrased:
                subject = rng.choice(PARAPHRASE_SUBJECTS[world])
                template = f"{subject} {{p}}"
                fields = {**fields, "p": rng.choice(MOTION_PARAPHRASES[obj["motion"]])}
            clauses.append(self._clause(template, fields, rng, noisy))
        return " ".join(JOINER.join(clauses).split())

    def _clause(self, template: str, fields: dict[str, str], rng: random.Random, noisy: bool):
        parts: list[tuple[str, bool]] = []  # (text, states a fact)
        position = 0
        for match in FIELD.finditer(template):
            parts.append((template[position : match.start()], False))
            parts.append((fields[match.group(1)], True))
            position = match.end()
        parts.append((template[position:], False))
        if not noisy:
            return "".join(text for text, _ in parts)
        # Template words, in order; facts as single units that noise never enters.
        units: list[tuple[str, bool]] = []
        for text, fact in parts:
            if fact:
                units.append((text, True))
            else:
                units.extend((word, False) for word in text.split())
        kept: list[str] = []
        for word, fact in units:
            if fact:
                kept.append(word)
                continue
            roll = rng.random()
            if roll < self.p_delete:
                continue
            kept.append(
                rng.choice(self.vocabulary) if roll < self.p_delete + self.p_replace else word
            )
        for _ in range(rng.randint(0, self.max_insert)):
            kept.insert(rng.randint(0, len(kept)), rng.choice(self.vocabulary))
        return " ".join(kept)


def stage_augmenter(recipe: Any, extra: Mapping[str, Any]) -> tuple[WordingAugmenter, Any] | None:
    """A training stage's caption augmentation from its ``extra`` keys ``text_augment`` (the
    share of captions noised) and ``text_paraphrase`` (the share worded with training-only
    paraphrases): ``(augmenter, encoder)``, or None when both are 0 (and a denoiser stage's
    ``text_motion_swap``, train/latents.py, is too). The encoder keeps its
    embeddings in memory only (augmented captions rarely repeat)."""
    noise = float(extra.get("text_augment", 0.0))
    paraphrase = float(extra.get("text_paraphrase", 0.0))
    if not noise and not paraphrase and not extra.get("text_motion_swap"):
        return None
    from kinetoscope.text import load_text_encoder

    encoder = load_text_encoder(
        recipe.text_encoder,
        max_length=recipe.max_length,
        clauses=recipe.text_clauses,
        layers=extra.get("text_layers") or None,  # a planner's own layers (train/tracks.py)
    )
    return WordingAugmenter(vocabulary_words(encoder), p=noise, paraphrase=paraphrase), encoder
