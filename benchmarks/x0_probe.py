"""Where does a Video LDM clip go wrong: in the denoiser's first guesses, or along the way?

    python benchmarks/x0_probe.py MODEL WORLD [--samples 100] [--at 0 4 9] [-o DIR]

Samples the protocol's test prompts and seeds as ``kinetoscope eval`` does (so the clips are the
report's clips), and at the given solver steps also takes the guided denoiser's estimate of the
clean clip, x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v (the given frame 0 kept as it is). Each
estimate is decoded and judged like a finished clip. If the estimates at the first steps move
the right way more often than the finished clips, the solver loses what the denoiser knew; if
they do not, the denoiser's guesses are the problem. Prints a table and writes
``DIR/x0-probe.json``, the clips' own report in ``DIR`` and ``DIR/x0-sheet.png``: for the first
prompts, every other frame of the first asked step's estimate above the finished clip.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import kinetoscope
from kinetoscope.eval.evaluate import evaluate_variant


class Recorder(torch.nn.Module):
    """Wraps a VideoUNet: keeps (input, timestep, guided prediction) of the temporal passes
    at solver steps ``at`` of every sampling run (a run starts after an image-model pass)."""

    def __init__(self, unet: torch.nn.Module, at: list[int], guidance: float) -> None:
        super().__init__()
        self.inner, self.config, self.at, self.guidance = unet, unet.config, set(at), guidance
        self.step, self.runs = 0, []

    def forward(self, x, timestep, emb, mask, use_temporal: bool = True):
        pred = self.inner(x, timestep, emb, mask, use_temporal=use_temporal)
        if not use_temporal:  # frame 0 by the image model: the next temporal pass is step 0
            if not self.runs or self.step:
                self.runs.append({})
            self.step = 0
            return pred
        if self.step in self.at:
            guided = pred.float()
            half = x.shape[0] // 2
            if self.guidance != 1.0 and emb.shape[0] == 2 * half:
                cond, uncond = guided.chunk(2)
                guided, x, timestep = (
                    uncond + self.guidance * (cond - uncond),
                    x[:half],
                    timestep[:half],
                )
            self.runs[-1][self.step] = (x.float().clone(), timestep.clone(), guided.clone())
        self.step += 1
        return pred


def clean_estimate(x: torch.Tensor, timestep: torch.Tensor, v: torch.Tensor, alphas_cumprod):
    """x0 from a v-prediction; frames with timestep 0 (given ones) are kept as they are."""
    a = alphas_cumprod[timestep.long()].to(x)[:, None, :, None, None]  # (B, 1, T, 1, 1)
    x0 = a.sqrt() * x - (1 - a).sqrt() * v
    return torch.where(timestep[:, None, :, None, None] == 0, x, x0)


def write_sheet(estimates: list[torch.Tensor], clips: list[torch.Tensor], path: Path) -> None:
    """Per prompt, every other frame of the first asked step's estimate above the same frames
    of the finished clip; tensors (3, T, H, W) in [-1, 1]."""
    import numpy as np
    from PIL import Image

    def strip(clip: torch.Tensor) -> np.ndarray:
        frames = ((clip[:, ::2].permute(1, 2, 3, 0).float().numpy() + 1) * 127.5).round()
        return np.concatenate(list(frames.astype(np.uint8)), axis=1)

    rows = [strip(c) for pair in zip(estimates, clips, strict=True) for c in pair]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv: list[str] | None = None) -> int:
    from diffusers import DDPMScheduler

    from kinetoscope.eval.judge import load_judge
    from kinetoscope.video import Video

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("world")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--at", type=int, nargs="+", default=[0, 4, 9])
    parser.add_argument("-o", "--output", type=Path, default=Path("x0-probe"))
    parser.add_argument(
        "--sheet", type=int, default=8, help="prompts in DIR/x0-sheet.png (0: no sheet)"
    )
    args = parser.parse_args(argv)
    pipe = kinetoscope.load(args.model)
    if pipe.family != "ldm" or pipe.scheduler_config.get("prediction_type") != "v_prediction":
        parser.error("the probe needs a latent diffusion model with v-prediction")
    if pipe.defaults.get("first_frame") != "image":
        parser.error("the probe needs a model that samples frame 0 first (first_frame: image)")
    if pipe.image_unet is not pipe.unet:
        parser.error("the probe expects frame 0 from the generator's own spatial weights")
    recorder = Recorder(pipe.unet, args.at, float(pipe.defaults["guidance_scale"]))
    # Every pass through the recorder itself: eager (no traced graphs) and in float32 (a
    # bfloat16 pass would run a copy of it).
    pipe.unet = pipe.image_unet = recorder
    pipe.graphs.after, pipe.defaults["precision"] = None, "float32"
    finished, decode = [], pipe.vae.decode_chunked

    def keep_decoded(latents, **options):  # the finished clips, as the pipeline decodes them
        video = decode(latents, **options)
        finished.extend(video.clamp(-1.0, 1.0))
        return video

    pipe.vae.decode_chunked = keep_decoded
    clips = evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.output)
    pipe.vae.decode_chunked = decode
    report = json.loads((args.output / "report.json").read_text())

    alphas = DDPMScheduler.from_config(pipe.scheduler_config).alphas_cumprod
    expected = [sample["expected"] for sample in report["samples"]]  # in prompt order
    judge, world = load_judge(), args.world.split("-")[0]
    rows = {step: [] for step in args.at}
    estimates = []  # decoded estimates at the first asked step, in prompt order
    samples = iter(range(args.samples))
    with torch.inference_mode():
        for run in recorder.runs:
            batch = next(iter(run.values()))[0].shape[0]
            indices = [next(samples) for _ in range(batch)]
            for step, (x, timestep, v) in run.items():
                x0 = clean_estimate(x, timestep, v, alphas)
                decoded = pipe.vae.decode_chunked(x0, chunk_size=x0.shape[2]).clamp(-1.0, 1.0)
                if step == min(args.at):
                    estimates.extend(decoded)
                for i, clip in zip(indices, decoded, strict=True):
                    video = Video.from_tensor(clip.cpu(), fps=8.0)
                    verdict = judge.judge(video, expected[i], world=world)
                    rows[step].append(
                        {
                            "index": i,
                            "t": int(timestep[0, -1]),
                            "correct": verdict.correct,
                            **verdict.attributes,
                        }
                    )
    table = {"clips": clips}
    for step, entries in rows.items():
        entries.sort(key=lambda e: e["index"])
        names = [k for k in entries[0] if k not in ("index", "t")]
        summary = {n: sum(bool(e[n]) for e in entries) / len(entries) for n in names}
        motion = [
            (bool(e["motion"]), bool(s["attributes"]["motion"]))
            for e, s in zip(entries, report["samples"], strict=True)
        ]
        summary["motion: only x0 / only clip"] = [
            motion.count((True, False)),
            motion.count((False, True)),
        ]
        table[f"x0 at step {step} (t={entries[0]['t']})"] = summary
    (args.output / "x0-probe.json").write_text(json.dumps(table, indent=2))
    if args.sheet:
        write_sheet(estimates[: args.sheet], finished[: args.sheet], args.output / "x0-sheet.png")
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
