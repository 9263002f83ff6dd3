"""Cost of object-wise composition: seconds per default clip for one object, for two objects
made one at a time (the model's ``compose_objects`` setting) and for two objects in one pass.

    python benchmarks/bench_compose.py [--model ldm-mnist] [--threads 2] [--repeats 3]

Each figure is the median of ``--repeats`` timed generations (seeds 100, 101, ...) after five
untimed warm-up rounds of each prompt (the denoiser is traced on a recurring signature); peak
memory is the process's.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

ONE = "the digit 7 is moving up"
TWO = "the digit 7 is moving up and the digit 2 is moving left and right"
SHAPES = {
    ONE: "a small red circle is moving up",
    TWO: "a small red circle is moving up and a large blue square is moving left and right",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ldm-mnist")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    import kinetoscope

    torch.set_num_threads(args.threads)
    pipe = kinetoscope.load(args.model)
    one, two = (SHAPES[p] if "shapes" in args.model else p for p in (ONE, TWO))
    for i in range(5):
        pipe(one, seed=i, progress=False)
        pipe(two, seed=i, progress=False)

    def clock(prompt: str, **options) -> float:
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            pipe(prompt, seed=100 + i, progress=False, **options)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    composed = pipe.defaults.get("compose_objects", False)
    k = pipe.defaults.get("compose_candidates", 1)
    print(f"{args.model}, {args.threads} threads, median of {args.repeats}")
    print(f"one object:                 {clock(one):.2f} s")
    print(f"two objects, model default: {clock(two):.2f} s (compose_objects {composed}, k {k})")
    print(f"two objects, one pass:      {clock(two, compose_objects=False):.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
