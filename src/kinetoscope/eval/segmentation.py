"""Segmenting the frames of a world clip into blobs, object candidates on "layers" (numpy only).

The first step of `kinetoscope.eval.tracking` (which links the blobs into tracks) and so of
the world judge. Frames more than half lit, tiny blobs and frame-filling blobs are noise and
give no blobs (`find_tracks` also ignores frames with more than 8 blobs).

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

Axes and units: T frames, H W pixels; bbox = (y0, x0, y1, x1) with exclusive ends.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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
