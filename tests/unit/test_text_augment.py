"""Noisy training wordings keep every fact of a caption and never use evaluation words."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from kinetoscope.data.worlds.captions import (
    DIGIT_WORDS,
    MNIST_EVAL_TEMPLATES,
    SHAPES_EVAL_TEMPLATES,
)
from kinetoscope.text.clauses import split_clauses
from kinetoscope.train.text_augment import WordingAugmenter, fact_words, vocabulary_words

NOISE = ["zebra", "quietly", "teapot", "orbit"]
MNIST = [{"digit": 7, "motion": "left and right"}, {"digit": 2, "motion": "up"}]
SHAPES = [{"color": "red", "shape": "circle", "size": "small", "motion": "down"}]


def states(clause: str, obj: dict) -> bool:
    """Whether ``clause`` names ``obj`` (its digit, in figures or words, or its colour, shape
    and size) and ends in its motion (plain or "to the" form)."""
    from kinetoscope.data.worlds.captions import DIGIT_WORDS, MOTION_FORMS

    words = clause.replace(",", " ").split()
    if "digit" in obj:
        named = str(obj["digit"]) in words or DIGIT_WORDS[obj["digit"]] in words
    else:
        named = all(obj[k] in words for k in ("color", "shape", "size"))
    facts = " ".join(w for w in words if w in fact_words())
    return named and facts.endswith(MOTION_FORMS[obj["motion"]][:2])


@pytest.mark.parametrize(("world", "objects"), [("mnist", MNIST), ("mnist", MNIST[:1]),
                                                ("shapes", SHAPES)])  # fmt: skip
def test_noisy_wordings_keep_every_fact_in_order_and_each_object_its_own_clause(world, objects):
    from kinetoscope.data.worlds import caption_wordings

    augmenter = WordingAugmenter(NOISE, p=1.0, p_delete=0.3, p_replace=0.3, max_insert=3)
    rng = random.Random(0)
    plain = caption_wordings(world, objects)
    noisy = [augmenter(world, objects, rng) for _ in range(200)]
    assert sum(text not in plain for text in noisy) > 150  # nearly all noised
    assert any(word in text.split() for text in noisy for word in NOISE)
    for text in noisy:
        clauses = split_clauses(text)
        assert len(clauses) == len(objects), text
        for clause, obj in zip(clauses, objects, strict=True):
            assert states(clause, obj), clause  # each clause its own object's facts


def test_without_noise_the_wordings_are_the_training_ones_and_reproducible():
    from kinetoscope.data.worlds import caption_wordings

    augmenter = WordingAugmenter(NOISE, p=0.0)
    texts = [augmenter("mnist", MNIST, random.Random(i)) for i in range(50)]
    assert set(texts) <= set(caption_wordings("mnist", MNIST))
    noisy = WordingAugmenter(NOISE, p=0.5)
    first = [noisy("shapes", SHAPES, random.Random(3)) for _ in range(2)]
    assert first[0] == first[1]
    with pytest.raises(ValueError, match="vocabulary"):
        WordingAugmenter([])


def test_the_noise_vocabulary_has_no_fact_and_no_evaluation_word():
    vocab = {"left": 0, "rightward": 1, "zebra": 2, "##ing": 3, "Teapot": 4, "up": 5, "seven": 6,
             "and": 7, "of": 8, "orbit": 9, "red": 10, "large": 11}  # fmt: skip
    wrapped = SimpleNamespace(base=SimpleNamespace(encoder=SimpleNamespace(
        tokenizer=SimpleNamespace(get_vocab=lambda: vocab))))  # fmt: skip
    assert vocabulary_words(wrapped) == ["orbit", "zebra"]
    with pytest.raises(ValueError, match="tokenizer"):
        vocabulary_words(SimpleNamespace())
    # The words only the evaluation templates use are facts here too: never inserted.
    eval_only = {"leftward", "rightward", "upward", "downward", "forth", "horizontally"}
    assert eval_only <= fact_words()
    for template in MNIST_EVAL_TEMPLATES + SHAPES_EVAL_TEMPLATES:
        assert "{adv}" in template or "{to}" in template


def test_planner_batches_encode_noisy_wordings_of_the_cached_objects(fake_text_encoder):
    from kinetoscope.train.tracks import planner_batches

    cache = {
        "latents": torch.randn(3, 4, 16, 2, 2),
        "wordings": [["the digit 7 is moving up"]] * 3,
        "objects": [("mnist", [{"digit": 7, "motion": "up"}])] * 3,
    }
    tracks = torch.zeros(3, 2, 16, 2)
    seen = []

    class Spy:
        def encode(self, texts):
            seen.extend(texts)
            return fake_text_encoder.encode(texts)

    augment = (WordingAugmenter(NOISE, p=1.0, p_replace=0.5), Spy())
    first, emb, mask, got = next(planner_batches(cache, tracks, None, batch_size=8, seed=0,
                                                 augment=augment))  # fmt: skip
    assert first.shape == (8, 4, 2, 2) and emb.shape == (8, 8, 16) and got.shape == (8, 2, 16, 2)
    assert len(seen) == 8 and all(states(t, cache["objects"][0][1][0]) for t in seen)
    assert any(t != "the digit 7 is moving up" for t in seen)


def test_the_noise_vocabulary_leaves_out_the_evaluation_templates_own_words():
    from kinetoscope.train.text_augment import evaluation_words

    assert {"travels", "heads", "drifting", "numeral", "handwritten"} <= evaluation_words()
    vocab = {"travels": 0, "numeral": 1, "zebra": 2, "drifting": 3}
    wrapped = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocab))
    assert vocabulary_words(wrapped) == ["zebra"]


def test_paraphrases_state_the_same_motion_in_words_no_template_uses():
    from kinetoscope.data.worlds.captions import (
        MNIST_TRAIN_TEMPLATES,
        MOTION_FORMS,
        SHAPES_TRAIN_TEMPLATES,
    )
    from kinetoscope.train.text_augment import (
        FIELD,
        MOTION_PARAPHRASES,
        PARAPHRASE_SUBJECTS,
        evaluation_words,
    )

    def words(texts):
        return {w for t in texts for w in FIELD.sub(" ", t).replace(",", " ").split()}

    training = words(MNIST_TRAIN_TEMPLATES + SHAPES_TRAIN_TEMPLATES)
    eval_only = (evaluation_words() - training) | {
        w for f in MOTION_FORMS.values() for w in f[2].split()
    }
    eval_only -= {w for f in MOTION_FORMS.values() for w in " ".join(f[:2]).split()}
    paraphrases = {p for ps in MOTION_PARAPHRASES.values() for p in ps}
    assert set(MOTION_PARAPHRASES) == set(MOTION_FORMS)
    assert not words(paraphrases) & eval_only
    assert not words(s for ss in PARAPHRASE_SUBJECTS.values() for s in ss) & eval_only
    # paraphrase=1: every caption is a paraphrase, one clause per object, in the objects' order
    augmenter = WordingAugmenter(NOISE, p=0.0, paraphrase=1.0)
    rng = random.Random(0)
    every = [{"digit": d, "motion": m} for d, m in zip(range(6), MOTION_FORMS, strict=False)]
    texts = [augmenter("mnist", MNIST, rng) for _ in range(100)]
    texts += [augmenter("mnist", every, rng) for _ in range(100)]
    for text in texts:
        objects = MNIST if len(split_clauses(text)) == 2 else every
        clauses = split_clauses(text)
        assert len(clauses) == len(objects), text
        for clause, obj in zip(clauses, objects, strict=True):
            assert any(clause.endswith(p) for p in MOTION_PARAPHRASES[obj["motion"]]), clause
            named = clause.replace(",", " ").split()
            assert str(obj["digit"]) in named or DIGIT_WORDS[obj["digit"]] in named
    assert len(set(texts)) > 30
    with pytest.raises(ValueError, match="paraphrase"):
        WordingAugmenter(NOISE, paraphrase=1.5)
