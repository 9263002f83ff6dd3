"""The ``kinetoscope`` command line: generate, story, continue, interpolate, train, models, data,
eval, compare, bench, demo, doctor.

Every command has ``--help``. Heavy imports happen inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_MODEL = "ldm-mnist"
WORLDS_HELP = "mnist-1, mnist-2, shapes-1 or shapes-2"
# kinetoscope.pipelines.text_to_video.PRECISION_CHOICES, spelled out to keep the CLI's start light
PRECISION_CHOICES = ("auto", "float32", "bfloat16")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="model name (see `kinetoscope models`) or saved directory",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; prompt i of a batch uses seed + i"
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    _add_ldm_sampling(p)
    p.add_argument("--negative-prompt", default=None, help="what the video should not show")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the output")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--literal",
        action="store_true",
        help="give the model the prompt's own words; by default a model with a prompt reader "
        "is given the canonical caption of what the reader read in it",
    )
    p.add_argument(
        "--no-compose",
        action="store_true",
        help="make a prompt about several objects in one pass; by default a world model makes "
        "each object on its own and merges the clips (pixel-wise maximum)",
    )


def _add_ldm_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="LDM models: guide only the steps whose timestep lies in [LOW, HIGH] (fractions "
        "of the noise schedule); the others cost about half (default: the model's)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="LDM models: the denoiser's precision; auto = bfloat16 where the device has "
        "native bf16 (AMX, AVX512-BF16, recent GPUs), else float32 (default: the model's)",
    )


def _sampling_kwargs(args: argparse.Namespace, pipe) -> dict:
    from kinetoscope.eval.evaluate import sampling_options

    kwargs = {"negative_prompt": args.negative_prompt, "progress": not args.quiet, "fps": args.fps}
    if getattr(args, "literal", False):
        pipe.defaults["read_prompts"] = False
    if getattr(args, "no_compose", False):
        pipe.defaults["compose_objects"] = False
    return {
        **sampling_options(
            steps=args.steps,
            guidance=args.guidance,
            guidance_interval=args.guidance_interval,
            precision=args.precision,
            pipe=pipe,
        ),
        **{k: v for k, v in kwargs.items() if v is not None},
    }


def _read_prompts(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompts file {path} not found")
    prompts = [line.strip() for line in file.read_text().splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"{path} has no prompts (one per line; '#' starts a comment)")
    return prompts


def cmd_generate(args: argparse.Namespace) -> int:
    import kinetoscope

    if bool(args.prompt) == bool(args.prompts_file):
        raise ValueError("give either a PROMPT or --prompts-file (with --out-dir)")
    pipe = kinetoscope.load(args.model, device=args.device)
    kwargs = _sampling_kwargs(args, pipe)
    if args.num_frames is not None:
        kwargs["num_frames"] = args.num_frames
    if args.prompt:
        video = pipe(args.prompt, seed=args.seed, **kwargs).frames[0]
        out = video.save(args.output)
        if "prompt_read" in video.metadata:
            print(f"read as: {video.metadata['prompt_read']} (--literal: the prompt's own words)")
        if "composed_from" in video.metadata:
            print(
                f"made object by object: {' | '.join(video.metadata['composed_from'])} (--no-compose: in one pass)"
            )
        print(f"wrote {out}")
        return 0
    prompts = _read_prompts(args.prompts_file)
    out_dir = Path(args.out_dir or "outputs")
    batch = max(args.batch_size, 1)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        seeds = [args.seed + start + i for i in range(len(chunk))]
        for i, video in enumerate(pipe(chunk, seed=seeds, **kwargs).frames):
            path = video.save(out_dir / f"{start + i:04d}.{args.format}")
            print(f"wrote {path}")
    return 0


def cmd_story(args: argparse.Namespace) -> int:
    import kinetoscope
    from kinetoscope.hub import require

    prompts = _read_prompts(args.prompts_file) if args.prompts_file else list(args.prompts)
    if not prompts:
        raise ValueError("give the story's prompts, or --prompts-file")
    pipe = require(kinetoscope.load(args.model, device=args.device), "story", args.model)
    kwargs = _sampling_kwargs(args, pipe)
    if args.context_frames is not None:
        kwargs["context_frames"] = args.context_frames
    video = pipe.story(prompts, frames_per_prompt=args.frames_per_prompt, seed=args.seed, **kwargs)
    print(f"wrote {video.save(args.output)}")
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    import kinetoscope
    from kinetoscope.hub import require
    from kinetoscope.pipelines.base import prepend_input
    from kinetoscope.video import Video

    clip = Video.read(args.input)
    pipe = require(kinetoscope.load(args.model, device=args.device), "continue_video", args.model)
    kwargs = _sampling_kwargs(args, pipe)
    if args.context_frames is not None:
        kwargs["context_frames"] = args.context_frames
    new = pipe.continue_video(
        clip, args.prompt, num_frames=args.num_frames, seed=args.seed, **kwargs
    )
    if not args.only_new:  # the input (at the model's size) followed by its continuation
        new = prepend_input(clip, new)
    print(f"wrote {new.save(args.output)}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import kinetoscope
    from kinetoscope.hub import require
    from kinetoscope.video import Video

    clip = Video.read(args.input)
    pipe = require(kinetoscope.load(args.model, device=args.device), "interpolate", args.model)
    kwargs = _sampling_kwargs(args, pipe)
    fps = kwargs.pop("fps", None)  # default: the input's times the factor
    smooth = pipe.interpolate(
        clip, factor=args.factor, prompt=args.prompt, seed=args.seed, **kwargs
    )
    if fps is not None:  # e.g. the input's fps: slow motion
        smooth.fps = fps
    print(f"wrote {smooth.save(args.output)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from kinetoscope.config import apply_overrides, from_dict, read_recipe
    from kinetoscope.hub import model_dirs

    data = apply_overrides(read_recipe(args.config), args.set)
    family = data.pop("family", "ldm")
    if family == "ldm":
        from kinetoscope.train.ldm import LDMRecipe, train_ldm

        recipe = from_dict(LDMRecipe, data, where=Path(args.config).name)
        pipeline_dir = train_ldm(recipe, args.out or f"runs/{recipe.name}")
    elif family == "phenaki":
        from kinetoscope.train.phenaki import PhenakiRecipe, train_phenaki

        recipe = from_dict(PhenakiRecipe, data, where=Path(args.config).name)
        pipeline_dir = train_phenaki(recipe, args.out or f"runs/{recipe.name}")
    else:
        raise ValueError(f"unknown family {family!r} in {args.config}; use ldm or phenaki")
    print(f"trained pipeline saved to {pipeline_dir}")
    if args.ship:
        target = model_dirs()[-1] / recipe.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pipeline_dir, target)
        print(f"shipped as {target}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kinetoscope.hub import list_models
    from kinetoscope.pipelines.base import read_model_index

    models = list_models()
    if not models:
        print("no models found; train one with `kinetoscope train configs/ldm-mnist.yaml --ship`")
        return 1
    for name, path in models.items():
        index = read_model_index(path)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        print(f"{name:18s} {index.get('family', '?'):8s} {size:6.1f} MB  {path}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from kinetoscope.data import worlds

    clips = {"split": args.split, "count": args.count, "seed": args.seed}
    if args.data_command == "preview":
        path = worlds.preview_sheet(args.world, path=args.output, **clips)
        print(f"wrote {path}")
    else:
        manifest = worlds.export_world(args.world, out_dir=args.out_dir, **clips)
        print(f"wrote {args.count} clips and {manifest}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    run = {
        "seed": args.seed,
        "out_dir": args.output,
        "steps": args.steps,
        "guidance": args.guidance,
        "guidance_interval": args.guidance_interval,
        "precision": args.precision,
    }
    if args.stories:
        from kinetoscope.eval.story import evaluate_story

        if not args.world.startswith("mnist"):
            raise ValueError("story evaluation uses the mnist world: pass --world mnist-1")
        evaluate_story(args.model, stories=args.stories, **run)
        print((Path(args.output) / "story_report.md").read_text())
        return 0
    from kinetoscope.eval.evaluate import evaluate

    report = evaluate(
        args.model,
        world=args.world,
        split=args.split,
        samples=args.samples,
        batch_size=args.batch_size,
        device=args.device,
        **run,
    )
    for key, row in report["accuracy"].items():
        low, high = row["ci95"]
        print(f"{key:8s} {row['accuracy']:6.1%}  (95% CI {low:.1%}-{high:.1%}, n={row['n']})")
    print(f"report written to {args.output}/report.md")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from kinetoscope.eval.compare import compare_reports, format_comparison, load_report

    table = compare_reports(load_report(args.a), load_report(args.b))
    print(format_comparison(table, args.a, args.b))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    from kinetoscope.eval.bench import PEER, bench_models
    from kinetoscope.eval.bench_report import (
        compare_all,
        format_summary,
        format_table,
        write_results,
    )
    from kinetoscope.hub import list_models

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = args.models or sorted(list_models())
    if not names:
        print("no models to benchmark; pass a model name, saved directory or recipe YAML")
        return 1
    results = bench_models(
        names,
        num_frames=args.num_frames,
        steps=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        peer=args.peer,
    )
    summaries = compare_all(results, peer_system=PEER)
    print(format_table(results))
    print()
    print(format_summary(summaries))
    out = Path(args.output)
    json_path, png_path = write_results(
        results, out / "bench.json", out / "bench.png", summary={"models": summaries}
    )
    print(f"wrote {json_path} and {png_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kinetoscope.demo import launch

    launch(host=args.host, port=args.port, device=args.device)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from kinetoscope.doctor import run_doctor

    return run_doctor()


def _add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate videos from text")
    p.add_argument("prompt", nargs="?", help="what the video shows")
    p.add_argument(
        "-o", "--output", default="out.mp4", help="output file (.mp4 .webm .gif .webp or a folder)"
    )
    p.add_argument(
        "--prompts-file", help="one prompt per line; writes OUT_DIR/0000.mp4, ... in file order"
    )
    p.add_argument("--out-dir", help="folder for --prompts-file outputs")
    p.add_argument(
        "--format",
        default="mp4",
        choices=["mp4", "webm", "gif", "webp"],
        help="batch output format",
    )
    p.add_argument(
        "--batch-size", type=int, default=4, help="prompts sampled together in batch mode"
    )
    p.add_argument("--num-frames", type=int, default=None, help="frames per video")
    _add_sampling_options(p)
    p.set_defaults(func=cmd_generate)


def _add_story_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "story",
        help="one continuous video from a sequence of prompts",
        description="Each prompt after the first continues the story so far: Phenaki models "
        "from the re-encoded last frames' tokens, LDM models by context-frame prediction from "
        "the last frames' latents.",
    )
    p.add_argument("prompts", nargs="*", help="the story, one prompt per segment")
    p.add_argument("--prompts-file", help="the story, one prompt per line")
    p.add_argument("--frames-per-prompt", type=int, default=16, help="frames per segment")
    p.add_argument(
        "--context-frames", type=int, default=None, help="frames each segment continues from"
    )
    p.add_argument("-o", "--output", default="story.mp4", help="output file")
    _add_sampling_options(p)
    p.set_defaults(func=cmd_story, model="phenaki-mnist")


def _add_continue_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "continue",
        help="extend a video file under a prompt",
        description="Read INPUT, continue its last frames under PROMPT, and write the input "
        "(centre-cropped and resized to the model's size if needed) followed by the new frames.",
    )
    p.add_argument("input", help="video file or folder of frames to continue")
    p.add_argument("prompt", help="what happens next")
    p.add_argument("--num-frames", type=int, default=16, help="new frames")
    p.add_argument(
        "--context-frames", type=int, default=None, help="last input frames continued from"
    )
    p.add_argument("--only-new", action="store_true", help="write only the new frames")
    p.add_argument("-o", "--output", default="continued.mp4", help="output file")
    _add_sampling_options(p)
    p.set_defaults(func=cmd_continue)


def _add_interpolate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interpolate",
        help="raise a video's frame rate with new frames between its frames",
        description="Read INPUT and write it at FACTOR times its frame rate: FACTOR - 1 frames "
        "between every two of its frames, denoised given them (temporal interpolation of a "
        "latent diffusion model trained with interpolation batches).",
    )
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("--factor", type=int, default=2, help="frame-rate multiplier (>= 2)")
    p.add_argument(
        "--prompt", default=None, help="what the video shows (default: its sidecar's prompt)"
    )
    p.add_argument("-o", "--output", default="interpolated.mp4", help="output file")
    _add_sampling_options(p)
    p.set_defaults(func=cmd_interpolate)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe in configs/")
    p.add_argument("config", help="recipe YAML, e.g. configs/ldm-mnist.yaml")
    p.add_argument("--out", help="run directory (default runs/<name>); re-running resumes")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key"
    )
    p.add_argument(
        "--ship", action="store_true", help="copy the trained pipeline into the package's models"
    )
    p.set_defaults(func=cmd_train)


def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models you can generate with")
    p.set_defaults(func=cmd_models)


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="built-in worlds: preview and export")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("preview", help="write a labelled contact sheet of a world")
    q.add_argument("world", help=WORLDS_HELP)
    q.add_argument("-o", "--output", default="sheet.png", help="PNG path")
    _add_world_clip_options(q, split="train", count=8, count_help="clips on the sheet")
    q.set_defaults(func=cmd_data)
    q = data_sub.add_parser("export", help="write clips + manifest.jsonl (a sample dataset)")
    q.add_argument("world", help=WORLDS_HELP)
    _add_world_clip_options(q, split="test", count=16)
    q.add_argument("--out-dir", required=True)
    q.set_defaults(func=cmd_data)


def _add_world_clip_options(
    q: argparse.ArgumentParser, *, split: str, count: int, count_help: str | None = None
) -> None:
    """The clips a ``data`` sub-command draws: --split, --count and --seed."""
    q.add_argument("--split", default=split, choices=["train", "test"])
    q.add_argument("--count", type=int, default=count, help=count_help)
    q.add_argument("--seed", type=int, default=0)


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="generate on a world's prompts, judge, and write a report")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or saved directory")
    p.add_argument("--world", required=True, help=WORLDS_HELP)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--samples", type=int, default=100, help="prompts (one sample each)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    _add_ldm_sampling(p)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--stories",
        type=int,
        default=0,
        help="instead: judge N three-prompt stories (story mode, either family)",
    )
    p.add_argument("-o", "--output", default="report", help="report folder")
    p.set_defaults(func=cmd_eval)


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two eval reports prompt by prompt (paired counts, McNemar p-values)",
        description="Two reports of `kinetoscope eval` with the same world, split, --samples "
        "and --seed judged the same prompts: per attribute, how many prompts only A or only B "
        "got right, and the exact McNemar p-value of that split.",
    )
    p.add_argument("a", help="report folder (or its report.json) of model A")
    p.add_argument("b", help="report folder (or its report.json) of model B")
    p.set_defaults(func=cmd_compare)


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="speed and memory of generation per model (optionally against a diffusers peer)",
        description="Time whole generations (text, denoising, decoding) of each model in its "
        "own subprocess: seconds per step and per clip, peak RSS. With --peer, every LDM model "
        "is followed by diffusers' TextToVideoSDPipeline built from random components of the "
        "same size, measured in the same run (needs diffusers, a core dependency).",
    )
    p.add_argument(
        "models",
        nargs="*",
        help="model names, saved directories or LDM recipe YAMLs (default: every installed model)",
    )
    p.add_argument("--peer", action="store_true", help="also measure the size-matched peer")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--num-frames", type=int, default=None, help="frames (default: the model's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per system")
    p.add_argument("--repeats", type=int, default=3, help="timed generations per system")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed generations first (reported apart; "
        "default: up to the one that traces the denoiser)",
    )
    p.add_argument("-o", "--output", default="bench", help="folder for bench.json and bench.png")
    p.set_defaults(func=cmd_bench)


def _add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check torch, codecs, text encoder and models")
    p.set_defaults(func=cmd_doctor)


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="web demo in the browser (needs the [demo] extra)",
        description="Serve a web page to generate, tell stories, continue and interpolate "
        "videos with any model (pip install 'kinetoscope[demo]').",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``kinetoscope`` parser: one sub-command per ``_add_<command>_parser``."""
    parser = argparse.ArgumentParser(
        prog="kinetoscope", description="Text-to-video on your CPU (or GPU)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate_parser(sub)
    _add_story_parser(sub)
    _add_continue_parser(sub)
    _add_interpolate_parser(sub)
    _add_train_parser(sub)
    _add_models_parser(sub)
    _add_data_parser(sub)
    _add_eval_parser(sub)
    _add_compare_parser(sub)
    _add_bench_parser(sub)
    _add_demo_parser(sub)
    _add_doctor_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "train" else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
