"""How fast can a Video LDM's temporal layers learn the motion direction? A stage-2 probe.

    python benchmarks/direction_learnability.py UNET_CONFIG_DIR IMAGE_UNET_DIR LATENTS SCHEDULER_CONFIG
        [--steps 200] [--lr 1e-3] [--override '{"spacetime_attention_levels": [1, 2]}']

At the top of the noise schedule the clip is pure noise and the best prediction is the mean
clip of the prompt. For single-digit clips moving left/right/up/down that mean depends on the
direction (a band that moves the asked way), so a model that reads the direction word has a
lower loss than one that does not. This script prints that attainable gap (the x0 error of
the global mean against the per-direction means), then trains fresh temporal layers on top of
a frozen image model (``load_spatial_weights``) on timesteps 950..999 only, and every 50 steps
prints the loss at t=990 on held-out clips with the true and with the flipped direction word.
A gap between the two columns means the direction is being learned.

``--context-frames K`` asks the question of a prediction model instead (Video LDM §3.1.2, the
image-first sampling of the shipped recipes): the first K frames enter clean with timestep 0
and stay out of the loss. Given where the digit starts, the direction then decides where it
is in every later frame, so the attainable gap is far larger than the mean-clip one.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.text import load_text_encoder
from kinetoscope.train.weights import load_spatial_weights

SINGLE = re.compile(r"^the digit (\d) is moving (left|right|up|down)$")
FLIP = {"left": "right", "right": "left", "up": "down", "down": "up"}


def attainable_gap(latents: torch.Tensor, directions: list[str]) -> tuple[float, float]:
    """x0 MSE of the global mean clip and of the per-direction mean clips."""
    total = ((latents - latents.mean(0)) ** 2).mean().item()
    per = 0.0
    for d in set(directions):
        group = latents[[i for i, x in enumerate(directions) if x == d]]
        per += ((group - group.mean(0)) ** 2).sum().item()
    return total, per / latents.numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("unet_config_dir", help="a saved VideoUNet whose config is used")
    parser.add_argument("image_unet_dir", help="the stage-1 image model (spatial weights)")
    parser.add_argument("latents", help="latent cache (latents.pt of an LDM run)")
    parser.add_argument("scheduler_config")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--override", default="{}", help="JSON of VideoUNet config overrides")
    parser.add_argument("--context-frames", type=int, default=0)
    parser.add_argument("--probe-timesteps", type=int, nargs="+", default=[990])
    parser.add_argument(
        "--trained",
        action="store_true",
        help="probe the temporal layers saved in UNET_CONFIG_DIR instead of fresh ones",
    )
    parser.add_argument("--min-timestep", type=int, default=950, help="training timesteps from")
    args = parser.parse_args()

    config = {k: v for k, v in VideoUNet.load_config(args.unet_config_dir).items() if k[0] != "_"}
    config.update(json.loads(args.override))
    torch.manual_seed(5)
    if args.trained:
        unet = VideoUNet.from_pretrained(args.unet_config_dir)
    else:
        unet = load_spatial_weights(VideoUNet(**config), Path(args.image_unet_dir))
    sched = DDPMScheduler(**json.loads(Path(args.scheduler_config).read_text()))
    cache = torch.load(args.latents, weights_only=False)
    index = [i for i, w in enumerate(cache["wordings"]) if SINGLE.search(w[0])]
    held_out = set(index[::10][:48])
    test, train = sorted(held_out), [i for i in index if i not in held_out]
    latents = cache["latents"].float()
    directions = [SINGLE.search(cache["wordings"][i][0]).group(2) for i in index]
    total, per = attainable_gap(latents[index], directions)
    print(f"x0 MSE of the global mean clip {total:.4f}, of the per-direction means {per:.4f}")
    encoder = load_text_encoder("all-MiniLM-L6-v2", max_length=32)
    context = args.context_frames

    def loss_of(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, emb, mask) -> torch.Tensor:
        noisy, target = sched.add_noise(x0, noise, t), sched.get_velocity(x0, noise, t)
        if not context:
            return ((unet(noisy, t, emb, mask) - target) ** 2).mean()
        noisy[:, :, :context] = x0[:, :, :context]
        frame_t = t[:, None].repeat(1, x0.shape[2])
        frame_t[:, :context] = 0
        return ((unet(noisy, frame_t, emb, mask) - target)[:, :, context:] ** 2).mean()

    chunks = [test[start : start + 16] for start in range(0, len(test), 16)]
    probe_texts = []  # per chunk: the true and the flipped captions, encoded once
    for chunk in chunks:
        captions = [cache["wordings"][i][0] for i in chunk]
        flipped = [
            SINGLE.sub(lambda m: f"the digit {m.group(1)} is moving {FLIP[m.group(2)]}", c)
            for c in captions
        ]
        probe_texts.append({"true": encoder.encode(captions), "flipped": encoder.encode(flipped)})

    def probe() -> str:
        unet.eval()
        rows = []
        for timestep in args.probe_timesteps:
            gen = torch.Generator().manual_seed(0)
            losses = {"true": [], "flipped": []}
            for chunk, texts in zip(chunks, probe_texts, strict=True):
                x0 = latents[chunk]
                noise = torch.randn(x0.shape, generator=gen)
                t = torch.full((len(chunk),), timestep)
                for key, (emb, mask) in texts.items():
                    with torch.inference_mode():
                        losses[key].append(loss_of(x0, noise, t, emb, mask).item())
            mean = {key: sum(v) / len(v) for key, v in losses.items()}
            rows.append(
                f"t={timestep} loss: true direction {mean['true']:.4f}, flipped {mean['flipped']:.4f}"
            )
        unet.train()
        return "; ".join(rows)

    unet.requires_grad_(False)
    params = unet.temporal_parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    print("step 0:", probe())
    gen = torch.Generator().manual_seed(1)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        chunk = [train[j] for j in torch.randint(0, len(train), (args.batch_size,), generator=gen)]
        emb, mask = encoder.encode([cache["wordings"][i][0] for i in chunk])
        x0 = latents[chunk]
        noise = torch.randn_like(x0)
        t = torch.randint(args.min_timestep, 1000, (len(chunk),))
        loss = loss_of(x0, noise, t, emb, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            elapsed = time.perf_counter() - started
            print(f"step {step} ({elapsed:.0f} s): train loss {loss.item():.4f}; {probe()}")


if __name__ == "__main__":
    main()
