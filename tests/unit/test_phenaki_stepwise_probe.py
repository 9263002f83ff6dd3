"""benchmarks/phenaki_stepwise_probe.py: fresh windows decode one token time step at a time."""

from __future__ import annotations

import torch

from helpers import load_benchmark


def test_stepwise_decoding_starts_from_the_image_and_fills_every_step(fake_text_encoder):
    from pipelines.test_phenaki import make_pipe

    probe = load_benchmark("phenaki_stepwise_probe")
    image = make_pipe(fake_text_encoder)("a red circle", seed=0, num_frames=1, progress=False)
    joint = make_pipe(fake_text_encoder)("a red circle", seed=0, num_frames=7, progress=False)
    pipe = probe.make_stepwise(make_pipe(fake_text_encoder), steps_per_time=2)
    calls = []
    sample = probe.maskgit_sample

    def recording(*args, **kwargs):
        calls.append((kwargs["token_shape"], kwargs.get("decode_until")))
        return sample(*args, **kwargs)

    probe.maskgit_sample = recording
    try:
        clip = pipe("a red circle", seed=0, num_frames=7, progress=False).frames[0]
    finally:
        probe.maskgit_sample = sample
    # The image, then time steps 1, 2 and 3 of the 4-step window, each on its own.
    assert calls == [((1, 4, 4), None), ((4, 4, 4), 2), ((4, 4, 4), 3), ((4, 4, 4), 4)]
    assert clip.num_frames == 7
    # Its first frame is the image sampled alone with the same seed (the decoder is causal).
    diff = clip.frames[0].astype(int) - image.frames[0].frames[0].astype(int)
    assert abs(diff).max() <= 1
    assert not torch.equal(torch.from_numpy(clip.frames), torch.from_numpy(joint.frames[0].frames))
