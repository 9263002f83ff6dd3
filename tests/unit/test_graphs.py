"""Traced denoiser graphs: exact, made only for recurring signatures, dropped on new weights."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.nn.graphs import DenoiserGraphs, trace
from kinetoscope.nn.precision import autocast_twin

UNET = dict(
    channels=(16, 32),
    attention_levels=(1,),
    temporal_attention_levels=(0, 1),
    spacetime_attention_levels=(1,),
    wide_temporal_levels=(0,),
    anchor_levels=(0,),  # its extra query/key channels and padded values trace too
    num_heads=2,
    text_dim=16,
)


def unet() -> VideoUNet:
    torch.manual_seed(0)
    model = VideoUNet(**UNET).eval()
    with torch.no_grad():  # non-zero temporal and final outputs, so every path counts
        for p in [*model.temporal_parameters(), model.conv_out.weight]:
            p.normal_(0, 0.05)
    return model


def inputs(frames: int, *, per_frame: bool):
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, frames, 8, 8, generator=generator)
    emb = torch.randn(2, 6, 16, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    if per_frame:  # frame 0 given clean, as in image-first sampling
        timestep = torch.full((2, frames), 700)
        timestep[:, 0] = 0
    else:
        timestep = torch.tensor(700)
    return sample, timestep, emb, mask


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize(("frames", "per_frame"), [(1, False), (4, False), (4, True)])
def test_a_traced_graph_computes_exactly_what_the_model_does(bf16, frames, per_frame):
    model = unet()
    if bf16:
        model = autocast_twin(model, torch.bfloat16)
    args = inputs(frames, per_frame=per_frame)
    use_temporal = frames > 1
    autocast = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        eager = model(*args, use_temporal=use_temporal)
        graph = trace(model, args, use_temporal)
        with torch.jit.optimized_execution(False):
            traced = graph(*args)
            # new values of the same signature, not the ones it was traced with
            other = tuple(a + 1 if a.is_floating_point() else a for a in args)
            traced_other = graph(*other)
        eager_other = model(*other, use_temporal=use_temporal)
    assert torch.equal(traced, eager)
    assert torch.equal(traced_other, eager_other)
    assert not torch.equal(traced, traced_other)


def run_pass(graphs: DenoiserGraphs, model, args, *, calls: int = 2):
    denoiser = graphs.for_pass(model)
    with torch.inference_mode():
        return [denoiser(*args, use_temporal=True) for _ in range(calls)]


def test_a_signature_is_traced_only_after_its_first_passes_and_then_reused(monkeypatch):
    import kinetoscope.nn.graphs as graphs_module

    made = []
    real_trace = graphs_module.trace
    monkeypatch.setattr(
        graphs_module, "trace", lambda *a: made.append(a[1][0].shape) or real_trace(*a)
    )
    model, graphs = unet(), DenoiserGraphs(after=2)
    four, five = inputs(4, per_frame=True), inputs(5, per_frame=True)
    expected = run_pass(DenoiserGraphs(after=None), model, four)
    for _ in range(2):  # the first two passes stay eager
        eager = run_pass(graphs, model, four)
        assert all(torch.equal(a, b) for a, b in zip(eager, expected, strict=True))
    assert made == []
    third = run_pass(graphs, model, four)  # the third traces, once, and uses it
    assert all(torch.equal(a, b) for a, b in zip(third, expected, strict=True))
    assert made == [four[0].shape]
    run_pass(graphs, model, five)  # another signature has its own count
    run_pass(graphs, model, four)
    assert made == [four[0].shape]


def test_graphs_are_dropped_when_the_weights_change_and_never_made_with_gradients(monkeypatch):
    import kinetoscope.nn.graphs as graphs_module

    made = []
    real_trace = graphs_module.trace
    monkeypatch.setattr(graphs_module, "trace", lambda *a: made.append(1) or real_trace(*a))
    model, graphs, args = unet(), DenoiserGraphs(after=0), inputs(4, per_frame=False)
    before = run_pass(graphs, model, args)[0]
    assert made == [1]
    with torch.no_grad():
        model.conv_out.bias.add_(1.0)  # an in-place update, as an optimizer makes
    after = run_pass(graphs, model, args)[0]
    assert made == [1, 1]  # traced again for the new weights
    assert torch.allclose(after, before + 1.0, atol=1e-5)
    denoiser = graphs.for_pass(model)
    with torch.enable_grad():
        out = denoiser(*args, use_temporal=True)
    assert out.requires_grad and made == [1, 1]  # training calls stay eager
    off = DenoiserGraphs(after=None)
    run_pass(off, model, args)
    run_pass(off, model, args)
    assert made == [1, 1]


def test_a_pipeline_traces_from_its_fifth_clip_with_the_same_frames(fake_text_encoder):
    from helpers import tiny_ldm_pipeline
    from kinetoscope.nn.graphs import AFTER

    assert AFTER == 4
    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    eager = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    eager.graphs.after = None
    for precision in ("float32", "bfloat16"):
        for clip in range(AFTER + 1):
            options = dict(seed=clip, progress=False, precision=precision, first_frame="image")
            video = pipe("a red circle", **options)
            reference = eager("a red circle", **options)
            assert np.array_equal(video.frames[0].frames, reference.frames[0].frames)
    states = list(pipe.graphs._models.values())
    assert len(states) == 2  # the float32 UNet and its bf16 twin
    assert all(len(state["graphs"]) == 2 for state in states)  # image pass and video pass
    assert not any(state["graphs"] for state in eager.graphs._models.values())
