"""train/latents.py: latent batches with augmented captions, and the clip facts they come from."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kinetoscope.config import load_config
from kinetoscope.data.worlds import caption_wordings
from kinetoscope.train.latents import caption_augment, latent_batches, swap_motions
from kinetoscope.train.ldm import LDMRecipe
from kinetoscope.train.recipe import StageConfig, _world_datasets, clip_at, clip_objects

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _recipe() -> LDMRecipe:
    recipe = load_config(LDMRecipe, CONFIGS / "ldm-mnist.yaml")
    return replace(recipe, num_frames=3, resolution=32)


def test_clip_objects_are_the_rendered_clips_facts_in_cache_order():
    datasets = _world_datasets(_recipe())  # mnist-1 and mnist-2, taken in turn
    objects = clip_objects(datasets, 9)
    assert [len(objs) for _, objs in objects[:2]] == [1, 2]
    for i, (world, objs) in enumerate(objects):
        clip = clip_at(datasets, i)
        assert world == clip.world
        assert objs == [{k: o[k] for k in ("digit", "motion")} for o in clip.objects]


class RecordingEncoder:
    """Encodes a caption as its length; remembers every batch it was given."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(list(captions))
        emb = torch.tensor([[float(len(c))] for c in captions])[:, None, :]  # (B, 1, 1)
        return emb, torch.ones(len(captions), 1, dtype=torch.bool)


def _cache(n: int) -> dict:
    latents = torch.arange(n, dtype=torch.float16)[:, None, None, None, None].expand(n, 1, 3, 2, 2)
    return {"latents": latents.clone(), "wordings": [[f"plain {i}"] for i in range(n)]}


def test_augmented_batches_word_each_clip_by_its_own_objects_and_keep_dropout():
    n = 6
    objects = [("mnist", [{"digit": i, "motion": "up"}]) for i in range(n)]

    def augmenter(world, objs, rng):
        assert world == "mnist"
        return f"aug {objs[0]['digit']} {rng.random():.3f}"

    encoder = RecordingEncoder()
    bank = lambda captions: pytest.fail("the bank is not used with augment")  # noqa: E731
    batches = latent_batches(_cache(n), bank, batch_size=8, frames=3, dropout=0.25, seed=1,
                             augment=(augmenter, encoder, objects))  # fmt: skip
    dropped = 0
    for _ in range(20):
        latents, emb, _mask = next(batches)
        captions = encoder.seen[-1]
        for clip, caption, e in zip(latents[:, 0, 0, 0, 0].long(), captions, emb, strict=True):
            if caption == "":
                dropped += 1
            else:
                assert caption.startswith(f"aug {int(clip)} ")  # the batch's own clip
            assert e.item() == len(caption)
    assert 20 < dropped < 70  # about 40 of 160 captions dropped to ""


def test_plain_batches_use_the_cached_wordings_through_the_bank():
    seen = []

    def bank(captions):
        seen.extend(captions)
        return torch.zeros(len(captions), 1, 1), torch.ones(len(captions), 1, dtype=torch.bool)

    latents, *_ = next(latent_batches(_cache(5), bank, batch_size=4, frames=3, dropout=0.0, seed=0))
    assert seen == [f"plain {int(i)}" for i in latents[:, 0, 0, 0, 0]]


def _stage(**extra) -> StageConfig:
    return StageConfig(steps=1, batch_size=1, lr=1e-3, minutes=1.0, extra=extra)


def test_caption_augment_only_when_asked_and_only_for_the_recipe_clips():
    recipe = _recipe()
    datasets = _world_datasets(recipe)
    cache = {"wordings": [caption_wordings(*clip_objects(datasets, 4)[i]) for i in range(4)]}
    assert caption_augment(recipe, _stage(text_augment=0.0), cache) is None
    augmenter, _encoder, objects = caption_augment(recipe, _stage(text_paraphrase=1.0), cache)
    assert objects == clip_objects(datasets, 4)
    assert augmenter.paraphrase == 1.0
    text = augmenter(*objects[0], random.Random(0))
    assert text not in cache["wordings"][0]  # a paraphrase, not a template wording
    shuffled = {"wordings": cache["wordings"][1:] + cache["wordings"][:1]}
    with pytest.raises(ValueError, match="rebuild the cache"):
        caption_augment(recipe, _stage(text_augment=0.5), shuffled)


def test_swap_motions_changes_only_the_motion_and_at_the_asked_rate():
    from kinetoscope.data.worlds.common import MOTIONS

    objs = [{"digit": 3, "motion": "up"}, {"digit": 5, "motion": "left and right"}]
    rng = random.Random(0)
    assert swap_motions(objs, 0.0, rng) is objs
    swapped = [swap_motions(objs, 0.5, rng) for _ in range(400)]
    for new in swapped:
        assert [o["digit"] for o in new] == [3, 5]
        assert all(o["motion"] in MOTIONS for o in new)
    changed = [sum(new[j]["motion"] != o["motion"] for new in swapped) for j, o in enumerate(objs)]
    assert all(150 < c < 250 for c in changed)  # about 200 of 400 each
    assert objs == [{"digit": 3, "motion": "up"}, {"digit": 5, "motion": "left and right"}]


def test_motion_swap_words_other_motions_only_in_batches_with_tracks():
    n = 6
    objects = [("mnist", [{"digit": i, "motion": "up"}]) for i in range(n)]
    encoder = RecordingEncoder()
    tracks = torch.zeros(n, 2, 3, 2)
    batches = latent_batches(
        _cache(n), None, batch_size=8, frames=3, dropout=0.0, seed=3, tracks=tracks,
        track_dropout=0.3, augment=(lambda w, objs, rng: objs[0]["motion"], encoder, objects),
        motion_swap=1.0,
    )  # fmt: skip
    with_tracks = without = 0
    for _ in range(40):
        *_, given = next(batches)
        motions = encoder.seen[-1]
        if given is None:
            without += 1
            assert set(motions) == {"up"}  # no tracks: the true motion
        else:
            with_tracks += 1
            assert "up" not in motions  # p = 1: every object worded with another motion
    assert with_tracks > 15 and without > 3
    with pytest.raises(ValueError, match="motion_swap needs"):
        next(latent_batches(_cache(n), None, batch_size=2, frames=3, dropout=0.0, seed=0,
                            motion_swap=0.5))  # fmt: skip
