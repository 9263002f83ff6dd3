"""benchmarks/x0_probe.py: the recorded estimates are the guided clean-clip estimates of the
solver steps asked for, one record per sampling run."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from helpers import load_benchmark


def test_clean_estimate_inverts_the_v_target_and_keeps_given_frames():
    probe = load_benchmark("x0_probe")
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                          prediction_type="v_prediction")  # fmt: skip
    x0, noise = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    t = torch.tensor([[0, 700, 700], [0, 990, 990]])
    a = sched.alphas_cumprod[t][:, None, :, None, None]
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    noisy[:, :, 0] = x0[:, :, 0]  # frame 0 given clean
    estimate = probe.clean_estimate(noisy, t, v, sched.alphas_cumprod)
    torch.testing.assert_close(estimate, x0, atol=1e-4, rtol=1e-4)
    # A frame 0 that was not given (timestep 700) is estimated, not kept.
    t[:, 0] = 700
    assert not torch.allclose(probe.clean_estimate(noisy, t, v * 0, sched.alphas_cumprod), x0)


class Toy(torch.nn.Module):
    """Prediction = input times the first value of each prompt's embedding."""

    config = {}

    def forward(self, x, timestep, emb, mask, use_temporal=True):
        return x * emb[:, :1, :1, None, None].reshape(-1, 1, 1, 1, 1)


def test_recorder_keeps_guided_predictions_at_the_asked_steps_of_each_run():
    probe = load_benchmark("x0_probe")
    recorder = probe.Recorder(Toy(), at=[0, 2], guidance=3.0)
    x = torch.ones(2, 1, 2, 2, 2)  # guided: B=1 conditional, then unconditional
    emb = torch.tensor([[[2.0]], [[1.0]]])
    mask, t = torch.ones(2, 1, dtype=torch.bool), torch.tensor([[0, 999], [0, 999]])
    for _ in range(2):  # two sampling runs: image passes, then three temporal steps
        for _ in range(3):
            recorder(x[:1], t[:1], emb[:1], mask[:1], use_temporal=False)
        for step in range(3):
            out = recorder(x * (step + 1), t, emb, mask)
            torch.testing.assert_close(out, x * (step + 1) * emb.reshape(-1, 1, 1, 1, 1))
    assert len(recorder.runs) == 2 and all(sorted(run) == [0, 2] for run in recorder.runs)
    inp, timestep, guided = recorder.runs[1][2]
    assert inp.shape[0] == 1 and torch.equal(timestep, t[:1])
    # uncond + 3 (cond - uncond) at input 3: 3 + 3 * (6 - 3)
    torch.testing.assert_close(guided, torch.full_like(inp, 12.0))


def test_sheet_puts_each_estimate_above_its_clip(tmp_path):
    import numpy as np
    from PIL import Image

    probe = load_benchmark("x0_probe")
    estimate, clip = torch.full((3, 4, 8, 8), -1.0), torch.ones(3, 4, 8, 8)
    probe.write_sheet([estimate, estimate], [clip, clip], tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape == (4 * 8, 2 * 8, 3)  # 2 prompts x 2 rows; frames 0 and 2 side by side
    assert (sheet[:8] == 0).all() and (sheet[8:16] == 255).all()
