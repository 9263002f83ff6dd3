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


def paired_report(verdicts: list[tuple[bool, bool]]) -> dict:
    """A report whose samples carry (digit, motion) verdicts; overall = both right."""
    samples = [
        {"prompt": f"prompt {i}", "correct": d and m, "attributes": {"digit": d, "motion": m}}
        for i, (d, m) in enumerate(verdicts)
    ]
    protocol = {"world": "mnist-1", "split": "test", "samples": len(samples), "seeds": "0..3"}
    return {**fake_report(0.5), "protocol": protocol, "samples": samples}


def test_family_table_pairs_ldm_with_phenaki(tmp_path, monkeypatch):
    mt = load_benchmark("make_table")
    monkeypatch.setattr(mt, "RESULTS", tmp_path)
    reports = {
        "ldm-mnist": [(True, True), (True, True), (True, False), (False, False)],
        "phenaki-mnist": [(False, True), (True, True), (False, False), (False, True)],
    }
    for model, verdicts in reports.items():
        out = tmp_path / f"eval-{model}-mnist-1-test"
        out.mkdir()
        (out / "report.json").write_text(json.dumps(paired_report(verdicts)))
    speed = {"name": "kinetoscope phenaki-mnist (default)", "model": "phenaki-mnist"}
    (tmp_path / "phenaki.json").write_text(
        json.dumps({"results": [{**speed, "seconds_per_clip": 1.25}]})
    )
    table = mt.family_table(["ldm-mnist", "phenaki-mnist"]).splitlines()
    assert len(table) == 3  # header, rule, mnist-1 (mnist-2 has no reports)
    row = [c.strip() for c in table[2].strip("|").split("|")]
    assert row[0] == "mnist-1" and row[1] == "50% / 25%"
    assert row[2] == "1 / 0 (p 1.000)"  # prompt 0 right only in LDM; prompt 1 right in both
    assert row[3] == "digit 75 / 25%, motion 50 / 75%"
    assert row[4] == "– / 1.25"  # no LDM bench here; Phenaki's from phenaki.json
    assert mt.family_table(["ldm-mnist"]).count("\n") == 1  # no Phenaki model: no rows


def test_partial_run_keeps_every_models_rows(tmp_path, monkeypatch):
    """--models limits what --run evaluates; the README still lists every installed model."""
    mt = load_benchmark("make_table")
    monkeypatch.setattr(mt, "RESULTS", tmp_path)
    monkeypatch.setattr(mt, "ROOT", tmp_path)
    for model, world in (("ldm-mnist", "mnist-1"), ("ldm-shapes", "shapes-1")):
        out = tmp_path / f"eval-{model}-{world}-test"
        out.mkdir()
        (out / "report.json").write_text(json.dumps(fake_report(0.5)))
    ran: list[list[str]] = []
    monkeypatch.setattr(mt, "run_missing", lambda models, **_: ran.append(models))
    import kinetoscope.hub

    monkeypatch.setattr(kinetoscope.hub, "list_models", lambda: ["ldm-mnist", "ldm-shapes"])
    assert mt.main(["--run", "--models", "ldm-shapes"]) == 0
    assert ran == [["ldm-shapes"]]
    readme = (tmp_path / "README.md").read_text()
    assert "| ldm-mnist | mnist-1 |" in readme and "| ldm-shapes | shapes-1 |" in readme
