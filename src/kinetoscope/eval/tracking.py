"""Finding, tracking and reading the motion of the objects in a world clip (numpy only).

The world judge (`kinetoscope.eval.judge`) turns a clip into tracks with this module, then reads
each track's identity. Nothing here knows about captions or expectations.

1. Segmentation, per frame, into blobs on "layers". Frames more than half lit, frames with
   more than 8 blobs, tiny blobs and frame-filling blobs are noise and give no blobs.
   * mnist: one layer, the gray image (max over RGB). Ink = gray > 70 (robust to H.264 noise);
     components of the ink dilated by 1 px, so broken strokes stay one digit.
   * shapes: one layer per palette colour. Each foreground pixel takes the colour of the
     brightest pixel around it (H.264 desaturates edges) and is matched to the nearest spec
     colour, allowing darkening (blurred edges), or to the overlap colour of two objects
     (red ∪ blue), which belongs to both layers. Overlaps that look like a third palette
     colour (blue ∪ yellow ≈ white, red ∪ green ≈ yellow) or like one of the two (white ∪ any)
     count as hiding the object behind; such "hiders" connect the pieces of a cut shape and
     lone overlap blobs between the two objects are dropped. Pixels far from every colour go
     to the layer "other", so off-colour objects are still found.
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

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

MOTIONS = ("left", "right", "up", "down", "left and right", "up and down")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "white": (235, 235, 235),
}
OTHER = "other"  # layer of pixels that match no palette colour
GRAY = "gray"  # the single mnist layer

FOREGROUND_THRESHOLD = 70  # uint8; matches kinetoscope.eval.digits.FOREGROUND_THRESHOLD
DIGIT_DILATION = 1  # px
MIN_AREA = 12  # px of foreground; smaller blobs are noise
MIN_OVERLAP = 6  # px: smaller clusters of an overlap colour are noise
MAX_AREA_FRACTION = 0.35  # blobs covering more of the frame are not objects (pure noise)
MAX_EXTENT_FRACTION = 0.82  # nor are blobs whose box spans more of the frame
COLOR_DISTANCE = 70.0  # max RGB distance to a (possibly darkened) palette entry
OVERLAP_LOOKALIKE = 45.0  # an overlap colour this close to a palette colour reads as it
MAX_BLOBS_PER_FRAME = 8  # more blobs in a frame: clutter, no object is read there
MAX_SHARE = 3  # tracks one blob may hold (overlapping objects)
MAX_GAP = 3  # frames a track may go unseen and still be continued
FIT_RADIUS = 6  # px searched around the prediction when fitting templates in a merged blob

MIN_DISPLACEMENT = 10.0  # px of net motion for left/right/up/down (spec)
MIN_BOUNCE_TRAVEL = 10.0  # px of range along the axis for a bounce
REVERSAL_HYSTERESIS = 3.0  # px moved back before a turn counts as a reversal
OFF_AXIS_LIMIT = 6.0  # px of range allowed on the other axis ...
OFF_AXIS_RATIO = 0.3  # ... or this fraction of the range along the motion axis, if larger


@dataclass
class Blob:
    """One connected object candidate in one frame of one layer."""

    layer: str
    pixels: np.ndarray  # bool (H, W): the component (for mnist: dilated ink)
    bbox: tuple[int, int, int, int]  # box of the foreground pixels
    area: int  # foreground pixels

    @property
    def center(self) -> tuple[float, float]:
        y0, x0, y1, x1 = self.bbox
        return ((y0 + y1) / 2, (x0 + x1) / 2)


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


def max_rgb(frames: np.ndarray) -> np.ndarray:
    """Brightest channel (..., H, W) of (..., H, W, 3) (much faster than .max(axis=-1))."""
    return np.maximum(np.maximum(frames[..., 0], frames[..., 1]), frames[..., 2])


def _components(
    fg: np.ndarray, layer: str, *, dilation: int, ink: np.ndarray | None = None
) -> list[list[Blob]]:
    """Blobs of a clip's boolean foreground `fg` (T, H, W), per frame (8-connected in a frame).

    `ink` (T, H, W) marks the pixels that count for area and box (default: `fg` itself);
    components are found on `fg` grown by `dilation` px.
    """
    t_, h, w = fg.shape
    ink = fg if ink is None else ink
    grown = fg
    if dilation:
        size = 2 * dilation + 1
        grown = ndimage.maximum_filter(fg, size=(1, size, size))
    in_frame = np.zeros((3, 3, 3), bool)
    in_frame[1] = True  # connect pixels within a frame, never across frames
    labels, count = ndimage.label(grown, structure=in_frame)
    areas = np.bincount(labels[ink], minlength=count + 1)  # ink pixels per component
    blobs: list[list[Blob]] = [[] for _ in range(t_)]
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or areas[index] < MIN_AREA:
            continue
        t = sl[0].start
        local = labels[t, sl[1], sl[2]] == index  # (h_c, w_c)
        core = local & ink[t, sl[1], sl[2]]
        area = int(core.sum())
        if area < MIN_AREA:
            continue
        rows, cols = np.nonzero(core)
        bbox = (
            sl[1].start + int(rows.min()),
            sl[2].start + int(cols.min()),
            sl[1].start + int(rows.max()) + 1,
            sl[2].start + int(cols.max()) + 1,
        )
        too_big = (
            area > MAX_AREA_FRACTION * h * w
            or max((bbox[2] - bbox[0]) / h, (bbox[3] - bbox[1]) / w) > MAX_EXTENT_FRACTION
        )
        if not too_big:
            pixels = np.zeros((h, w), bool)
            pixels[sl[1], sl[2]] = local
            blobs[t].append(Blob(layer=layer, pixels=pixels, bbox=bbox, area=area))
    return blobs


def _foreground(bright: np.ndarray) -> np.ndarray:
    """Ink pixels (T, H, W) of brightness (T, H, W); frames mostly lit (noise) get none."""
    fg = bright > FOREGROUND_THRESHOLD
    cluttered = fg.mean(axis=(1, 2)) > 0.5
    fg[cluttered] = False
    return fg


def segment_digits(frames: np.ndarray) -> tuple[dict[str, np.ndarray], list[list[Blob]]]:
    """mnist segmentation of uint8 (T, H, W, 3) -> ({"gray": (T, H, W)}, blobs per frame)."""
    gray = max_rgb(frames)  # (T, H, W)
    blobs = _components(_foreground(gray), GRAY, dilation=DIGIT_DILATION)
    return {GRAY: gray.astype(np.float32) / 255.0}, blobs


def _overlap_look(a: str, b: str) -> str | None:
    """The palette colour the overlap of colours a and b looks like (None: a colour of its own).

    The overlap shows max(a, b); when that lies within OVERLAP_LOOKALIKE of a palette colour
    (white ∪ red is white; blue ∪ yellow is nearly white), pixels there read as that colour.
    """
    combo = np.maximum(PALETTE[a], PALETTE[b])
    names = list(PALETTE)
    dist = [float(np.linalg.norm(combo - np.array(PALETTE[n]))) for n in names]
    k = int(np.argmin(dist))
    return names[k] if dist[k] < OVERLAP_LOOKALIKE else None


def _hiders() -> dict[str, tuple[str, ...]]:
    """colour -> the colours its pixels may read as where another object overlaps it."""
    out: dict[str, set[str]] = {n: set() for n in PALETTE}
    for a in PALETTE:
        for b in PALETTE:
            look = _overlap_look(a, b) if a != b else None
            if look is not None and look != a:
                out[a].add(look)
    return {n: tuple(sorted(v)) for n, v in out.items()}


def _lookalikes() -> dict[str, list[tuple[str, str]]]:
    """colour c -> pairs (a, b), neither being c, whose overlap reads as c (blue ∪ yellow: white)."""
    out: dict[str, list[tuple[str, str]]] = {n: [] for n in PALETTE}
    names = list(PALETTE)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            look = _overlap_look(a, b)
            if look is not None and look not in (a, b):
                out[look].append((a, b))
    return out


DOMINATORS = _hiders()  # e.g. red -> (white, yellow)
LOOKALIKES = _lookalikes()  # e.g. white -> [(blue, yellow)]


@functools.cache
def _palette_entries() -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Palette colours, then overlap colours of their own: (E, 3) float, layer names per entry."""
    names = list(PALETTE)
    entries = [np.array(PALETTE[n], float) for n in names]
    owners: list[tuple[str, ...]] = [(n,) for n in names]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _overlap_look(a, b) is None:  # e.g. red ∪ blue: belongs to both layers
                entries.append(np.maximum(PALETTE[a], PALETTE[b]).astype(float))
                owners.append((a, b))
    return np.stack(entries), owners


def color_distances(pixels: np.ndarray) -> np.ndarray:
    """RGB distance (N, E) of float pixels (N, 3) to each palette entry darkened to fit (>= 40%).

    Entries (see `_palette_entries`): the 5 colours first, then the pairwise maxima.
    """
    entries, _ = _palette_entries()  # (E, 3)
    norm2 = (entries**2).sum(1)  # (E,)
    scale = np.clip(pixels @ entries.T / norm2, 0.4, 1.1)  # (N, E)
    diff = pixels[:, None, :] - scale[..., None] * entries[None]  # (N, E, 3)
    return np.sqrt((diff**2).sum(-1))


def _brightest_neighbour(frames: np.ndarray, idx: tuple[np.ndarray, ...]) -> np.ndarray:
    """Colours (N, 3) of the pixels `idx`, each taken from the brightest pixel of its 3x3 patch.

    H.264 (yuv420p) halves chroma resolution, so an object's edge pixels are desaturated
    towards gray and would read as white; the object's interior next to them is not.
    """
    _, h, w, _ = frames.shape
    bright = max_rgb(frames)  # (T, H, W)
    t, y, x = idx
    offsets = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # (9, 2)
    ys = np.clip(y[:, None] + offsets[:, 0], 0, h - 1)  # (N, 9)
    xs = np.clip(x[:, None] + offsets[:, 1], 0, w - 1)
    pick = bright[t[:, None], ys, xs].argmax(1)  # (N,)
    rows = np.arange(len(t))
    return frames[t, ys[rows, pick], xs[rows, pick]]


def _label_colors(frames: np.ndarray, fg: np.ndarray) -> tuple[tuple, np.ndarray, np.ndarray]:
    """Palette entry and distance of every foreground pixel of (T, H, W, 3) frames.

    An overlap entry ("red ∪ green") is kept only where it forms a cluster of >= MIN_OVERLAP
    px and one of its colours shows plainly in the same connected foreground region (>=
    MIN_AREA px); otherwise noise on a white shape could pass for "blue ∪ yellow". Returns
    (pixel index tuple, entry (N,), distance (N,)).
    """
    idx = np.nonzero(fg)
    dist = color_distances(_brightest_neighbour(frames, idx).astype(np.float32))  # (N, E)
    num_colors = len(PALETTE)
    best = dist.argmin(1)
    pure = dist[:, :num_colors].argmin(1)
    rows = np.arange(len(best))
    in_frame = np.zeros((3, 3, 3), bool)
    in_frame[1] = True
    regions, count = ndimage.label(fg, structure=in_frame)
    region = regions[idx]  # (N,)
    plain = (best < num_colors) & (dist[rows, best] <= COLOR_DISTANCE)
    shown = np.zeros((count + 1, num_colors), int)  # plain pixels per (region, colour)
    np.add.at(shown, (region[plain], best[plain]), 1)
    _, owners = _palette_entries()
    names = list(PALETTE)
    pair = np.array([[names.index(o[0]), names.index(o[-1])] for o in owners])  # (E, 2)
    combo = best >= num_colors
    either = (shown[region, pair[best, 0]] >= MIN_AREA) | (shown[region, pair[best, 1]] >= MIN_AREA)
    clustered = np.zeros(len(best), bool)
    for entry in np.unique(best[combo]):
        hit = best == entry
        mask = np.zeros(fg.shape, bool)
        mask[tuple(i[hit] for i in idx)] = True
        labels, _ = ndimage.label(mask, structure=in_frame)
        sizes = np.bincount(labels.ravel())
        clustered[hit] = sizes[labels[tuple(i[hit] for i in idx)]] >= MIN_OVERLAP
    best = np.where(combo & ~(either & clustered), pure, best)
    return idx, best, dist[rows, best]


def segment_shapes(frames: np.ndarray) -> tuple[dict[str, np.ndarray], list[list[Blob]]]:
    """shapes segmentation of uint8 (T, H, W, 3) -> (colour layers (T, H, W), blobs per frame)."""
    t_, h, w, _ = frames.shape
    fg = _foreground(max_rgb(frames))  # (T, H, W)
    _, owners = _palette_entries()
    names = [*PALETTE, OTHER]
    layers = {n: np.zeros((t_, h, w), bool) for n in names}
    if fg.any():
        idx, best, dist = _label_colors(frames, fg)
        for e, owner in enumerate(owners):
            hit = (best == e) & (dist <= COLOR_DISTANCE)
            for name in owner:
                layers[name][tuple(i[hit] for i in idx)] = True
        far = dist > COLOR_DISTANCE
        layers[OTHER][tuple(i[far] for i in idx)] = True
    blobs: list[list[Blob]] = [[] for _ in range(t_)]
    for name in names:
        if not layers[name].any():
            continue
        # Pixels of a colour that hides this one (white hides all) connect the pieces of a
        # shape cut by an object in front of it.
        fg_layer = np.logical_or.reduce(
            [layers[name], *(layers[d] for d in DOMINATORS.get(name, ()))]
        )
        for t, frame_blobs in enumerate(_components(fg_layer, name, dilation=0, ink=layers[name])):
            blobs[t] += frame_blobs
    blobs = [
        _drop_overlap_lookalikes(frame_blobs, layers, t) for t, frame_blobs in enumerate(blobs)
    ]
    return {n: m.astype(np.float32) for n, m in layers.items()}, blobs


def _drop_overlap_lookalikes(blobs: list[Blob], layers: dict, t: int) -> list[Blob]:
    """Drop blobs that are the overlap of two others (white between touching blue and yellow)."""
    if len(blobs) > MAX_BLOBS_PER_FRAME:
        return blobs  # clutter: find_tracks ignores this frame anyway
    kept = []
    for blob in blobs:
        if not LOOKALIKES.get(blob.layer):
            kept.append(blob)
            continue
        core = blob.pixels & layers[blob.layer][t]
        ring = ndimage.binary_dilation(core, structure=np.ones((3, 3), bool))
        touching = {
            o.layer for o in blobs if o is not blob and (ring & layers[o.layer][t] & o.pixels).any()
        }
        if not any(a in touching and b in touching for a, b in LOOKALIKES.get(blob.layer, ())):
            kept.append(blob)
    return kept


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
