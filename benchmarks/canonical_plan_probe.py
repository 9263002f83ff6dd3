"""What a pipeline's clips would score if its trajectory planner understood every wording.

Diagnostic only: the planner reads each evaluation prompt's canonical caption ("the digit 6 is
moving left" for "a written six drifting leftward"), while the generator, frame 0 and the judge
see the prompt as given. Half the evaluation prompts use wordings of held-out templates; the
gap between this report and the plain one is what the planner's reading of those wordings
costs. Writes an evaluation report folder (test split, seeds 0..samples-1) that ``kinetoscope
compare`` pairs with the model's own.

    python benchmarks/canonical_plan_probe.py ldm-mnist mnist-1 runs/eval/canonical-plan
"""

from __future__ import annotations

import argparse

import kinetoscope
from kinetoscope.data.worlds import canonical_caption, eval_prompts
from kinetoscope.eval.evaluate import evaluate_variant


def plan_from_canonical_captions(pipe, world: str, *, samples: int) -> None:
    """Patch ``pipe`` (in place) so its planner reads the canonical caption of each of the
    world's first ``samples`` test prompts instead of the prompt."""
    kind = world.split("-")[0]
    canonical = {
        prompt: canonical_caption(kind, objects)
        for prompt, objects in eval_prompts(world, split="test", count=samples, seed=0)
    }
    call, plan = type(pipe).__call__, pipe._plan
    asked: list[str] = []

    def planned(first, num_frames, generators, denoise):
        emb, mask = pipe.text_encoder.encode([canonical[p] for p in asked])
        text = {"emb": emb.to(first.device), "mask": mask.to(first.device)}
        return plan(first, num_frames, generators, {**denoise, **text})

    def called(self, prompt, **options):
        asked[:] = [prompt] if isinstance(prompt, str) else list(prompt)
        return call(self, prompt, **options)

    pipe._plan = planned
    pipe.__class__ = type(
        f"CanonicalPlan{type(pipe).__name__}", (type(pipe),), {"__call__": called}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="saved pipeline directory (or shipped model name)")
    parser.add_argument("world", help="mnist-1, mnist-2, shapes-1 or shapes-2")
    parser.add_argument("out_dir", help="report folder")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    pipe = kinetoscope.load(args.model)
    plan_from_canonical_captions(pipe, args.world, samples=args.samples)
    print(evaluate_variant(pipe, world=args.world, samples=args.samples, out_dir=args.out_dir))


if __name__ == "__main__":
    main()
