"""How much a Phenaki transformer with anchor attentions gets from the object tracks.

For the first ``--clips`` clips of a world's split, the pipeline's tokenizer codes the clip and
the transformer predicts randomly masked tokens (the training masks, drawn with a fixed seed)
twice: following the clip's true tracks, and without tracks. Prints the masked cross-entropy
and accuracy of both, overall and on foreground tokens (tokens other than the split's most
common code per time-step kind, the background), and the mean mask ratio. A model that uses
its tracks predicts the foreground markedly better with them.

    python benchmarks/phenaki_track_probe.py runs/phenaki-shapes-trk/pipeline shapes-1
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import kinetoscope
from kinetoscope.data.worlds import WorldDataset
from kinetoscope.masked.training import random_mask
from kinetoscope.masked.transformer import token_step_tracks
from kinetoscope.pipelines.phenaki import encode_text
from kinetoscope.train.tracks import clip_tracks


def probe(pipe, world: str, *, split: str = "test", clips: int = 64, seed: int = 0) -> dict:
    model = pipe.transformer
    if not model.takes_trajectory:
        raise ValueError("this transformer has no anchor attentions (anchor_slots)")
    frames = 1 + 2 * (model.max_time_tokens - 1)  # a whole window, as in training
    data = WorldDataset(world, split=split, size=clips, seed=seed, num_frames=frames)
    rows = [data[i] for i in range(clips)]
    video = torch.stack([c.to_video().to_tensor() for c in rows])  # (B, C, T, H, W)
    with torch.no_grad():
        tokens = pipe.tokenizer.encode(video)  # (B, T', h, w)
    slots = model.config.anchor_slots
    tracks = torch.stack(
        [
            torch.from_numpy(clip_tracks(c.objects, slots=slots, resolution=data.resolution))
            for c in rows
        ]
    )
    tracks = token_step_tracks(tracks.float())
    emb, mask = encode_text(pipe.text_encoder, [c.caption for c in rows])
    flat = tokens.flatten(1)  # (B, N)
    per_step = tokens.shape[2] * tokens.shape[3]
    first = torch.arange(flat.shape[1]) < per_step
    background = torch.where(
        first, tokens[:, 0].flatten().mode().values, tokens[:, 1:].flatten().mode().values
    )  # (N,) the background code of each position's kind
    generator = torch.Generator().manual_seed(seed)
    masked = random_mask(
        flat.shape[1],
        num_frozen=torch.zeros(clips, dtype=torch.long),
        generator=generator,
        device=flat.device,
    )
    inputs = torch.where(masked, torch.full_like(flat, model.mask_id), flat)
    result = {"world": world, "split": split, "clips": clips}
    result["mask_ratio"] = float(masked.float().mean())
    foreground = masked & (flat != background[None])
    for name, trajectory in (("with tracks", tracks), ("without", None)):
        with torch.no_grad():
            logits = model(inputs, emb, mask, trajectory)
        for part, where in (("all", masked), ("foreground", foreground)):
            loss = F.cross_entropy(logits[where], flat[where])
            right = (logits[where].argmax(-1) == flat[where]).float().mean()
            result[f"{name}, {part}"] = f"loss {loss:.3f}, accuracy {right:.3f}"
    result["foreground tokens"] = int(foreground.sum())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved Phenaki pipeline with anchor attentions")
    parser.add_argument("world", help="mnist-1, mnist-2, shapes-1 or shapes-2")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = probe(
        kinetoscope.load(args.model), args.world, split=args.split, clips=args.clips, seed=args.seed
    )
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
