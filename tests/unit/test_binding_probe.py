"""benchmarks/binding_probe.py: does one read-out find each object's motion in the tokens?"""

from __future__ import annotations

import torch

from helpers import load_benchmark

probe = load_benchmark("binding_probe")
WORLD = "shapes-2"


class SyntheticEncoder:
    """Tokens built from the caption's objects: ``bound`` puts each object's identity and
    motion in one token; unbound puts identities and motions in separate tokens, so nothing
    says which motion is whose."""

    def __init__(self, objects_of: dict[str, list[dict]], vocab, *, bound: bool) -> None:
        self.objects_of, self.vocab, self.bound = objects_of, vocab, bound
        self.dim = len(vocab) + len(probe.MOTIONS)

    def encode(self, captions):
        emb = torch.zeros(len(captions), 4, self.dim)
        mask = torch.zeros(len(captions), 4, dtype=torch.bool)
        for i, caption in enumerate(captions):
            objs = self.objects_of[caption]
            identity, _, _ = probe.queries(WORLD, [objs], self.vocab)
            for j, obj in enumerate(objs):
                motion = torch.zeros(len(probe.MOTIONS))
                motion[probe.MOTIONS.index(obj["motion"])] = 1.0
                if self.bound:
                    emb[i, j] = torch.cat([identity[j], motion])
                else:
                    emb[i, j, : len(self.vocab)] = identity[j]
                    emb[i, 2 + j, len(self.vocab) :] = motion
            mask[i, : 2 if self.bound else 4] = True
        return emb, mask


def test_examples_pair_captions_with_their_objects_and_skip_look_alikes():
    captions, objects = probe.examples(WORLD, "train", 40, seed=0)
    assert 0 < len(captions) == len(objects) <= 40
    for caption, objs in zip(captions, objects, strict=True):
        assert len(objs) == 2 and objs[0] != objs[1]
        assert all(o["color"] in caption and o["shape"] in caption for o in objs)
    vocab = probe.attribute_vocab(WORLD, objects)
    rows, motions, owners = probe.queries(WORLD, objects, vocab)
    assert rows.shape == (2 * len(objects), len(vocab)) and (rows.sum(1) == 3).all()
    assert owners.tolist() == [i for i in range(len(objects)) for _ in range(2)]
    assert motions[1].item() == probe.MOTIONS.index(objects[0][1]["motion"])


def test_read_out_ignores_padding():
    model = probe.ReadOut(5, 7)
    query, emb = torch.randn(3, 5), torch.randn(3, 4, 7)
    mask = torch.tensor([[True, True, False, False]] * 3)
    changed = emb.clone()
    changed[:, 2:] = 100.0
    assert torch.equal(model(query, emb, mask), model(query, changed, mask))


def test_the_probe_finds_bound_motions_and_not_unbound_ones():
    train = probe.examples(WORLD, "train", 600, seed=0)
    test = probe.examples(WORLD, "test", 200, seed=1)
    objects_of = dict(zip(train[0] + test[0], train[1] + test[1], strict=True))
    vocab = probe.attribute_vocab(WORLD, train[1])
    scores = {
        bound: probe.run(
            WORLD,
            clauses=False,
            train=train,
            test=test,
            steps=300,
            encoder=SyntheticEncoder(objects_of, vocab, bound=bound),
        )
        for bound in (True, False)
    }
    assert scores[True]["test"] > 0.95
    assert scores[False]["test"] < 0.75  # at best the right one of the two motions by chance
