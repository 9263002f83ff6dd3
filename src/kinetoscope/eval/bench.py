"""Speed benchmark runner behind ``kinetoscope bench`` and ``benchmarks/``.

One generation is timed end to end (text encoding + denoising + decoding to uint8 frames);
the denoising part is split out from the timestamps of the pipeline's per-step callback:

    start ── text, noise ── step 0 ── step 1 ── ... ── step n-1 ── decode ── end
                            c0        c1               c(n-1)

``seconds_per_step`` is the median of the intervals c(i) - c(i-1); ``seconds_per_clip`` the
median of end - start, after ``WARMUP`` untimed generations (reported as
``warmup_clip_seconds``). Peak memory is the process's resident-set peak (``ru_maxrss``), which
is a lifetime peak, so ``bench_models`` measures every system in a fresh subprocess.

The comparison peer is diffusers' ``TextToVideoSDPipeline`` (ModelScope-style UNet3D)
assembled from random tiny components whose UNet and autoencoder parameter counts match a
kinetoscope model (``build_diffusers_peer`` in ``kinetoscope.eval.bench_peer``, re-exported
here); it gets the same text embeddings (computed by the same text encoder inside the timed
call), latent size, steps, guidance and scheduler.

Usage::

    from kinetoscope.eval.bench import bench_models
    from kinetoscope.eval.bench_report import format_table, write_results

    results = bench_models(["ldm-mnist"], peer=True, threads=2)
    print(format_table(results))
    write_results(results, "bench.json", "bench.png")

or on the command line ``kinetoscope bench ldm-mnist --peer -o bench/``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The peer's public names stay importable from here.
from kinetoscope.eval.bench_peer import (  # noqa: F401
    DEFAULT_SCHEDULER,
    PEER,
    SHIPPED_UNET,
    DiffusersPeer,
    build_diffusers_peer,
    count_parameters,
    match_widths,
)
from kinetoscope.nn.graphs import AFTER

logger = logging.getLogger(__name__)

# Untimed generations before the timed ones: the first clip of a process (lazy set-up) up to
# the one that traces the denoiser's graphs (kinetoscope.nn.graphs); the timed ones are the
# steady state a long run (an eval, a batch, the demo) sees. The peer gets the same warm-up.
WARMUP = AFTER + 1

DEFAULT_PROMPT = "the digit 7 is moving up"
RESULT_TAG = "KINETOSCOPE_BENCH_RESULT "


# ----------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (a lifetime peak)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KB on Linux


def current_rss_mb() -> float:
    """Resident set size now, in MB (falls back to the peak where /proc is missing)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def pipeline_parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters of every nn.Module a pipeline holds as an attribute (unet, vae, ...)."""
    return {
        name: count_parameters(value)
        for name, value in sorted(vars(pipe).items())
        if isinstance(value, nn.Module) and not name.startswith("_")
    }


# ----------------------------------------------------------------------------- measuring


def measure_generation(
    pipe: Callable[..., Any],
    *,
    prompt: str,
    num_frames: int,
    steps: int,
    guidance_scale: float,
    repeats: int = 3,
    warmup: int = WARMUP,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``repeats`` whole generations of one clip (after ``warmup`` untimed ones).

    Args:
        pipe: a pipeline in the kinetoscope call convention that calls
            ``callback(i, n, latents)`` after every denoising step.
        prompt, num_frames, steps, guidance_scale: what to generate.
        repeats: timed generations (medians are reported); warmup: untimed ones first (their
            times are reported as ``warmup_clip_seconds``: the first clip of a process, and
            the one that traces the denoiser's graphs, see ``kinetoscope.nn.graphs``).
    Returns:
        Wall-clock medians ``seconds_per_clip``, ``seconds_per_step``, ``denoise_seconds``
        (callbacks * seconds_per_step), ``before_denoise_seconds`` (text encoding, noise),
        ``after_denoise_seconds`` (decoding to frames), the same with a ``cpu_`` prefix in
        process CPU seconds (all threads; steadier than wall time on a shared machine),
        ``clip_seconds`` (each run), ``peak_rss_mb`` (process lifetime peak),
        ``peak_rss_delta_mb`` (its growth while generating), ``rss_before_mb``, ``threads``,
        ``load_average`` (the higher of before/after) and the settings.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats=} {warmup=}")
    if steps < 2:
        raise ValueError(f"steps={steps}: use at least 2 steps so a step time can be measured")
    rss_before, peak_before = current_rss_mb(), peak_rss_mb()
    load_before = _load_average()
    settings = {"num_frames": num_frames, "steps": steps, "guidance_scale": guidance_scale}
    runs = [_timed_run(pipe, prompt, seed=seed, **settings) for _ in range(warmup + repeats)]
    warmups, runs = runs[:warmup], runs[warmup:]
    load = [round(max(a, b), 2) for a, b in zip(load_before, _load_average(), strict=True)]
    return {
        **_split_times([r.wall for r in runs], prefix=""),
        **_split_times([r.cpu for r in runs], prefix="cpu_"),
        "callbacks_per_clip": len(runs[0].wall) - 2,
        "clip_seconds": [r.wall[-1] - r.wall[0] for r in runs],
        "warmup_clip_seconds": [r.wall[-1] - r.wall[0] for r in warmups],
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_delta_mb": peak_rss_mb() - peak_before,
        "rss_before_mb": rss_before,
        "threads": torch.get_num_threads(),
        "load_average": load,
        "prompt": prompt,
        **settings,
        "repeats": repeats,
        "warmup": warmup,
    }


def _split_times(runs: list[list[float]], *, prefix: str) -> dict[str, float]:
    """Per run [start, step 0 done, ..., step n-1 done, end] -> medians of the phases.

    n is the number of callbacks, which can exceed the steps (a Phenaki pipeline calls back
    for every step of every window)."""
    intervals = [b - a for run in runs for a, b in zip(run[1:-2], run[2:-1], strict=True)]
    step = statistics.median(intervals)
    return {
        f"{prefix}seconds_per_clip": statistics.median(r[-1] - r[0] for r in runs),
        f"{prefix}seconds_per_step": step,
        f"{prefix}denoise_seconds": (len(runs[0]) - 2) * step,
        # estimated (the first callback comes after step 0): clamped, noise can make it negative
        f"{prefix}before_denoise_seconds": max(
            0.0, statistics.median(r[1] - r[0] - step for r in runs)
        ),
        f"{prefix}after_denoise_seconds": statistics.median(r[-1] - r[-2] for r in runs),
    }


@dataclass
class _Run:
    wall: list[float]  # perf_counter at start, after every step, at the end
    cpu: list[float]  # process_time at the same moments


def _timed_run(pipe, prompt: str, *, num_frames: int, steps: int, guidance_scale: float, seed: int):
    run = _Run([], [])

    def stamp(*_: Any) -> None:
        run.wall.append(time.perf_counter())
        run.cpu.append(time.process_time())

    stamp()
    pipe(
        prompt,
        num_frames=num_frames,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        callback=stamp,
        progress=False,
    )
    stamp()
    if len(run.wall) < 4:
        raise RuntimeError(
            f"the pipeline called back {len(run.wall) - 2} times for {steps} steps; "
            "it must call callback(i, n, latents) after every step"
        )
    return run


def _load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def profile_generation(
    pipe: Callable[..., Any],
    *,
    prompt: str,
    num_frames: int,
    steps: int,
    guidance_scale: float,
    row_limit: int = 25,
) -> str:
    """One warm-up generation, then one under torch.profiler; returns the op table (by CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    kwargs = {
        "num_frames": num_frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
    }
    pipe(prompt, seed=0, progress=False, **kwargs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pipe(prompt, seed=0, progress=False, **kwargs)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ----------------------------------------------------------------------------- building systems


def build_pipeline_from_recipe(path: str | Path, *, seed: int = 0, text_dim: int | None = None):
    """A pipeline with random weights and the sizes of a recipe YAML (either family).

    Same architecture and size as the trained model, hence the same speed. ``text_dim``
    defaults to the recipe's text encoder's width (which loads that encoder). The modules are
    built by the family's training code, so a benchmarked recipe is exactly what trains.
    """
    from kinetoscope.config import from_dict, read_recipe

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found; pass e.g. configs/ldm-mnist.yaml")
    data = read_recipe(path)
    family = data.pop("family", "ldm")
    builders = {"ldm": _random_ldm_pipeline, "phenaki": _random_phenaki_pipeline}
    if family not in builders:
        raise ValueError(f"{path}: unknown family {family!r}; use one of {sorted(builders)}")
    recipe_class, build = builders[family]()
    recipe = from_dict(recipe_class, data, where=path.name)
    if text_dim is None:
        from kinetoscope.text import load_text_encoder

        text_dim = load_text_encoder(recipe.text_encoder, max_length=recipe.max_length).dim
    torch.manual_seed(seed)
    pipe = build(recipe, text_dim)
    pipe.defaults["model_name"] = f"{recipe.name} (random)"
    return pipe


def _random_planner(recipe: Any, *, latent_channels: int, text_dim: int, slots: int) -> Any:
    """A trajectory planner with random weights of the recipe's sizes (its planner stage's
    ``extra``), or None when the recipe has no planner stage."""
    if "trajectory_planner" not in recipe.stages:
        return None
    from kinetoscope.diffusion.planner import TrajectoryPlanner

    sizes = {
        k: v
        for k, v in recipe.stage("trajectory_planner").extra.items()
        if k not in ("text_augment", "text_paraphrase")
    }
    return TrajectoryPlanner(
        latent_channels=latent_channels,
        text_dim=text_dim,
        num_frames=recipe.num_frames,
        slots=slots,
        **sizes,
    )


def _random_ldm_pipeline():
    """(LDMRecipe, recipe, text_dim -> TextToVideoPipeline with random weights)."""
    from diffusers import DDPMScheduler

    from kinetoscope.autoencoders.vae import VideoAutoencoderKL
    from kinetoscope.diffusion.unet import VideoUNet
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline
    from kinetoscope.train.ldm import LDMRecipe

    def build(recipe: LDMRecipe, text_dim: int) -> TextToVideoPipeline:
        vae = VideoAutoencoderKL(**recipe.vae)
        unet = VideoUNet(
            text_dim=text_dim, latent_channels=vae.config.latent_channels, **recipe.unet
        )
        planner = _random_planner(
            recipe,
            latent_channels=vae.config.latent_channels,
            text_dim=text_dim,
            slots=unet.config.anchor_heads,
        )
        return TextToVideoPipeline(
            vae=vae,
            unet=unet,
            planner=planner,
            scheduler_config=dict(DDPMScheduler(**recipe.scheduler).config),
            text_encoder=recipe.text_encoder,
            max_length=recipe.max_length,
            defaults={"num_frames": recipe.num_frames, "fps": recipe.fps, **recipe.sampling},
        )

    return LDMRecipe, build


def _random_phenaki_pipeline():
    """(PhenakiRecipe, recipe, text_dim -> PhenakiPipeline with random weights)."""
    from kinetoscope.pipelines.phenaki import PhenakiPipeline
    from kinetoscope.train import phenaki
    from kinetoscope.train.phenaki_tokenizer import build_tokenizer

    def build(recipe: phenaki.PhenakiRecipe, text_dim: int) -> PhenakiPipeline:
        tokenizer = build_tokenizer(recipe)
        transformer = phenaki.build_transformer(recipe, tokenizer, text_dim=text_dim)
        planner = _random_planner(
            recipe,
            latent_channels=tokenizer.quantizer.dim,
            text_dim=text_dim,
            slots=transformer.config.anchor_slots,
        )
        return PhenakiPipeline(
            tokenizer=tokenizer,
            transformer=transformer,
            planner=planner,
            text_encoder=recipe.text_encoder,
            max_length=recipe.max_length,
            defaults={**phenaki.pipeline_defaults(recipe), **recipe.sampling},
        )

    return phenaki.PhenakiRecipe, build


def load_kinetoscope_system(model: str) -> Any:
    """A shipped model name, a saved directory, or a recipe YAML (random weights)."""
    if model.endswith((".yaml", ".yml")):
        return build_pipeline_from_recipe(model)
    import kinetoscope

    return kinetoscope.load(model)


# ----------------------------------------------------------------------------- runner


def _kinetoscope_match(pipe: Any) -> dict[str, Any]:
    """The keyword arguments of ``build_diffusers_peer`` that size a peer like ``pipe``."""
    keys = ("channels", "attention_levels", "num_heads", "layers_per_level", "latent_channels")
    scheduler = {k: v for k, v in pipe.scheduler_config.items() if not k.startswith("_")}
    return {
        "param_count": count_parameters(pipe.unet),
        "vae_param_count": count_parameters(pipe.vae),
        "unet_config": {k: pipe.unet.config[k] for k in keys},
        "vae_channels": list(pipe.vae.config.channels),
        "text_dim": pipe.unet.config.text_dim,
        "resolution": int(pipe.defaults.get("resolution", 64)),
        "scheduler_config": scheduler,
        "max_length": pipe.max_length,
    }


def run_system(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one system from ``spec`` and measure it in this process (the subprocess side)."""
    from kinetoscope.pipelines.text_to_video import resolve_precision
    from kinetoscope.text import load_text_encoder

    torch.set_num_threads(int(spec.get("threads", 1)))
    started = time.perf_counter()
    if spec["system"] == PEER:
        text_encoder = None
        if spec.get("text_encoder"):
            text_encoder = load_text_encoder(
                spec["text_encoder"], max_length=spec["match"]["max_length"]
            )
        settings = {k: spec[k] for k in ("num_frames", "steps", "guidance_scale")}
        pipe = build_diffusers_peer(
            **spec["match"],
            **settings,
            text_encoder=text_encoder,
            precision=spec.get("precision", "float32"),
        )
        extra = {"match": pipe.match}
    elif spec["system"] == "phenaki-peer":
        from kinetoscope.eval.bench_phenaki_peer import build_phenaki_peer_system

        pipe, extra = build_phenaki_peer_system(spec)
    else:
        pipe = load_kinetoscope_system(spec["model"])
        extra = {"family": getattr(pipe, "family", "?")}
        if hasattr(pipe, "unet") and hasattr(pipe, "scheduler_config"):
            extra["match"] = _kinetoscope_match(pipe)
            extra["text_encoder"] = pipe.text_encoder_name
            extra["precision"] = resolve_precision(
                pipe.defaults.get("precision", "float32"), pipe.device
            )  # what its denoiser runs in by default; the peer runs the same
    load_seconds = time.perf_counter() - started
    defaults, guidance = getattr(pipe, "defaults", {}), spec.get("guidance_scale")
    result = measure_generation(
        pipe,
        prompt=spec.get("prompt") or DEFAULT_PROMPT,
        num_frames=int(spec.get("num_frames") or defaults.get("num_frames", 16)),
        steps=int(spec.get("steps") or defaults.get("num_inference_steps", 15)),
        guidance_scale=float(defaults.get("guidance_scale", 4.0) if guidance is None else guidance),
        repeats=int(spec.get("repeats", 3)),
        warmup=int(spec.get("warmup", WARMUP)),
    )
    name = spec.get("name") or spec.get("model", PEER)
    params = pipeline_parameter_counts(pipe)
    return {
        "name": name,
        "system": spec["system"],
        "model": spec.get("model"),
        "load_seconds": load_seconds,
        "params": params,
        **extra,
        **result,
    }


def run_in_subprocess(spec: dict[str, Any], *, timeout_s: float = 1800.0) -> dict[str, Any]:
    """``run_system(spec)`` in a fresh Python process, so its peak RSS is its own."""
    threads = str(int(spec.get("threads", 1)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    command = [sys.executable, "-m", "kinetoscope.eval.bench", json.dumps(spec)]
    name = spec.get("name") or spec.get("model")
    logger.info("measuring %s in a subprocess", name)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark of {name} failed (exit code {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def bench_models(
    names: Sequence[str],
    *,
    prompt: str = DEFAULT_PROMPT,
    num_frames: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    repeats: int = 3,
    warmup: int | None = None,
    threads: int = 2,
    peer: bool = False,
    peer_text_encoder: bool = True,
    timeout_s: float = 1800.0,
) -> list[dict[str, Any]]:
    """Measure each model in its own subprocess (with ``peer``: then a size-matched diffusers peer).

    Args:
        names: shipped model names, saved model directories, or LDM recipe YAMLs (random
            weights: same sizes, hence the same speed, as the trained model).
        num_frames, steps, guidance_scale: None = each model's defaults; a peer copies the
            settings its kinetoscope model ran with.
        warmup: untimed generations per system (None: ``WARMUP``, up to the traced clip).
        peer: after every LDM model, measure diffusers' TextToVideoSDPipeline at matched size
            (its UNet in the precision the model's denoiser runs in by default).
        peer_text_encoder: the peer encodes prompts with the model's text encoder inside the
            timed call (False: fixed random text states, no encoder).
    Returns:
        One dict per measured system, in order (keys: see ``measure_generation``, plus name,
        system, model, params, load_seconds and for LDMs/peers the size ``match``).
    """
    if not names:
        raise ValueError("no model to benchmark: pass model names, directories or recipe YAMLs")
    warmup = WARMUP if warmup is None else warmup
    common = {"prompt": prompt, "repeats": repeats, "warmup": warmup, "threads": threads}
    settings = {"num_frames": num_frames, "steps": steps, "guidance_scale": guidance_scale}
    results = []
    for name in names:
        ours = run_in_subprocess(
            {"system": "kinetoscope", "model": str(name), **settings, **common}, timeout_s=timeout_s
        )
        results.append(ours)
        if not peer:
            continue
        if "match" not in ours:
            logger.warning("no diffusers peer for %s (only LDM models have one)", name)
            continue
        peer_spec = {
            "system": PEER,
            "name": f"{PEER} ({ours['name']})",
            "match": ours["match"],
            "text_encoder": ours["text_encoder"] if peer_text_encoder else None,
            "precision": ours.get("precision", "float32"),
            **{k: ours[k] for k in settings},
            **common,
        }
        results.append(run_in_subprocess(peer_spec, timeout_s=timeout_s))
    return results


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry point: ``python -m kinetoscope.eval.bench '<json spec>'``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m kinetoscope.eval.bench '<json spec>' (used by bench_models)",
            file=sys.stderr,
        )
        return 2
    result = run_system(json.loads(args[0]))
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
