"""Evaluation: the world judge (does a clip show its caption's objects and motions?).

Usage::

    from kinetoscope.eval import load_judge

    verdict = load_judge().judge(video, [{"digit": 7, "motion": "up"}], world="mnist")
    verdict.correct, verdict.attributes, verdict.reason
"""

from __future__ import annotations

from typing import Any

__all__ = ["Judge", "Verdict", "load_digit_classifier", "load_judge"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m kinetoscope.eval.judge` runs the module only once.
    if name in ("Judge", "Verdict", "load_judge"):
        from kinetoscope.eval import judge

        return getattr(judge, name)
    if name == "load_digit_classifier":
        from kinetoscope.eval.digits import load_digit_classifier

        return load_digit_classifier
    raise AttributeError(f"module 'kinetoscope.eval' has no attribute {name!r}")
