"""``kinetoscope eval``: generate from a world's evaluation prompts, judge, and write a report.

Protocol: ``eval_prompts(world, split, count, seed)`` gives (prompt, expected objects) pairs —
on the test split only held-out compositions and test-writer digits, with wordings that no
training template uses. Sample i is generated with seed ``seed + i``, judged by the world
judge on the uint8 frames, and scored per attribute with Wilson 95% intervals. The report
folder holds report.json, report.md, confusion.png and samples.png.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kinetoscope.eval.temporal import flicker, identity_stability

logger = logging.getLogger(__name__)


def wilson_interval(successes: int, total: int, *, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _accuracy_table(verdicts: list[Any]) -> dict[str, dict[str, float]]:
    table = {}
    keys = sorted({k for v in verdicts for k in v.attributes}) + ["overall"]
    for key in keys:
        hits = [
            v.correct if key == "overall" else v.attributes[key]
            for v in verdicts
            if key == "overall" or key in v.attributes
        ]
        low, high = wilson_interval(sum(hits), len(hits))
        table[key] = {
            "accuracy": sum(hits) / max(len(hits), 1),
            "ci95": [low, high],
            "n": len(hits),
        }
    return table


def generate_and_judge(
    pipe: Any,
    prompts: list[tuple[str, list[dict]]],
    *,
    world: str,
    seed: int,
    batch_size: int,
    sampling: dict,
    as_judged: Callable[[Any], Any] | None = None,
) -> tuple[list[Any], list[Any], list[float]]:
    """Generate one clip per prompt (seed + i) and judge it; returns videos, verdicts, s/clip.

    ``as_judged`` maps each generated video to what the judge sees (default: the video
    itself); a probe that samples one frame, say, can hold it as a still clip.
    """
    from kinetoscope.eval.judge import load_judge

    judge = load_judge()
    videos, verdicts, seconds = [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        began = time.perf_counter()
        out = pipe(
            [p for p, _ in chunk],
            seed=[seed + start + i for i in range(len(chunk))],
            progress=False,
            **sampling,
        )
        per_clip = (time.perf_counter() - began) / len(chunk)
        for video, (_, expected) in zip(out.frames, chunk, strict=True):
            videos.append(video)
            judged = as_judged(video) if as_judged is not None else video
            verdicts.append(judge.judge(judged, expected, world=world.split("-")[0]))
            seconds.append(per_clip)
        logger.info("judged %d / %d", len(videos), len(prompts))
    return videos, verdicts, seconds


def sampling_options(
    *,
    steps: int | None,
    guidance: float | None,
    guidance_interval: tuple[float, float] | None = None,
    precision: str | None = None,
    pipe: Any = None,
) -> dict[str, Any]:
    """Pipeline keyword arguments for the given sampling settings (None: the model's default).

    A guidance interval and a precision apply to latent diffusion models only; with ``pipe``
    given, they are refused for other families before any sampling."""
    for name, value in (("a guidance interval", guidance_interval), ("precision", precision)):
        if value is not None and pipe is not None and pipe.family != "ldm":
            raise ValueError(f"{name} applies to latent diffusion models, not {pipe.family}")
    options = {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "guidance_interval": None if guidance_interval is None else tuple(guidance_interval),
        "precision": precision,
    }
    return {k: v for k, v in options.items() if v is not None}


def _sampling_settings(video: Any) -> dict[str, Any]:
    """Steps, guidance, frames and resolution a generated Video was sampled with."""
    ldm_only = {  # absent from other families' metadata
        key: video.metadata[key]
        for key in ("guidance_interval", "precision")
        if key in video.metadata
    }
    return {
        "steps": video.metadata.get("steps"),
        "guidance_scale": video.metadata.get("guidance_scale"),
        **ldm_only,
        "num_frames": video.num_frames,
        "resolution": [video.height, video.width],
    }


def _sample_rows(
    prompts: list[tuple[str, list[dict]]], verdicts: list[Any], videos: list[Any]
) -> list[dict]:
    """One report row per sample: prompt, what a prompt reader rewrote it to (if it did),
    expected objects and the verdict."""
    return [
        {
            "prompt": p,
            **(
                {"read_as": video.metadata["prompt_read"]}
                if "prompt_read" in video.metadata
                else {}
            ),
            "expected": e,
            "correct": v.correct,
            "attributes": v.attributes,
            "reason": v.reason,
        }
        for (p, e), v, video in zip(prompts, verdicts, videos, strict=True)
    ]


def evaluate(
    model: Any,
    *,
    world: str,
    split: str = "test",
    samples: int = 100,
    seed: int = 0,
    out_dir: str | Path = "report",
    steps: int | None = None,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    precision: str | None = None,
    batch_size: int = 4,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the protocol and write the report folder; returns the report dict.

    ``model`` is a model name, a saved directory, or an already loaded pipeline.
    """
    import kinetoscope
    from kinetoscope.data.worlds import WorldDataset, eval_prompts
    from kinetoscope.hub import resolve_model
    from kinetoscope.pipelines.base import model_fingerprint

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, str | Path):
        pipe = kinetoscope.load(model, device=device)
        model_hash = model_fingerprint(resolve_model(model))
    else:
        pipe, model = model, type(model).__name__
        model_hash = "in-memory"
    sampling = sampling_options(
        steps=steps,
        guidance=guidance,
        guidance_interval=guidance_interval,
        precision=precision,
        pipe=pipe,
    )
    prompts = eval_prompts(world, split=split, count=samples, seed=seed)
    videos, verdicts, seconds = generate_and_judge(
        pipe, prompts, world=world, seed=seed, batch_size=batch_size, sampling=sampling
    )
    real = WorldDataset(world, split=split, size=samples, seed=seed + 10_000)
    real_clips = [real[i].frames for i in range(min(samples, 256))]
    report: dict[str, Any] = {
        "protocol": {
            "model": model,
            "model_hash": model_hash,
            "family": getattr(pipe, "family", "?"),
            "world": world,
            "split": split,
            "samples": samples,
            "seeds": f"{seed}..{seed + samples - 1} (sample i uses seed + i)",
            **_sampling_settings(videos[0]),
            "kinetoscope_version": kinetoscope.__version__,
        },
        "accuracy": _accuracy_table(verdicts),
        "speed": {
            "seconds_per_clip": float(np.median(seconds)),
            "batch_size": batch_size,
            "peak_rss_mb": _peak_rss_mb(),
        },
        "temporal": {
            "flicker_generated": float(np.mean([flicker(v.frames) for v in videos])),
            "flicker_real": float(np.mean([flicker(c) for c in real_clips])),
            "identity_stability": identity_stability(verdicts),
        },
        "frechet": _frechet(world, split, real_clips, [v.frames for v in videos], seed),
        "samples": _sample_rows(prompts, verdicts, videos),
    }
    _write_json(out / "report.json", report)
    confusion_plot(prompts, verdicts, world=world, path=out / "confusion.png")
    contact_sheet(videos, prompts, verdicts, path=out / "samples.png")
    (out / "report.md").write_text(render_markdown(report))
    return report


def evaluate_variant(
    pipe: Any, *, world: str, samples: int = 100, out_dir: str | Path = "report"
) -> dict[str, float]:
    """Judge a modified pipeline (a sampling probe) under the protocol of the shipped models'
    reports (test split, seeds 0..samples-1), so ``kinetoscope compare`` pairs the two prompt
    by prompt; writes the report folder and returns the accuracy per attribute."""
    report = evaluate(pipe, world=world, split="test", samples=samples, seed=0, out_dir=out_dir)
    return {name: row["accuracy"] for name, row in report["accuracy"].items()}


def _frechet(
    world: str, split: str, real: list[np.ndarray], fake: list[np.ndarray], seed: int
) -> dict[str, Any]:
    """Fréchet distance in the project's world-feature space, with the real-vs-real floor."""
    try:
        from kinetoscope.eval.fvd import real_floor, video_frechet_distance
    except ImportError as err:
        return {"skipped": f"Fréchet distance unavailable: {err}"}
    try:
        score = video_frechet_distance(real, fake, backbone="world")
        floor = real_floor(world, split=split, count=len(fake), seed=seed)
    except (FileNotFoundError, ValueError) as err:
        return {"skipped": str(err)}
    floor_score = getattr(floor, "score", floor)
    return {
        "backbone": "world-features",
        "score": score.score,
        "real_floor": float(floor_score),
        "protocol": score.protocol,
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def confusion_plot(prompts, verdicts, *, world: str, path: Path) -> Path:
    """Expected vs observed identity (digit, or colour) and motion, as heat maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kinetoscope.data.worlds import MOTIONS

    key = "digit" if world.startswith("mnist") else "color"
    pairs: dict[str, Counter] = {key: Counter(), "motion": Counter()}
    for verdict in verdicts:
        for obj in verdict.objects:
            observed = obj.get("observed") or {}
            for k in pairs:
                pairs[k][(obj["expected"][k], observed.get(k))] += 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (k, counts) in zip(axes, pairs.items(), strict=True):
        rows = sorted({e for e, _ in counts}, key=str) if k != "motion" else list(MOTIONS)
        cols = rows + ["none/other"]
        grid = np.zeros((len(rows), len(cols)), int)
        for (e, o), n in counts.items():
            if e in rows:
                grid[rows.index(e), cols.index(o) if o in cols else len(cols) - 1] += n
        ax.imshow(grid, cmap="Blues")
        ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        for i in range(len(rows)):
            for j in range(len(cols)):
                if grid[i, j]:
                    ax.text(j, i, grid[i, j], ha="center", va="center", fontsize=8)
        ax.set_xlabel(f"observed {k}")
        ax.set_ylabel(f"expected {k}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def contact_sheet(
    videos, prompts, verdicts, *, path: Path, rows: int = 16, frames: int = 8
) -> Path:
    """One row per sample: frames across time, the prompt and the judge's verdict."""
    from PIL import Image, ImageDraw

    shown = list(zip(videos, prompts, verdicts, strict=True))[:rows]
    height, width = videos[0].height, videos[0].width
    text_w = 420
    sheet = Image.new("RGB", (frames * width + text_w, len(shown) * (height + 4)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for r, (video, (prompt, _), verdict) in enumerate(shown):
        y = r * (height + 4)
        picks = np.linspace(0, video.num_frames - 1, frames).round().astype(int)
        for c, t in enumerate(picks):
            sheet.paste(Image.fromarray(video.frames[t]), (c * width, y))
        colour = (90, 220, 90) if verdict.correct else (240, 90, 90)
        draw.text((frames * width + 6, y + 4), prompt[:64], fill=(230, 230, 230))
        draw.text(
            (frames * width + 6, y + 20), "correct" if verdict.correct else "wrong", fill=colour
        )
        if verdict.reason:
            draw.text((frames * width + 6, y + 36), verdict.reason[:64], fill=(200, 200, 200))
    sheet.save(path)
    return path


def _format_share(value: float | None) -> str:
    return "no object was read" if value is None else f"{value:.1%}"


def render_markdown(report: dict[str, Any]) -> str:
    proto, speed, temporal = report["protocol"], report["speed"], report["temporal"]
    lines = [
        f"# Evaluation of {proto['model']} on {proto['world']} ({proto['split']} split)",
        "",
        "| attribute | accuracy | 95% CI | n |",
        "|---|---|---|---|",
    ]
    for key, row in report["accuracy"].items():
        low, high = row["ci95"]
        lines.append(f"| {key} | {row['accuracy']:.1%} | {low:.1%} – {high:.1%} | {row['n']} |")
    fr = report["frechet"]
    fr_line = (
        fr.get("skipped")
        or f"{fr['score']:.2f} (real-vs-real floor {fr['real_floor']:.2f}, {fr['backbone']})"
    )
    lines += [
        "",
        f"- Fréchet distance: {fr_line}",
        f"- Flicker (mean |Δframe|): generated {temporal['flicker_generated']:.2f}, real {temporal['flicker_real']:.2f}",
        f"- Identity stability (mean share of frames agreeing with an object's majority identity): {_format_share(temporal.get('identity_stability'))}",
        f"- Speed: {speed['seconds_per_clip']:.2f} s/clip (batch {speed['batch_size']}), peak RSS {speed['peak_rss_mb']:.0f} MB",
        "",
        "![confusion](confusion.png)",
        "",
        "![samples](samples.png)",
        "",
        "## Protocol",
        "",
        *[f"- {k}: {v}" for k, v in proto.items()],
        "",
    ]
    return "\n".join(lines)
