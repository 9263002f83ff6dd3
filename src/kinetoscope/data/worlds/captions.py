"""Captions of the built-in worlds: the canonical form, training wordings, eval-only wordings.

The canonical captions are fixed by specs/worlds.md::

    the digit 7 is moving left and right
    the digit 7 is moving up and the digit 2 is moving left and right
    a small red circle is moving left
    a small red circle is moving left and a large blue square is moving up and down

A caption describes every object with one phrase template and joins the phrases with " and ".
``caption_wordings`` gives the training wordings (canonical first); ``eval_wordings`` gives
wordings built from templates that no training template shares (their verbs "travels",
"heads", "drifting"/"drifts", "travelling" and adverbs "leftward", "back and forth ..." never
occur in training), so evaluation can measure generalisation to unseen phrasing.
"""

from __future__ import annotations

from kinetoscope.data.worlds import mnist, shapes
from kinetoscope.data.worlds.common import check_world

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# motion -> (plain, "to the" form, adverb form); the adverb form appears only in eval templates.
MOTION_FORMS: dict[str, tuple[str, str, str]] = {
    "left": ("left", "to the left", "leftward"),
    "right": ("right", "to the right", "rightward"),
    "up": ("up", "up", "upward"),
    "down": ("down", "down", "downward"),
    "left and right": ("left and right", "left and right", "back and forth horizontally"),
    "up and down": ("up and down", "up and down", "back and forth vertically"),
}

# Templates are str.format patterns over: d (digit "7"), word ("seven"), color, shape, size,
# m (plain motion), to ("to the left"), adv ("leftward").
MNIST_TRAIN_TEMPLATES = (
    "the digit {d} is moving {m}",  # canonical: must stay first
    "the digit {word} moves {m}",
    "a {d} going {m}",
    "number {d} moving {to}",
    "the digit {word} is moving {m}",
    "digit {d} moves {to}",
    "a {word} going {to}",
)
MNIST_EVAL_TEMPLATES = (
    "a handwritten {d} travels {adv}",
    "the numeral {word} heads {to}",
    "a written {word} drifting {adv}",
)
SHAPES_TRAIN_TEMPLATES = (
    "a {size} {color} {shape} is moving {m}",  # canonical: must stay first
    "{size} {color} {shape} moving {m}",
    "a {color} {shape}, {size}, goes {m}",
    "the {size} {color} {shape} moves {to}",
    "a {size} {color} {shape} going {to}",
)
SHAPES_EVAL_TEMPLATES = (
    "the {color} {size} {shape} heads {to}",
    "one {size} {color} {shape} travelling {adv}",
    "a {shape} in {color}, {size}, drifts {adv}",
)
JOINER = " and "


def _fields(world: str, obj: dict) -> dict[str, str]:
    if world == "mnist":
        obj = mnist.check_object(obj)
        fields = {"d": str(obj["digit"]), "word": DIGIT_WORDS[obj["digit"]]}
    else:
        obj = shapes.check_object(obj)
        fields = {"color": obj["color"], "shape": obj["shape"], "size": obj["size"]}
    plain, to, adv = MOTION_FORMS[obj["motion"]]
    return {**fields, "m": plain, "to": to, "adv": adv}


def _render(world: str, objects: list[dict], template: str) -> str:
    if not isinstance(objects, list | tuple) or not objects:
        raise ValueError("objects must be a non-empty list of object dicts")
    return JOINER.join(template.format(**_fields(world, obj)) for obj in objects)


def _templates(world: str, *, eval_only: bool) -> tuple[str, ...]:
    if world == "mnist":
        return MNIST_EVAL_TEMPLATES if eval_only else MNIST_TRAIN_TEMPLATES
    return SHAPES_EVAL_TEMPLATES if eval_only else SHAPES_TRAIN_TEMPLATES


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def canonical_caption(world: str, objects: list[dict]) -> str:
    """The spec's canonical caption, e.g. ``the digit 7 is moving up``."""
    world = check_world(world)
    return _render(world, objects, _templates(world, eval_only=False)[0])


def caption_wordings(world: str, objects: list[dict]) -> list[str]:
    """Training wordings of the same facts (canonical first, no duplicates)."""
    world = check_world(world)
    return _unique([_render(world, objects, t) for t in _templates(world, eval_only=False)])


def eval_wordings(world: str, objects: list[dict]) -> list[str]:
    """Wordings from the eval-only templates (never produced by ``caption_wordings``)."""
    world = check_world(world)
    return _unique([_render(world, objects, t) for t in _templates(world, eval_only=True)])
