"""benchmarks/phenaki_track_probe.py compares masked prediction with and without the tracks."""

from __future__ import annotations

import pytest
import torch

from helpers import TINY_CVIVIT, load_benchmark
from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.masked import MaskedVideoTransformer
from kinetoscope.pipelines.phenaki import PhenakiPipeline

probe = load_benchmark("phenaki_track_probe")


def tiny_pipe(fake_text_encoder, *, anchor_slots: int) -> PhenakiPipeline:
    torch.manual_seed(0)
    tokenizer = CViViT(**{**TINY_CVIVIT, "image_size": 64, "patch_size": 16, "fsq_levels": (8, 5)})
    transformer = MaskedVideoTransformer(
        num_codes=40, max_time_tokens=3, height_tokens=4, width_tokens=4, text_dim=16, dim=32,
        depth=1, num_heads=2, anchor_slots=anchor_slots,
    )  # fmt: skip
    pipe = PhenakiPipeline(tokenizer=tokenizer, transformer=transformer, text_encoder="fake")
    pipe._text_encoder = fake_text_encoder
    return pipe


def test_fresh_anchors_change_nothing_and_trained_ones_do(fake_text_encoder):
    pipe = tiny_pipe(fake_text_encoder, anchor_slots=2)
    result = probe.probe(pipe, "shapes-2", clips=6)
    assert result["clips"] == 6 and 0 < result["mask_ratio"] <= 1
    assert result["with tracks, all"] == result["without, all"]  # zero-output anchors
    assert result["foreground tokens"] > 0
    with torch.no_grad():
        for anchor in pipe.transformer.anchors:
            anchor.proj_out.weight.normal_(0, 1.0)
    result = probe.probe(pipe, "shapes-2", clips=6)
    assert result["with tracks, all"] != result["without, all"]
    with pytest.raises(ValueError, match="anchor_slots"):
        probe.probe(tiny_pipe(fake_text_encoder, anchor_slots=0), "shapes-2", clips=2)
