"""Speed of the Phenaki family against the phenaki-pytorch package's sampler at matched size.

    python benchmarks/bench_phenaki.py [--model phenaki-mnist] [--threads 2] [--repeats 3] [--quick]

Three systems, each in its own subprocess (so peak memory is its own), in one run:

1. ours, default generation: a 16-frame 64x64 clip with the model's sampling defaults
   (steps and guidance of the recipe's ``sampling:`` section);
2. ours at the peer's settings (17 frames, 25 steps, guidance 3): like for like;
3. phenaki-pytorch's ``Phenaki.sample`` from random parts whose tokenizer and transformer
   parameter counts match ours, 17 frames, 25 steps, ``cond_scale`` 3.

Every timed call encodes its prompt with our text encoder (all-MiniLM-L6-v2) and decodes to
uint8 frames. Prints a table, the peer/ours ratios and PASS/FAIL against the targets (ours
at least 4x faster than the peer for the default generation, peak memory <= 1.5 GB); writes
benchmarks/results/phenaki.json. If the model is not installed yet, the recipe's
architecture is benchmarked with random weights (same sizes, hence the same speed).

The peer is installed by hand, without its declared dependencies (they pull a torchvision
that replaces the CPU torch build); only its sampler's imports are needed:

    pip install --no-deps phenaki-pytorch==0.5.0 && pip install beartype vector-quantize-pytorch loguru
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_FRAMES, PEER_STEPS, PEER_GUIDANCE = 17, 25, 3.0


def format_phenaki_table(results: Sequence[dict[str, Any]]) -> str:
    """Fixed-width table: frames, steps, time per step and clip, breakdown, memory, parameters."""
    header = (
        f"{'system':48s} {'frames':>6s} {'steps':>5s} {'s/step':>7s} {'s/clip':>7s} "
        f"{'text+':>6s} {'decode':>6s} {'peakMB':>7s} {'tokenizer':>10s} {'transformer':>11s}"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        params = r.get("params", {})
        rows.append(
            f"{r['name'][:48]:48s} {r['num_frames']:6d} {r['steps']:5d} "
            f"{r['seconds_per_step']:7.3f} {r['seconds_per_clip']:7.2f} "
            f"{r['before_denoise_seconds']:6.2f} {r['after_denoise_seconds']:6.2f} "
            f"{r['peak_rss_mb']:7.0f} {params.get('tokenizer', 0):10,d} "
            f"{params.get('transformer', 0):11,d}"
        )
    return "\n".join(rows)


def _ratio_line(label: str, ratios: dict[str, float]) -> str:
    return f"ratio peer/ours, {label} (>1 = ours faster): " + ", ".join(
        f"{k} {v:.2f}" for k, v in ratios.items()
    )


def report(results: Sequence[dict[str, Any]], summary: dict[str, Any], note: str) -> str:
    """The printed report of one run: results are (ours default, ours like-for-like, peer)."""
    ours, like, peer = results
    match = peer["match"]
    lines = [
        f"ours: {note}",
        f"peer: {peer['name']}, random weights; prompts encoded by our "
        f"{peer.get('text_encoder') or 'random states'} inside every timed call",
        f"settings: ours default {ours['num_frames']} frames, {ours['steps']} steps, guidance "
        f"{ours['guidance_scale']:g}; like for like and peer {peer['num_frames']} frames, "
        f"{peer['steps']} steps, guidance {peer['guidance_scale']:g}; {ours['threads']} thread(s), "
        f"repeats {ours['repeats']} (+{ours['warmup']} warm-up), prompt {ours['prompt']!r}",
        "load average during the runs (1/5/15 min): "
        + ", ".join(f"{r['name']} {r['load_average']}" for r in results),
        "",
        format_phenaki_table(results),
        "",
        f"{'CPU seconds (all threads)':48s} {'per step':>9s} {'per clip':>9s}",
        *(
            f"{r['name'][:48]:48s} {r['cpu_seconds_per_step']:9.3f} {r['cpu_seconds_per_clip']:9.2f}"
            for r in results
        ),
        "",
        f"tokenizer parameters: ours {match['target_tokenizer_params']:,d}, peer "
        f"{match['tokenizer_params']:,d} (dim {match['tokenizer_dim']}, "
        f"{100 * match['tokenizer_param_error']:+.1f}%); transformer: ours "
        f"{match['target_transformer_params']:,d}, peer {match['transformer_params']:,d} "
        f"(dim {match['transformer_dim']}, {100 * match['transformer_param_error']:+.1f}%)",
        _ratio_line("default generation", summary["ratios_peer_over_ours"]["default"]),
        _ratio_line("like for like", summary["ratios_peer_over_ours"]["like_for_like"]),
        "",
        *(f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in summary["targets"].items()),
    ]
    return "\n".join(lines)


def write_json(path: Path, results: Sequence[dict[str, Any]], summary: dict[str, Any]) -> Path:
    """``{"results": [...], "summary": {...}}`` to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"results": list(results), "summary": summary}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def prepare_ours(model: str, workdir: Path) -> tuple[str, dict[str, Any]]:
    """(a directory the subprocesses load, the peer's size match) for a model or recipe."""
    from kinetoscope.eval.bench import build_pipeline_from_recipe
    from kinetoscope.eval.bench_phenaki_peer import phenaki_match

    if model.endswith((".yaml", ".yml")):
        pipe = build_pipeline_from_recipe(model)
        model = str(pipe.save_pretrained(workdir / "random-weights"))
    else:
        import kinetoscope

        pipe = kinetoscope.load(model)
    if getattr(pipe, "family", None) != "phenaki":
        raise ValueError(f"{model} is not a Phenaki model; use e.g. --model phenaki-mnist")
    return model, phenaki_match(pipe)


def main(argv: list[str] | None = None) -> int:
    from bench_ldm import benchmark_parser  # benchmarks/ is on sys.path when run as a script

    parser = benchmark_parser(__doc__.split("\n\n")[0], model="phenaki-mnist")
    parser.add_argument("--quick", action="store_true", help="1 repeat, no warm-up (for tests)")
    parser.add_argument("--prompt", default="the digit 7 is moving up")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "phenaki.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 1, 0
    elif args.warmup is None:
        args.warmup = 1  # Phenaki samplers are not traced: one clip of lazy set-up
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from importlib.metadata import version

    from bench_ldm import resolve_model  # benchmarks/ is on sys.path when run as a script

    from kinetoscope.eval.bench import run_in_subprocess
    from kinetoscope.eval.bench_phenaki_peer import PHENAKI_PEER, compare_phenaki

    model, note = resolve_model(args.model, args.recipe)
    common = {
        "prompt": args.prompt,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
    }
    peer_settings = {
        "num_frames": PEER_FRAMES,
        "steps": PEER_STEPS,
        "guidance_scale": PEER_GUIDANCE,
    }
    like = f"{PEER_FRAMES} frames, {PEER_STEPS} steps"
    with tempfile.TemporaryDirectory(prefix="bench-phenaki-") as workdir:
        model_dir, match = prepare_ours(model, Path(workdir))
        ours = {"system": "kinetoscope", "model": model_dir, **common}
        results = [
            run_in_subprocess({**ours, "name": f"kinetoscope {args.model} (default)"}),
            run_in_subprocess(
                {**ours, **peer_settings, "name": f"kinetoscope {args.model} ({like})"}
            ),
        ]
    peer = {"system": PHENAKI_PEER, "match": match, **peer_settings, **common}
    peer_name = f"phenaki-pytorch {version('phenaki-pytorch')} ({like})"
    results.append(run_in_subprocess({**peer, "name": peer_name}))
    summary = {**compare_phenaki(*results), "note": note}
    print(report(results, summary, note))
    print(f"\nwrote {write_json(args.out, results, summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
