"""Clause-wise text encoding: the split, the packing, and what it keeps apart."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kinetoscope.data.worlds import WorldDataset
from kinetoscope.data.worlds.captions import caption_wordings, eval_wordings
from kinetoscope.text import DEFAULT_TEXT_ENCODER, load_text_encoder
from kinetoscope.text.clauses import ClauseTextEncoder, split_clauses


@pytest.mark.parametrize("world", ["mnist-2", "shapes-2"])
@pytest.mark.parametrize("wordings", [caption_wordings, eval_wordings])
def test_world_captions_split_into_their_objects_phrases(world, wordings):
    # Every training and eval template, every motion (paired ones included: "left and right",
    # "back and forth vertically"): a two-object caption splits into the two one-object ones.
    data = WorldDataset(world, split="train")
    seen_motions = set()
    for index in range(60):
        objects = data.sample_objects(index)
        seen_motions |= {o["motion"] for o in objects}
        whole = wordings(world, objects)
        alone = [wordings(world, [o]) for o in objects]
        for k, caption in enumerate(whole):
            assert split_clauses(caption) == [a[k] for a in alone], caption
    assert {"left and right", "up and down"} <= seen_motions


def test_texts_without_a_clause_break_stay_whole():
    for text in ["", "a red circle is moving left and right", "the digit 7 goes up and down"]:
        assert split_clauses(text) == [text]
    assert split_clauses("a red circle, and a blue square") == ["a red circle", "a blue square"]
    assert split_clauses("and a red circle") == ["and a red circle"]  # nothing before it
    assert split_clauses("a cat and") == ["a cat and"]  # nothing after it


def test_packing_lays_the_clauses_tokens_end_to_end(fake_text_encoder, caplog):
    encoder = ClauseTextEncoder(fake_text_encoder)  # fake: one token per word, L = 8
    assert encoder.fingerprint == "fake-16:clauses" and encoder.dim == 16
    one = ["a red circle moving left", ""]
    assert all(
        torch.equal(a, b)
        for a, b in zip(encoder.encode(one), fake_text_encoder.encode(one), strict=True)
    )

    emb, mask = encoder.encode(["red circle left and blue square up"])
    first, first_mask = fake_text_encoder.encode(["red circle left"])
    second, _ = fake_text_encoder.encode(["blue square up"])
    assert mask[0].tolist() == [True] * 6 + [False] * 2
    assert torch.equal(emb[0, :3], first[0, :3]) and torch.equal(emb[0, 3:6], second[0, :3])
    assert torch.equal(emb[0, 6:], torch.zeros(2, 16)) and first_mask[0].sum() == 3

    with caplog.at_level(logging.WARNING):
        emb, mask = encoder.encode(["one two three four five and six seven eight nine"])
    assert mask.all() and "were cut" in caplog.text  # the first 8 of 5 + 4 tokens, warned
    assert torch.equal(emb[0, 5:], fake_text_encoder.encode(["six seven eight"])[0][0, :3])
    assert encoder.encode([])[0].shape == (0, 8, 16)


def test_real_encoder_keeps_each_objects_tokens_to_itself():
    # The point of the option: with the contextual MiniLM, the first object's tokens change
    # when only the second object's motion changes; encoded by clause, they do not.
    whole = load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=32)
    clauses = load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=32, clauses=True)
    assert clauses.fingerprint == whole.fingerprint + ":clauses"
    assert load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=32, clauses=True) is clauses
    a = "a small red circle is moving left and a large blue square is moving up"
    b = "a small red circle is moving left and a large blue square is moving down"
    first = whole.encode(["a small red circle is moving left"])[1][0].sum()  # its token count
    for encoder, same in ((whole, False), (clauses, True)):
        emb, mask = encoder.encode([a, b])
        assert torch.equal(mask[0], mask[1])
        assert torch.equal(emb[0, :first], emb[1, :first]) == same
        assert not torch.equal(emb[0], emb[1])  # the second object's motion is still there
    single = "a small red circle is moving left and right"
    np.testing.assert_array_equal(clauses.encode([single])[0], whole.encode([single])[0])
