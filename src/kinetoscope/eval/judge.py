"""The world judge: does a clip show a structured expectation of the `mnist` or `shapes` world?

Implements "What a judged generation must show" of specs/worlds.md. An expected object is
shown when, over the clip, an object of the asked identity (digit class; or colour, shape and
size) is visible in most frames (>= 60%), keeps that identity (the majority reading covers
>= 60% of the frames where it could be read) and moves as asked (`tracking.classify_motion`).
The clip is correct when every attribute of every expected object holds and no other object
persists ("count": as many persistent objects as expected).

How (details in `kinetoscope.eval.tracking`): segment frames into blobs, track them (template
fits where digits overlap), then read each track's identity in the frames where it is alone:
digits with the small CNN of `kinetoscope.eval.digits` on 28×28 crops (up to 6 frames per
track) centred on the blob's centre of mass, "no digit" only when the CNN's NON_DIGIT class
has >= 50%; shapes by colour layer, and from the pixels above half the object's own peak
brightness (undoing blur/compression) the box side (12 vs 20 px, split at 16) and the best
IoU with an ideal square / inscribed circle / apex-up triangle of that box, ignoring pixels
hidden behind a brighter object. Expected objects are matched to tracks with the Hungarian
algorithm on identity agreement (then motion, then visibility).

Validation table (ground truth, degraded, wrong expectations, noise; the cases are in
`kinetoscope.eval.judge_validation`)::

    python -m kinetoscope.eval.judge --validate --count 300

Axes: T frames, H W pixels, uint8 RGB frames (T, H, W, 3).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from kinetoscope.eval import tracking
from kinetoscope.eval.digits import NON_DIGIT, crop_centered, prepare_crops

# The validation table's public names stay importable from here (tests use some of them).
from kinetoscope.eval.judge_validation import (  # noqa: F401
    DEGRADATIONS,
    WRONG_ATTRIBUTES,
    degrade,
    h264_round_trip,
    objects_apart,
    validate,
    validation_cases,
    validation_clips,
    wrong_expectation,
)
from kinetoscope.eval.judge_validation import main as _validation_main

if TYPE_CHECKING:
    from kinetoscope.video import Video

logger = logging.getLogger(__name__)

VISIBLE_MIN = 0.6  # fraction of frames an object must be seen in
IDENTITY_MIN = 0.6  # fraction of its readable frames the majority identity must cover
SHAPE_IOU_MIN = 0.65  # below this IoU with every ideal shape, the shape is unreadable
MAX_DIGIT_READS = 6  # crops classified per track (evenly spaced readable frames)
SIZE_SPLIT = 16  # px: box side below -> small (12 px), above -> large (20 px)
SHAPE_NAMES = ("circle", "square", "triangle")
IDENTITY_KEYS = {"mnist": ("digit",), "shapes": ("color", "shape", "size")}


@dataclass
class Verdict:
    """The judgement of one clip against one expectation."""

    correct: bool  # every attribute of every expected object, and no extra objects
    attributes: dict[str, bool]  # e.g. {"digit": .., "motion": .., "count": ..}
    objects: list[dict] = field(default_factory=list)  # per expected object (see Judge.judge)
    reason: str = ""  # plain words; empty when correct


# ----------------------------------------------------------------------------- reading


@functools.cache
def ideal_shape(shape: str, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of a shape filling its box, rasterised as the world does."""
    rows, cols = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    if shape == "square":
        return np.ones((height, width), bool)
    if shape == "circle":
        return ((cols - width / 2) / (width / 2)) ** 2 + (
            (rows - height / 2) / (height / 2)
        ) ** 2 <= 1
    # triangle, apex at the top centre, base on the bottom row
    return np.abs(cols - width / 2) <= (rows + 0.5) / height * (width / 2)


def read_shape(mask: np.ndarray, known: np.ndarray | None = None) -> tuple[str | None, float]:
    """Best-matching shape of a boolean box crop (h, w) and its IoU (None when too low).

    `known` (h, w) bool marks the pixels that are not hidden behind a brighter object; the
    IoU is taken over those only.
    """
    h, w = mask.shape
    known = np.ones_like(mask) if known is None else known
    best, best_iou = None, 0.0
    for name in SHAPE_NAMES:
        ideal = ideal_shape(name, h, w)
        iou = float((ideal & mask & known).sum() / max(((ideal | mask) & known).sum(), 1))
        if iou > best_iou:
            best, best_iou = name, iou
    return (best if best_iou >= SHAPE_IOU_MIN else None), best_iou


def read_size(height: int, width: int) -> str | None:
    side = max(height, width)
    if side == SIZE_SPLIT:
        return None
    return "small" if side < SIZE_SPLIT else "large"


def _vote(labels: list) -> tuple[Any, float, int]:
    """Majority label, its share, and how many readings there were (None, 0, 0 if none)."""
    if not labels:
        return None, 0.0, 0
    values, counts = np.unique(np.array(labels, dtype=object).astype(str), return_counts=True)
    k = int(counts.argmax())
    winner = next(v for v in labels if str(v) == values[k])
    return winner, float(counts[k] / len(labels)), len(labels)


def _readable_frames(track: tracking.Track) -> list[int]:
    """Frames where the object is alone and whole (its own blob, not partly hidden)."""
    return [t for t, o in sorted(track.obs.items()) if o.kind == "own" and not o.occluded]


# ----------------------------------------------------------------------------- the judge


class Judge:
    """Judges clips against expectations (see module docstring).

    Args:
        digit_classifier: the model reading digits; None loads the shipped weights the first
            time an mnist clip is judged.
    """

    def __init__(self, *, digit_classifier: torch.nn.Module | None = None) -> None:
        self._classifier = digit_classifier

    @property
    def digit_classifier(self) -> torch.nn.Module:
        if self._classifier is None:
            from kinetoscope.eval.digits import load_digit_classifier

            self._classifier = load_digit_classifier()
        return self._classifier

    def judge(self, video: Video | np.ndarray, expected: list[dict], *, world: str) -> Verdict:
        """Whether `video` shows `expected` (manifest-schema object dicts) in `world`.

        Returns a Verdict; `objects[i]` holds, for expected object i, the observed values
        ("observed": {...}), the fraction of frames it was seen in ("visible"), how consistent
        its identity was ("identity_share") and one bool per attribute.
        """
        return self.judge_many(video, [expected], world=world)[0]

    def judge_many(
        self, video: Video | np.ndarray, expectations: list[list[dict]], *, world: str
    ) -> list[Verdict]:
        """`judge` against several expectations; the clip is analysed once."""
        frames = _frames_of(video)
        world = _check_world(world)
        expectations = [_check_expected(expected, world) for expected in expectations]
        tracks = self.observe(frames, world=world)
        return [_decide(tracks, expected, world) for expected in expectations]

    def observe(self, video: Video | np.ndarray, *, world: str) -> list[dict]:
        """What the clip shows: per track {"visible", "motion", "measures", identity readings}.

        Each identity reading is (majority value or None, its share, number of readings).
        """
        frames = _frames_of(video)
        world = _check_world(world)
        scene = tracking.find_tracks(frames, world=world)
        tracks = [self._describe(scene, track, world) for track in scene.tracks]
        if world == "mnist":
            for info, digit in zip(tracks, self._read_digits(scene), strict=True):
                info["digit"] = digit
        return tracks

    # -- per-track reading

    def _describe(self, scene: tracking.Scene, track: tracking.Track, world: str) -> dict:
        num_frames = scene.num_frames
        motion, measures = tracking.classify_motion(track.positions(num_frames))
        info: dict = {
            "visible": len(track.obs) / num_frames,
            "motion": motion,
            "measures": measures,
        }
        if world == "shapes":
            info.update(_read_shapes(scene, track, _readable_frames(track)))
        return info

    def _read_digits(self, scene: tracking.Scene) -> list[tuple]:
        """(digit or None, share, readings) per track, from up to MAX_DIGIT_READS crops each."""
        gray = scene.layers[tracking.GRAY]
        crops, owner = [], []
        for k, track in enumerate(scene.tracks):
            frames = _readable_frames(track)
            if len(frames) > MAX_DIGIT_READS:  # evenly spaced over the clip
                picks = np.linspace(0, len(frames) - 1, MAX_DIGIT_READS).round().astype(int)
                frames = [frames[i] for i in picks]
            for t in frames:
                blob = scene.blobs[t][track.obs[t].blob]
                keep = ndimage.maximum_filter(blob.pixels, size=3)  # ink + 2 px, as in training
                image = gray[t] * keep
                crops.append(crop_centered(image, ndimage.center_of_mass(image)))
                owner.append(k)
        labels: list = []
        if crops:
            batch = torch.from_numpy(np.stack(crops)[:, None]).float()  # (N, 1, 28, 28)
            with torch.no_grad():
                probs = self.digit_classifier(prepare_crops(batch)).softmax(1)  # (N, 11)
            # "Not a digit" only when the classifier is sure; otherwise its best digit.
            digit = probs[:, :NON_DIGIT].argmax(1)
            not_digit = probs[:, NON_DIGIT] >= 0.5
            labels = [
                None if nd else int(k)
                for k, nd in zip(digit.tolist(), not_digit.tolist(), strict=True)
            ]
        owner_arr = np.array(owner)
        return [
            _vote([labels[i] for i in np.flatnonzero(owner_arr == k)])
            for k in range(len(scene.tracks))
        ]


def _read_shapes(scene: tracking.Scene, track: tracking.Track, frames: list[int]) -> dict:
    color = None if track.layer == tracking.OTHER else track.layer
    hiders = tracking.DOMINATORS.get(track.layer, ())
    shapes, sizes = [], []
    for t in frames:
        mask, known = _half_max_mask(scene, track, t, hiders)
        shapes.append(read_shape(mask, known)[0] if mask.any() else None)
        sizes.append(read_size(*mask.shape) if mask.any() else None)
    count = len(frames)
    return {
        "color": (color, 1.0 if count else 0.0, count),
        "shape": _vote(shapes),
        "size": _vote(sizes),
    }


def _half_max_mask(
    scene: tracking.Scene, track: tracking.Track, t: int, hiders: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The object's pixels at half its peak brightness, cropped to their box, and `known`.

    Thresholding at half the object's own peak (not at the fixed foreground level) recovers
    the drawn extent of a blurred or compressed shape.
    """
    blob = scene.blobs[t][track.obs[t].blob]
    layer = scene.layers[track.layer][t] > 0.5  # (H, W)
    own = layer & blob.pixels
    bright = scene.brightness[t]
    values = bright[own]
    if not len(values):
        return own[:0, :0], None
    peak = float(np.partition(values, int(0.9 * (len(values) - 1)))[int(0.9 * (len(values) - 1))])
    mask = own & (bright >= 0.5 * peak)
    if not mask.any():
        return mask[:0, :0], None
    rows, cols = np.nonzero(mask)
    box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    hidden = [scene.layers[d][t][box] > 0.5 for d in hiders]
    known = ~np.logical_or.reduce(hidden) | mask[box] if hidden else None
    return mask[box], known


# ----------------------------------------------------------------------------- decision


def _decide(tracks: list[dict], expected: list[dict], world: str) -> Verdict:
    keys = IDENTITY_KEYS[world]
    cost = np.zeros((len(expected), len(tracks)))
    for i, obj in enumerate(expected):
        for j, info in enumerate(tracks):
            wrong = sum(info[k][0] != obj[k] for k in keys)
            cost[i, j] = wrong + 0.5 * (info["motion"] != obj["motion"]) + (1 - info["visible"])
    match: dict[int, int] = {}
    if tracks:
        rows, cols = linear_sum_assignment(cost)
        match = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    objects, reasons = [], []
    for i, obj in enumerate(expected):
        result = _judge_object(obj, tracks[match[i]] if i in match else None, keys)
        objects.append(result)
        if result["problems"]:
            reasons.append(f"{_describe_expected(obj, world)}: " + "; ".join(result["problems"]))
    persistent = [j for j, info in enumerate(tracks) if info["visible"] >= VISIBLE_MIN]
    count_ok = len(persistent) == len(expected)
    if not count_ok:
        extra = [j for j in persistent if j not in match.values()]
        seen = ", ".join(_describe_observed(tracks[j], world) for j in extra)
        reasons.append(
            f"{len(persistent)} persistent object(s) seen, {len(expected)} expected"
            + (f" (unexpected: {seen})" if seen else "")
        )
    attributes = {k: all(o[k] for o in objects) for k in (*keys, "motion")}
    attributes["count"] = count_ok
    correct = all(attributes.values())
    return Verdict(
        correct=correct, attributes=attributes, objects=objects, reason="; ".join(reasons)
    )


def _judge_object(obj: dict, info: dict | None, keys: tuple[str, ...]) -> dict:
    result: dict = {"expected": {k: obj[k] for k in (*keys, "motion")}}
    if info is None:
        result.update({k: False for k in (*keys, "motion")})
        result.update(observed=None, visible=0.0, problems=["not found in the clip"])
        return result
    problems = []
    visible = info["visible"] >= VISIBLE_MIN
    if not visible:
        problems.append(f"seen in only {info['visible']:.0%} of the frames")
    observed = {}
    for key in keys:
        value, share, count = info[key]
        observed[key] = value
        ok = visible and value == obj[key] and share >= IDENTITY_MIN
        result[key] = ok
        if value is None:
            problems.append(f"no {key} could be read ({count} readable frames)")
        elif value != obj[key]:
            problems.append(f"{key} looks like {value!r} ({share:.0%} of {count} readable frames)")
        elif share < IDENTITY_MIN:
            problems.append(f"{key} {value!r} in only {share:.0%} of {count} readable frames")
    observed["motion"] = info["motion"]
    result["motion"] = visible and info["motion"] == obj["motion"]
    if info["motion"] != obj["motion"]:
        m = info["measures"]
        detail = ", ".join(f"{k} {v}" for k, v in m.items() if k != "frames_seen")
        problems.append(f"moves {info['motion']!r} instead ({detail})")
    result.update(observed=observed, visible=round(info["visible"], 3), problems=problems)
    result["identity_share"] = {k: round(info[k][1], 3) for k in keys}
    return result


def _describe_expected(obj: dict, world: str) -> str:
    if world == "mnist":
        return f"digit {obj['digit']} moving {obj['motion']}"
    return f"{obj['size']} {obj['color']} {obj['shape']} moving {obj['motion']}"


def _describe_observed(info: dict, world: str) -> str:
    keys = IDENTITY_KEYS[world]
    identity = " ".join(str(info[k][0]) for k in keys)
    return f"{identity} moving {info['motion']}"


# ----------------------------------------------------------------------------- input checks


def _frames_of(video: Any) -> np.ndarray:
    frames = getattr(video, "frames", video)
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(
            "judge() needs a kinetoscope.video.Video or a uint8 array (T, H, W, 3); got "
            f"{type(video).__name__} {getattr(frames, 'shape', '')} {getattr(frames, 'dtype', '')}"
        )
    if frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (T >= 2, H, W, 3) RGB, got shape {frames.shape}")
    return frames


def _check_world(world: str) -> str:
    base = world.rsplit("-", 1)[0] if isinstance(world, str) else world
    if base not in IDENTITY_KEYS:
        raise ValueError(f"unknown world {world!r}; use 'mnist' or 'shapes'")
    return base


def _check_expected(expected: list[dict], world: str) -> list[dict]:
    if not isinstance(expected, list | tuple) or not expected:
        raise ValueError("expected must be a non-empty list of object dicts (manifest schema)")
    needed = (*IDENTITY_KEYS[world], "motion")
    for obj in expected:
        if not isinstance(obj, dict) or any(k not in obj for k in needed):
            raise ValueError(f"each expected {world} object needs keys {needed}, got {obj!r}")
        if obj["motion"] not in tracking.MOTIONS:
            raise ValueError(f"unknown motion {obj['motion']!r}; use one of {tracking.MOTIONS}")
    return list(expected)


def load_judge() -> Judge:
    """A Judge with the shipped digit classifier loaded (FileNotFoundError names the fix)."""
    from kinetoscope.eval.digits import load_digit_classifier

    return Judge(digit_classifier=load_digit_classifier())


def main(argv: list[str] | None = None) -> int:
    """``python -m kinetoscope.eval.judge --validate``: see `kinetoscope.eval.judge_validation`."""
    return _validation_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
