"""Speed of the Video LDM family against diffusers' TextToVideoSDPipeline at matched size.

    python benchmarks/bench_ldm.py [--model ldm-mnist] [--threads 2] [--repeats 3] [--profile]

Generates one 16-frame 64x64 clip with our model (text encoding + denoising + decoding) and,
in the same run, with diffusers' TextToVideoSDPipeline built from random components whose
UNet (and autoencoder) parameter counts match ours, same latent size, steps, guidance,
scheduler and text embeddings. Each system runs in its own subprocess, so peak memory is its
own. Prints a table, the peer/ours ratios and PASS/FAIL against the targets; writes
benchmarks/results/ldm.json and ldm.png. If the model is not installed yet, the recipe's
architecture is benchmarked with random weights (same sizes, hence the same speed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def resolve_model(model: str, recipe: Path) -> tuple[str, str]:
    """(what to benchmark, a note): the installed model, or its recipe with random weights."""
    from kinetoscope.hub import list_models

    if model in list_models() or (Path(model) / "model_index.json").is_file():
        return model, "trained weights"
    if not recipe.is_file():
        raise FileNotFoundError(f"model {model!r} is not installed and recipe {recipe} is missing")
    return str(recipe), f"{model} not installed: random weights with the sizes of {recipe.name}"


def report(results: list[dict], summary: dict, note: str) -> str:
    from kinetoscope.eval.bench_report import format_table

    ours, peer = results
    match = peer["match"]
    lines = [
        f"model: {ours['name']} ({note})",
        f"settings: {ours['num_frames']} frames {ours['match']['resolution']}px, {ours['steps']} steps, "
        f"guidance {ours['guidance_scale']}, {ours['threads']} thread(s), "
        f"repeats {ours['repeats']} (+{ours['warmup']} warm-up), prompt {ours['prompt']!r}",
        f"load average during the runs (1/5/15 min): ours {ours['load_average']}, peer {peer['load_average']}",
        "",
        format_table(results),
        "",
        f"{'CPU seconds (all threads)':34s} {'per step':>9s} {'per clip':>9s}",
        *(
            f"{r['name'][:34]:34s} {r['cpu_seconds_per_step']:9.3f} {r['cpu_seconds_per_clip']:9.2f}"
            for r in results
        ),
        "",
        f"UNet parameters: ours {match['target_unet_params']:,d}, peer {match['unet_params']:,d} "
        f"(widths {match['unet_widths']}, {100 * match['unet_param_error']:+.1f}%); "
        f"autoencoder: ours {ours['params']['vae']:,d}, peer {match['vae_params']:,d} (widths {match['vae_widths']})",
        "ratio peer/ours (>1 = ours faster): "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["ratios_peer_over_ours"].items()),
        "",
        *(f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in summary["targets"].items()),
    ]
    return "\n".join(lines)


def profile_ours(model: str, *, threads: int) -> str:
    import torch

    from kinetoscope.eval.bench import load_kinetoscope_system, profile_generation

    torch.set_num_threads(threads)
    pipe = load_kinetoscope_system(model)
    settings = {
        "num_frames": pipe.defaults["num_frames"],
        "steps": pipe.defaults["num_inference_steps"],
        "guidance_scale": pipe.defaults["guidance_scale"],
    }
    return profile_generation(pipe, prompt="the digit 7 is moving up", **settings)


def benchmark_parser(description: str, *, model: str) -> argparse.ArgumentParser:
    """The options every issue-level benchmark shares: model (or its recipe), threads, repeats."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=model, help="installed model name or saved directory")
    parser.add_argument(
        "--recipe",
        type=Path,
        default=ROOT / "configs" / f"{model}.yaml",
        help="recipe used (random weights) when the model is not installed",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per system")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per system")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed generations first (reported apart)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n\n")[0], model="ldm-mnist")
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: the model's)"
    )
    parser.add_argument("--prompt", default="the digit 7 is moving up")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ldm.json")
    parser.add_argument(
        "--profile", action="store_true", help="also print torch.profiler's op table"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from kinetoscope.eval.bench import bench_models
    from kinetoscope.eval.bench_report import compare, write_results

    model, note = resolve_model(args.model, args.recipe)
    results = bench_models(
        [model],
        prompt=args.prompt,
        steps=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,  # None: up to the traced clip
        threads=args.threads,
        peer=True,
    )
    results[0]["name"] = f"kinetoscope {args.model}"
    summary = {**compare(*results), "note": note}
    print(report(results, summary, note))
    json_path, png_path = write_results(
        results, args.out, args.out.with_suffix(".png"), summary=summary
    )
    print(f"\nwrote {json_path} and {png_path}")
    if args.profile:
        print("\ntorch.profiler, one generation of ours (ops by self CPU time):")
        print(profile_ours(model, threads=args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
