"""World ``shapes``: coloured shapes, rendered exactly as specs/worlds.md fixes it.

Shapes are rasterised with numpy boolean masks (no anti-aliasing) and filled with the exact
spec colours on black.

Masks (the box is ``b`` x ``b``; pixel (row i, column j) has centre (j + 0.5, i + 0.5))
    square    every pixel of the box (a large square lights exactly 20 * 20 = 400 pixels).
    circle    inscribed: lit when the pixel centre lies within radius b/2 of the box centre,
              so it touches all four sides of the box.
    triangle  isosceles, apex at the top centre, base along the bottom row: row i is lit
              where |j + 0.5 - b/2| <= (i + 1) / 2, i.e. its half-width grows by 1/2 px per row;
              row 0 holds the two centre pixels (b is even) and row b-1 spans the full width.

Compositional split: with colour index c, shape index s and motion index i the triple is held
out when (c + s + i) % 4 == 0. Size is not part of the split. Two-object clips use two
different colours.

Axis legend
    b = box side (12 small, 20 large); masks (b, b) bool; sprites (b, b, 3) uint8.
"""

from __future__ import annotations

import functools

import numpy as np

from kinetoscope.data.worlds.common import MOTIONS, check_motion, check_split, motion_index

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 12, "large": 20}
BOX = max(SIZES.values())  # largest box, used to validate canvas settings
OBJECT_KEYS = ("color", "shape", "size", "motion")
_COLOR_NAMES = tuple(COLORS)


@functools.cache
def shape_mask(shape: str, box: int) -> np.ndarray:
    """Boolean mask (box, box) of a shape filling its box (rules in the module docstring)."""
    rows, cols = np.mgrid[0:box, 0:box]  # (b, b) each
    if shape == "square":
        mask = np.ones((box, box), dtype=bool)
    elif shape == "circle":
        radius = box / 2
        mask = (cols + 0.5 - radius) ** 2 + (rows + 0.5 - radius) ** 2 <= radius**2
    elif shape == "triangle":
        mask = np.abs(cols + 0.5 - box / 2) <= (rows + 1) / 2
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")
    mask.setflags(write=False)
    return mask


def check_object(obj: object) -> dict:
    """Validate a shapes object dict; return its identity + motion (manifest schema)."""
    if not isinstance(obj, dict):
        raise ValueError(
            "a shapes object is a dict like {'color': 'red', 'shape': 'circle', "
            f"'size': 'small', 'motion': 'left'}}, got {obj!r}"
        )
    missing = [key for key in OBJECT_KEYS if key not in obj]
    if missing:
        raise ValueError(
            f"shapes object {obj!r} is missing {missing}; it needs {list(OBJECT_KEYS)}"
        )
    for key, allowed in (("color", _COLOR_NAMES), ("shape", SHAPES), ("size", tuple(SIZES))):
        if obj[key] not in allowed:
            raise ValueError(f"unknown {key} {obj[key]!r}; use one of {', '.join(allowed)}")
    check_motion(obj["motion"])
    return {key: obj[key] for key in OBJECT_KEYS}


def box_of(obj: dict) -> int:
    """Box side of an object in px (12 small, 20 large)."""
    return SIZES[check_object(obj)["size"]]


def _held_out(color: str, shape: str, motion: str) -> bool:
    return (_COLOR_NAMES.index(color) + SHAPES.index(shape) + motion_index(motion)) % 4 == 0


def is_held_out(obj: dict) -> bool:
    """True when (colour, shape, motion) is a held-out composition: (c + s + i) % 4 == 0."""
    obj = check_object(obj)
    return _held_out(obj["color"], obj["shape"], obj["motion"])


@functools.cache
def compositions(split: str) -> tuple[tuple[str, str, str], ...]:
    """All (colour, shape, motion) triples the split may show (train: not held out)."""
    check_split(split)
    held_out = split == "test"
    return tuple(
        (color, shape, motion)
        for color in _COLOR_NAMES
        for shape in SHAPES
        for motion in MOTIONS
        if _held_out(color, shape, motion) == held_out
    )


def sample_objects(num_objects: int, *, split: str, rng: np.random.Generator) -> list[dict]:
    """Draw objects uniformly over the split's triples (and sizes), all colours different."""
    if num_objects > len(COLORS):
        raise ValueError(f"at most {len(COLORS)} shapes fit with different colours")
    objects: list[dict] = []
    for _ in range(num_objects):
        used = {obj["color"] for obj in objects}
        triples = [triple for triple in compositions(split) if triple[0] not in used]
        color, shape, motion = triples[int(rng.integers(0, len(triples)))]
        size = tuple(SIZES)[int(rng.integers(0, len(SIZES)))]
        objects.append({"color": color, "shape": shape, "size": size, "motion": motion})
    return objects


def make_sprite(obj: dict, *, split: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The coloured shape (b, b, 3) uint8 on black; shapes add no extra attributes."""
    del split, rng  # shapes are fully determined by their attributes
    obj = check_object(obj)
    mask = shape_mask(obj["shape"], SIZES[obj["size"]])  # (b, b)
    color = np.asarray(COLORS[obj["color"]], dtype=np.uint8)  # (3,)
    sprite = mask[:, :, None] * color  # (b, b, 3)
    return sprite.astype(np.uint8), {}
