"""Story-mode evaluation: prompts, join measure, and the protocol on ground-truth stories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinetoscope.data.worlds import render_clip
from kinetoscope.eval import story as story_eval
from kinetoscope.video import Video


def test_story_prompts_keep_the_digit_and_change_the_motion():
    stories = story_eval.story_prompts(20, segments=3, seed=1)
    assert len(stories) == 20 and stories == story_eval.story_prompts(20, segments=3, seed=1)
    for story in stories:
        digits = {objs[0]["digit"] for _, objs in story}
        motions = [objs[0]["motion"] for _, objs in story]
        assert len(digits) == 1 and all(a != b for a, b in zip(motions, motions[1:], strict=False))
        assert all(str(objs[0]["digit"]) in prompt for prompt, objs in story)
    with pytest.raises(ValueError):
        story_eval.story_prompts(0)


def test_frame_differences_separate_joins_from_inside():
    frames = np.zeros((6, 4, 4, 3), np.uint8)
    frames[3:] = 90  # a jump between frame 2 and frame 3
    joins, inside = story_eval.frame_differences(frames, [3])
    assert joins == [90.0] and inside == [0.0] * 4


class GroundTruthStories:
    """Stands in for a Phenaki pipeline: each segment is a rendered world clip of its prompt
    (the renderer restarts the trajectory, so the joins jump as a bad model's would)."""

    def __init__(self, stories, swap_digit_in_last=False):
        self.expected = {tuple(p for p, _ in s): s for s in stories}
        self.swap = swap_digit_in_last

    def story(self, prompts, *, frames_per_prompt, seed, progress, **_):
        story = self.expected[tuple(prompts)]
        clips, spans = [], []
        for i, (_, objects) in enumerate(story):
            objects = [dict(objects[0])]
            if self.swap and i == len(story) - 1:
                objects[0]["digit"] = (objects[0]["digit"] + 1) % 10
            clip = render_clip("mnist", objects, seed=seed, num_frames=frames_per_prompt)
            spans.append({"start": i * frames_per_prompt, "end": (i + 1) * frames_per_prompt})
            clips.append(clip.frames)
        return Video(np.concatenate(clips), fps=8.0, metadata={"segments": spans, "steps": 0})


@pytest.mark.parametrize("swap", [False, True])
def test_protocol_on_ground_truth_stories(tmp_path, swap):
    stories = story_eval.story_prompts(6, seed=0)
    report = story_eval.evaluate_story(
        GroundTruthStories(stories, swap_digit_in_last=swap),
        stories=6,
        seed=0,
        out_dir=tmp_path,
    )
    segment, identity = report["segment_accuracy"], report["identity_kept"]
    assert segment["n"] == 18 and identity["n"] == 6
    if swap:  # the last segment shows another digit: wrong against its prompt, identity lost
        assert identity["accuracy"] == 0.0
        assert segment["accuracy"] <= 2 / 3 + 1e-9
    else:
        assert segment["accuracy"] >= 0.9 and identity["accuracy"] >= 5 / 6
    joins = report["joins"]  # the renderer restarts each trajectory: visible jumps
    assert joins["mean_difference_at_joins"] > joins["mean_difference_inside"]
    saved = json.loads((tmp_path / "story_report.json").read_text())
    assert saved["segment_accuracy"] == segment
    assert "digit kept across all segments" in (tmp_path / "story_report.md").read_text()
    assert (tmp_path / "stories.png").is_file()


def test_protocol_runs_on_an_ldm_pipeline(tmp_path, fake_text_encoder, one_thread):
    """Both families have story mode; the protocol drives a (tiny, random) Video LDM too."""
    from helpers import tiny_ldm_pipeline

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    report = story_eval.evaluate_story(
        pipe, stories=2, frames_per_prompt=4, seed=0, out_dir=tmp_path, steps=2
    )
    assert report["segment_accuracy"]["n"] == 6 and report["identity_kept"]["n"] == 2
    assert [len(row["join_differences"]) for row in report["stories"]] == [2, 2]
    assert report["protocol"]["frames_per_prompt"] == 4
