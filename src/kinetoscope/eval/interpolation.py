"""How well a model's temporal interpolation restores dropped frames of real clips.

    python -m kinetoscope.eval.interpolation ldm-mnist --world mnist-1 --count 50 \\
        --factor 2 --factor 4 -o benchmarks/results/interpolation-ldm-mnist.json

World clips of 17 frames (2 px per frame) keep every ``factor``-th frame as keyframes; the
model fills the frames between them again (``pipe.interpolate``, prompted with the clip's
caption) and the result is compared with the real frames it replaces. Beside it, in the same
run and on the same clips:

- ``hold``: each dropped frame repeats the keyframe before it (frame duplication);
- ``blend``: a linear cross-fade between the two keyframes around it;
- ``round trip``: the model's autoencoder on the whole real clip, no frame dropped (what the
  model's decoder can reach at best).

Per method: PSNR over the restored frames only (keyframes excluded), and the share of whole
clips the project's judge accepts against the clip's caption.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinetoscope.eval.autoencoder import _to_uint8
from kinetoscope.eval.temporal import psnr

NUM_FRAMES = 17  # 1 + 16: keyframes every 2nd or 4th frame end on the last frame


def hold(frames: np.ndarray, factor: int) -> np.ndarray:
    """Every frame replaced by the keyframe at or before it."""
    index = (np.arange(len(frames)) // factor) * factor
    return frames[index]


def blend(frames: np.ndarray, factor: int) -> np.ndarray:
    """Every frame replaced by the linear cross-fade of the keyframes around it."""
    out = frames.astype(np.float64).copy()
    for i in range(len(frames)):
        before = (i // factor) * factor
        if before == i:
            continue
        w = (i - before) / factor
        out[i] = (1 - w) * frames[before] + w * frames[before + factor]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def interpolation_report(
    pipe: Any,
    *,
    world: str,
    split: str = "test",
    count: int = 50,
    factors: tuple[int, ...] = (2, 4),
    seed: int = 0,
    judge: Any = None,
    num_frames: int = NUM_FRAMES,
) -> dict[str, Any]:
    """Restored-frame PSNR and judged share per method and factor (see module docstring).

    ``num_frames`` must be 1 + a multiple of every factor, so keyframes end on the last frame.
    """
    from kinetoscope.data.worlds import WorldDataset, manifest_objects
    from kinetoscope.eval.judge import load_judge

    bad = [f for f in factors if f < 2 or (num_frames - 1) % f]
    if bad:
        raise ValueError(f"factors {bad} do not divide {num_frames - 1} frames into keyframes")
    judge = judge or load_judge()
    size = pipe.defaults.get("resolution", 64)
    dataset = WorldDataset(
        world, split=split, size=count, seed=seed, num_frames=num_frames, resolution=size
    )
    results: dict[str, dict[str, list[float]]] = {}
    seconds: dict[int, float] = {f: 0.0 for f in factors}

    def record(method: str, *, judged: bool | None = None, psnr: float | None = None) -> None:
        scores = results.setdefault(method, {"psnr": [], "judged": []})
        if psnr is not None:
            scores["psnr"].append(psnr)
        if judged is not None:
            scores["judged"].append(float(judged))

    with torch.inference_mode():
        for index in range(count):
            clip = dataset[index]
            expected = manifest_objects(clip.world, clip.objects)

            def accepted(frames: np.ndarray, expected=expected, world=clip.world) -> bool:
                return judge.judge(frames, expected, world=world).correct

            video = clip.to_video()
            latents = pipe.vae.encode(video.to_tensor()[None].to(pipe.device))
            recon = pipe.vae.decode_chunked(latents, chunk_size=pipe.window).clamp(-1, 1)
            recon = _to_uint8(recon[0].cpu())
            record("real clips", judged=accepted(clip.frames))
            record("round trip (whole clip)", judged=accepted(recon))
            for factor in factors:
                between = np.arange(len(clip.frames)) % factor != 0

                def restored(made: np.ndarray, between=between, real=clip.frames) -> float:
                    return psnr(made[between], real[between])

                start = time.perf_counter()
                made = pipe.interpolate(
                    video[::factor], factor=factor, prompt=clip.caption, seed=seed + index,
                    progress=False,
                ).frames  # fmt: skip
                seconds[factor] += time.perf_counter() - start
                record(f"model x{factor}", judged=accepted(made), psnr=restored(made))
                for name, method in (("hold", hold), ("blend", blend)):
                    other = method(clip.frames, factor)
                    record(f"{name} x{factor}", judged=accepted(other), psnr=restored(other))
                record(f"round trip x{factor}", psnr=restored(recon))
    table = {
        method: {
            "psnr": round(float(np.mean(s["psnr"])), 2) if s["psnr"] else None,
            "judged": round(float(np.mean(s["judged"])), 3) if s["judged"] else None,
        }
        for method, s in results.items()
    }
    return {
        "model": pipe.defaults.get("model_name"),
        "world": world,
        "split": split,
        "clips": count,
        "num_frames": num_frames,
        "seed": seed,
        "methods": table,
        "seconds_per_clip": {f"x{f}": round(seconds[f] / count, 3) for f in factors},
    }


def format_report(report: dict[str, Any]) -> str:
    """A Markdown table of ``interpolation_report``'s result."""
    lines = [
        f"{report['model']} on {report['world']} {report['split']}, {report['clips']} clips of "
        f"{report['num_frames']} frames",
        "",
        "| method | PSNR of the restored frames (dB) | clips the judge accepts |",
        "| --- | --- | --- |",
    ]
    for method, row in report["methods"].items():
        psnr = "" if row["psnr"] is None else f"{row['psnr']:.2f}"
        judged = "" if row["judged"] is None else f"{100 * row['judged']:.0f}%"
        lines.append(f"| {method} | {psnr} | {judged} |")
    speeds = ", ".join(f"{k}: {v:.2f} s" for k, v in report["seconds_per_clip"].items())
    lines += ["", f"model seconds per clip: {speeds}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name or pipeline folder (latent diffusion)")
    parser.add_argument("--world", default="mnist-1", help="mnist-1, mnist-2, shapes-1, shapes-2")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--factor", type=int, action="append", help="default: 2 and 4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="write the report here as JSON")
    args = parser.parse_args(argv)
    from kinetoscope.hub import load

    pipe = load(args.model)
    report = interpolation_report(
        pipe,
        world=args.world,
        split=args.split,
        count=args.count,
        factors=tuple(args.factor or (2, 4)),
        seed=args.seed,
    )
    print(format_report(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
