"""Paired comparison of two evaluation reports (``kinetoscope compare``)."""

from __future__ import annotations

import json
import math

import pytest

from kinetoscope.cli import main
from kinetoscope.eval.compare import compare_reports, mcnemar_exact


def _report(hits: list[tuple[bool, bool]], *, world: str = "mnist-1", seeds: str = "0..3"):
    """A report whose sample i has digit/motion verdicts hits[i] (correct = both)."""
    samples = [
        {
            "prompt": f"prompt {i}",
            "correct": digit and motion,
            "attributes": {"digit": digit, "motion": motion},
        }
        for i, (digit, motion) in enumerate(hits)
    ]
    protocol = {"world": world, "split": "test", "samples": len(hits), "seeds": seeds}
    return {"protocol": protocol, "samples": samples}


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    # 0 against 6: both tails of Binomial(6, 1/2) at the extremes, 2 / 64.
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(6, 0) == mcnemar_exact(0, 6)
    # 3 against 14 (the v6 / v7a motion split): 2 * P(X <= 3), X ~ Binomial(17, 1/2).
    tail = sum(math.comb(17, i) for i in range(4)) / 2**17
    assert mcnemar_exact(3, 14) == pytest.approx(2 * tail)
    assert mcnemar_exact(3, 14) < 0.05 < mcnemar_exact(5, 12)


def test_only_discordant_prompts_count():
    a = _report([(True, True), (True, False), (False, False), (True, True)])
    b = _report([(True, True), (True, True), (False, True), (False, False)])
    table = compare_reports(a, b)
    assert table["digit"] == {"n": 4, "a": 0.75, "b": 0.5, "only_a": 1, "only_b": 0, "p": 1.0}
    assert (table["motion"]["only_a"], table["motion"]["only_b"]) == (1, 2)
    # overall: A right on 0 and 3, B on 0 and 1.
    assert (table["overall"]["a"], table["overall"]["b"]) == (0.5, 0.5)
    assert (table["overall"]["only_a"], table["overall"]["only_b"]) == (1, 1)


def test_reports_of_other_prompts_are_refused():
    a = _report([(True, True)] * 4)
    with pytest.raises(ValueError, match="world"):
        compare_reports(a, _report([(True, True)] * 4, world="mnist-2"))
    with pytest.raises(ValueError, match="seeds"):
        compare_reports(a, _report([(True, True)] * 4, seeds="1..4"))
    shuffled = _report([(True, True)] * 4)
    shuffled["samples"].reverse()
    with pytest.raises(ValueError, match="prompts"):
        compare_reports(a, shuffled)


def test_cli_prints_the_paired_table(tmp_path, capsys):
    for name, hits in {"a": [(False, False)] * 6, "b": [(True, True)] * 6}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(_report(hits, seeds="0..5")))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "report.json")]) == 0
    out = capsys.readouterr().out
    assert "| overall | 0.0% | 100.0% | 0 | 6 | 0.031 | 6 |" in out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
