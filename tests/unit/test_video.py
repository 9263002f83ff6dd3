"""Video: validation, the tensor conversion, export to every format and reading back."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

import kinetoscope
from kinetoscope import video as video_module
from kinetoscope.video import Video, available_codecs, videos_from_tensor, videos_to_tensor


def moving_square(num_frames: int = 8, height: int = 32, width: int = 32) -> np.ndarray:
    """A few flat colours (exact in a GIF palette): red square moving right on dark blue."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 2] = 60
    for t in range(num_frames):
        frames[t, 8:20, 2 + t : 14 + t] = (220, 40, 40)
    return frames


def smooth_clip(num_frames: int = 8, height: int = 64, width: int = 64) -> np.ndarray:
    """Gradients drifting over time: what lossy codecs see in practice."""
    y, x = np.mgrid[0:height, 0:width]
    frames = [
        np.stack([(2 * x + 3 * t) % 256, 2 * y + 40, (x + y + 5 * t) % 256], axis=-1)
        for t in range(num_frames)
    ]
    return np.stack(frames).astype(np.uint8)


def test_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    frames[0, 0, 0] = (0, 255, 128)
    video = Video(frames, fps=12)
    tensor = video.to_tensor()
    assert tensor.shape == (3, 3, 5, 7) and tensor.dtype == torch.float32
    assert tensor[:, 0, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    assert np.array_equal(Video.from_tensor(tensor).frames, frames)
    for dtype in (torch.float16, torch.float64):  # any dtype in, same frames out
        assert np.array_equal(Video.from_tensor(video.to_tensor(dtype=dtype)).frames, frames)
    read_only = frames.copy()
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable numpy arrays
        assert torch.equal(Video(read_only).to_tensor(), tensor)


def test_batch_helpers():
    frames = moving_square(4, 6, 5)
    video = Video(frames)
    batch = videos_to_tensor([video, Video(255 - frames)])
    assert batch.shape == (2, 3, 4, 6, 5)
    back = videos_from_tensor(batch, fps=12, metadata={"seed": 1})
    assert len(back) == 2 and back[0].fps == 12
    assert np.array_equal(back[0].frames, frames) and np.array_equal(back[1].frames, 255 - frames)
    back[0].metadata["seed"] = 2
    assert back[1].metadata["seed"] == 1  # each video owns its metadata
    with pytest.raises(ValueError, match="differ in shape"):
        videos_to_tensor([video, Video(moving_square(3, 6, 5))])
    with pytest.raises(ValueError, match="Video.from_tensor"):
        videos_from_tensor(batch[0])


def test_from_tensor_range_tolerance_and_rounding():
    x = torch.tensor([-1.0005, -1.0, 0.0, 1.0, 1.0005]).view(1, 1, 1, 5).expand(3, 1, 1, 5)
    assert Video.from_tensor(x).frames[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        Video.from_tensor(torch.full((3, 2, 4, 4), 1.01))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        Video.from_tensor(torch.full((3, 2, 4, 4), 255.0))  # uint8-scale values are not clamped
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN"):
            Video.from_tensor(torch.full((3, 2, 4, 4), bad))
    with pytest.raises(ValueError, match="videos_from_tensor"):
        Video.from_tensor(torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match=r"permute\(1, 0, 2, 3\)"):
        Video.from_tensor(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), "uint8.*from_tensor"),
        (np.zeros((8, 8, 3), np.uint8), r"frames\[None\]"),
        (np.zeros((4, 3, 8, 8), np.uint8), r"transpose\(0, 2, 3, 1\)"),
        (np.zeros((4, 8, 8, 4), np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "T >= 1"),
        (torch.zeros(2, 4, 4, 3), "from_tensor"),
    ],
)
def test_bad_frames_raise(frames, match):
    with pytest.raises(ValueError, match=match):
        Video(frames)


@pytest.mark.parametrize("fps", [0, -8, float("nan"), float("inf"), "8"])
def test_bad_fps_raises(fps):
    with pytest.raises(ValueError, match="fps"):
        Video(np.zeros((1, 2, 2, 3), np.uint8), fps=fps)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_compressed_round_trip(tmp_path, suffix):
    frames = smooth_clip()
    metadata = {"prompt": "a gradient", "seed": 3, "guidance_scale": 4.0}
    path = Video(frames, fps=12, metadata=metadata).save(tmp_path / f"clip{suffix}")
    back = Video.read(path)
    assert back.frames.shape == frames.shape and back.fps == 12
    error = np.abs(back.frames.astype(int) - frames).mean()
    assert error < 6, f"{suffix} mean abs error {error:.2f}"
    assert back.metadata == metadata  # sidecar fields are attributes, not metadata
    (tmp_path / "clip.json").unlink()  # without a sidecar, fps comes from the container
    assert Video.read(path).fps == pytest.approx(12)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ""])
@pytest.mark.parametrize("sidecar", [True, False])
def test_lossless_round_trip(tmp_path, suffix, sidecar):
    frames = moving_square()
    frames[2:4] = frames[1]  # identical consecutive frames (merged by encoders) must survive
    path = Video(frames, fps=5).save(tmp_path / f"clip{suffix}", sidecar=sidecar)
    back = Video.read(path)
    assert np.array_equal(back.frames, frames)
    assert back.fps == pytest.approx(5 if sidecar or suffix else 8)  # PNGs carry no rate


def test_odd_size_mp4_keeps_size_and_plays_in_browsers(tmp_path):
    import av

    frames = smooth_clip(height=63, width=65)
    path = Video(frames, fps=8).save(tmp_path / "odd.mp4")
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt) == ("h264", "yuv420p")
        assert (context.width, context.height) == (66, 64)
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the data
    back = Video.read(path)
    assert back.frames.shape == frames.shape
    assert np.abs(back.frames.astype(int) - frames).mean() < 6
    assert Video.read(Video(frames).save(tmp_path / "odd.webm")).frames.shape == frames.shape


def test_sidecar_contents_and_no_temp_files(tmp_path):
    metadata = {"prompt": "p", "guidance_scale": 4.0, "seed": [1, 2]}
    path = Video(moving_square(), fps=8, metadata=metadata).save(tmp_path / "sub" / "a.mp4")
    assert path == tmp_path / "sub" / "a.mp4"  # parent folder created
    sidecar = json.loads((tmp_path / "sub" / "a.json").read_text())
    assert sidecar == {
        **metadata,
        "fps": 8.0,
        "num_frames": 8,
        "width": 32,
        "height": 32,
        "kinetoscope_version": kinetoscope.__version__,
    }
    for suffix in (".webm", ".gif", ".webp"):
        Video(moving_square()).save(tmp_path / "sub" / f"b{suffix}", sidecar=False)
    names = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert names == ["a.json", "a.mp4", "b.gif", "b.webm", "b.webp"]
    folder = Video(moving_square(), metadata={"seed": 0}).save(tmp_path / "frames")
    assert json.loads((folder / "settings.json").read_text())["seed"] == 0
    assert sorted(p.name for p in folder.iterdir())[:2] == ["0000.png", "0001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "sub"]
    umask = os.umask(0)
    os.umask(umask)
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~umask  # temp names keep normal modes
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_resave_replaces_frames_and_ignores_stale_sidecar(tmp_path):
    folder = tmp_path / "run.v1"  # an existing directory is a frame folder despite its suffix
    folder.mkdir()
    Video(moving_square(8)).save(folder)
    Video(moving_square(3), fps=4).save(folder)
    assert len(list(folder.glob("*.png"))) == 3 and Video.read(folder).fps == 4
    Video(smooth_clip(8, height=63, width=65), fps=8, metadata={"seed": 1}).save(tmp_path / "b.mp4")
    Video(smooth_clip(6), fps=16).save(tmp_path / "b.mp4", sidecar=False)
    back = Video.read(tmp_path / "b.mp4")  # the old sidecar must not crop, retime or label it
    assert back.frames.shape == (6, 64, 64, 3) and back.fps == 16 and back.metadata == {}


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported.*\.mp4, \.webm, \.gif, \.webp"):
        Video(moving_square()).save(tmp_path / "clip.avi")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        Video.read(tmp_path / "missing.mp4")
    for name in ("corrupt.mp4", "corrupt.webm", "corrupt.gif", "corrupt.webp", "corrupt.avi"):
        (tmp_path / name).write_bytes(b"not a video at all")
        with pytest.raises(ValueError, match=f"could not read video .*{name}"):
            Video.read(tmp_path / name)
    good = Video(moving_square()).save(tmp_path / "good.mp4")
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.mp4"):
        Video.read(tmp_path / "truncated.mp4")
    (tmp_path / "good.json").write_text("{not json")
    with pytest.raises(ValueError, match="good.json"):
        Video.read(good)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG frames"):
        Video.read(tmp_path / "empty")


def test_missing_encoder_names_the_fix_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(video_module, "_has_encoder", lambda name: False)
    with pytest.raises(RuntimeError, match="libx264.*pip install"):
        Video(moving_square()).save(tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_concat_slice_repr_and_codecs():
    a = Video(moving_square(4), fps=6, metadata={"part": 0})
    b = Video(moving_square(3), fps=12)
    joined = Video.concat([a, b])
    assert joined.num_frames == len(joined) == 7 and joined.fps == 6
    assert np.array_equal(joined.frames[4:], b.frames) and joined.metadata == {"part": 0}
    assert np.array_equal(joined[2:5].frames, joined.frames[2:5]) and joined[-1].num_frames == 1
    assert repr(joined) == "Video(7 frames, 32x32, 6 fps)"
    with pytest.raises(ValueError, match="sizes"):
        Video.concat([a, Video(moving_square(2, 16, 16))])
    with pytest.raises(ValueError, match="at least one"):
        Video.concat([])
    assert available_codecs() == {"mp4 (h264)": True, "webm (vp9)": True, "gif": True, "webp": True}
