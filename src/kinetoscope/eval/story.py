"""Story-mode evaluation: is every segment right, is the digit kept, are the joins smooth?

Protocol (``evaluate_story``): story i (seed ``seed + i``) keeps one digit and changes its
motion at every segment (three prompts by default, consecutive motions differ), worded with
the world's canonical captions, e.g. "the digit 3 is moving left" / "... moving up" / "...
moving right". The model tells each story with ``pipe.story`` (``frames_per_prompt`` frames
per segment); then

- every segment (its frames [start, end) from the story's metadata) is judged against its own
  prompt by the world judge: **segment accuracy**;
- the digit read in every segment must be the same (and be the story's digit):
  **identity kept**;
- **joins**: the mean absolute frame difference across each join (last frame of a segment to
  the first of the next) against the mean difference between consecutive frames inside
  segments; a visible jump shows as a join difference well above the inside one.

Writes ``story_report.json`` and ``story_report.md`` (plus ``stories.png``, the first frames of
each segment of the first stories) to the output folder.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from kinetoscope.eval.evaluate import sampling_options, wilson_interval

logger = logging.getLogger(__name__)


def story_prompts(
    count: int, *, segments: int = 3, seed: int = 0
) -> list[list[tuple[str, list[dict]]]]:
    """``count`` stories of (prompt, expected objects) per segment, one digit per story."""
    from kinetoscope.data.worlds import MOTIONS
    from kinetoscope.data.worlds.captions import canonical_caption

    if count < 1 or segments < 1:
        raise ValueError(f"need count >= 1 and segments >= 1, got {count=} {segments=}")
    rng = np.random.default_rng(seed)
    stories = []
    for _ in range(count):
        digit = int(rng.integers(10))
        motions: list[str] = []
        for _ in range(segments):
            choices = [m for m in MOTIONS if not motions or m != motions[-1]]
            motions.append(choices[int(rng.integers(len(choices)))])
        story = []
        for motion in motions:
            objects = [{"digit": digit, "motion": motion}]
            story.append((canonical_caption("mnist", objects), objects))
        stories.append(story)
    return stories


def frame_differences(frames: np.ndarray, boundaries: list[int]) -> tuple[list[float], list[float]]:
    """Mean |frame t+1 - frame t| (uint8 levels) across the joins and inside segments.

    ``boundaries`` are the first frames of segments 2, 3, ...; the pair (b - 1, b) is a join.
    """
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))  # (T-1,)
    joins = {b - 1 for b in boundaries}
    at_joins = [float(diffs[i]) for i in sorted(joins)]
    inside = [float(d) for i, d in enumerate(diffs) if i not in joins]
    return at_joins, inside


def _rate(hits: list[bool]) -> dict[str, Any]:
    low, high = wilson_interval(sum(hits), len(hits))
    return {"accuracy": sum(hits) / max(len(hits), 1), "ci95": [low, high], "n": len(hits)}


def _judge_segments(
    judge: Any, video: Any, story: list[tuple[str, list[dict]]]
) -> tuple[list[Any], list[int | None]]:
    """Each segment of a told story judged against its own prompt: (verdicts, digits read)."""
    verdicts, digits = [], []
    for span, (_, expected) in zip(video.metadata["segments"], story, strict=True):
        frames = video.frames[span["start"] : span["end"]]
        verdict = judge.judge(frames, expected, world="mnist")
        verdicts.append(verdict)
        seen = verdict.objects[0].get("observed") if verdict.objects else None
        digits.append(seen.get("digit") if seen else None)
    return verdicts, digits


def _protocol(
    model: Any,
    *,
    stories: int,
    segments: int,
    frames_per_prompt: int,
    seed: int,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The report's protocol section; ``metadata`` of a told story gives the sampling settings."""
    import kinetoscope

    return {
        "model": str(model),
        "stories": stories,
        "segments": segments,
        "frames_per_prompt": frames_per_prompt,
        "seeds": f"{seed}..{seed + stories - 1} (story i uses seed + i, segment j seed + i + j)",
        "context_frames": metadata.get("context_frames"),
        "steps": metadata.get("steps"),
        "guidance_scale": metadata.get("guidance_scale"),
        "kinetoscope_version": kinetoscope.__version__,
    }


def evaluate_story(
    model: Any,
    *,
    stories: int = 30,
    segments: int = 3,
    frames_per_prompt: int = 16,
    seed: int = 0,
    out_dir: str | Path = "story-report",
    steps: int | None = None,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Run the story protocol (module docstring) with a story-mode model; returns the report."""
    import kinetoscope
    from kinetoscope.eval.judge import load_judge

    pipe = kinetoscope.load(model) if isinstance(model, str | Path) else model
    if not hasattr(pipe, "story"):
        raise ValueError(f"{model} has no story mode (both shipped families have one)")
    judge = load_judge()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sampling = sampling_options(
        steps=steps,
        guidance=guidance,
        guidance_interval=guidance_interval,
        precision=precision,
        pipe=pipe,
    )
    segment_hits, identity_hits, joins, inside, seconds, rows, sheets = [], [], [], [], [], [], []
    for index, story in enumerate(story_prompts(stories, segments=segments, seed=seed)):
        began = time.perf_counter()
        video = pipe.story(
            [p for p, _ in story],
            frames_per_prompt=frames_per_prompt,
            seed=seed + index,
            progress=False,
            **sampling,
        )
        seconds.append(time.perf_counter() - began)
        spans = video.metadata["segments"]
        verdicts, digits = _judge_segments(judge, video, story)
        segment_hits += [v.correct for v in verdicts]
        wanted = story[0][1][0]["digit"]
        identity_hits.append(all(d == wanted for d in digits))
        at_joins, within = frame_differences(video.frames, [s["start"] for s in spans[1:]])
        joins += at_joins
        inside += within
        rows.append(
            {
                "prompts": [p for p, _ in story],
                "segments_correct": [v.correct for v in verdicts],
                "reasons": [v.reason for v in verdicts],
                "digits_read": digits,
                "join_differences": at_joins,
            }
        )
        if index < 8:
            sheets.append([video.frames[s["start"]] for s in spans])
        logger.info("story %d / %d", index + 1, stories)
    report = {
        "protocol": _protocol(
            model,
            stories=stories,
            segments=segments,
            frames_per_prompt=frames_per_prompt,
            seed=seed,
            metadata=video.metadata,
        ),
        "segment_accuracy": _rate(segment_hits),
        "identity_kept": _rate(identity_hits),
        "joins": {
            "mean_difference_at_joins": float(np.mean(joins)) if joins else None,
            "mean_difference_inside": float(np.mean(inside)),
        },
        "seconds_per_story": float(np.median(seconds)),
        "stories": rows,
    }
    (out / "story_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "story_report.md").write_text(render_markdown(report))
    _sheet(sheets, out / "stories.png")
    return report


def render_markdown(report: dict[str, Any]) -> str:
    def pct(row: dict) -> str:
        low, high = row["ci95"]
        return (
            f"{100 * row['accuracy']:.1f}% (95% CI {100 * low:.1f}–{100 * high:.1f}%, n={row['n']})"
        )

    p, j = report["protocol"], report["joins"]
    lines = [
        f"# Story mode: {p['model']}",
        "",
        f"{p['stories']} stories × {p['segments']} segments × {p['frames_per_prompt']} frames; "
        f"steps {p['steps']}, guidance {p['guidance_scale']}, context frames "
        f"{p['context_frames']}; seeds {p['seeds']}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| segment judged correct against its own prompt | {pct(report['segment_accuracy'])} |",
        f"| digit kept across all segments | {pct(report['identity_kept'])} |",
        f"| mean frame difference at joins | {j['mean_difference_at_joins']:.2f} |",
        f"| mean frame difference inside segments | {j['mean_difference_inside']:.2f} |",
        f"| seconds per story | {report['seconds_per_story']:.1f} |",
        "",
    ]
    return "\n".join(lines)


def _sheet(rows: list[list[np.ndarray]], path: Path) -> None:
    """First frame of every segment, one story per row."""
    from PIL import Image

    if not rows:
        return
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    Image.fromarray(grid).save(path)
