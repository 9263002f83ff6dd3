"""A trajectory planner that reads other hidden states of the text encoder than the denoiser
(``TrajectoryPlanner(text_layers=...)``): the pipelines encode its prompts so."""

from __future__ import annotations

import torch

from conftest import FakeTextEncoder
from helpers import tracked_pipeline
from kinetoscope.diffusion.planner import TrajectoryPlanner


class WideEncoder(FakeTextEncoder):
    """Stands in for the encoder with ``layers=(0, -1)``: twice as wide."""

    fingerprint = "fake-32"
    dim = 32


def _own_planner() -> TrajectoryPlanner:
    torch.manual_seed(1)
    return TrajectoryPlanner(latent_channels=4, text_dim=32, num_frames=4, width=16, layers=1,
                             heads=2, text_layers=[0, -1])  # fmt: skip


def test_the_planner_reads_its_own_layers_and_the_denoiser_the_last(
    fake_text_encoder, monkeypatch, tmp_path
):
    pipe = tracked_pipeline(fake_text_encoder)
    assert pipe.planner_text(["a 3 moving up"]) is None  # reads the denoiser's encoding
    pipe.planner = _own_planner()
    loads = []

    def load(name, **options):
        loads.append((name, options))
        return WideEncoder()

    monkeypatch.setattr("kinetoscope.text.load_text_encoder", load)
    seen, passes = [], []
    sample = pipe.planner.sample

    def spy(first, emb, mask, generators, **kwargs):
        seen.append((emb.clone(), mask.clone()))
        return sample(first, emb, mask, generators, **kwargs)

    denoise = pipe._denoise

    def spy_denoise(noise, **options):
        passes.append(options["emb"].shape[-1])
        return denoise(noise, **options)

    pipe.planner.sample, pipe._denoise = spy, spy_denoise
    prompts = ["the digit 3 is moving down", "a 5 going left"]
    pipe(prompts, seed=0, progress=False)
    assert loads == [
        (pipe.text_encoder_name,
         {"max_length": pipe.max_length, "clauses": pipe.text_clauses, "layers": (0, -1)})
    ]  # fmt: skip
    want, want_mask = WideEncoder().encode(prompts)  # the prompts only, no negatives
    assert len(seen) == 1
    torch.testing.assert_close(seen[0][0], want)
    assert torch.equal(seen[0][1], want_mask)
    assert passes and set(passes) == {fake_text_encoder.dim}
    # saved and loaded, the planner still says which layers it reads
    pipe.planner.sample = sample
    pipe.save_pretrained(tmp_path / "pipe")
    reloaded = TrajectoryPlanner.from_pretrained(tmp_path / "pipe" / "planner")
    assert reloaded.config.text_layers == [0, -1] and reloaded.config.text_dim == 32
