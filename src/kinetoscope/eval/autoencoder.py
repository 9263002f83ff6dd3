"""Reconstruction quality of a video autoencoder on a world: per-frame PSNR and added flicker.

Reports the decoder with and without its temporal layers (Video LDM §3.1.1), so the effect
of the temporal fine-tuning is measured on the same clips:

    python -m kinetoscope.eval.autoencoder runs/ldm-mnist/vae --world mnist-1 --count 64
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from kinetoscope.eval.temporal import flicker_error, psnr


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
        clip = dataset[index].frames
        video = torch.from_numpy(clip).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
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


def main() -> None:
    from kinetoscope.autoencoders.vae import VideoAutoencoderKL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae_dir")
    parser.add_argument("--world", action="append", required=True)
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    vae = VideoAutoencoderKL.from_pretrained(args.vae_dir).eval()
    for world in args.world:
        print(json.dumps(autoencoder_report(vae, world=world, count=args.count)))


if __name__ == "__main__":
    main()
