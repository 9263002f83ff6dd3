"""benchmarks/start_probe.py: real clips start inside their motion's band, reversed ones not."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark
from kinetoscope.data.worlds import WorldDataset

probe = load_benchmark("start_probe")


def test_bands_follow_the_worlds_linear_tracks():
    assert probe.start_band("up", box=28, resolution=64, num_frames=16) == (1, 30, 36)
    assert probe.start_band("right", box=12, resolution=64, num_frames=16) == (0, 0, 22)
    assert probe.start_band("left and right", box=12, resolution=64, num_frames=16) is None


def test_real_clips_start_inside_the_band_and_reversed_ones_outside():
    for world in ("mnist-1", "shapes-1"):
        data = WorldDataset(world, split="test", size=24, seed=0)
        kind = world.split("-")[0]
        linear = 0
        for i in range(24):
            clip = data[i]
            obj = clip.objects[0]
            distance = probe.start_distance(clip.frames, obj, world=kind)
            if distance is None:
                assert " and " in obj["motion"]
                continue
            linear += 1
            assert distance <= 2.0, (world, i, obj, distance)
            # Played backwards it starts where it ended, 30 px on: past the band (at most 23 px wide).
            backwards = probe.start_distance(clip.frames[::-1].copy(), obj, world=kind)
            assert backwards >= 7.0, (world, i, obj, backwards)
        assert linear >= 8


def test_summary_counts_clips_inside_and_outside():
    rows = [
        {"prompt": "a", "correct": True, "distance": 0.0},
        {"prompt": "b", "correct": False, "distance": 9.0},
        {"prompt": "c", "correct": True, "distance": None},
        {"prompt": "d", "correct": False, "distance": float("nan")},
    ]
    summary = probe.summarise(rows, tolerance=2.0)
    assert summary["clips"] == 4 and summary["right"] == 2
    assert summary["linear_with_frame0_object"] == 2 and summary["start_inside_band"] == 1
    assert summary["right_inside"] == 1 and summary["right_outside"] == 0
    assert np.isclose(summary["mean_px_outside"], 4.5)
    still = probe.summarise(rows, tolerance=2.0, judged=False)  # a still frame 0 is never right
    assert "right" not in still and still["start_inside_band"] == 1
