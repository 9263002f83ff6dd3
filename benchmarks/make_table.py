"""Regenerate benchmarks/README.md: accuracy, Fréchet distance, flicker and speed per shipped model.

    python benchmarks/make_table.py          # table from the reports already in results/
    python benchmarks/make_table.py --run    # first run every missing eval and the speed bench

Each model is evaluated on the worlds it was trained on (``mnist`` models on mnist-1 and
mnist-2, ``shapes`` models on shapes-1 and shapes-2), on the test split (held-out
compositions, test-writer digits) and on the train split beside it, ``--samples`` prompts
each (one sample per prompt, seeds 0..N-1), with ``kinetoscope eval``; reports go to
``results/eval-<model>-<world>-<split>/``. Speed comes from ``kinetoscope bench MODEL --peer``
(``results/bench-<model>/bench.json``). A full ``--run`` takes about 15 minutes per (model, world,
split) on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SPLITS = ("test", "train")


def model_worlds(name: str) -> list[str]:
    """The built-in worlds a shipped model was trained on (by its name)."""
    for family in ("mnist", "shapes"):
        if family in name:
            return [f"{family}-1", f"{family}-2"]
    return []


def report_dir(model: str, world: str, split: str) -> Path:
    return RESULTS / f"eval-{model}-{world}-{split}"


def bench_dir(model: str) -> Path:
    return RESULTS / f"bench-{model}"


def run_missing(models: list[str], *, samples: int, threads: int) -> None:
    """Evaluate every (model, world, split) without a report, then benchmark speed if missing."""
    import torch

    from kinetoscope.eval.evaluate import evaluate

    torch.set_num_threads(threads)
    for model in models:
        for world in model_worlds(model):
            for split in SPLITS:
                out = report_dir(model, world, split)
                if (out / "report.json").is_file():
                    continue
                logging.info("evaluating %s on %s (%s split)", model, world, split)
                evaluate(model, world=world, split=split, samples=samples, seed=0, out_dir=out)
        if not (bench_dir(model) / "bench.json").is_file():
            from kinetoscope.cli import main as cli

            cli(["bench", model, "--peer", "--threads", str(threads), "-o", str(bench_dir(model))])


def _pct(row: dict | None) -> str:
    if row is None:
        return "–"
    low, high = row["ci95"]
    return f"{100 * row['accuracy']:.0f}% ({100 * low:.0f}–{100 * high:.0f})"


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def build_table(models: list[str]) -> str:
    """Markdown: one row per (model, world); test split first, train split beside it."""
    lines = [
        "| model | world | overall, test (95% CI) | overall, train | per attribute, test "
        "| Fréchet (real floor), test | flicker gen / real | s/clip | s/step | peer/ours s/step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model in models:
        bench = _load(bench_dir(model) / "bench.json") or {"results": [], "summary": {}}
        result = _default_speed(model, bench)
        summary = (bench["summary"].get("models") or [{}])[0]
        ratio = summary.get("ratios_peer_over_ours", {}).get("seconds_per_step")
        for world in model_worlds(model):
            test = _load(report_dir(model, world, "test") / "report.json")
            train = _load(report_dir(model, world, "train") / "report.json")
            if test is None and train is None:
                continue
            main = test or train
            attrs = ", ".join(
                f"{k} {100 * v['accuracy']:.0f}%"
                for k, v in main["accuracy"].items()
                if k != "overall"
            )
            fr = main["frechet"]
            cells = [
                model,
                world,
                _pct(test["accuracy"]["overall"]) if test else "–",
                _pct(train["accuracy"]["overall"]) if train else "–",
                attrs,
                f"{fr['score']:.0f} ({fr['real_floor']:.0f})",
                f"{main['temporal']['flicker_generated']:.1f} / {main['temporal']['flicker_real']:.1f}",
                f"{result['seconds_per_clip']:.2f}" if result else "–",
                f"{result['seconds_per_step']:.3f}" if result else "–",
                f"{ratio:.2f}" if ratio else "–",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _default_speed(model: str, bench: dict | None = None) -> dict | None:
    """One default 16-frame generation: from the model's ``bench-<model>/bench.json`` (loaded
    unless given as ``bench``) or, for Phenaki, from ``phenaki.json``."""
    if bench is None:
        bench = _load(bench_dir(model) / "bench.json")
    if bench and bench["results"]:
        return bench["results"][0]
    for row in (_load(RESULTS / "phenaki.json") or {"results": []})["results"]:
        if row.get("model") == model and row["name"].endswith("(default)"):
            return row
    return None


def family_table(models: list[str]) -> str:
    """Markdown: each LDM model against the Phenaki model of its worlds, prompt by prompt."""
    from kinetoscope.eval.compare import compare_reports

    lines = [
        "| world, test | LDM / Phenaki overall | right only in LDM / only in Phenaki "
        "(McNemar p) | per attribute, LDM / Phenaki | s/clip, LDM / Phenaki |",
        "| --- | --- | --- | --- | --- |",
    ]
    for ldm in (m for m in models if m.startswith("ldm-")):
        phenaki = "phenaki-" + ldm.removeprefix("ldm-")
        if phenaki not in models:
            continue
        speeds = [_default_speed(m) for m in (ldm, phenaki)]
        speed = " / ".join(f"{r['seconds_per_clip']:.2f}" if r else "–" for r in speeds)
        for world in model_worlds(ldm):
            a = _load(report_dir(ldm, world, "test") / "report.json")
            b = _load(report_dir(phenaki, world, "test") / "report.json")
            if a is None or b is None:
                continue
            table = compare_reports(a, b)
            overall = table.pop("overall")
            attrs = ", ".join(
                f"{k} {100 * r['a']:.0f} / {100 * r['b']:.0f}%" for k, r in table.items()
            )
            cells = [
                world,
                f"{100 * overall['a']:.0f}% / {100 * overall['b']:.0f}%",
                f"{overall['only_a']} / {overall['only_b']} (p {overall['p']:.3f})",
                attrs,
                speed,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


FAMILIES = """

## The two families on the same prompts

Both families' test reports use the same prompts and seeds, so their verdicts pair up
(`kinetoscope compare results/eval-ldm-mnist-mnist-1-test results/eval-phenaki-mnist-mnist-1-test`).
The third column counts the prompts only one of the two got fully right, with the exact McNemar
p-value of that split. Speed is one default 16-frame 64×64 generation of each (Phenaki's from
`benchmarks/bench_phenaki.py`, `results/phenaki.json`).

"""


HEADER = """# Benchmarks

Current figures for every shipped model, measured on the 2-core CPU this project targets.
Regenerate everything with one command (`--run` evaluates what is missing first):

```bash
python benchmarks/make_table.py --run
```

Accuracy is the share of generated clips the project's judge accepts as showing exactly
what the prompt asked (digit or colour/shape/size, motion, object count), one sample per
prompt, with a Wilson 95% interval. The test split holds compositions and MNIST writers no
model saw in training. Fréchet distance uses the world-trained feature network
(`kinetoscope.eval.fvd`), next to the real-vs-real floor. s/clip and s/step are one 16-frame
64×64 generation with the model's default settings (`kinetoscope bench MODEL --peer`,
`results/bench-<model>/`), the last
column the size-matched diffusers `TextToVideoSDPipeline` timed in the same run (above 1 means
ours is faster). Per-report details (protocol, confusion plot, sample sheet) are in
`results/eval-<model>-<world>-<split>/`.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run missing evals and the bench")
    parser.add_argument("--samples", type=int, default=100, help="prompts per eval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models", nargs="*", help="models to run with --run (default: every installed model)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kinetoscope.hub import list_models

    models = sorted(list_models())
    if args.run:
        run_missing(args.models or models, samples=args.samples, threads=args.threads)
    # The tables always cover every installed model, so a partial --run keeps the other rows.
    table = build_table(models)
    families = family_table(models)
    (ROOT / "README.md").write_text(HEADER + table + FAMILIES + families + "\n")
    print(table)
    print(families)
    return 0


if __name__ == "__main__":
    sys.exit(main())
