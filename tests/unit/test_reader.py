"""The prompt reader (kinetoscope.text.reader): what it trains on, how it reads, how pipelines
use it."""

from __future__ import annotations

import pytest
import torch

from conftest import FakeTextEncoder
from helpers import tracked_pipeline
from kinetoscope.data.worlds import is_held_out
from kinetoscope.data.worlds.captions import DIGIT_WORDS
from kinetoscope.text import DEFAULT_TEXT_ENCODER, load_text_encoder
from kinetoscope.text.reader import PromptReader, build_reader, reader_clauses
from kinetoscope.train.reader import train_reader_stage
from kinetoscope.train.text_augment import WordingAugmenter


def test_training_clauses_are_training_compositions_cut_as_prompts_are():
    augmenter = WordingAugmenter(["zebra", "violin", "harbor"], p=0.5, paraphrase=0.3)
    noise = ["zebra", "violin", "harbor"]
    clauses, objects = reader_clauses(
        ["mnist-1", "mnist-2"], augmenter, count=400, seed=3, noise_words=noise
    )
    assert len(clauses) == len(objects) == 400
    assert (clauses, objects) == reader_clauses(
        ["mnist-1", "mnist-2"], augmenter, count=400, seed=3, noise_words=noise
    )
    facts = [o for o in objects if o is not None]
    unread = [c for c, o in zip(clauses, objects, strict=True) if o is None]
    assert 10 < len(unread) < 80  # about a tenth are random words
    assert all(set(c.split()) <= set(noise) for c in unread)
    assert not any(is_held_out("mnist", o) for o in facts)  # no held-out composition
    assert all(
        " and " not in c or "and" in o["motion"] for c, o in zip(clauses, objects, strict=True) if o
    )
    for clause, obj in zip(clauses, objects, strict=True):
        if obj is not None:  # each clause names its own digit (as a numeral or a word)
            words = clause.replace(",", " ").split()
            assert str(obj["digit"]) in words or DIGIT_WORDS[obj["digit"]] in words, clause


def test_members_are_averaged_and_survive_save_and_load(tmp_path):
    torch.manual_seed(0)
    reader = PromptReader(world="shapes", text_dim=16, members=3, width=8, queries=2)
    emb, mask = FakeTextEncoder().encode(["a small red circle", "a large blue square moves"])
    probs = reader(emb, mask)
    assert set(probs) == {"color", "shape", "size", "motion"}
    logits = reader.logits(emb, mask)
    for name, p in probs.items():
        assert p.shape == (2, len(reader.fields[name]))
        torch.testing.assert_close(p.sum(-1), torch.ones(2))
        torch.testing.assert_close(p, logits[name].softmax(-1).mean(0))
        assert not torch.allclose(logits[name][0], logits[name][1])  # members differ
    reader.save_pretrained(tmp_path / "reader")
    again = PromptReader.from_pretrained(tmp_path / "reader")
    for name, p in again(emb, mask).items():
        torch.testing.assert_close(p, probs[name])


@pytest.fixture(scope="module")
def small_reader():
    """A reader of the mnist world trained briefly on the real encoder."""
    return build_reader(
        ["mnist-1", "mnist-2"], text_encoder=DEFAULT_TEXT_ENCODER, max_length=32,
        count=3000, steps=600, members=2, seed=0,
    )  # fmt: skip


def test_a_trained_reader_rewrites_world_prompts_and_leaves_others(small_reader):
    encoder = load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=32, layers=(-1,))
    prompts = [
        "a 7 going up",
        "a 3 going left and the digit five moves down",
        "a photo of a cat asleep on a sofa",
    ]
    readings = small_reader.read(prompts, encoder)
    assert [r.text for r in readings] == [
        "the digit 7 is moving up",
        "the digit 3 is moving left and the digit 5 is moving down",
        "a photo of a cat asleep on a sofa",  # not the world's: kept as it is
    ]
    assert readings[1].objects == [{"digit": 3, "motion": "left"}, {"digit": 5, "motion": "down"}]
    assert readings[2].objects is None and readings[2].confidence < 0.9 <= readings[0].confidence


def test_the_pipeline_gives_the_model_what_the_reader_read(monkeypatch, tmp_path):
    fake = FakeTextEncoder()
    pipe = tracked_pipeline(fake, planner=False)
    torch.manual_seed(0)
    pipe.reader = PromptReader(world="mnist", text_dim=16, members=2, width=8, threshold=0.0)
    monkeypatch.setattr("kinetoscope.text.load_text_encoder", lambda name, **kw: FakeTextEncoder())
    given = []
    encode = fake.encode

    def spy(texts):
        given.append(list(texts))
        return encode(texts)

    monkeypatch.setattr(fake, "encode", spy)
    prompts = ["a 3 going down", "the seven climbs"]
    read = pipe.read_prompts(prompts)
    assert all(r.startswith("the digit ") and " is moving " in r for r in read)  # canonical
    reads = []
    read_all = pipe.reader.read
    monkeypatch.setattr(pipe.reader, "read", lambda p, e: reads.append(list(p)) or read_all(p, e))
    out = pipe([*prompts, "a 5 going up"], seed=0, progress=False, guidance_scale=1.0)
    assert reads == [["a 5 going up"]]  # each prompt read once, however often it is asked for
    out.frames.pop()
    assert given[-1][:2] == read  # the denoiser was given the reader's captions
    assert [v.metadata["prompt"] for v in out.frames] == prompts
    assert [v.metadata["prompt_read"] for v in out.frames] == read
    pipe.defaults["read_prompts"] = False  # the switch: prompts as they are
    out = pipe(prompts, seed=0, progress=False, guidance_scale=1.0)
    assert given[-1] == prompts and "prompt_read" not in out.frames[0].metadata
    pipe.defaults["read_prompts"] = True
    pipe.save_pretrained(tmp_path / "pipe")
    again = type(pipe).from_pretrained(tmp_path / "pipe")
    again._text_encoder = FakeTextEncoder()
    assert again.reader is not None and again.read_prompts(prompts) == read


def test_the_reader_stage_refuses_unknown_keys():
    from kinetoscope.config import load_config
    from kinetoscope.train.ldm import LDMRecipe

    recipe = load_config(
        LDMRecipe, "configs/ldm-mnist.yaml",
        ["stages.prompt_reader={steps: 10, batch_size: 8, lr: 0.001, extra: {colour: 1}}"],
    )  # fmt: skip
    with pytest.raises(ValueError, match="colour"):
        train_reader_stage(recipe)


def test_the_reader_stage_trains_once_and_a_resumed_run_reads_it_back(tmp_path, monkeypatch):
    from kinetoscope.config import load_config
    from kinetoscope.train.ldm import LDMRecipe

    stage = "{steps: 20, batch_size: 8, lr: 0.002, extra: {count: 200, members: 2, threshold: 0.8}}"
    recipe = load_config(LDMRecipe, "configs/ldm-mnist.yaml", [f"stages.prompt_reader={stage}"])
    reader = train_reader_stage(recipe, tmp_path)
    assert reader.config.world == "mnist" and reader.config.members == 2
    assert reader.config.threshold == 0.8 and reader.config.text_layers == [-1]

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run trains the reader again")

    monkeypatch.setattr("kinetoscope.text.reader.build_reader", refuse)
    again = train_reader_stage(recipe, tmp_path)
    for name, value in reader.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value)
