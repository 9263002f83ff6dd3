"""benchmarks/direction_probe.py failures: why the judge rejected a clip's motion."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
