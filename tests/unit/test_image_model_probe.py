"""benchmarks/image_model_probe.py: frame 0 from the image model alone, from a run folder."""

from __future__ import annotations

import json

import torch

from helpers import load_benchmark, tiny_ldm_pipeline


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


def test_image_stage_pipeline_loads_a_run_folder(tmp_path, fake_text_encoder):
    probe = load_benchmark("image_model_probe")
    pipe = tiny_ldm_pipeline(fake_text_encoder)
    pipe.vae.save_pretrained(tmp_path / "vae")
    pipe.unet.save_pretrained(tmp_path / "unet-image")
    recipe = {
        "name": "tiny-run",
        "scheduler": {"num_train_timesteps": 100, "prediction_type": "v_prediction"},
        "text_encoder": "fake",
        "max_length": 8,
        "resolution": 16,
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    loaded = probe.image_stage_pipeline(tmp_path)
    assert loaded.scheduler_config["prediction_type"] == "v_prediction"
    assert loaded.defaults["resolution"] == 16 and loaded.defaults["model_name"] == "tiny-run"
    for a, b in zip(loaded.unet.parameters(), pipe.unet.parameters(), strict=True):
        assert torch.equal(a, b)
