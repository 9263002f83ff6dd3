"""Exporting world clips: a folder of mp4s with ``manifest.jsonl``, and a labelled contact sheet.

Manifest schema (specs/worlds.md, "Exported clips and their manifest"), one JSON object a line::

    {"video": "0000.mp4", "caption": "the digit 7 is moving up", "world": "mnist",
     "objects": [{"digit": 7, "motion": "up"}], ...extra keys}

Extra keys written here: ``name`` (e.g. "mnist-1"), ``split``, ``seed``, ``index`` (clip index
in ``WorldDataset(name, split=split, seed=seed)``), ``fps``, and ``tracks`` (per object, aligned
with ``objects``: ``box``, ``positions`` [[x, y]] * T and, for mnist, ``image_index``).

Axis legend
    T frames, frames uint8 (T, H, W, 3); the sheet is one row per clip, frames left to right.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kinetoscope.data.worlds.common import check_seed, check_split, parse_world_name
from kinetoscope.data.worlds.dataset import WorldDataset, manifest_objects

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
SHEET_FRAMES = 8  # frames shown per clip, sampled evenly across time
SHEET_SCALE = 2  # nearest-neighbour upscaling of each frame
_GAP = 2  # px between frames and around rows
_TEXT_HEIGHT = 16  # px reserved for the caption under each row


def _atomic_temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _manifest_record(name: str, split: str, seed: int, index: int, video: str, clip) -> dict:
    tracks = []
    for obj in clip.objects:
        track = {"box": obj["box"], "positions": obj["positions"]}
        if "image_index" in obj:
            track["image_index"] = obj["image_index"]
        tracks.append(track)
    return {
        "video": video,
        "caption": clip.caption,
        "world": clip.world,
        "objects": manifest_objects(clip.world, clip.objects),
        "name": name,
        "split": split,
        "seed": seed,
        "index": index,
        "fps": clip.fps,
        "tracks": tracks,
    }


def export_world(
    name: str, *, split: str, count: int, seed: int, out_dir: str | os.PathLike
) -> Path:
    """Write clips 0..count-1 of a world as ``out_dir/0000.mp4``... plus ``manifest.jsonl``.

    Clip ``i`` is ``WorldDataset(name, split=split, seed=seed)[i]`` at the benchmark settings.
    The manifest is written last and atomically, so its presence means the export finished.
    Returns ``out_dir``.
    """
    from kinetoscope.video import Video

    parse_world_name(name)
    split, seed = check_split(split), check_seed(seed)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file; pass a directory path")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = WorldDataset(name, split=split, size=count, seed=seed)
    records = []
    for index in range(count):
        clip = dataset[index]
        video_name = f"{index:04d}.mp4"
        metadata = {"caption": clip.caption, "world": clip.world, "name": name}
        Video(clip.frames, fps=clip.fps, metadata=metadata).save(
            out_dir / video_name, sidecar=False
        )
        records.append(_manifest_record(name, split, seed, index, video_name, clip))
    manifest = out_dir / MANIFEST_NAME
    temp = _atomic_temp(manifest)
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        os.replace(temp, manifest)
    finally:
        temp.unlink(missing_ok=True)
    logger.info("exported %d %s/%s clips to %s", count, name, split, out_dir)
    return out_dir


def _sheet_row(frames: np.ndarray) -> np.ndarray:
    """Frames (T, H, W, 3) -> one strip (H*s, n*(W*s) + (n-1)*gap, 3) of evenly spaced frames."""
    count = min(SHEET_FRAMES, len(frames))
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    big = frames[picks].repeat(SHEET_SCALE, axis=1).repeat(SHEET_SCALE, axis=2)  # (n, Hs, Ws, 3)
    gap = np.full((big.shape[1], _GAP, 3), 64, dtype=np.uint8)
    pieces = []
    for k, frame in enumerate(big):
        if k:
            pieces.append(gap)
        pieces.append(frame)
    return np.concatenate(pieces, axis=1)


def preview_sheet(
    name: str,
    *,
    path: str | os.PathLike,
    split: str = "train",
    count: int = 16,
    seed: int = 0,
) -> Path:
    """Write a PNG contact sheet: per clip, 8 frames across time (2x) with its caption below.

    Clip ``i`` is ``WorldDataset(name, split=split, seed=seed)[i]``. Returns ``path``.
    """
    parse_world_name(name)
    split, seed = check_split(split), check_seed(seed)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"preview path {path} must end in .png")
    dataset = WorldDataset(name, split=split, size=count, seed=seed)
    clips = [dataset[i] for i in range(count)]
    rows = [_sheet_row(clip.frames) for clip in clips]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(probe.textlength(clip.caption, font=font) for clip in clips)
    width = max(max(row.shape[1] for row in rows), int(np.ceil(text_width))) + 2 * _GAP
    row_height = rows[0].shape[0] + _TEXT_HEIGHT + _GAP
    sheet = Image.new("RGB", (width, _GAP + row_height * count), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for k, (row, clip) in enumerate(zip(rows, clips, strict=True)):
        top = _GAP + k * row_height
        sheet.paste(Image.fromarray(row), (_GAP, top))
        draw.text((_GAP, top + row.shape[0] + 2), clip.caption, fill=(240, 240, 240), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _atomic_temp(path)
    try:
        sheet.save(temp, format="PNG")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
