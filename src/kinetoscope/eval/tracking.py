"""Finding, tracking and reading the motion of the objects in a world clip (numpy only).

The world judge (`kinetoscope.eval.judge`) turns a clip into tracks with this module, then reads
each track's identity. Nothing here knows about captions or expectations.

1. Segmentation, per frame, into blobs on "layers" (`kinetoscope.eval.segmentation`; its
   names used elsewhere are re-exported here). Frames with more than 8 blobs are clutter and
   give no blobs.
2. Tracking from the frame where most objects are apart, forwards and backwards: Hungarian
   assignment of blobs to the tracks' constant-velocity predictions (gated). When tracks end
   up in one blob (overlapping digits), all claim it and their positions come from fitting
   their templates (their look in the nearest frame where they were alone) to the blob:
   coordinate descent on |frame - max(templates)| near the predictions. Shapes cut by an
   object in front are re-placed the same way and marked occluded.
3. Motion: from the track's box centres, one of the six world motions or None
   (net displacement >= 10 px with little motion on the other axis; bounces need travel along
   the axis with at least one reversal).

Axes and units: T frames, H W pixels; positions are (y, x) = (row, column) of a box centre in
px; bbox = (y0, x0, y1, x1) with exclusive ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

# The segmentation's public names stay importable from here (the judge reads GRAY, OTHER and
# DOMINATORS from this module).
from kinetoscope.eval.segmentation import (  # noqa: F401
    COLOR_DISTANCE,
    DIGIT_DILATION,
    DOMINATORS,
    FOREGROUND_THRESHOLD,
    GRAY,
    LOOKALIKES,
    MAX_AREA_FRACTION,
    MAX_BLOBS_PER_FRAME,
    MAX_EXTENT_FRACTION,
    MIN_AREA,
    MIN_OVERLAP,
    OTHER,
    OVERLAP_LOOKALIKE,
    PALETTE,
    Blob,
    color_distances,
    max_rgb,
    segment_digits,
    segment_shapes,
)

MOTIONS = ("left", "right", "up", "down", "left and right", "up and down")
MAX_SHARE = 3  # tracks one blob may hold (overlapping objects)
MAX_GAP = 3  # frames a track may go unseen and still be continued
FIT_RADIUS = 6  # px searched around the prediction when fitting templates in a merged blob

MIN_DISPLACEMENT = 10.0  # px of net motion for left/right/up/down (spec)
MIN_BOUNCE_TRAVEL = 10.0  # px of range along the axis for a bounce
REVERSAL_HYSTERESIS = 3.0  # px moved back before a turn counts as a reversal
OFF_AXIS_LIMIT = 6.0  # px of range allowed on the other axis ...
OFF_AXIS_RATIO = 0.3  # ... or this fraction of the range along the motion axis, if larger


@dataclass
class Observation:
    """Where a track is in one frame. kind: "own" (its own blob) or "merged" (shares a blob)."""

    kind: str
    blob: int  # index into that frame's blob list
    center: tuple[float, float]
    occluded: bool = False  # partly hidden behind a brighter object (shapes): no identity vote


@dataclass
class Track:
    layer: str
    obs: dict[int, Observation] = field(default_factory=dict)

    def frames(self, kind: str | None = None) -> list[int]:
        return sorted(t for t, o in self.obs.items() if kind is None or o.kind == kind)

    def positions(self, num_frames: int) -> np.ndarray:
        """(T, 2) box centres (y, x), NaN where the track is not seen."""
        out = np.full((num_frames, 2), np.nan)
        for t, o in self.obs.items():
            out[t] = o.center
        return out


@dataclass
class Scene:
    """Segmentation + tracks of one clip."""

    layers: dict[str, np.ndarray]  # name -> float (T, H, W) in [0, 1] used for template fits
    blobs: list[list[Blob]]  # per frame
    tracks: list[Track]
    brightness: np.ndarray | None = None  # float (T, H, W) in [0, 1]: max over RGB

    @property
    def num_frames(self) -> int:
        return len(self.blobs)


# ----------------------------------------------------------------------------- segmentation

# ----------------------------------------------------------------------------- tracking


def _predict(
    track: Track, t: int, *, size: tuple[int, int], shape: tuple[int, int], direction: int = 1
) -> np.ndarray:
    """Constant-velocity guess of the centre at frame t from the 3 nearest observations.

    direction +1 (forward pass) extrapolates from earlier frames, -1 from later ones; the
    other side is used only when that one is empty.
    """
    known = [f for f in track.frames() if f != t]
    before, after = [f for f in known if f < t], [f for f in known if f > t]
    side = (before or after) if direction > 0 else (after or before)
    near = sorted(side, key=lambda f: abs(f - t))[:3]
    if not near:  # seen only at t itself
        return np.array(track.obs[t].center)
    pts = np.array([track.obs[f].center for f in near])
    if len(near) == 1:
        guess = pts[0]
    else:
        frames = np.array(near, float) - near[0]
        centered = frames - frames.mean()
        slope = centered @ (pts - pts.mean(0)) / (centered @ centered)  # least-squares (2,)
        guess = pts[0] + slope * (t - near[0])
    low = np.array(size) / 2
    high = np.array(shape) - low
    return np.clip(guess, low, np.maximum(low, high))


def _template(
    scene: Scene, track: Track, t: int, direction: int = 1
) -> tuple[np.ndarray, tuple[float, float]]:
    """Look of a track in its own-blob frame nearest to t: (h, w) patch and its centre offset.

    Frames on the side the pass comes from (earlier for direction +1) are preferred.
    """
    own = [f for f in track.frames("own") if f != t] or [f for f in track.frames() if f != t] or [t]
    side = [f for f in own if (t - f) * direction > 0] or own
    src = min(side, key=lambda f: abs(f - t))
    blob = scene.blobs[src][track.obs[src].blob]
    y0, x0, y1, x1 = blob.bbox
    image = scene.layers[track.layer][src] * blob.pixels
    return image[y0:y1, x0:x1], ((y1 - y0) / 2, (x1 - x0) / 2)


def _fit_merged(
    scene: Scene, t: int, blob_index: int, claimants: list[Track], direction: int
) -> None:
    """Place the claimants' templates in a shared blob; store their observations as merged."""
    blob = scene.blobs[t][blob_index]
    h, w = blob.pixels.shape
    image = scene.layers[blob.layer][t] * blob.pixels  # (H, W): only this blob
    templates = [_template(scene, k, t, direction) for k in claimants]
    pad = max(max(patch.shape) for patch, _ in templates) + FIT_RADIUS
    canvas = np.pad(image, pad)  # (H + 2 pad, W + 2 pad)
    placed = []
    for track, (patch, offset) in zip(claimants, templates, strict=True):
        guess = _predict(track, t, size=patch.shape, shape=(h, w), direction=direction)
        top_left = np.round(guess - np.array(offset)).astype(int) + pad
        placed.append([patch, offset, top_left, top_left.copy()])
    for _ in range(2 if len(placed) > 1 else 1):  # coordinate descent over the claimants
        for k, (patch, _, start, _current) in enumerate(placed):
            others = np.zeros_like(canvas)
            for j, (p2, _, _, cur2) in enumerate(placed):
                if j != k:
                    region = others[
                        cur2[0] : cur2[0] + p2.shape[0], cur2[1] : cur2[1] + p2.shape[1]
                    ]
                    np.maximum(region, p2, out=region)
            placed[k][3] = _best_offset(canvas, others, patch, start)
    for track, (_, offset, _, current) in zip(claimants, placed, strict=True):
        center = (current[0] - pad + offset[0], current[1] - pad + offset[1])
        track.obs[t] = Observation("merged", blob_index, (float(center[0]), float(center[1])))


def _best_offset(
    canvas: np.ndarray,
    others: np.ndarray,
    patch: np.ndarray,
    start: np.ndarray,
    *,
    radius: int = FIT_RADIUS,
) -> np.ndarray:
    """Top-left within `radius` of `start` minimising |canvas - max(others, patch)| (+ prior)."""
    ph, pw = patch.shape
    r = radius
    y0, x0 = max(start[0] - r, 0), max(start[1] - r, 0)
    y1 = min(start[0] + r, canvas.shape[0] - ph)
    x1 = min(start[1] + r, canvas.shape[1] - pw)
    if y1 < y0 or x1 < x0:
        return start
    view = np.s_[y0 : y1 + ph, x0 : x1 + pw]
    win_c = np.lib.stride_tricks.sliding_window_view(canvas[view], (ph, pw))  # (Ny, Nx, ph, pw)
    win_o = np.lib.stride_tricks.sliding_window_view(others[view], (ph, pw))

    def cost(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:  # top-lefts (N,) -> (N,)
        c, o = win_c[ys - y0, xs - x0], win_o[ys - y0, xs - x0]  # (N, ph, pw)
        gain = np.abs(c - np.maximum(o, patch)).sum((1, 2)) - np.abs(c - o).sum((1, 2))
        return gain + 0.05 * ((ys - start[0]) ** 2 + (xs - start[1]) ** 2)

    # Coarse grid (every 2 px), then the 3x3 neighbourhood of its best point.
    ys, xs = np.meshgrid(np.arange(y0, y1 + 1, 2), np.arange(x0, x1 + 1, 2), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    k = int(cost(ys, xs).argmin())
    ys, xs = np.meshgrid(np.arange(-1, 2) + ys[k], np.arange(-1, 2) + xs[k], indexing="ij")
    inside = (ys >= y0) & (ys <= y1) & (xs >= x0) & (xs <= x1)
    ys, xs = ys[inside], xs[inside]
    k = int(cost(ys, xs).argmin())
    return np.array([ys[k], xs[k]])


def _claim(
    scene: Scene, t: int, track: Track, owners: dict[int, list[Track]], direction: int
) -> bool:
    """Put an unmatched track in the blob its prediction falls in (nearest centre first).

    A free blob becomes the track's own; a blob that already has a track is shared, and all
    tracks in it are re-placed by template fits.
    """
    shape = scene.layers[track.layer].shape[1:]
    patch, _ = _template(scene, track, t, direction)
    guess = _predict(track, t, size=patch.shape, shape=shape, direction=direction)
    hits = []
    for index, blob in enumerate(scene.blobs[t]):
        y0, x0, y1, x1 = blob.bbox
        if (
            blob.layer == track.layer
            and y0 - 4 <= guess[0] <= y1 + 4
            and x0 - 4 <= guess[1] <= x1 + 4
        ):
            hits.append((float(np.hypot(*(guess - np.array(blob.center)))), index))
    if not hits:
        return False
    index = min(hits)[1]
    if len(owners.get(index, ())) >= MAX_SHARE:
        return False
    if index not in owners:
        track.obs[t] = Observation("own", index, scene.blobs[t][index].center)
        owners[index] = [track]
    else:
        owners[index].append(track)
        _fit_merged(scene, t, index, owners[index], direction)
    return True


def _step(
    scene: Scene, t: int, tracks: list[Track], owners: dict[int, list[Track]], direction: int
) -> None:
    """Assign frame t's blobs to `tracks` (Hungarian on predicted distance), then merges."""
    blobs = scene.blobs[t]
    free = [i for i in range(len(blobs)) if i not in owners]
    cost = np.full((len(tracks), len(free)), 1e6)
    shape = blobs[0].pixels.shape if blobs else (0, 0)
    for a, track in enumerate(tracks):
        gap = min(abs(f - t) for f in track.obs)
        guess = None
        for b, i in enumerate(free):
            if blobs[i].layer != track.layer:
                continue
            if guess is None:
                guess = _predict(track, t, size=(0, 0), shape=shape, direction=direction)
            dist = float(np.hypot(*(guess - np.array(blobs[i].center))))
            if dist <= 10 + 4 * gap:
                cost[a, b] = dist
    matched = set()
    if cost.size:
        for a, b in zip(*linear_sum_assignment(cost), strict=True):
            if cost[a, b] < 1e6:
                i = free[b]
                tracks[a].obs[t] = Observation("own", i, blobs[i].center)
                owners[i] = [tracks[a]]
                matched.add(a)
    for a, track in enumerate(tracks):
        if a not in matched:
            _claim(scene, t, track, owners, direction)


def _join_tracklets(scene: Scene) -> None:
    """Join a track that ends to one of the same layer that starts soon after where expected."""
    shape = scene.blobs and scene.layers[next(iter(scene.layers))].shape[1:]
    changed = True
    while changed:
        changed = False
        best = None
        for a in scene.tracks:
            for b in scene.tracks:
                end, start = max(a.obs), min(b.obs)
                if a is b or a.layer != b.layer or not 0 < start - end <= 2 * MAX_GAP + 2:
                    continue
                guess = _predict(a, start, size=(0, 0), shape=shape, direction=1)
                dist = float(np.hypot(*(guess - np.array(b.obs[start].center))))
                if dist <= 10 + 2 * (start - end) and (best is None or dist < best[0]):
                    best = (dist, a, b)
        if best is not None:
            _, a, b = best
            a.obs.update(b.obs)
            scene.tracks.remove(b)
            changed = True


def _anchor_frame(blobs: list[list[Blob]]) -> int:
    """The frame to start tracking from: the first with the most blobs seen in >= 2 frames."""
    counts = np.array([len(b) for b in blobs])
    repeated = [c for c in set(counts.tolist()) if (counts == c).sum() >= 2]
    target = max(repeated) if repeated else int(counts.max())
    return int(np.flatnonzero(counts == target)[0])


def _extend(scene: Scene, track: Track, owners: list[dict], direction: int) -> None:
    """Continue a track from its first (direction -1) or last (+1) frame while it is found."""
    t = (min(track.obs) if direction < 0 else max(track.obs)) + direction
    while 0 <= t < len(scene.blobs):
        edge = min(track.obs) if direction < 0 else max(track.obs)
        if abs(edge - t) > MAX_GAP + 1:
            break
        if t not in track.obs:
            _step(scene, t, [track], owners[t], direction)
        t += direction


def track_objects(layers: dict[str, np.ndarray], blobs: list[list[Blob]]) -> Scene:
    """Link per-frame blobs into tracks.

    Tracks start at the anchor frame (most objects apart) and are followed forwards and
    backwards; tracks born later are followed back towards the anchor too, so a merge seen
    from either side is resolved by template fits. Tracks never seen alone are dropped.
    """
    scene = Scene(layers=layers, blobs=blobs, tracks=[])
    if not any(blobs):
        return scene
    owners: list[dict[int, list[Track]]] = [{} for _ in blobs]
    anchor = _anchor_frame(blobs)
    born: list[tuple[Track, int]] = []
    order = [*range(anchor, len(blobs)), *range(anchor - 1, -1, -1)]
    for t in order:
        direction = 1 if t >= anchor else -1
        active = [k for k in scene.tracks if min(abs(f - t) for f in k.obs) <= MAX_GAP + 1]
        _step(scene, t, active, owners[t], direction)
        for i, blob in enumerate(blobs[t]):
            if i not in owners[t]:
                track = Track(layer=blob.layer, obs={t: Observation("own", i, blob.center)})
                owners[t][i] = [track]
                scene.tracks.append(track)
                if t != anchor:
                    born.append((track, direction))
    _join_tracklets(scene)
    for track, direction in born:
        if track in scene.tracks:
            _extend(scene, track, owners, -direction)
    scene.tracks = [k for k in scene.tracks if k.frames("own")]
    return scene


def refine_occluded(scene: Scene) -> None:
    """Shapes: re-place tracks whose blob is cut by a brighter object in front of them.

    The blob's box is then smaller than the object, so its centre is off. The track's full
    look (from a frame where its box has its usual size) is fitted to "own colour, or a colour
    that could hide it" instead, and the observation is marked occluded (no identity vote).
    """
    for track in scene.tracks:
        hiding = DOMINATORS.get(track.layer)
        own = track.frames("own")
        if not hiding or len(own) < 2:
            continue
        dims = {}
        for t in own:
            y0, x0, y1, x1 = scene.blobs[t][track.obs[t].blob].bbox
            dims[t] = np.array([y1 - y0, x1 - x0])
        full = np.percentile(np.stack(list(dims.values())), 75, axis=0)
        whole = [t for t in own if (dims[t] >= full - 1).all()]
        for t in own:
            if t in whole or not whole:
                continue
            ref = min(whole, key=lambda f: abs(f - t))
            blob = scene.blobs[ref][track.obs[ref].blob]
            y0, x0, y1, x1 = blob.bbox
            patch = (scene.layers[track.layer][ref] * blob.pixels)[y0:y1, x0:x1]
            cover = np.maximum.reduce([scene.layers[d][t] for d in hiding])
            canvas = np.maximum(scene.layers[track.layer][t], 0.5 * cover)
            pad = int(max(patch.shape))
            canvas = np.pad(canvas, pad)
            offset = np.array(patch.shape) / 2
            start = np.round(np.array(track.obs[t].center) - offset).astype(int) + pad
            radius = int(max(patch.shape) // 2 + 1)
            best = _best_offset(canvas, np.zeros_like(canvas), patch, start, radius=radius)
            center = best - pad + offset
            track.obs[t] = Observation(
                "own", track.obs[t].blob, (float(center[0]), float(center[1])), occluded=True
            )


# ----------------------------------------------------------------------------- motion


def _reversals(values: np.ndarray) -> int:
    """Turns of a 1-d path that go back at least REVERSAL_HYSTERESIS px from the extreme."""
    count, direction, extreme = 0, 0, values[0]
    for v in values[1:]:
        if direction == 0:
            if abs(v - extreme) >= REVERSAL_HYSTERESIS:
                direction, extreme = (1 if v > extreme else -1), v
        elif (v - extreme) * direction > 0:
            extreme = v
        elif (extreme - v) * direction >= REVERSAL_HYSTERESIS:
            count, direction, extreme = count + 1, -direction, v
    return count


def classify_motion(positions: np.ndarray) -> tuple[str | None, dict]:
    """One of MOTIONS (or None) for (T, 2) box centres (y, x), NaN where unseen.

    Returns the motion and the measurements it was read from.
    """
    seen = ~np.isnan(positions).any(axis=1)
    pts = positions[seen]
    info: dict = {"frames_seen": int(seen.sum())}
    if len(pts) < 3:
        return None, info
    smooth = pts  # no smoothing: a bounce's turning point is a single-frame extreme
    ranges = smooth.max(0) - smooth.min(0)  # (2,) y, x
    net = smooth[-2:].mean(0) - smooth[:2].mean(0)
    turns = [_reversals(smooth[:, k]) for k in range(2)]
    info.update(
        range_y=round(float(ranges[0]), 1),
        range_x=round(float(ranges[1]), 1),
        net_y=round(float(net[0]), 1),
        net_x=round(float(net[1]), 1),
        reversals_y=turns[0],
        reversals_x=turns[1],
    )
    axis = int(ranges[1] >= ranges[0])  # 1 = x (horizontal), 0 = y
    other = 1 - axis
    if ranges[other] > max(OFF_AXIS_LIMIT, OFF_AXIS_RATIO * ranges[axis]):
        return None, info
    if turns[axis] >= 1:
        if ranges[axis] < MIN_BOUNCE_TRAVEL:
            return None, info
        return ("left and right" if axis == 1 else "up and down"), info
    if abs(net[axis]) < MIN_DISPLACEMENT:
        return None, info
    if axis == 1:
        return ("right" if net[axis] > 0 else "left"), info
    return ("down" if net[axis] > 0 else "up"), info


def find_tracks(frames: np.ndarray, *, world: str) -> Scene:
    """Segment and track a clip: uint8 (T, H, W, 3) of the `mnist` or `shapes` world -> Scene."""
    if world == "mnist":
        layers, blobs = segment_digits(frames)
    elif world == "shapes":
        layers, blobs = segment_shapes(frames)
    else:
        raise ValueError(f"unknown world {world!r}; use 'mnist' or 'shapes'")
    # A frame broken into many blobs is clutter (noise), not a scene of a few objects.
    blobs = [[] if len(frame) > MAX_BLOBS_PER_FRAME else frame for frame in blobs]
    scene = track_objects(layers, blobs)
    scene.brightness = max_rgb(frames).astype(np.float32) / 255.0
    if world == "shapes":
        refine_occluded(scene)
    return scene
