"""Which hidden states of the text encoder let a small read-out find a caption's motion in
wordings it was not trained on.

A stand-in for what the trajectory planner learns from the prompt: learned queries attend to
the token states (projected to 128 wide) and a linear layer reads out one of the six motions.
It trains (600 steps of 64, Adam 1e-3) on the captions the planner trains on
(``WordingAugmenter`` with the recipes' settings: half noised, 30% paraphrased) of every
one-object combination of a world, and is tested on the evaluation's held-out wordings of the
same combinations (``eval_wordings``). Printed: the test accuracy for each choice of layers
(``L0`` the token embeddings, ``L6`` the last layer of all-MiniLM-L6-v2, ``L0+L6`` both
side by side), one figure per seed.

    python benchmarks/text_layer_probe.py mnist --layers 6 0 0,6
"""

from __future__ import annotations

import argparse
import random

import torch

from kinetoscope.data.worlds.captions import MOTION_FORMS, eval_wordings
from kinetoscope.text import load_text_encoder
from kinetoscope.train.text_augment import WordingAugmenter, vocabulary_words


def combinations(world: str) -> list[dict]:
    motions = list(MOTION_FORMS)
    if world == "mnist":
        return [{"digit": d, "motion": m} for d in range(10) for m in motions]
    from kinetoscope.data.worlds.shapes import COLORS, SHAPES, SIZES

    return [
        {"color": c, "shape": s, "size": z, "motion": m}
        for c in COLORS for s in SHAPES for z in SIZES for m in motions
    ]  # fmt: skip


def read_out_accuracy(train, test, seed: int, steps: int = 600) -> float:
    """Train the attention read-out on ``train`` = (states, mask, labels), test on ``test``."""
    (states, mask, labels), (test_states, test_mask, test_labels) = train, test
    torch.manual_seed(seed)
    proj = torch.nn.Linear(states.shape[-1], 128)
    queries = torch.nn.Parameter(torch.randn(4, 128) * 0.1)
    head = torch.nn.Linear(4 * 128, len(MOTION_FORMS))
    params = [*proj.parameters(), queries, *head.parameters()]
    optimizer = torch.optim.Adam(params, 1e-3)

    def logits(x, m):
        keys = proj(x)  # (B, L, 128)
        weights = torch.einsum("qc,blc->bql", queries, keys) / 128**0.5
        weights = weights.masked_fill(~m[:, None], float("-inf")).softmax(-1)
        return head(torch.einsum("bql,blc->bqc", weights, keys).flatten(1))

    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,))
        loss = torch.nn.functional.cross_entropy(logits(states[idx], mask[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (logits(test_states, test_mask).argmax(-1) == test_labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world", choices=("mnist", "shapes"))
    parser.add_argument("--layers", nargs="+", default=["6", "0", "0,6"],
                        help="layer sets, comma-separated hidden-state indices")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--captions", type=int, default=4000)
    args = parser.parse_args()
    encoder = load_text_encoder("all-MiniLM-L6-v2", max_length=32)
    augmenter = WordingAugmenter(vocabulary_words(encoder), p=0.5, paraphrase=0.3)
    rng = random.Random(0)
    objects = combinations(args.world)
    motions = list(MOTION_FORMS)
    train = []
    while len(train) < args.captions:
        train += [(augmenter(args.world, [o], rng), motions.index(o["motion"])) for o in objects]
    train = train[: args.captions]
    test = [
        (w, motions.index(o["motion"])) for o in objects for w in eval_wordings(args.world, [o])
    ]
    print(f"{args.world}: {len(train)} training captions, {len(test)} held-out wordings")
    for spec in args.layers:
        layers = tuple(int(i) for i in spec.split(","))
        layered = load_text_encoder("all-MiniLM-L6-v2", max_length=32, layers=layers)
        sets = []
        for captions in (train, test):
            emb, mask = layered.encode([c for c, _ in captions])
            sets.append((emb, mask, torch.tensor([y for _, y in captions])))
        accuracy = [read_out_accuracy(sets[0], sets[1], seed) for seed in range(args.seeds)]
        name = "+".join(f"L{i}" for i in layers)
        print(f"{name:8s} held-out wordings read right: " + ", ".join(f"{a:.3f}" for a in accuracy))


if __name__ == "__main__":
    main()
