"""benchmarks/real_start_probe.py: the given frame 0 replaces the image model's, nothing else."""

from __future__ import annotations

import pytest
import torch

from helpers import load_benchmark, tracked_pipeline


def test_the_given_frame_0_replaces_the_image_models_and_the_patch_comes_off(fake_text_encoder):
    probe = load_benchmark("real_start_probe")
    pipe = tracked_pipeline(fake_text_encoder)
    prompt, run = "the digit 3 is moving left", dict(seed=0, progress=False)
    before = pipe(prompt, **run).frames[0].frames
    clips = []
    for scale in (1.0, -1.0):
        size = 16 // pipe.vae.downscale
        first = scale * torch.ones(1, 4, 1, size, size)
        seen = []
        original = pipe.unet.forward

        def spy(x, *a, seen=seen, original=original, **k):
            seen.append((k.get("use_temporal", True), x[:, :, :1].clone()))
            return original(x, *a, **k)

        pipe.unet.forward = spy
        with probe.with_real_start(pipe, first):
            clips.append(pipe(prompt, **run).frames[0].frames)
        del pipe.unet.forward
        assert "_denoise" not in vars(pipe)  # the patch is off
        # no image-model pass; every generator pass sees the given frame 0 as clean context
        assert seen and all(temporal for temporal, _ in seen)
        assert all(torch.equal(s, first.expand_as(s)) for _, s in seen)
    assert not (clips[0] == clips[1]).all()
    torch.testing.assert_close(
        torch.from_numpy(pipe(prompt, **run).frames[0].frames), torch.from_numpy(before)
    )


def test_generator_text_changes_only_the_generators_passes_and_nests(fake_text_encoder):
    probe = load_benchmark("real_start_probe")
    pipe = tracked_pipeline(fake_text_encoder)
    prompt = "the digit 3 is moving left"
    said = pipe.text_encoder.encode([prompt])[0]
    empty = pipe.text_encoder.encode([""])[0]
    for mode in probe.GENERATOR_TEXT:
        seen = []
        original = pipe._denoise

        def spy(noise, seen=seen, original=original, **options):
            seen.append((options.get("use_temporal", True), options["emb"].clone()))
            return original(noise, **options)

        pipe._denoise = spy
        first = torch.zeros(1, 4, 1, 16 // pipe.vae.downscale, 16 // pipe.vae.downscale)
        with probe.with_generator_text(pipe, mode), probe.with_real_start(pipe, first):
            pipe(prompt, seed=0, progress=False, guidance_scale=4.0)
        assert vars(pipe)["_denoise"] is spy  # both patches came off, the outer one stays
        del pipe._denoise
        (temporal, emb), *rest = seen
        assert temporal and not rest and emb.shape[0] == 2  # one guided generator pass
        cond, uncond = emb[:1, : said.shape[1]], emb[1:, : said.shape[1]]
        want_cond = empty if mode == "empty" else said
        torch.testing.assert_close(cond, want_cond[:, : cond.shape[1]])
        want_uncond = said if mode == "prompt-uncond" else empty
        torch.testing.assert_close(uncond, want_uncond[:, : uncond.shape[1]])
    with pytest.raises(ValueError, match="generator text"):
        probe.with_generator_text(pipe, "words")
