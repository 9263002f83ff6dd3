"""A dataset of your own captioned clips in a folder.

Every clip is read with ``kinetoscope.video.Video.read`` (mp4, webm, gif, webp, or a folder of
PNG frames), centre-cropped to a square, resized to ``resolution`` and sampled to
``num_frames`` frames.

Captions are looked up in this order (the first source present is used for the whole folder):
    1. ``manifest.jsonl``: one JSON object a line with at least ``"video"`` (path relative to
       the folder) and ``"caption"``, the schema ``kinetoscope data export`` writes.
    2. ``captions.txt``: one clip a line, ``<video path relative to the folder><TAB><caption>``;
       blank lines and lines starting with ``#`` are skipped.
    3. a sidecar text file per clip: ``clip.txt`` next to ``clip.mp4``, and for a frame folder
       ``frames.txt`` next to it or ``frames/caption.txt`` inside it.

Frame sampling: frame k of the output is source frame ``round(k * stride)`` from the start,
with ``stride = source_fps / fps`` (``stride = 1`` when ``fps`` is None, i.e. consecutive
frames). A clip too short for that raises a ValueError naming it.

Axis legend
    T frames, H x W source size, R = resolution; output frames uint8 (T, R, R, 3).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".webp")
MANIFEST_NAME = "manifest.jsonl"
CAPTIONS_NAME = "captions.txt"


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(child.suffix.lower() == ".png" for child in path.iterdir())


def _discover(root: Path) -> list[Path]:
    clips = [
        path
        for path in sorted(root.iterdir())
        if (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES) or _is_frame_folder(path)
    ]
    if not clips:
        raise ValueError(
            f"no clips found in {root}; expected {', '.join(VIDEO_SUFFIXES)} files "
            "or folders of PNG frames"
        )
    return clips


def _read_manifest(root: Path) -> list[tuple[Path, str]]:
    items = []
    lines = (root / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append((root / record["video"], str(record["caption"])))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{root / MANIFEST_NAME} line {number} is not a JSON object with "
                f"'video' and 'caption': {line[:80]!r}"
            ) from err
    return items


def _read_captions_txt(root: Path) -> list[tuple[Path, str]]:
    items = []
    lines = (root / CAPTIONS_NAME).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, tab, caption = line.partition("\t")
        if not tab or not caption.strip():
            raise ValueError(
                f"{root / CAPTIONS_NAME} line {number} must be '<video><TAB><caption>', "
                f"got {line[:80]!r}"
            )
        items.append((root / name.strip(), caption.strip()))
    return items


def _sidecar_caption(clip: Path) -> str | None:
    candidates = [clip.with_suffix(".txt") if clip.is_file() else clip.parent / f"{clip.name}.txt"]
    if clip.is_dir():
        candidates.append(clip / "caption.txt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    return None


def _read_sidecars(root: Path) -> list[tuple[Path, str]]:
    clips = _discover(root)
    items, missing = [], []
    for clip in clips:
        caption = _sidecar_caption(clip)
        if caption:
            items.append((clip, caption))
        else:
            missing.append(clip.name)
    if missing:
        raise ValueError(
            f"{len(missing)} clip(s) in {root} have no caption (e.g. {', '.join(missing[:3])}); "
            f"add {MANIFEST_NAME}, {CAPTIONS_NAME} or a .txt file next to each clip"
        )
    return items


def center_crop_resize(frames: np.ndarray, resolution: int) -> np.ndarray:
    """Centre square crop of (T, H, W, 3) uint8 frames, resized to (T, R, R, 3) (bicubic)."""
    _, height, width, _ = frames.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frames[:, top : top + side, left : left + side]  # (T, side, side, 3)
    if side == resolution:
        return np.ascontiguousarray(crop)
    resized = [
        np.asarray(
            Image.fromarray(frame).resize((resolution, resolution), Image.Resampling.BICUBIC)
        )
        for frame in crop
    ]
    return np.stack(resized)  # (T, R, R, 3)


class ClipFolderDataset(torch.utils.data.Dataset):
    """Captioned clips from a folder: ``ds[i]`` -> (frames uint8 (T, R, R, 3), caption).

    Args:
        root: the folder (see the module docstring for the caption sources).
        num_frames: frames per sample T.
        resolution: output side R after the centre crop.
        fps: resample to this frame rate (None keeps consecutive source frames).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        num_frames: int = 16,
        resolution: int = 64,
        fps: float | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"clip folder {self.root} does not exist or is not a folder")
        for what, value in (("num_frames", num_frames), ("resolution", resolution)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if fps is not None and not (isinstance(fps, int | float) and np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        self.num_frames, self.resolution, self.fps = num_frames, resolution, fps
        if (self.root / MANIFEST_NAME).is_file():
            self.items = _read_manifest(self.root)
        elif (self.root / CAPTIONS_NAME).is_file():
            self.items = _read_captions_txt(self.root)
        else:
            self.items = _read_sidecars(self.root)
        if not self.items:
            raise ValueError(f"no clips listed in {self.root}; the caption file is empty")
        absent = [str(path) for path, _ in self.items if not path.exists()]
        if absent:
            raise FileNotFoundError(
                f"{len(absent)} listed clip(s) are missing, e.g. {', '.join(absent[:3])}"
            )
        logger.info("clip folder %s: %d clips", self.root, len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def caption(self, index: int) -> str:
        return self.items[index][1]

    def _frame_indices(self, path: Path, total: int, source_fps: float) -> np.ndarray:
        stride = 1.0 if self.fps is None else source_fps / self.fps
        indices = np.rint(np.arange(self.num_frames) * stride).astype(np.int64)  # (T,)
        if indices[-1] >= total:
            raise ValueError(
                f"{path} has {total} frames; {self.num_frames} frames at stride {stride:.3g} "
                f"need {indices[-1] + 1}; lower num_frames or fps"
            )
        return indices

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        from kinetoscope.video import Video

        path, caption = self.items[index]
        video = Video.read(path)
        indices = self._frame_indices(path, video.num_frames, video.fps)
        frames = center_crop_resize(video.frames[indices], self.resolution)
        return frames, caption
