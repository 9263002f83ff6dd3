"""benchmarks/image_model_probe.py: frame 0 from the image model alone, from a run folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from helpers import load_benchmark, tiny_ldm_pipeline
from kinetoscope.config import load_config
from kinetoscope.train.ldm import LDMRecipe


def test_image_model_only_switches_the_temporal_layers_off(fake_text_encoder):
    probe = load_benchmark("image_model_probe")
    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    with torch.no_grad():
        for p in pipe.unet.temporal_parameters():
            p.normal_(0, 0.3)  # trained-looking temporal layers change the output
    x, t = torch.randn(1, 4, 3, 8, 8), torch.tensor([50])
    emb, mask = fake_text_encoder.encode(["the digit 1 is moving up"])
    with torch.no_grad():
        image = pipe.unet(x, t, emb, mask, use_temporal=False)
        video = pipe.unet(x, t, emb, mask, use_temporal=True)
        probe.image_model_only(pipe)
        probed = pipe.unet(x, t, emb, mask, use_temporal=True)
    assert not torch.allclose(image, video, atol=1e-4)
    assert torch.equal(probed, image)


def test_image_model_only_draws_with_a_separate_frame_0_model(fake_text_encoder):
    """A pipeline that keeps its frame-0 image model apart is probed with that model."""
    probe = load_benchmark("image_model_probe")
    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in pipe.unet.spatial_state().items()}
    pipe.image_unet = pipe.unet.with_spatial_state(state).eval()
    x, t = torch.randn(1, 4, 1, 8, 8), torch.tensor([50])
    emb, mask = fake_text_encoder.encode(["the digit 1 is moving up"])
    with torch.no_grad():
        frame0 = pipe.image_unet(x, t, emb, mask, use_temporal=False)
        generator = pipe.unet(x, t, emb, mask, use_temporal=False)
        probed = probe.image_model_only(pipe).unet(x, t, emb, mask, use_temporal=True)
    assert not torch.allclose(frame0, generator, atol=1e-4)
    assert torch.equal(probed, frame0)


def test_image_stage_pipeline_loads_a_run_folder(tmp_path, fake_text_encoder):
    probe = load_benchmark("image_model_probe")
    pipe = tiny_ldm_pipeline(fake_text_encoder)
    pipe.vae.save_pretrained(tmp_path / "vae")
    pipe.unet.save_pretrained(tmp_path / "unet-image")
    recipe = asdict(
        load_config(LDMRecipe, Path(__file__).resolve().parents[2] / "configs" / "ldm-mnist.yaml")
    )
    recipe.update(name="tiny-run", text_encoder="fake", max_length=8, resolution=16)
    recipe["scheduler"] = {"num_train_timesteps": 100, "prediction_type": "v_prediction"}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    loaded = probe.image_stage_pipeline(tmp_path)
    assert loaded.scheduler_config["prediction_type"] == "v_prediction"
    assert loaded.defaults["model_name"] == "tiny-run"
    # the recipe's sampling section wins over the training resolution, as in a saved pipeline
    assert loaded.defaults["first_frame"] == "image" and loaded.defaults["resolution"] == 64
    for a, b in zip(loaded.unet.parameters(), pipe.unet.parameters(), strict=True):
        assert torch.equal(a, b)


class FirstFramePipe:
    """Stands in for a pipeline: for each prompt, frame 0 of the world clip it describes
    (``shift`` picks the next prompt's clip instead, a wrong frame)."""

    def __init__(self, world: str, prompts: list, *, shift: int = 0) -> None:
        from kinetoscope.data.worlds import WorldDataset

        clips = WorldDataset(world, split="test")
        self.first = {
            p: clips[(i + shift) % len(prompts)].frames[:1] for i, (p, _) in enumerate(prompts)
        }
        self.calls: list[dict] = []

    def __call__(self, prompts, *, seed, progress, **sampling):
        from types import SimpleNamespace

        from kinetoscope.video import Video

        self.calls.append(sampling)
        return SimpleNamespace(frames=[Video(self.first[p]) for p in prompts])


def test_probe_judges_the_first_frame_as_a_still(monkeypatch, capsys):
    from kinetoscope.data.worlds import eval_prompts

    probe = load_benchmark("image_model_probe")
    prompts = eval_prompts("mnist-1", split="test", count=6)
    for shift, expected in ((0, "identity 100%, count 100%, both 100%"), (1, "both 0%")):
        pipe = FirstFramePipe("mnist-1", prompts, shift=shift)
        monkeypatch.setattr(probe.kinetoscope, "load", lambda name, pipe=pipe: pipe)
        monkeypatch.setattr(probe, "image_model_only", lambda p: p)
        assert probe.main(["stand-in", "--count", "6", "--steps", "3", "--guidance", "5"]) == 0
        assert expected in capsys.readouterr().out
        assert pipe.calls[0] == {"num_frames": 1, "num_inference_steps": 3, "guidance_scale": 5.0}


def test_a_phenaki_model_draws_its_first_frame_with_its_own_steps(monkeypatch, capsys):
    from kinetoscope.data.worlds import eval_prompts

    probe = load_benchmark("image_model_probe")
    prompts = eval_prompts("shapes-1", split="test", count=4)
    pipe = FirstFramePipe("shapes-1", prompts)
    pipe.family = "phenaki"
    monkeypatch.setattr(probe.kinetoscope, "load", lambda name: pipe)
    monkeypatch.setattr(probe, "image_model_only", lambda p: 1 / 0)  # no LDM temporal layers
    assert probe.main(["stand-in", "--world", "shapes-1", "--count", "4", "--guidance", "3"]) == 0
    assert "both 100%" in capsys.readouterr().out
    assert pipe.calls[0] == {"num_frames": 1, "guidance_scale": 3.0}  # the model's own steps
