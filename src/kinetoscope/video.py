"""``Video``: what users get from every pipeline, and the one place frames become tensors.

A Video is uint8 frames (T, H, W, 3) + fps + metadata (the generation settings). Inside models a
video is (B, C, T, H, W) float in [-1, 1] (B batch, C = RGB, T frames, H height, W width);
``to_tensor`` / ``from_tensor`` and the batch helpers are the only conversions between the two.

``save`` picks the format by extension: .mp4 (H.264 yuv420p tagged BT.601, +faststart; odd sizes
padded to even and cropped back on read), .webm (VP9), .gif / .webp (animated; WebP lossless), or
a path without suffix (or an existing directory) for PNG frames. A JSON sidecar (name.json, or
settings.json in a frame folder) keeps metadata + fps, size and package version for ``read``.
Files are written to a temporary name and renamed: nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import shutil
import uuid
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".webp")
_ENCODERS = {".mp4": "libx264", ".webm": "libvpx-vp9"}
_CODEC_OPTIONS = {
    "libx264": {"crf": "18"},  # high quality: 64x64 clips survive
    "libvpx-vp9": {"crf": "20", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
}
_SIDECAR_FIELDS = ("fps", "num_frames", "width", "height", "kinetoscope_version")
_RANGE_TOLERANCE = 1e-3


class Video:
    """Frames uint8 (T, H, W, 3) + fps + metadata (the settings that made it)."""

    def __init__(
        self, frames: np.ndarray, *, fps: float = 8.0, metadata: dict[str, Any] | None = None
    ) -> None:
        if isinstance(frames, torch.Tensor):
            raise ValueError(
                "Video takes uint8 numpy frames (T, H, W, 3); use Video.from_tensor for float "
                "tensors (C, T, H, W) in [-1, 1], or tensor.cpu().numpy() for uint8 (T, H, W, 3)"
            )
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(
                f"Video frames must have shape (T, H, W, 3) with T >= 1, got {frames.shape}; "
                "a single image needs frames[None], (T, 3, H, W) needs .transpose(0, 2, 3, 1)"
            )
        if frames.dtype != np.uint8:
            raise ValueError(
                f"Video frames must be uint8, got {frames.dtype}; use Video.from_tensor for float "
                "tensors in [-1, 1], or (x * 255).round().astype(np.uint8) for floats in [0, 1]"
            )
        rate = float(fps) if isinstance(fps, numbers.Real) else math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps!r}")
        self.frames = np.ascontiguousarray(frames)
        self.fps = rate
        self.metadata = dict(metadata or {})

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
        """Frames by index or slice, as a Video (an int gives a one-frame Video)."""
        frames = self.frames[index]
        if frames.ndim == 3:
            frames = frames[None]
        return Video(frames, fps=self.fps, metadata=self.metadata)

    def __repr__(self) -> str:
        return f"Video({self.num_frames} frames, {self.width}x{self.height}, {self.fps:g} fps)"

    @staticmethod
    def concat(videos: Sequence[Video]) -> Video:
        """Join videos along time (same H, W required; fps and metadata of the first)."""
        if not videos:
            raise ValueError("Video.concat needs at least one video")
        sizes = {(v.height, v.width) for v in videos}
        if len(sizes) > 1:
            raise ValueError(f"cannot concatenate videos of different sizes (H, W) {sorted(sizes)}")
        return Video(
            np.concatenate([v.frames for v in videos]),
            fps=videos[0].fps,
            metadata=videos[0].metadata,
        )

    def to_tensor(self, *, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Frames as a (C, T, H, W) tensor in [-1, 1]."""
        frames = self.frames if self.frames.flags.writeable else self.frames.copy()
        tensor = torch.from_numpy(frames).to(device=device, dtype=dtype)  # (T, H, W, C)
        return (tensor / 127.5 - 1.0).permute(3, 0, 1, 2)  # (C, T, H, W)

    @classmethod
    def from_tensor(
        cls, tensor: torch.Tensor, *, fps: float = 8.0, metadata: dict | None = None
    ) -> Video:
        """(C=3, T, H, W) in [-1, 1] (any device/dtype) -> Video; out-of-range values raise."""
        x = torch.as_tensor(tensor).detach()
        if x.ndim != 4 or x.shape[0] != 3 or x.numel() == 0:
            raise ValueError(
                f"expected a (C=3, T, H, W) tensor, got shape {tuple(x.shape)}; for a batch "
                "(B, C, T, H, W) use videos_from_tensor, for (T, C, H, W) use .permute(1, 0, 2, 3)"
            )
        x = x.to(device="cpu", dtype=torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError("video tensor contains NaN or inf values; check the model output")
        low, high = x.min().item(), x.max().item()
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"video tensor values must lie in [-1, 1], got [{low:.4g}, {high:.4g}]; "
                "rescale (uint8 x: x / 127.5 - 1) or clamp deliberately before converting"
            )
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (C, T, H, W)
        return cls(frames.permute(1, 2, 3, 0).numpy(), fps=fps, metadata=metadata)

    def save(self, path: str | Path, *, sidecar: bool = True) -> Path:
        """Write by extension (.mp4 .webm .gif .webp, or a folder of PNGs); returns the path."""
        path = Path(path)
        suffix = "" if path.is_dir() else path.suffix.lower()
        if suffix and suffix not in VIDEO_SUFFIXES:
            raise ValueError(
                f"unsupported video extension {suffix!r} in {path}; use one of "
                f"{', '.join(VIDEO_SUFFIXES)}, or a path without suffix for a folder of PNG frames"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not suffix:
            self._save_frames(path)
        else:
            tmp = _temp_name(path, suffix)  # not mkstemp: its 0600 mode would survive the rename
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
        from kinetoscope import __version__

        size = {"num_frames": self.num_frames, "width": self.width, "height": self.height}
        return {**self.metadata, "fps": self.fps, **size, "kinetoscope_version": __version__}

    def _save_av(self, path: Path, codec: str) -> None:
        import av

        if not _has_encoder(codec):
            raise RuntimeError(
                f"this PyAV build has no {codec} encoder for {path.suffix} files; install a PyAV "
                "wheel with its bundled FFmpeg (`pip install --force-reinstall av`) or save as "
                ".gif/.webp/a PNG folder instead (`kinetoscope doctor` lists what works)"
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
            stream.options = dict(_CODEC_OPTIONS[codec])
            _tag_bt601(stream.codec_context)
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    def _save_pillow(self, path: Path, suffix: str) -> None:
        from PIL import Image

        if suffix == ".gif" and self.fps > 50:
            logger.warning("GIF cannot play %g fps (delays < 20 ms); use .mp4/.webp", self.fps)
        images = [Image.fromarray(frame) for frame in self.frames]
        duration = max(int(round(1000 / self.fps)), 1)  # ms per frame
        options = {"lossless": True} if suffix == ".webp" else {"disposal": 1}
        options.update(save_all=True, append_images=images[1:], duration=duration, loop=0)
        images[0].save(path, format=suffix[1:].upper(), **options)

    def _save_frames(self, folder: Path) -> None:
        from PIL import Image

        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file; give a new or existing folder for PNG frames")
        tmp = _temp_name(folder)
        tmp.mkdir()
        try:
            for i, frame in enumerate(self.frames):
                Image.fromarray(frame).save(tmp / f"{i:04d}.png")
            if not folder.exists():
                os.replace(tmp, folder)
                return
            for old in folder.glob("*.png"):
                old.unlink()
            for new in tmp.iterdir():
                os.replace(new, folder / new.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def read(cls, path: str | Path) -> Video:
        """Read an .mp4/.webm/.gif/.webp file or a PNG frame folder (as written by ``save``).

        fps, the original (unpadded) size and metadata come from the sidecar when present;
        the sidecar's own fields (fps, num_frames, width, height, version) are not metadata.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"video {path} not found; check the path")
        meta = _read_sidecar(path / "settings.json" if path.is_dir() else path.with_suffix(".json"))
        try:
            if path.is_dir():
                frames, fps = _read_frames(path), None
            elif path.suffix.lower() in (".gif", ".webp"):
                frames, fps = _read_pillow(path, fps_hint=meta.get("fps"))
            else:
                frames, fps = _read_av(path)
        except (OSError, ValueError, EOFError, SyntaxError) as err:
            raise ValueError(f"could not read video {path}: {err}") from err
        if meta.get("num_frames", len(frames)) != len(frames):
            logger.warning("ignoring sidecar of %s: it describes another video", path)
            meta = {}
        height, width = meta.get("height"), meta.get("width")
        # crop only the even-size padding of the recorded size (never cut by a stale sidecar)
        if (
            isinstance(height, int)
            and isinstance(width, int)
            and frames.shape[1:3] in ((height + dh, width + dw) for dh in (0, 1) for dw in (0, 1))
        ):
            frames = frames[:, :height, :width]
        fps = float(meta.get("fps") or fps or 8.0)
        info = {k: v for k, v in meta.items() if k not in _SIDECAR_FIELDS}
        return cls(frames, fps=fps, metadata=info)


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def _tag_bt601(codec_context: Any) -> None:
    """Label the stream with the matrix swscale's rgb24 -> yuv420p conversion used (BT.601,
    limited range) so browsers decode the same colours instead of guessing."""
    with contextlib.suppress(AttributeError, ValueError):  # older PyAV: no colour properties
        codec_context.colorspace = codec_context.color_primaries = codec_context.color_trc = 6
        codec_context.color_range = 1  # MPEG (limited)


def _temp_name(path: Path, suffix: str = "") -> Path:
    """A fresh hidden name next to ``path`` (same file system, so os.replace is atomic)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _write_text(path: Path, text: str) -> None:
    tmp = _temp_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads(path.read_text())
        if isinstance(meta, dict):
            return meta
    raise ValueError(f"video sidecar {path} is not a JSON object; fix or delete it")


def _read_av(path: Path) -> tuple[np.ndarray, float | None]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.FFmpegError as err:
        raise ValueError(str(err)) from err
    if not frames:
        raise ValueError("no frames decoded")
    return np.stack(frames), (float(rate) if rate else None)


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

    files = sorted(folder.glob("*.png"), key=lambda f: (len(f.stem), f.stem))  # 9999 < 10000
    if not files:
        raise ValueError(f"no PNG frames in {folder}")
    frames = []
    for file in files:
        with Image.open(file) as image:
            frames.append(np.asarray(image.convert("RGB")))
    return np.stack(frames)


def videos_to_tensor(videos: Sequence[Video]) -> torch.Tensor:
    """A batch of same-shape videos -> (B, C, T, H, W) in [-1, 1]."""
    if not videos:
        raise ValueError("videos_to_tensor needs at least one video")
    shapes = {v.frames.shape for v in videos}
    if len(shapes) > 1:
        raise ValueError(f"videos differ in shape (T, H, W, C): {sorted(shapes)}")
    return torch.stack([v.to_tensor() for v in videos])  # (B, C, T, H, W)


def videos_from_tensor(
    tensor: torch.Tensor, *, fps: float = 8.0, metadata: dict | None = None
) -> list[Video]:
    """(B, C, T, H, W) in [-1, 1] -> one Video per sample (each with its own metadata copy)."""
    tensor = torch.as_tensor(tensor)
    if tensor.ndim != 5:
        raise ValueError(
            f"expected a (B, C, T, H, W) tensor, got shape {tuple(tensor.shape)}; "
            "for a single (C, T, H, W) video use Video.from_tensor"
        )
    return [Video.from_tensor(t, fps=fps, metadata=dict(metadata or {})) for t in tensor]


def available_codecs() -> dict[str, bool]:
    """Which export formats work in this installation (for ``kinetoscope doctor``)."""
    from PIL import features

    return {
        "mp4 (h264)": _has_encoder("libx264"),
        "webm (vp9)": _has_encoder("libvpx-vp9"),
        "gif": True,
        "webp": bool(features.check("webp")),
    }
