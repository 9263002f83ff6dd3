"""Give a newly trained LDM pipeline the separate interpolation model of another one.

A generator continued with new temporal modules (e.g. given-trajectory anchors, experiment
trk) on the same image model keeps the donor's interpolation model: its temporal layers are the
donor's, and the new modules, which the interpolation model has never trained, take the
generator's weights. Given-trajectory anchors are identities without tracks, and interpolation
passes none, so the donor interpolates exactly as before. Both pipelines must share the image
model (the spatial weights), which this checks.

    python benchmarks/graft_interpolation.py runs/ldm-mnist-trk-b/pipeline ldm-mnist OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import kinetoscope


def graft(pipe, donor):
    """``pipe`` with ``donor``'s interpolation model (its temporal weights, plus ``pipe``'s
    weights for the temporal modules the donor lacks)."""
    if donor.interpolation_unet is None:
        raise ValueError("the donor has no separate interpolation model")
    own, theirs = pipe.unet.spatial_state(), donor.unet.spatial_state()
    if own.keys() != theirs.keys() or any(not torch.equal(own[k], theirs[k]) for k in own):
        raise ValueError("the two pipelines do not share their image model (spatial weights)")
    state = pipe.unet.temporal_state()
    donated = donor.interpolation_unet.temporal_state()
    unknown = sorted(set(donated) - set(state))
    if unknown:
        raise ValueError(f"the donor's interpolation weights do not fit: {unknown[:3]}")
    pipe.interpolation_unet = pipe.unet.with_temporal_state({**state, **donated}).eval()
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the pipeline that receives the interpolation model")
    parser.add_argument("donor", help="shipped model name or saved pipeline with one")
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights-dtype", default="float16")
    args = parser.parse_args()
    pipe = graft(kinetoscope.load(args.model), kinetoscope.load(args.donor))
    pipe.save_pretrained(args.out, weights_dtype=args.weights_dtype)
    print(f"saved {args.out}: {args.model} with the interpolation model of {args.donor}")


if __name__ == "__main__":
    main()
