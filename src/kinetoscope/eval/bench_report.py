"""Reporting for speed benchmarks: the text table, peer/ours ratios, targets, JSON and plot.

``kinetoscope.eval.bench`` measures; this module turns its result dicts (one per system, a
kinetoscope model optionally followed by its size-matched diffusers peer) into what people
read: ``format_table``, ``compare`` (ratios and PASS/FAIL against the speed targets) and
``write_results`` (``{"results": [...], "summary": {...}}`` as JSON plus a bar plot).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGET_CLIP_SECONDS = 1.5  # a whole default generation (text, denoising, decoding)
TARGET_PEAK_MB = 1.5 * 1024
RATIO_KEYS = (
    "seconds_per_step",
    "seconds_per_clip",
    "cpu_seconds_per_step",
    "cpu_seconds_per_clip",
)


def compare(ours: dict[str, Any], peer: dict[str, Any] | None = None) -> dict[str, Any]:
    """Peer/ours ratios (above 1 = ours faster) and PASS/FAIL per target for one model."""
    targets = {
        f"default generation <= {TARGET_CLIP_SECONDS} s": ours["seconds_per_clip"]
        <= TARGET_CLIP_SECONDS,
        f"peak memory <= {TARGET_PEAK_MB / 1024:.1f} GB": ours["peak_rss_mb"] <= TARGET_PEAK_MB,
    }
    summary: dict[str, Any] = {"model": ours["name"], "targets": targets}
    if peer is not None:
        summary["ratios_peer_over_ours"] = {k: peer[k] / ours[k] for k in RATIO_KEYS}
        targets["our time per step <= peer's"] = (
            ours["seconds_per_step"] <= peer["seconds_per_step"]
        )
    return summary


def compare_all(results: Sequence[dict[str, Any]], *, peer_system: str) -> list[dict[str, Any]]:
    """``compare`` for every kinetoscope result, paired with the peer result right after it."""
    out = []
    for i, row in enumerate(results):
        if row["system"] == peer_system:
            continue
        nxt = results[i + 1] if i + 1 < len(results) else None
        out.append(compare(row, nxt if nxt and nxt["system"] == peer_system else None))
    return out


def format_summary(summaries: Sequence[dict[str, Any]]) -> str:
    """Ratio and PASS/FAIL lines of ``compare_all``."""
    lines = []
    for s in summaries:
        if "ratios_peer_over_ours" in s:
            ratios = ", ".join(f"{k} {v:.2f}" for k, v in s["ratios_peer_over_ours"].items())
            lines.append(f"{s['model']}: ratio peer/ours (>1 = ours faster): {ratios}")
        lines += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in s["targets"].items()]
    return "\n".join(lines)


def _precision(result: dict[str, Any]) -> str:
    """The precision a system's denoiser ran in ("-" where there is none to report)."""
    precision = result.get("precision") or result.get("match", {}).get("precision")
    return precision or "-"


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A fixed-width text table: time per step and per clip (and of the process's first clip,
    untimed warm-up), breakdown, memory, parameters."""
    header = (
        f"{'system':34s} {'s/step':>7s} {'s/clip':>7s} {'1st':>6s} {'text+':>6s} {'decode':>6s} "
        f"{'peakMB':>7s} {'UNet':>9s} {'AE':>8s} {'UNet in':>8s}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        params = r.get("params", {})
        warmups = r.get("warmup_clip_seconds") or []
        first = f"{warmups[0]:6.2f}" if warmups else f"{'-':>6s}"
        rows.append(
            f"{r['name'][:34]:34s} {r['seconds_per_step']:7.3f} {r['seconds_per_clip']:7.2f} "
            f"{first} {r['before_denoise_seconds']:6.2f} {r['after_denoise_seconds']:6.2f} "
            f"{r['peak_rss_mb']:7.0f} {params.get('unet', 0):9,d} {params.get('vae', 0):8,d} "
            f"{_precision(r):>8s}"
        )
    return "\n".join(rows)


def write_results(
    results: Sequence[dict[str, Any]],
    json_path: str | Path,
    png_path: str | Path,
    *,
    summary: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``{"results": [...], "summary": {...}}`` as JSON and a bar plot of seconds per
    step, seconds per clip and peak memory per system (both files written atomically)."""
    json_path, png_path = Path(json_path), Path(png_path)
    for path in (json_path, png_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(
        json.dumps({"results": list(results), "summary": summary or {}}, indent=2) + "\n"
    )
    os.replace(tmp, json_path)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    panels = [
        ("seconds_per_step", "seconds per step"),
        ("seconds_per_clip", "seconds per clip"),
        ("peak_rss_mb", "peak RSS (MB)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.5 * len(names) + 2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.barh(range(len(names)), [r[key] for r in results], color="tab:blue")
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.stem}.tmp{png_path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return json_path, png_path
