"""Does decoding a Phenaki clip one token time step at a time keep its objects whole?

    python benchmarks/phenaki_stepwise_probe.py MODEL WORLD STEPS_PER_TIME [--samples 100] [-o DIR]

The shipped pipelines decode the first frame's tokens as an image, then every later token of
the window together (MaskGIT, 12 steps). Here each later time step (a 2-frame tubelet) is
decoded in turn, in STEPS_PER_TIME MaskGIT steps, with the earlier ones frozen and the later
ones still masked (``maskgit_sample(..., decode_until=t + 1)``): every step then sees a
finished previous frame, as in story continuation. Judged with ``kinetoscope.eval.evaluate``
on the test split, so ``kinetoscope compare`` pairs it with the model's own report.
"""

from __future__ import annotations

import argparse
import json
import types

import torch

import kinetoscope
from kinetoscope.eval.evaluate import evaluate_variant
from kinetoscope.masked.sampling import maskgit_sample


def stepwise_tokens(pipe, run, token_shape: tuple[int, int, int], steps_per_time: int):
    """Tokens (B, T', h, w) of a fresh window: the first time step as an image, then one time
    step after another."""
    settings = run.settings
    options = {
        **run.text,
        "guidance_scale": settings.guidance,
        "temperature": settings.temperature,
        "choice_temperature": settings.choice_temperature,
        "generator": run.generators,
    }
    tokens = maskgit_sample(
        pipe.transformer, **options, token_shape=(1, *token_shape[1:]), num_steps=settings.steps
    )
    for t in range(1, token_shape[0]):
        grid = maskgit_sample(
            pipe.transformer,
            **options,
            token_shape=token_shape,
            num_steps=steps_per_time,
            prefix_tokens=tokens,
            decode_until=t + 1,
        )
        tokens = grid[:, : t + 1]
    return tokens


def make_stepwise(pipe, steps_per_time: int):
    """Patch ``pipe`` so fresh windows decode step by step (continuations are unchanged)."""
    original = pipe._sample_window

    def sample_window(self, run, *, num_frames: int, context: torch.Tensor | None):
        if context is not None:
            return original(run, num_frames=num_frames, context=context)
        shape = self.tokenizer.tokens_shape(num_frames, self.resolution, self.resolution)
        tokens = stepwise_tokens(self, run, shape, steps_per_time)
        return self.tokenizer.decode_indices(tokens).clamp(-1.0, 1.0)

    pipe._sample_window = types.MethodType(sample_window, pipe)
    return pipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("world")
    parser.add_argument("steps_per_time", type=int)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("-o", "--output", default="stepwise-report")
    args = parser.parse_args(argv)
    pipe = make_stepwise(kinetoscope.load(args.model), args.steps_per_time)
    accuracy = evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.output)
    print(json.dumps(accuracy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
