"""Video: validation, the tensor conversion, export to every format and reading back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinetoscope.video import Video, available_codecs, videos_from_tensor, videos_to_tensor


def moving_square(num_frames: int = 8, height: int = 32, width: int = 32) -> np.ndarray:
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t, 8:20, 2 + t : 14 + t] = (220, 40, 40)
    return frames


def test_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    video = Video(frames, fps=12)
    tensor = video.to_tensor()
    assert tensor.shape == (3, 3, 5, 7) and tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(Video.from_tensor(tensor).frames, frames)
    batch = videos_to_tensor([video, video])
    assert batch.shape == (2, 3, 3, 5, 7)
    back = videos_from_tensor(batch, fps=12, metadata={"seed": 1})
    assert len(back) == 2 and np.array_equal(back[1].frames, frames)
    back[0].metadata["seed"] = 2
    assert back[1].metadata["seed"] == 1  # each video owns its metadata


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "shape"),
        (np.zeros((4, 8, 8, 4), np.uint8), "shape"),
        (np.zeros((0, 8, 8, 3), np.uint8), "T >= 1"),
    ],
)
def test_bad_frames_raise(frames, match):
    with pytest.raises(ValueError, match=match):
        Video(frames)


def test_bad_tensors_raise():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        Video.from_tensor(torch.full((3, 2, 4, 4), 1.5))
    with pytest.raises(ValueError, match="NaN"):
        Video.from_tensor(torch.full((3, 2, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="from_tensor"):
        Video(torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match="fps"):
        Video(np.zeros((1, 2, 2, 3), np.uint8), fps=0)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_compressed_round_trip(tmp_path, suffix):
    frames = moving_square()
    video = Video(frames, fps=8, metadata={"prompt": "a red square", "seed": 3})
    path = video.save(tmp_path / f"clip{suffix}")
    back = Video.read(path)
    assert back.frames.shape == frames.shape and back.fps == 8
    assert np.abs(back.frames.astype(int) - frames).mean() < 6
    assert back.metadata["prompt"] == "a red square"


@pytest.mark.parametrize("suffix", [".gif", ".webp", ""])
def test_lossless_round_trip(tmp_path, suffix):
    frames = moving_square()
    frames[2:4] = frames[1]  # identical consecutive frames must survive
    path = Video(frames, fps=8).save(tmp_path / f"clip{suffix}")
    assert np.array_equal(Video.read(path).frames, frames)


def test_odd_size_mp4_keeps_size_and_plays(tmp_path):
    frames = moving_square(height=33, width=31)
    path = Video(frames).save(tmp_path / "odd.mp4")
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (32, 34)
    assert Video.read(path).frames.shape == frames.shape


def test_sidecar_and_no_temp_files(tmp_path):
    import kinetoscope

    path = Video(moving_square(), fps=8, metadata={"prompt": "p", "guidance_scale": 4.0}).save(
        tmp_path / "a.mp4"
    )
    sidecar = json.loads((tmp_path / "a.json").read_text())
    assert sidecar["prompt"] == "p" and sidecar["fps"] == 8 and sidecar["num_frames"] == 8
    assert sidecar["kinetoscope_version"] == kinetoscope.__version__
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.mp4"]
    assert path == tmp_path / "a.mp4"
    Video(moving_square()).save(tmp_path / "frames")
    assert (tmp_path / "frames" / "settings.json").is_file()
    assert len(list((tmp_path / "frames").glob("*.png"))) == 8


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        Video(moving_square()).save(tmp_path / "clip.avi")
    with pytest.raises(FileNotFoundError):
        Video.read(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="could not read"):
        Video.read(corrupt)


def test_concat_slice_and_codecs():
    a, b = Video(moving_square(4)), Video(moving_square(3))
    joined = Video.concat([a, b])
    assert joined.num_frames == 7 and len(joined[2:5]) == 3
    with pytest.raises(ValueError, match="sizes"):
        Video.concat([a, Video(moving_square(2, 16, 16))])
    assert available_codecs()["mp4 (h264)"]
