"""benchmarks/make_table.py builds the benchmarks README table from report files."""

from __future__ import annotations

import json

from helpers import load_benchmark


def fake_report(accuracy: float) -> dict:
    row = {"accuracy": accuracy, "ci95": [accuracy - 0.05, accuracy + 0.05], "n": 100}
    return {
        "accuracy": {"digit": row, "motion": row, "overall": row},
        "frechet": {"score": 123.4, "real_floor": 20.0},
        "temporal": {"flicker_generated": 7.0, "flicker_real": 6.5},
    }


def test_table_rows_per_model_and_world(tmp_path, monkeypatch):
    mt = load_benchmark("make_table")
    monkeypatch.setattr(mt, "RESULTS", tmp_path)
    for split, acc in (("test", 0.5), ("train", 0.75)):
        out = tmp_path / f"eval-ldm-mnist-mnist-1-{split}"
        out.mkdir()
        (out / "report.json").write_text(json.dumps(fake_report(acc)))
    (tmp_path / "bench-ldm-mnist").mkdir()
    bench = {
        "results": [
            {"name": "kinetoscope ldm-mnist", "seconds_per_clip": 3.0, "seconds_per_step": 0.2}
        ],
        "summary": {
            "models": [
                {
                    "model": "kinetoscope ldm-mnist",
                    "ratios_peer_over_ours": {"seconds_per_step": 0.8},
                }
            ]
        },
    }
    (tmp_path / "bench-ldm-mnist" / "bench.json").write_text(json.dumps(bench))
    table = mt.build_table(["ldm-mnist", "ldm-shapes"]).splitlines()
    assert len(table) == 3  # header, rule, one row: mnist-2 and shapes have no reports
    row = [c.strip() for c in table[2].strip("|").split("|")]
    assert row[:4] == ["ldm-mnist", "mnist-1", "50% (45–55)", "75% (70–80)"]
    assert row[5] == "123 (20)" and row[-3:] == ["3.00", "0.200", "0.80"]
    assert mt.model_worlds("phenaki-shapes") == ["shapes-1", "shapes-2"]
