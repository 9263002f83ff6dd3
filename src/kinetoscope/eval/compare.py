"""``kinetoscope compare``: two evaluation reports of the same prompts, compared prompt by prompt.

Two models evaluated with the same world, split, prompt count and seed see the same prompts in
the same order, so their verdicts pair up. The paired comparison is far sharper than two
independent intervals: a prompt both models get right (or both wrong) says nothing about which
is better; only the discordant prompts do. Per attribute this module counts them (right only in
A, right only in B) and gives the exact two-sided McNemar p-value (a binomial test of the
discordant counts against an even split).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Protocol fields that must agree for two reports' samples to be the same prompts.
PAIRING_FIELDS = ("world", "split", "samples", "seeds")


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json, given itself or the report folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"no evaluation report at {path}")
    return json.loads(path.read_text())


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of discordant counts (1.0 when there are none)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def _hit(sample: dict, key: str) -> bool | None:
    if key == "overall":
        return bool(sample["correct"])
    value = sample["attributes"].get(key)
    return None if value is None else bool(value)


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per attribute (and overall): accuracies, discordant counts and the McNemar p-value.

    Raises ValueError unless both reports judged the same prompts in the same order.
    """
    for field in PAIRING_FIELDS:
        if a["protocol"].get(field) != b["protocol"].get(field):
            raise ValueError(
                f"the reports differ in {field} ({a['protocol'].get(field)!r} against "
                f"{b['protocol'].get(field)!r}): their samples are not the same prompts"
            )
    pa, pb = [s["prompt"] for s in a["samples"]], [s["prompt"] for s in b["samples"]]
    if pa != pb:
        raise ValueError("the reports' prompts differ: their samples do not pair up")
    keys = sorted({k for s in a["samples"] + b["samples"] for k in s["attributes"]})
    table = {}
    for key in [*keys, "overall"]:
        pairs = [
            (_hit(x, key), _hit(y, key)) for x, y in zip(a["samples"], b["samples"], strict=True)
        ]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        only_a = sum(x and not y for x, y in pairs)
        only_b = sum(y and not x for x, y in pairs)
        table[key] = {
            "n": len(pairs),
            "a": sum(x for x, _ in pairs) / max(len(pairs), 1),
            "b": sum(y for _, y in pairs) / max(len(pairs), 1),
            "only_a": only_a,
            "only_b": only_b,
            "p": mcnemar_exact(only_a, only_b),
        }
    return table


def format_comparison(table: dict[str, dict[str, Any]], name_a: str, name_b: str) -> str:
    """A Markdown table of ``compare_reports``' result."""
    lines = [
        f"A = {name_a}",
        f"B = {name_b}",
        "",
        "| attribute | A | B | right only in A | right only in B | McNemar p | n |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in table.items():
        lines.append(
            f"| {key} | {row['a']:.1%} | {row['b']:.1%} | {row['only_a']} | {row['only_b']} "
            f"| {row['p']:.3f} | {row['n']} |"
        )
    return "\n".join(lines)
