"""benchmarks/direction_probe.py failures: why the judge rejected a clip's motion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import load_benchmark
from kinetoscope.eval.tracking import classify_motion


def judged_reason(positions: np.ndarray) -> str:
    """The reason text the judge writes for a track with these (T, 2) centres (y, x)."""
    motion, measures = classify_motion(positions)
    detail = ", ".join(f"{k} {v}" for k, v in measures.items() if k != "frames_seen")
    return f"moves {motion!r} instead ({detail})"


def straight(vy: float, vx: float, frames: int = 16) -> np.ndarray:
    t = np.arange(frames, dtype=float)[:, None]
    return np.array([32.0, 32.0]) + t * np.array([vy, vx])


@pytest.mark.parametrize(
    ("asked", "positions", "cause"),
    [
        ("up", straight(2.0, 0.0), "wrong way"),  # goes down
        ("up", straight(-2.0, 0.8), "off axis"),  # 12 px sideways over 30 px up
        ("right", straight(0.0, 0.4), "too short"),  # 6 px
        ("left and right", straight(0.0, -2.0), "no turn"),
        ("up and down", straight(0.0, 2.0), "off axis"),  # bounces on the wrong axis
        (
            "down",
            np.concatenate([straight(2.0, 0.0, 12), straight(-2.0, 0.0, 4) + [22.0, 0.0]]),
            "turned back",
        ),
    ],
)
def test_failure_cause_reads_the_judges_measurements(asked, positions, cause):
    probe = load_benchmark("direction_probe")
    motion, _ = classify_motion(positions)
    assert motion != asked  # the judge rejects each of these
    assert probe.failure_cause(asked, judged_reason(positions)) == cause


def test_failures_counts_causes_per_kind(tmp_path, capsys):
    probe = load_benchmark("direction_probe")

    def sample(asked, positions=None, reason=None):
        ok = positions is None and reason is None
        return {
            "expected": [{"motion": asked}],
            "attributes": {"motion": ok},
            "reason": reason if reason is not None else ("" if ok else judged_reason(positions)),
        }

    samples = [
        sample("left"),
        sample("up", straight(-2.0, 0.8)),
        sample("down", reason="seen in only 44% of the frames; moves None instead"),
        sample("left and right", straight(0.0, 2.0)),
    ]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"samples": samples}))
    probe.failures([str(path)])
    out = capsys.readouterr().out
    assert "one way: 1/3 moved right; split or lost 1, off axis 1" in out
    assert "bounce: 0/1 moved right; no turn 1" in out


def _track(digit: int, positions: np.ndarray, visible: float = 1.0) -> dict:
    """A track as the judge's observe() describes it (the digit read in every frame)."""
    motion, measures = classify_motion(positions)
    return {"visible": visible, "motion": motion, "measures": measures, "digit": (digit, 1.0, 16)}


def test_pairs_sorts_two_object_clips_and_finds_motion_on_the_wrong_object(tmp_path, capsys):
    from kinetoscope.eval.judge import _decide

    probe = load_benchmark("direction_probe")
    three_left, five_up = {"digit": 3, "motion": "left"}, {"digit": 5, "motion": "up"}
    cases = [
        # the 3 goes up, the way the 5 was asked to go (the 5 is right)
        [_track(3, straight(-2.0, 0.0)), _track(5, straight(-2.0, 0.0) + [0.0, 20.0])],
        # the 3 goes down (wrong, but not the partner's way); the 5 is read as a 6
        [_track(3, straight(2.0, 0.0)), _track(6, straight(-2.0, 0.0) + [0.0, 20.0])],
        # the 3 is seen in a third of the frames; the 5 is right
        [_track(3, straight(0.0, -2.0), 0.3), _track(5, straight(-2.0, 0.0) + [0.0, 20.0])],
    ]
    samples = []
    for tracks in cases:
        verdict = _decide(tracks, [three_left, five_up], "mnist")
        samples.append({"expected": [three_left, five_up], "reason": verdict.reason})
    parts = probe.object_problems(samples[1], "mnist")
    assert parts[0].startswith("digit 3 moving left: moves 'down'")
    assert parts[1].startswith("digit 5 moving up: digit looks like 6") and "moves" not in parts[1]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"protocol": {"world": "mnist-2"}, "samples": samples}))
    probe.pairs([str(path)])
    out = capsys.readouterr().out
    assert "6 objects: right 2, misread, motion right 1, motion wrong 2, lost 1" in out
    assert "1/2 went the partner's way" in out


def test_anchor_velocities_are_read_per_block_and_head_in_pixels():
    from kinetoscope.diffusion.unet import VideoUNet

    probe = load_benchmark("direction_probe")
    torch.manual_seed(0)
    unet = VideoUNet(
        channels=(16, 32), attention_levels=(1,), anchor_levels=(0,), num_heads=2, text_dim=16
    )
    emb = torch.randn(6, 5, 16)
    mask = torch.ones(6, 5, dtype=torch.bool)
    found = probe.anchor_velocities(unet, emb, mask, resolution=64)
    assert set(found) == {"down_blocks.0", "up_blocks.2", "up_blocks.3"}  # level 0 only
    velocity, spread = found["down_blocks.0"]
    assert velocity.shape == spread.shape == (6, 2, 2)
    assert not velocity.any()  # zero-initialised read-out: at rest for every prompt
    with torch.no_grad():
        unet.down_blocks[0].temporal_anchor.motion_bias.net[-1].bias[0] = 1 / 32
    velocity, _ = probe.anchor_velocities(unet, emb, mask, resolution=64)["down_blocks.0"]
    torch.testing.assert_close(velocity[:, 0, 0], torch.full((6,), 2.0))  # 2 px per frame
