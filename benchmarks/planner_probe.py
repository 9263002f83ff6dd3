"""How often a pipeline's trajectory planner proposes the asked motion, judged as the judge would.

For the first ``--samples`` clips of a world's split, the planner sees the real clip's frame 0
(encoded by the pipeline's autoencoder) and its canonical caption, and draws one track per
object slot with seed ``--seed`` + i, as sampling does. Each object's proposed box positions
(its true start plus the track) are classified with the judge's own motion rules
(``kinetoscope.eval.tracking.classify_motion``); a clip counts as right when every object's
proposal is the asked motion (the best assignment of slots to objects). Prints the accuracy per
motion and the mean distance to the true track, in pixels, and how often every slot's proposal
is some object's asked motion (the generator's anchors follow every slot). ``--wording eval``
uses the evaluation's held-out wordings (one per clip, in turn) instead of the canonical
caption. Works for both families: an LDM planner sees frame 0's latents, a Phenaki planner the
first time step's token codes.

    python benchmarks/planner_probe.py runs/ldm-mnist-trk/pipeline mnist-1 --split test
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

import numpy as np
import torch

import kinetoscope
from kinetoscope.data.worlds import WorldDataset, eval_wordings
from kinetoscope.eval.tracking import classify_motion


def judged_motions(start: np.ndarray, track: np.ndarray, box: int, resolution: int) -> str | None:
    """The motion the judge reads from a box at ``start`` (x, y) moved along ``track`` (T, 2)."""
    corners = start[None] + track * resolution  # (T, 2) x, y
    centres = corners[:, ::-1] + box / 2  # (T, 2) y, x as classify_motion takes them
    return classify_motion(centres)[0]


def first_frame_latents(pipe, video: torch.Tensor) -> torch.Tensor:
    """Frame 0 (1, C, 1, H, W) as the pipeline's planner sees it, (1, Z, h, w): the VAE's
    latents (LDM) or the tokenizer's codes of the first time step (Phenaki)."""
    if hasattr(pipe, "vae"):
        return pipe.vae.encode(video)[:, :, 0]
    return pipe.tokenizer.code_maps(pipe.tokenizer.encode(video)[:, 0])


def probe(
    pipe, world: str, *, split: str, samples: int, seed: int, wording: str = "canonical"
) -> dict:
    if getattr(pipe, "planner", None) is None:
        raise ValueError("this pipeline has no trajectory planner")
    data = WorldDataset(world, split=split, size=samples, seed=seed)
    resolution = data.resolution
    right, every_slot, per_motion, distance = 0, 0, Counter(), []
    totals = Counter()
    for i in range(samples):
        clip = data[i]
        video = clip.to_video()[:1].to_tensor(device=pipe.device)[None]  # (1, C, 1, H, W)
        with torch.no_grad():
            first = first_frame_latents(pipe, video)
            caption = clip.caption
            if wording == "eval":
                held_out = eval_wordings(world.split("-")[0], clip.objects)
                caption = held_out[i % len(held_out)]
            emb, mask = pipe.text_encoder.encode([caption])
            gen = torch.Generator(pipe.device).manual_seed(seed + i)
            tracks = pipe.planner.sample(first, emb.to(pipe.device), mask.to(pipe.device), [gen])
        tracks = tracks[0, :, : data.num_frames].cpu().numpy()  # (S, T, 2); a Phenaki plan has 17
        objects = clip.objects
        best = None
        for order in itertools.permutations(range(len(tracks)), len(objects)):
            verdicts, dist = [], []
            for obj, slot in zip(objects, order, strict=True):
                pos = np.asarray(obj["positions"], dtype=np.float64)
                start = pos[0]
                seen = judged_motions(start, tracks[slot], obj["box"], resolution)
                verdicts.append(seen == obj["motion"])
                dist.append(np.abs(start + tracks[slot] * resolution - pos).mean())
            score = (sum(verdicts), -float(np.mean(dist)))
            if best is None or score > best[0]:
                best = (score, verdicts, float(np.mean(dist)))
        _, verdicts, dist = best
        right += all(verdicts)
        every_slot += all(
            any(judged_motions(np.asarray(o["positions"][0], dtype=np.float64), track, o["box"],
                               resolution) == o["motion"] for o in objects)
            for track in tracks
        )  # fmt: skip
        distance.append(dist)
        for obj, ok in zip(objects, verdicts, strict=True):
            totals[obj["motion"]] += 1
            per_motion[obj["motion"]] += ok
    return {
        "world": world,
        "split": split,
        "samples": samples,
        "wording": wording,
        "right": right / samples,
        "every_slot_right": every_slot / samples,
        "per_motion": {m: f"{per_motion[m]}/{totals[m]}" for m in sorted(totals)},
        "mean_px_from_true_track": float(np.mean(distance)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved pipeline directory (or shipped model name)")
    parser.add_argument("world", help="mnist-1, mnist-2, shapes-1 or shapes-2")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wording", choices=("canonical", "eval"), default="canonical")
    args = parser.parse_args()
    result = probe(
        kinetoscope.load(args.model),
        args.world,
        split=args.split,
        samples=args.samples,
        seed=args.seed,
        wording=args.wording,
    )
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
