"""benchmarks/planner_probe.py judges proposed tracks with the judge's motion rules."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from helpers import load_benchmark
from kinetoscope.data.worlds import WorldDataset
from kinetoscope.train.tracks import clip_tracks

probe = load_benchmark("planner_probe")


class ReplayPlanner:
    """Proposes each clip's true tracks, in turn (times ``sign``)."""

    def __init__(self, world: str, samples: int, sign: float) -> None:
        data = WorldDataset(world, split="test", size=samples, seed=0)
        self.tracks = [
            torch.from_numpy(clip_tracks(data[i].objects, slots=2, resolution=64))
            for i in range(samples)
        ]
        self.sign, self.calls = sign, 0

    def sample(self, first, emb, mask, generators):
        self.calls += 1
        return self.sign * self.tracks[self.calls - 1][None]


def fake_pipe(planner) -> SimpleNamespace:
    return SimpleNamespace(
        planner=planner,
        device=torch.device("cpu"),
        vae=SimpleNamespace(encode=lambda video: torch.zeros(1, 4, 1, 16, 16)),
        text_encoder=SimpleNamespace(
            encode=lambda texts: (torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool))
        ),
    )


def test_true_tracks_are_all_right_and_reversed_ones_only_for_bounces():
    for world in ("mnist-1", "shapes-2"):
        result = probe.probe(fake_pipe(ReplayPlanner(world, 12, 1.0)), world, split="test",
                             samples=12, seed=0)  # fmt: skip
        assert result["right"] == 1.0 and result["mean_px_from_true_track"] == 0.0
    result = probe.probe(fake_pipe(ReplayPlanner("mnist-1", 30, -1.0)), "mnist-1", split="test",
                         samples=30, seed=0)  # fmt: skip
    for motion, count in result["per_motion"].items():
        right, total = map(int, count.split("/"))
        assert right == (total if " and " in motion else 0), (motion, count)
    assert result["mean_px_from_true_track"] > 5.0
    assert result["every_slot_right"] == result["right"] < 1.0  # one object: both slots its own


def test_a_phenaki_planner_sees_the_first_time_steps_token_codes():
    from helpers import TINY_CVIVIT
    from kinetoscope.autoencoders.cvivit import CViViT

    tokenizer = CViViT(**{**TINY_CVIVIT, "image_size": 64, "fsq_levels": (8, 5)})
    seen = []
    planner = ReplayPlanner("mnist-1", 3, 1.0)
    sample = planner.sample
    planner.sample = lambda first, *rest: seen.append(first) or sample(first, *rest)
    pipe = fake_pipe(planner)
    del pipe.vae
    pipe.tokenizer = tokenizer
    assert probe.probe(pipe, "mnist-1", split="test", samples=3, seed=0)["right"] == 1.0
    clip = WorldDataset("mnist-1", split="test", size=3, seed=0)[0]
    video = clip.to_video()[:1].to_tensor()[None]
    codes = tokenizer.quantizer.indices_to_codes(tokenizer.encode(video)[:, 0])  # (1, h, w, 2)
    assert torch.equal(seen[0], codes.permute(0, 3, 1, 2))


def test_eval_wordings_reach_the_planner_and_every_slot_is_judged():
    from kinetoscope.data.worlds import eval_wordings

    pipe = fake_pipe(ReplayPlanner("mnist-2", 6, 1.0))
    texts = []
    encode = pipe.text_encoder.encode
    pipe.text_encoder.encode = lambda batch: (texts.extend(batch), encode(batch))[1]
    result = probe.probe(pipe, "mnist-2", split="test", samples=6, seed=0, wording="eval")
    data = WorldDataset("mnist-2", split="test", size=6, seed=0)
    assert all(t in eval_wordings("mnist", data[i].objects) for i, t in enumerate(texts))
    assert result["wording"] == "eval" and result["every_slot_right"] == 1.0
    # Both slots on the first object's track: the second object's motion is asked of nobody.
    planner = ReplayPlanner("mnist-2", 6, 1.0)
    planner.tracks = [t[[0, 0]] for t in planner.tracks]
    result = probe.probe(fake_pipe(planner), "mnist-2", split="test", samples=6, seed=0)
    assert result["every_slot_right"] == 1.0 and result["right"] < 1.0


def test_the_canonical_plan_probe_gives_the_planner_canonical_captions_only(fake_text_encoder):
    from helpers import tracked_pipeline
    from kinetoscope.data.worlds import canonical_caption, eval_prompts

    canonical_probe = load_benchmark("canonical_plan_probe")
    pipe = tracked_pipeline(fake_text_encoder)
    planned, encoded = [], []
    encode = fake_text_encoder.encode
    fake_text_encoder.encode = lambda texts: (encoded.extend(texts), encode(texts))[1]
    sample = pipe.planner.sample
    pipe.planner.sample = lambda *a, **k: (planned.append(list(encoded)), sample(*a, **k))[1]
    canonical_probe.plan_from_canonical_captions(pipe, "mnist-1", samples=4)
    prompts = eval_prompts("mnist-1", split="test", count=4, seed=0)
    held_out = prompts[1][0]  # odd prompts use held-out templates
    pipe([held_out], seed=0, progress=False)
    assert encoded[0] == held_out  # the generator reads the prompt
    assert planned[-1][-1] == canonical_caption("mnist", prompts[1][1])  # the planner, not
    assert held_out != planned[-1][-1]
