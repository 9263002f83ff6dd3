"""pipelines/interpolation.py: the windows of temporal interpolation cover the clip exactly."""

from __future__ import annotations

import pytest
import torch

from kinetoscope.pipelines.interpolation import WindowPlan


@pytest.mark.parametrize(
    ("num_frames", "factor", "window", "starts", "per_window"),
    [
        (9, 2, 16, [0, 1], 7),  # 8 intervals, 7 per window: the second ends on the last key
        (17, 2, 16, [0, 7, 9], 7),  # 0-7, 7-14, then 9-16 overlaps the second to end on 16
        (17, 4, 16, [0, 3, 6, 9, 12, 13], 3),
        (2, 4, 16, [0], 1),  # one interval, shorter than a window
    ],
)
def test_windows_cover_every_interval_and_end_on_the_last_keyframe(
    num_frames, factor, window, starts, per_window
):
    plan = WindowPlan.over(num_frames, factor=factor, window=window)
    assert plan.per_window == per_window and plan.starts == starts
    assert plan.length <= window and plan.starts[-1] + plan.per_window == num_frames - 1
    covered = {i for s in plan.starts for i in range(s, s + plan.per_window)}
    assert covered == set(range(num_frames - 1))


def test_context_holds_only_keyframes_and_assemble_puts_them_back():
    plan = WindowPlan.over(9, factor=2, window=8)  # 3 intervals per window: starts 0, 3, 5
    keys = torch.arange(9.0).view(1, 1, 9, 1, 1).expand(1, 2, 9, 2, 2).clone()
    context = plan.context(keys)
    assert context.shape == (3, 2, 7, 2, 2)
    mask = plan.keyframe_mask("cpu")
    assert mask.tolist() == [True, False, True, False, True, False, True]
    assert context[1, 0, mask, 0, 0].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert (context[:, :, ~mask] == 0).all()
    windows = context + (~mask).float().view(1, 1, 7, 1, 1) * torch.arange(3.0).view(3, 1, 1, 1, 1)
    out = plan.assemble(keys, windows)
    assert out.shape == (1, 2, 17, 2, 2)
    assert out[0, 0, ::2, 0, 0].tolist() == [float(i) for i in range(9)]
    # between keyframes: window 0 fills latents 1-5, window 1 (starts at 3) 7-11, window 2
    # (starts at 5) only 13-15, its overlap with window 1 (latent 11) keeping window 1's value
    assert out[0, 0, 1::2, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0]
