"""How well does a pipeline make its clips when frame 0 is right? An oracle for image-first
sampling.

    python benchmarks/real_start_probe.py MODEL WORLD [--split test] [--samples 100] [--seed 0]
        [--wording canonical|eval] [--generator-text prompt|empty|prompt-uncond] [--out F]

For the first ``--samples`` real clips of a world's split (``WorldDataset``, seed ``--seed``),
the real clip's frame 0 replaces the one the image (or frame-0) model would draw: it is encoded
by the pipeline's autoencoder and everything else runs as sampling does (the planner's tracks
from that frame and the prompt, the generator, guidance), under the clip's canonical caption
(``--wording eval``: its held-out wordings in turn) with seed ``--seed`` + i. The clips are
judged against the real clip's objects. Beside the shipped evaluation this separates the two
halves of image-first sampling: with a right frame 0, how often is the clip right? LDM
pipelines only. ``--generator-text empty`` gives the generator's passes the empty prompt
(``prompt-uncond``: the prompt in both guidance branches) to see what it reads in the words.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from contextlib import contextmanager

import torch

import kinetoscope
from kinetoscope.data.worlds import WorldDataset, eval_wordings
from kinetoscope.eval.evaluate import _accuracy_table
from kinetoscope.eval.judge import load_judge


@contextmanager
def _patched_denoise(pipe, make):
    """Within the block ``pipe._denoise`` is ``make(the current _denoise)``; after it, what it
    was (an outer patch, or the class's method)."""
    previous = vars(pipe).get("_denoise")
    pipe._denoise = make(pipe._denoise)
    try:
        yield pipe
    finally:
        if previous is None:
            del pipe._denoise
        else:
            pipe._denoise = previous


def with_real_start(pipe, first: torch.Tensor):
    """Within the block, ``pipe``'s image-model pass returns ``first`` (B, Z, 1, h, w) instead
    of sampling frame 0; every other pass runs as it would."""

    def make(original):
        def denoise(noise, **options):
            if options.get("use_temporal", True) is False:
                return first.to(noise.dtype)
            return original(noise, **options)

        return denoise

    return _patched_denoise(pipe, make)


GENERATOR_TEXT = ("prompt", "empty", "prompt-uncond")


def with_generator_text(pipe, mode: str):
    """Within the block the generator's passes (not frame 0's, not the planner) read: the prompt
    (``"prompt"``, as sampling does), the empty prompt in the conditional branch (``"empty"``),
    or the prompt in the unconditional branch as well (``"prompt-uncond"``: guidance then
    steers along the tracks alone, with ``track_guidance``)."""
    if mode not in GENERATOR_TEXT:
        raise ValueError(f"generator text must be one of {GENERATOR_TEXT}, got {mode!r}")
    empty = pipe.text_encoder.encode([""])

    def make(original):
        def denoise(noise, **options):
            if mode != "prompt" and options.get("use_temporal", True) is not False:
                batch, emb, mask = noise.shape[0], options["emb"].clone(), options["mask"].clone()
                if mode == "empty":
                    emb[:batch], mask[:batch] = empty[0].to(emb), empty[1].to(mask)
                elif emb.shape[0] == 2 * batch:  # guided: the unconditional half too
                    emb[batch:], mask[batch:] = emb[:batch], mask[:batch]
                options = {**options, "emb": emb, "mask": mask}
            return original(noise, **options)

        return denoise

    return _patched_denoise(pipe, make)


def probe(
    pipe,
    world: str,
    *,
    split: str,
    samples: int,
    seed: int,
    wording: str,
    generator_text: str = "prompt",
) -> dict:
    if not hasattr(pipe, "vae"):
        raise ValueError("the real-start probe takes LDM pipelines")
    data = WorldDataset(world, split=split, size=samples, seed=seed)
    judge = load_judge()
    verdicts, reasons = [], Counter()
    with with_generator_text(pipe, generator_text):  # once: the patch encodes "" on entry
        for i in range(samples):
            clip = data[i]
            video = clip.to_video().to_tensor(device=pipe.device)[None]  # (1, C, T, H, W)
            with torch.no_grad():
                first = pipe.vae.encode(video[:, :, :1])
            caption = clip.caption
            if wording == "eval":
                held_out = eval_wordings(world.split("-")[0], clip.objects)
                caption = held_out[i % len(held_out)]
            with with_real_start(pipe, first):
                out = pipe(caption, seed=seed + i, progress=False, num_frames=data.num_frames)
            # the clip's objects are manifest-schema dicts: the judge reads their facts
            verdict = judge.judge(out.frames[0], clip.objects, world=world.split("-")[0])
            verdicts.append(verdict)
            if not verdict.correct:
                reasons[verdict.reason.split(":")[-1].split("(")[0].strip()[:40]] += 1
    table = _accuracy_table(verdicts)
    return {
        "world": world,
        "split": split,
        "samples": samples,
        "wording": wording,
        "generator_text": generator_text,
        "accuracy": {k: round(v["accuracy"], 3) for k, v in table.items()},
        "common_failures": dict(reasons.most_common(6)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved pipeline directory (or shipped model name)")
    parser.add_argument("world", help="mnist-1, mnist-2, shapes-1 or shapes-2")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wording", choices=("canonical", "eval"), default="canonical")
    parser.add_argument(
        "--generator-text",
        choices=GENERATOR_TEXT,
        default="prompt",
        help="what the generator's passes read (frame 0 and the planner read the prompt)",
    )
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args()
    result = probe(
        kinetoscope.load(args.model),
        args.world,
        split=args.split,
        samples=args.samples,
        seed=args.seed,
        wording=args.wording,
        generator_text=args.generator_text,
    )
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
