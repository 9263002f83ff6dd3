"""Reconstruction quality of a model's autoencoder on a world.

Two reports:

- ``autoencoder_report`` (Video LDM autoencoder): per-frame PSNR and added flicker, with the
  decoder's temporal layers off and on (Video LDM §3.1.1), so the effect of the temporal
  fine-tuning is measured on the same clips.
- ``round_trip_ceiling`` (either family): the share of real world clips the project's judge
  still accepts after an encode/decode round trip. A generator can only draw what its
  autoencoder can decode, so this is the highest accuracy the model can reach on that world.
  Beside it, frame 0 reconstructed on its own (as image-first sampling draws it; a C-ViViT codes
  it alone) and held as a still clip: the share whose identity and count the judge reads right.

    python -m kinetoscope.eval.autoencoder ldm-mnist --world mnist-1 --count 64 --judge
    python -m kinetoscope.eval.autoencoder phenaki-mnist --world mnist-1 --judge
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kinetoscope.eval.temporal import flicker_error, psnr

IDENTITY = {"mnist": ("digit",), "shapes": ("color", "shape", "size")}
STILL_FRAMES = 8  # a frame held still for the judge


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(C, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


@torch.inference_mode()
def autoencoder_report(
    vae, *, world: str, split: str = "test", count: int = 64, seed: int = 0
) -> dict:
    """Mean PSNR (dB) and flicker error of reconstructions, temporal layers off and on."""
    from kinetoscope.data.worlds import WorldDataset

    dataset = WorldDataset(world, split=split, size=count, seed=seed)
    scores: dict[str, list[float]] = {
        k: [] for k in ("psnr_image", "psnr_video", "flicker_image", "flicker_video")
    }
    for index in range(count):
        sample = dataset[index]
        clip, video = sample.frames, sample.to_video().to_tensor()[None]  # (1, C, T, H, W)
        latents = vae.encode(video)
        for mode, temporal in (("image", False), ("video", True)):
            recon = _to_uint8(vae.decode(latents, temporal=temporal)[0])
            scores[f"psnr_{mode}"].append(psnr(recon, clip))
            scores[f"flicker_{mode}"].append(flicker_error(recon, clip))
    return {
        "world": world,
        "split": split,
        "clips": count,
        **{k: float(np.mean(v)) for k, v in scores.items()},
    }


@torch.inference_mode()
def round_trip_ceiling(
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    *,
    world: str,
    split: str = "test",
    count: int = 64,
    seed: int = 0,
    num_frames: int = 16,
    judge=None,
) -> dict:
    """Share of ``world`` clips the judge accepts after ``reconstruct``, beside the share for
    the clips themselves.

    Args:
        reconstruct: video (1, C, T, H, W) in [-1, 1] -> its reconstruction, same layout;
            only its first 16 frames are judged (a C-ViViT round trip needs 1 + 2k frames).
        num_frames: frames rendered per clip (17 for a C-ViViT tokenizer).
    Returns:
        {"world", "split", "clips", "judged_real", "judged_round_trip", "first_frame_real",
        "first_frame_round_trip"} (shares in [0, 1]; the last two judge frame 0 alone, held
        still: identity and count right).
    """
    from kinetoscope.data.worlds import WorldDataset, manifest_objects
    from kinetoscope.eval.judge import load_judge

    judge = judge or load_judge()
    dataset = WorldDataset(world, split=split, size=count, seed=seed, num_frames=num_frames)
    real, round_trip, first_real, first_round_trip = [], [], [], []
    for index in range(count):
        clip = dataset[index]
        expected = manifest_objects(clip.world, clip.objects)
        video = clip.to_video().to_tensor()[None]  # (1, C, T, H, W)
        recon = _to_uint8(reconstruct(video)[0])[:16]
        real.append(judge.judge(clip.frames[:16], expected, world=clip.world).correct)
        round_trip.append(judge.judge(recon, expected, world=clip.world).correct)
        first = _to_uint8(reconstruct(video[:, :, :1])[0])
        for frame, shares in ((clip.frames[:1], first_real), (first, first_round_trip)):
            verdict = judge.judge(
                np.repeat(frame, STILL_FRAMES, axis=0), expected, world=clip.world
            )
            shares.append(all(verdict.attributes[k] for k in (*IDENTITY[clip.world], "count")))
    return {
        "world": world,
        "split": split,
        "clips": count,
        "judged_real": float(np.mean(real)),
        "judged_round_trip": float(np.mean(round_trip)),
        "first_frame_real": float(np.mean(first_real)),
        "first_frame_round_trip": float(np.mean(first_round_trip)),
    }


def load_round_trip(model: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, object]:
    """(reconstruct, frames per clip, the VAE or None) for a model name or pipeline folder."""
    from kinetoscope.hub import resolve_model

    directory = Path(model) if Path(model).is_dir() else resolve_model(model)
    if (directory / "tokenizer").is_dir():
        from kinetoscope.autoencoders.cvivit import CViViT

        tokenizer = CViViT.from_pretrained(directory / "tokenizer").eval()
        return (lambda video: tokenizer.decode_indices(tokenizer.encode(video))), 17, None
    from kinetoscope.autoencoders.vae import VideoAutoencoderKL

    vae_dir = directory / "vae" if (directory / "vae").is_dir() else directory
    vae = VideoAutoencoderKL.from_pretrained(vae_dir).eval()
    return (lambda video: vae.decode(vae.encode(video))), 16, vae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model name, pipeline folder or VAE folder")
    parser.add_argument("--world", action="append", required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument(
        "--judge", action="store_true", help="also judge the round trips (the model's ceiling)"
    )
    args = parser.parse_args()
    reconstruct, num_frames, vae = load_round_trip(args.model)
    for world in args.world:
        row: dict = {"model": args.model}
        if vae is not None:
            row.update(autoencoder_report(vae, world=world, count=args.count))
        if args.judge:
            row.update(
                round_trip_ceiling(
                    reconstruct, world=world, count=args.count, num_frames=num_frames
                )
            )
        print(json.dumps(row))


if __name__ == "__main__":
    main()
