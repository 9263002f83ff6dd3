"""Does frame 0 put the object where clips with the asked motion start?

    python benchmarks/start_probe.py MODEL WORLD [--split test] [--samples 100] [--seed 0]

A one-object world's linear motions ("up", "left", ...) travel 2 px a frame for the whole clip,
so their clips start only in a band of the canvas: a digit moving up travels 30 px in 16 frames,
so its box starts at least 30 px below the top edge, within 7 px of the bottom of a 64 px
canvas. A frame 0 drawn outside that band leaves the generator no way to follow the prompt as the training clips do. This probe
generates the evaluation's clips (prompts and seeds as ``kinetoscope eval``), judges them,
finds each clip's object in frame 0 with the judge's tracker and measures how far its box lies
outside the band for its motion (0 inside it; bounces may start anywhere). It prints the share
of linear-motion clips that start inside the band (within ``--tolerance`` px) and how often
those and the others are judged right. ``--frame0`` draws frame 0 alone instead, with the model
image-first sampling draws it with (the image model, or the pipeline's separate frame-0 model),
and judges it held still; ``--guidance`` overrides the model's guidance scale; ``--fit-start``
samples with the pipeline's ``fit_start`` option on (frame 0 moved to fit the planned motion).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from kinetoscope.data.worlds import eval_prompts, mnist, shapes
from kinetoscope.data.worlds.common import _MOTION_GEOMETRY, LINEAR_SPEED
from kinetoscope.eval.tracking import find_tracks

BOXES = {"mnist": mnist.box_of, "shapes": shapes.box_of}


def start_band(motion: str, *, box: int, resolution: int, num_frames: int):
    """(axis, low, high): where a clip of ``motion`` may start, as top-left positions on ``axis``
    (0 = x, 1 = y), or None for a bounce (any start)."""
    axis, direction = _MOTION_GEOMETRY[motion]
    if direction == 0:
        return None
    max_pos, travel = resolution - box, LINEAR_SPEED * (num_frames - 1)
    return (axis, travel, max_pos) if direction < 0 else (axis, 0, max_pos - travel)


def start_distance(
    frames: np.ndarray, obj: dict, *, world: str, num_frames: int | None = None
) -> float | None:
    """px by which the clip's object (its longest track) starts outside the band of its motion
    over ``num_frames`` frames (default: the clip's), NaN if frame 0 shows no tracked object,
    None for a bounce."""
    resolution = frames.shape[1]
    num_frames = frames.shape[0] if num_frames is None else num_frames
    box = BOXES[world](obj)
    band = start_band(obj["motion"], box=box, resolution=resolution, num_frames=num_frames)
    if band is None:
        return None
    axis, low, high = band
    scene = find_tracks(frames, world=world)
    seen = [t for t in scene.tracks if 0 in t.obs]
    if not seen:
        return float("nan")
    track = max(seen, key=lambda t: len(t.obs))
    top_left = track.obs[0].center[1 - axis] - box / 2  # centre is (y, x)
    return float(max(0.0, low - top_left, top_left - high))


def summarise(rows: list[dict], tolerance: float, *, judged: bool = True) -> dict:
    """Counts of clips starting inside / outside their band, and (``judged``: whole clips, not
    a still frame 0) how many of each the judge accepted."""
    linear = [r for r in rows if r["distance"] is not None and not np.isnan(r["distance"])]
    inside = [r for r in linear if r["distance"] <= tolerance]
    outside = [r for r in linear if r["distance"] > tolerance]
    summary = {
        "clips": len(rows),
        "linear_with_frame0_object": len(linear),
        "start_inside_band": len(inside),
        "mean_px_outside": float(np.mean([r["distance"] for r in linear])) if linear else None,
    }
    if judged:
        summary["right"] = sum(r["correct"] for r in rows)
        summary["right_inside"] = sum(r["correct"] for r in inside)
        summary["right_outside"] = sum(r["correct"] for r in outside)
    return summary


def frame0_only(pipe):
    """Make ``pipe`` draw with the model frame 0 comes from, without temporal layers."""
    pipe.unet, pipe.graphs.after = pipe.image_unet, None  # (eager: the wrapper is not traced)
    forward = pipe.unet.forward
    pipe.unet.forward = lambda *args, use_temporal: forward(*args, use_temporal=False)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved pipeline directory or shipped model name")
    parser.add_argument("world", choices=["mnist-1", "shapes-1"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=2.0)
    parser.add_argument("--frame0", action="store_true", help="frame 0 alone, held still")
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument(
        "--fit-start", action="store_true", help="sample with the fit_start option on"
    )
    parser.add_argument("--out", help="write each clip's row and the summary as JSON here")
    args = parser.parse_args()

    import kinetoscope
    from kinetoscope.eval.evaluate import generate_and_judge

    kind = args.world.split("-")[0]
    pipe = kinetoscope.load(args.model)
    if args.fit_start:
        pipe.defaults["fit_start"] = True
    sampling, as_judged = {}, None
    if args.guidance is not None:
        sampling["guidance_scale"] = args.guidance
    if args.frame0:
        pipe, sampling["num_frames"] = frame0_only(pipe), 1
        as_judged = lambda video: np.repeat(video.frames, 8, axis=0)  # noqa: E731
    prompts = eval_prompts(args.world, split=args.split, count=args.samples, seed=args.seed)
    videos, verdicts, _ = generate_and_judge(
        pipe, prompts, world=args.world, seed=args.seed, batch_size=10, sampling=sampling,
        as_judged=as_judged,
    )  # fmt: skip
    rows = []
    for (prompt, expected), video, verdict in zip(prompts, videos, verdicts, strict=True):
        frames = np.asarray(video.frames if as_judged is None else as_judged(video))
        length = int(pipe.defaults["num_frames"])  # a still frame 0 starts a clip this long
        distance = start_distance(frames, expected[0], world=kind, num_frames=length)
        rows.append({"prompt": prompt, "correct": bool(verdict.correct), "distance": distance})
    summary = summarise(rows, args.tolerance, judged=not args.frame0)
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "clips": rows}, f, indent=1)


if __name__ == "__main__":
    main()
