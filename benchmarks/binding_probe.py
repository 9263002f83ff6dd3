"""Can one cross-attention read-out find an object's motion in the text tokens? Whole prompts
against clause-wise encoding (``kinetoscope.text.clauses``).

    python benchmarks/binding_probe.py [--world shapes-2] [--train 6000] [--test 1500] [--steps 3000]

A denoiser that moves two objects must read, at the pixels of each object, that object's
motion from the prompt: its cross-attention queries come from what the pixels show (the
object's identity), its keys and values from the text tokens. This probe is that read-out
alone: a query made from an object's attributes (one-hot digit, or colour, shape and size)
attends once over the frozen text encoder's tokens of the two-object caption, and a small head
on the result (and the query) predicts the object's motion (6 classes). It trains on captions
of the world's train split and is scored on the test split, whose object combinations were
never seen, for the whole-prompt tokens and for the clause-wise ones.
"""

from __future__ import annotations

import argparse
import random

import torch
from torch import nn

from kinetoscope.data.worlds import WorldDataset
from kinetoscope.data.worlds.captions import caption_wordings
from kinetoscope.text import DEFAULT_TEXT_ENCODER, load_text_encoder

MOTIONS = ("left", "right", "up", "down", "left and right", "up and down")
ATTRIBUTES = {"mnist": ("digit",), "shapes": ("color", "shape", "size")}


def examples(world: str, split: str, count: int, seed: int) -> tuple[list[str], list[list[dict]]]:
    """``count`` random training wordings of the split's clips and their objects; clips whose
    two objects look alike are skipped (their motions cannot be told apart by identity)."""
    rng = random.Random(seed)
    data = WorldDataset(world, split=split)
    keys = ATTRIBUTES[world.split("-")[0]]
    captions, objects = [], []
    for index in range(count):
        objs = data.sample_objects(index)
        if len({tuple(o[k] for k in keys) for o in objs}) < len(objs):
            continue
        captions.append(rng.choice(caption_wordings(world, objs)))
        objects.append(objs)
    return captions, objects


def attribute_vocab(world: str, objects: list[list[dict]]) -> list[tuple[str, str]]:
    """(attribute, value) pairs that the one-hot queries index."""
    keys = ATTRIBUTES[world.split("-")[0]]
    return sorted({(k, str(o[k])) for objs in objects for o in objs for k in keys})


def queries(
    world: str, objects: list[list[dict]], vocab: list[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row per object: its attribute one-hots, its motion class, its caption's index."""
    keys = ATTRIBUTES[world.split("-")[0]]
    position = {pair: i for i, pair in enumerate(vocab)}
    rows, motions, owners = [], [], []
    for caption, objs in enumerate(objects):
        for obj in objs:
            row = torch.zeros(len(vocab))
            for k in keys:
                if (k, str(obj[k])) in position:  # a value never seen in training stays zero
                    row[position[(k, str(obj[k]))]] = 1.0
            rows.append(row)
            motions.append(MOTIONS.index(obj["motion"]))
            owners.append(caption)
    return torch.stack(rows), torch.tensor(motions), torch.tensor(owners)


class ReadOut(nn.Module):
    """One attention read-out over the tokens, query from the object's attributes."""

    def __init__(self, query_dim: int, text_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.hidden = hidden
        self.query = nn.Linear(query_dim, hidden)
        self.key = nn.Linear(text_dim, hidden)
        self.value = nn.Linear(text_dim, hidden)
        self.head = nn.Sequential(
            nn.Linear(hidden + query_dim, 128), nn.GELU(), nn.Linear(128, len(MOTIONS))
        )

    def forward(self, query: torch.Tensor, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """query (N, Q), emb (N, L, D), mask (N, L) -> motion logits (N, 6)."""
        scores = (self.query(query)[:, None] * self.key(emb)).sum(-1) / self.hidden**0.5
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)  # (N, L)
        read = (weights[..., None] * self.value(emb)).sum(1)
        return self.head(torch.cat([read, query], -1))


def accuracy(model: ReadOut, data: tuple[torch.Tensor, ...]) -> float:
    query, motion, emb, mask = data
    with torch.no_grad():
        return (model(query, emb, mask).argmax(-1) == motion).float().mean().item()


def run(
    world: str,
    *,
    clauses: bool,
    train: tuple[list[str], list[list[dict]]],
    test: tuple[list[str], list[list[dict]]],
    steps: int,
    seed: int = 0,
    encoder=None,
) -> dict[str, float]:
    """Train the read-out on ``train``; its motion accuracy on both sets at the end."""
    encoder = encoder or load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=32, clauses=clauses)
    vocab = attribute_vocab(world, train[1])
    sets = []
    for captions, objects in (train, test):
        query, motion, owner = queries(world, objects, vocab)
        emb, mask = encoder.encode(captions)
        sets.append((query, motion, emb[owner], mask[owner]))
    torch.manual_seed(seed)
    model = ReadOut(len(vocab), sets[0][2].shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    query, motion, emb, mask = sets[0]
    for _ in range(steps):
        pick = torch.randint(0, len(motion), (256,))
        loss = nn.functional.cross_entropy(model(query[pick], emb[pick], mask[pick]), motion[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"train": accuracy(model, sets[0]), "test": accuracy(model, sets[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="shapes-2", choices=["shapes-2", "mnist-2"])
    parser.add_argument("--train", type=int, default=6000, help="train-split clips")
    parser.add_argument("--test", type=int, default=1500, help="test-split clips")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train = examples(args.world, "train", args.train, args.seed)
    test = examples(args.world, "test", args.test, args.seed + 1)
    print(f"{args.world}: {len(train[0])} train / {len(test[0])} test captions, {args.steps} steps")
    for clauses in (False, True):
        result = run(
            args.world, clauses=clauses, train=train, test=test, steps=args.steps, seed=args.seed
        )
        name = "clause-wise" if clauses else "whole prompt"
        print(
            f"{name:>12}: motion read right, train {100 * result['train']:.1f}%, "
            f"test {100 * result['test']:.1f}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
