"""``Video``: what users get from every pipeline, and the one place frames become tensors.

A Video holds uint8 frames (T, H, W, 3), a frame rate and a metadata dict (the generation
settings). Inside models a video is (B, C, T, H, W) float in [-1, 1]; ``to_tensor`` /
``from_tensor`` (and the batch helpers) are the only conversions between the two.

Export is chosen by extension: ``.mp4`` (H.264, yuv420p, +faststart; odd sizes padded to
even and cropped back on read), ``.webm`` (VP9), ``.gif`` / ``.webp`` (animated, Pillow), or a
path without suffix for a folder of PNG frames. A JSON sidecar (``name.json``, or
``settings.json`` inside a frame folder) records the metadata, fps, size and package version.
Files are written to a temporary name and renamed, so nothing half-written is left behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".webp")
_ENCODERS = {".mp4": "libx264", ".webm": "libvpx-vp9"}
_RANGE_TOLERANCE = 1e-3


class Video:
    """Frames uint8 (T, H, W, 3) + fps + metadata."""

    def __init__(
        self, frames: np.ndarray, *, fps: float = 8.0, metadata: dict[str, Any] | None = None
    ) -> None:
        if isinstance(frames, torch.Tensor):
            raise ValueError(
                "Video takes uint8 numpy frames (T, H, W, 3); use Video.from_tensor for tensors in [-1, 1]"
            )
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(
                f"Video frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}"
            )
        if frames.dtype != np.uint8:
            raise ValueError(
                f"Video frames must be uint8, got {frames.dtype}; convert float tensors in [-1, 1] "
                "with Video.from_tensor"
            )
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.frames = np.ascontiguousarray(frames)
        self.fps = float(fps)
        self.metadata = dict(metadata or {})

    # ------------------------------------------------------------------ basics
    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: slice | int) -> Video:
        frames = self.frames[index]
        if frames.ndim == 3:
            frames = frames[None]
        return Video(frames, fps=self.fps, metadata=self.metadata)

    def __repr__(self) -> str:
        return f"Video({self.num_frames} frames, {self.width}x{self.height}, {self.fps:g} fps)"

    @staticmethod
    def concat(videos: Sequence[Video]) -> Video:
        """Join videos along time (same size required; fps and metadata of the first)."""
        if not videos:
            raise ValueError("nothing to concatenate")
        sizes = {(v.height, v.width) for v in videos}
        if len(sizes) > 1:
            raise ValueError(f"cannot concatenate videos of different sizes {sorted(sizes)}")
        return Video(
            np.concatenate([v.frames for v in videos]),
            fps=videos[0].fps,
            metadata=videos[0].metadata,
        )

    # ------------------------------------------------------------------ tensors
    def to_tensor(self, *, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(C, T, H, W) in [-1, 1]."""
        tensor = torch.from_numpy(self.frames).to(device=device, dtype=dtype)
        return (tensor / 127.5 - 1.0).permute(3, 0, 1, 2)

    @classmethod
    def from_tensor(
        cls, tensor: torch.Tensor, *, fps: float = 8.0, metadata: dict | None = None
    ) -> Video:
        """(C, T, H, W) float in [-1, 1] -> Video (values outside the range raise)."""
        if tensor.ndim != 4 or tensor.shape[0] != 3:
            raise ValueError(f"expected a (C=3, T, H, W) tensor, got shape {tuple(tensor.shape)}")
        x = tensor.detach().float().cpu()
        if not torch.isfinite(x).all():
            raise ValueError("video tensor contains NaN or inf values")
        low, high = x.min().item(), x.max().item()
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"video tensor values must lie in [-1, 1], got [{low:.3f}, {high:.3f}]; clamp or rescale first"
            )
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        return cls(frames, fps=fps, metadata=metadata)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, *, sidecar: bool = True) -> Path:
        """Write by extension (.mp4 .webm .gif .webp, or a folder of PNGs); returns the path."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix and suffix not in VIDEO_SUFFIXES:
            raise ValueError(
                f"unsupported video extension {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES)} or a folder"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not suffix:
            self._save_frames(path)
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=suffix, dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                if suffix in _ENCODERS:
                    self._save_av(tmp, _ENCODERS[suffix])
                else:
                    self._save_pillow(tmp, suffix)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        if sidecar:
            target = path / "settings.json" if not suffix else path.with_suffix(".json")
            _write_text(target, json.dumps(self._sidecar(), indent=2, default=str))
        return path

    def _sidecar(self) -> dict[str, Any]:
        import kinetoscope

        return {
            **self.metadata,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "width": self.width,
            "height": self.height,
            "kinetoscope_version": kinetoscope.__version__,
        }

    def _save_av(self, path: Path, codec: str) -> None:
        import av

        if codec not in av.codecs_available:
            raise RuntimeError(
                f"encoder {codec} is not available in this PyAV build; reinstall PyAV (`pip install av`)"
            )
        frames = self.frames
        pad_h, pad_w = self.height % 2, self.width % 2
        if pad_h or pad_w:  # yuv420p needs even sizes: replicate the last row/column
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        options = {"movflags": "+faststart"} if path.suffix == ".mp4" else {}
        with av.open(str(path), mode="w", format=path.suffix[1:], options=options) as container:
            stream = container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18"} if codec == "libx264" else {"crf": "20", "b": "0"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    def _save_pillow(self, path: Path, suffix: str) -> None:
        from PIL import Image

        images = [Image.fromarray(frame) for frame in self.frames]
        duration = max(int(round(1000 / self.fps)), 1)
        options = {"lossless": True} if suffix == ".webp" else {"disposal": 1}
        images[0].save(
            path,
            format=suffix[1:].upper(),
            save_all=True,
            append_images=images[1:],
            duration=duration,
            loop=0,
            **options,
        )

    def _save_frames(self, folder: Path) -> None:
        from PIL import Image

        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        for i, frame in enumerate(self.frames):
            Image.fromarray(frame).save(tmp / f"{i:04d}.png")
        if folder.exists():
            for old in folder.glob("*.png"):
                old.unlink()
            for new in sorted(tmp.iterdir()):
                os.replace(new, folder / new.name)
            tmp.rmdir()
        else:
            os.replace(tmp, folder)

    @classmethod
    def read(cls, path: str | Path) -> Video:
        """Read a video file or PNG frame folder written by ``save`` (or any mp4/webm/gif/webp)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"video {path} not found")
        sidecar = path / "settings.json" if path.is_dir() else path.with_suffix(".json")
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        try:
            if path.is_dir():
                frames, fps = _read_frames(path), None
            elif path.suffix.lower() in (".gif", ".webp"):
                frames, fps = _read_pillow(path, fps_hint=meta.get("fps"))
            else:
                frames, fps = _read_av(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"could not read video {path}: {err}") from err
        if "height" in meta and "width" in meta:
            frames = frames[:, : meta["height"], : meta["width"]]
        fps = float(meta.get("fps") or fps or 8.0)
        info = {k: v for k, v in meta.items() if k not in ("fps", "num_frames", "width", "height")}
        return cls(frames, fps=fps, metadata=info)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_av(path: Path) -> tuple[np.ndarray, float | None]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.FFmpegError as err:
        raise ValueError(str(err)) from err
    if not frames:
        raise ValueError("no frames decoded")
    return np.stack(frames), fps


def _read_pillow(path: Path, *, fps_hint: float | None = None) -> tuple[np.ndarray, float | None]:
    """Animated GIF/WebP. Encoders merge identical consecutive frames into one longer frame,
    so each frame is repeated by its duration over the frame period (from the sidecar's fps
    when known, else the shortest frame duration)."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        decoded = [
            (np.asarray(f.convert("RGB")), f.info.get("duration") or 0)
            for f in ImageSequence.Iterator(image)
        ]
    durations = [int(d) for _, d in decoded if d]
    period = 1000.0 / fps_hint if fps_hint else None
    if period is None and durations:
        common = math.gcd(*durations)  # merged frames last a multiple of the frame period
        period = common if common >= 20 else min(durations)
    frames = []
    for frame, duration in decoded:
        repeat = max(1, round(duration / period)) if period and duration else 1
        frames.extend([frame] * repeat)
    return np.stack(frames), (1000.0 / period if period else None)


def _read_frames(folder: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    if not files:
        raise ValueError(f"no PNG frames in {folder}")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def videos_to_tensor(videos: Sequence[Video]) -> torch.Tensor:
    """A batch of same-shape videos -> (B, C, T, H, W) in [-1, 1]."""
    if not videos:
        raise ValueError("no videos given")
    shapes = {v.frames.shape for v in videos}
    if len(shapes) > 1:
        raise ValueError(f"videos differ in shape: {sorted(shapes)}")
    return torch.stack([v.to_tensor() for v in videos])


def videos_from_tensor(
    tensor: torch.Tensor, *, fps: float = 8.0, metadata: dict | None = None
) -> list[Video]:
    """(B, C, T, H, W) in [-1, 1] -> one Video per sample (each with its own metadata copy)."""
    if tensor.ndim != 5:
        raise ValueError(f"expected a (B, C, T, H, W) tensor, got shape {tuple(tensor.shape)}")
    return [Video.from_tensor(t, fps=fps, metadata=dict(metadata or {})) for t in tensor]


def available_codecs() -> dict[str, bool]:
    """Which export formats work in this installation (for ``kinetoscope doctor``)."""
    import av

    try:
        from PIL import features

        webp = bool(features.check("webp"))
    except Exception:  # Pillow without feature introspection
        webp = True
    return {
        "mp4 (h264)": "libx264" in av.codecs_available,
        "webm (vp9)": "libvpx-vp9" in av.codecs_available,
        "gif": True,
        "webp": webp,
    }
