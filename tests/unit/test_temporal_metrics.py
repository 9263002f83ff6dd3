import numpy as np
import pytest

from kinetoscope.eval.temporal import flicker, flicker_error, psnr


def test_flicker_values():
    still = np.full((4, 8, 8, 3), 100, np.uint8)
    assert flicker(still) == 0.0
    blink = still.copy()
    blink[1::2] = 110
    assert flicker(blink) == pytest.approx(10.0)
    assert flicker(still[:1]) == 0.0


def test_flicker_error_and_psnr():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    assert flicker_error(clip, clip) == 0.0
    shifted = np.clip(clip.astype(int) + 5, 0, 255).astype(np.uint8)
    assert psnr(clip, clip) == float("inf")
    assert 20 < psnr(shifted, clip) < 40
    with pytest.raises(ValueError):
        flicker(clip[0])
