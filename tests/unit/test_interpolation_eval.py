"""The interpolation benchmark: its baselines, and a whole report on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from kinetoscope.eval.interpolation import blend, format_report, hold, interpolation_report


def test_hold_and_blend_restore_the_frames_between_keyframes():
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.full((1, 2, 2, 3), 40, np.uint8)
    assert hold(frames, 2)[:, 0, 0, 0].tolist() == [0, 0, 80, 80, 160]
    assert blend(frames, 2)[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]  # linear: exact
    assert blend(frames, 4)[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160]
    assert np.array_equal(hold(frames, 4)[:4], np.repeat(frames[:1], 4, axis=0))


def test_report_compares_the_model_with_its_baselines(fake_text_encoder):
    from helpers import tiny_ldm_pipeline

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    pipe.defaults["resolution"] = 48  # room for a 28 px digit to move; the VAE is convolutional
    pipe.defaults["num_frames"] = 5  # a window that holds two keyframes 4 frames apart
    report = interpolation_report(pipe, world="mnist-1", count=2, factors=(2, 4), num_frames=9)
    methods = report["methods"]
    assert set(methods) == {
        "real clips", "round trip (whole clip)",
        *(f"{m} x{f}" for m in ("model", "hold", "blend", "round trip") for f in (2, 4)),
    }  # fmt: skip
    assert methods["real clips"]["judged"] == 1.0 and methods["real clips"]["psnr"] is None
    for factor in (2, 4):
        assert (
            methods[f"blend x{factor}"]["psnr"] > 5
            and methods[f"hold x{factor}"]["judged"] is not None
        )
        assert methods[f"round trip x{factor}"]["judged"] is None
        assert 0 <= methods[f"model x{factor}"]["judged"] <= 1
    # Holding is worse the further apart the keyframes are.
    assert methods["hold x4"]["psnr"] < methods["hold x2"]["psnr"]
    assert report["seconds_per_clip"]["x2"] > 0
    assert "| blend x2 |" in format_report(report)
    with pytest.raises(ValueError, match="do not divide"):
        interpolation_report(pipe, world="mnist-1", count=1, factors=(3,), num_frames=9)
