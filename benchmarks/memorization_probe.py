"""Does a Video LDM's temporal stage fit its latent cache rather than the world?

The temporal stages draw their clips from a fixed cache of ``num_latent_clips`` encoded training
clips (3,000 in the shipped recipes), seen many times over. This probe compares the model's
denoising loss on clips of that cache with its loss on fresh clips of the same worlds and split
(the clips that follow the cached ones in the same datasets: same prompts distribution, new
digits, positions and paths). Both get the sampling protocol: frame 0 given clean, the other
frames noised at one timestep, the same noise seeds on both sides. A loss on cached clips well
below the loss on fresh ones means the temporal layers memorise clips instead of learning motion.

    python benchmarks/memorization_probe.py RUN_DIR [--clips 192] [--timesteps 100 300 ...]

RUN_DIR is a training run folder (recipe.json, latents.pt and pipeline/ as `kinetoscope train`
leaves them). Prints the mean loss (± its standard error over clips) per timestep and world, cached
against fresh, and their ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from kinetoscope import load
from kinetoscope.config import from_dict
from kinetoscope.diffusion.noise import frame_correlated_noise
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.recipe import _world_datasets, clip_chunks


def fresh_clips(recipe: LDMRecipe, vae, start: int, count: int):
    """Clips start .. start + count - 1 of the recipe's interleaved datasets, encoded."""
    latents, wordings = [], []
    for video, words in clip_chunks(_world_datasets(recipe), start + count, first=start):
        with torch.inference_mode():
            latents.append(vae.encode(video))
        wordings.extend(words)
    return torch.cat(latents), wordings


@torch.inference_mode()
def losses(pipe, scheduler, latents, wordings, timesteps, correlation, *, seed: int, batch: int):
    """(len(timesteps), N) per-clip v-prediction MSE on frames 1.., frame 0 given clean."""
    out = torch.zeros(len(timesteps), latents.shape[0])
    for start in range(0, latents.shape[0], batch):
        clean = latents[start : start + batch].float()
        emb, mask = pipe.text_encoder.encode([w[0] for w in wordings[start : start + batch]])
        for i, step in enumerate(timesteps):
            torch.manual_seed(seed + 1000 * i + start)
            noise = frame_correlated_noise(clean, correlation)
            t = torch.full((clean.shape[0],), step, dtype=torch.long)
            noisy = scheduler.add_noise(clean, noise, t)
            noisy[:, :, 0] = clean[:, :, 0]
            frame_t = t[:, None].repeat(1, clean.shape[2])
            frame_t[:, 0] = 0
            pred = pipe.unet(noisy, frame_t, emb, mask, use_temporal=True)
            target = scheduler.get_velocity(clean, noise, t)
            err = (pred - target)[:, :, 1:].square().mean(dim=(1, 2, 3, 4))
            out[i, start : start + clean.shape[0]] = err
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clips", type=int, default=192, help="clips per side (both worlds)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 300, 500, 700, 900, 980])
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    recipe = from_dict(LDMRecipe, json.loads((args.run / "recipe.json").read_text()))
    pipe = load(args.run / "pipeline")
    scheduler = DDPMScheduler(**recipe.scheduler)
    correlation = float(pipe.defaults["noise_correlation"])  # as the pipeline samples
    cache = torch.load(args.run / "latents.pt", weights_only=False)
    cached = cache["latents"][: args.clips]
    cached_words = cache["wordings"][: args.clips]
    fresh, fresh_words = fresh_clips(recipe, pipe.vae, len(cache["wordings"]), args.clips)
    print(f"run {args.run}: {len(cache['wordings'])} cached clips; noise correlation {correlation}")
    options = {"seed": 0, "batch": args.batch}
    a = losses(pipe, scheduler, cached, cached_words, args.timesteps, correlation, **options)
    b = losses(pipe, scheduler, fresh, fresh_words, args.timesteps, correlation, **options)
    worlds = recipe.worlds
    print(f"{'timestep':>8} {'world':>9} {'cached':>15} {'fresh':>15} {'fresh/cached':>12}")
    for i, step in enumerate(args.timesteps):
        for w, world in enumerate(worlds):  # clips alternate between the recipe's worlds
            ca, fr = a[i, w :: len(worlds)], b[i, w :: len(worlds)]
            print(
                f"{step:>8} {world:>9} {_mean_se(ca):>15} {_mean_se(fr):>15} "
                f"{fr.mean().item() / ca.mean().item():12.3f}"
            )


def _mean_se(values: torch.Tensor) -> str:
    """'mean ± standard error' of per-clip losses."""
    se = values.std().item() / len(values) ** 0.5
    return f"{values.mean().item():.4f} ± {se:.4f}"


if __name__ == "__main__":
    main()
