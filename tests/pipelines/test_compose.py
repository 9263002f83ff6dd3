"""Object-wise composition (``compose_objects``): a prompt about two objects made one object at
a time and merged by the pixel-wise maximum."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import tiny_ldm_pipeline
from kinetoscope.pipelines.compose import (
    CANDIDATE_SEED_STRIDE,
    CLAUSE_SEED_STRIDE,
    compose_clauses,
    content_overlap,
    max_composite,
    object_clauses,
)
from kinetoscope.video import Video

TWO = "the digit 7 is moving up and the digit 2 is moving left and right"


@pytest.fixture
def pipe(fake_text_encoder):
    return tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)


def test_object_clauses_cut_between_objects_not_inside_a_motion():
    assert object_clauses([TWO, "the digit 3 is moving up and down"]) == [
        ["the digit 7 is moving up", "the digit 2 is moving left and right"],
        ["the digit 3 is moving up and down"],
    ]


def test_max_composite_keeps_the_brighter_pixel_and_refuses_other_shapes():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = np.zeros((2, 4, 4, 3), np.uint8)
    a[0, 0, 0] = (200, 10, 0)
    b[0, 0, 0] = (100, 50, 0)
    b[1, 3, 3] = 255
    merged = max_composite([Video(a), Video(b)])
    assert merged[0, 0, 0].tolist() == [200, 50, 0] and merged[1, 3, 3].tolist() == [255] * 3
    assert merged.sum() == 200 + 50 + 3 * 255
    with pytest.raises(ValueError, match="different shapes"):
        max_composite([Video(a), Video(a[:1])])


def test_two_objects_are_the_maximum_of_their_clauses_made_alone(pipe):
    composed = pipe(
        [TWO, "the digit 4 is moving down"], seed=5, compose_objects=True, progress=False
    )
    first, second = (
        pipe(clause, seed=seed, compose_objects=False, progress=False).frames[0].frames
        for clause, seed in (
            ("the digit 7 is moving up", 5),
            ("the digit 2 is moving left and right", 5 + CLAUSE_SEED_STRIDE),
        )
    )
    video = composed.frames[0]
    assert np.array_equal(video.frames, np.maximum(first, second))
    assert not np.array_equal(first, second)  # two different clips were merged
    assert video.metadata["prompt"] == TWO and video.metadata["seed"] == 5
    assert video.metadata["composed_from"] == [
        "the digit 7 is moving up",
        "the digit 2 is moving left and right",
    ]
    # A one-object prompt of the same batch is the sample it would be alone (seed 5 + 1).
    alone = pipe("the digit 4 is moving down", seed=6, progress=False).frames[0]
    assert np.array_equal(composed.frames[1].frames, alone.frames)
    assert "composed_from" not in composed.frames[1].metadata


def test_composition_follows_the_models_default_and_can_be_turned_off(pipe):
    plain = pipe(TWO, seed=1, progress=False).frames[0]
    assert "composed_from" not in plain.metadata  # the tiny model's default is off
    pipe.defaults["compose_objects"] = True
    on = pipe(TWO, seed=1, progress=False).frames[0]
    off = pipe(TWO, seed=1, compose_objects=False, progress=False).frames[0]
    assert "composed_from" in on.metadata and np.array_equal(off.frames, plain.frames)
    assert not np.array_equal(on.frames, off.frames)


def test_content_overlap_counts_touching_content_over_the_frames():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = np.zeros((2, 16, 16, 3), np.uint8)
    a[:, 2:6, 2:6] = 255
    b[:, 10:14, 10:14] = 255  # 4 px apart: grown by 2 px each, they do not meet
    assert content_overlap(a, b) == 0
    b[1, 7:9, 7:9] = 255  # one frame with content 1 px from a's: touching after growth
    touching = content_overlap(a, b)
    b[0, 2:6, 2:6] = 255  # on top of a in frame 0: more
    assert 0 < touching < content_overlap(a, b)
    dim = np.full_like(b, 30)  # below the content threshold everywhere
    assert content_overlap(a, dim) == 0


class _Squares:
    """A stand-in pipeline: clause "left" draws a square at the left, any other clause a
    square whose place depends on the seed; records what it was asked."""

    device = "cpu"
    defaults = {"compose_candidates": 3}

    def __init__(self):
        self.calls = []

    def read_prompts(self, prompts):
        return list(prompts)

    def __call__(self, clauses, *, negative_prompt, seed, generator):
        from kinetoscope.pipelines.base import PipelineOutput

        self.calls.append((list(clauses), list(seed)))
        videos = []
        for clause, s in zip(clauses, seed, strict=True):
            frames = np.zeros((2, 16, 16, 3), np.uint8)
            column = 0 if clause == "left" else (s // CANDIDATE_SEED_STRIDE) % 3 * 5
            frames[:, 6:10, column : column + 4] = 200
            videos.append(Video(frames, metadata={"prompt": clause, "seed": s}))
        return PipelineOutput(frames=videos)


def test_later_clauses_keep_the_candidate_that_overlaps_least():
    pipe = _Squares()
    (video,) = compose_clauses(pipe, pipe, ["left and other"], [""], seed=0, generator=None)
    offsets = [CLAUSE_SEED_STRIDE + m * CANDIDATE_SEED_STRIDE for m in range(3)]
    assert pipe.calls == [(["left"], [0]), (["other"] * 3, offsets)]  # clause after clause
    # Candidate 0 lands on the left square, candidate 1 touches it, candidate 2 is clear.
    assert video.metadata["clause_seeds"] == [0, offsets[2]]
    assert video.frames[0, 8].max(-1).nonzero()[0].tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
