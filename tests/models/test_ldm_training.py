"""The Video LDM recipe end to end on tiny overrides (a few steps per stage), its optional
interpolation stage, and the pipeline's temporal interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kinetoscope.text
from kinetoscope.config import from_dict
from kinetoscope.diffusion.unet import VideoUNet
from kinetoscope.pipelines.text_to_video import TextToVideoPipeline
from kinetoscope.train.ldm import LDMRecipe, train_ldm
from kinetoscope.video import Video


def tiny_recipe(**stages) -> LDMRecipe:
    def stage(**extra):
        return {"steps": 2, "batch_size": 2, "lr": 1e-3, "extra": {"log_every": 1, **extra}}

    return from_dict(
        LDMRecipe,
        {
            "name": "ldm-tiny",
            "worlds": ["shapes-1"],
            "num_frames": 5,
            "resolution": 32,
            "num_latent_clips": 6,
            "vae": {"latent_channels": 4, "channels": [8, 16]},
            "unet": {
                "channels": [16, 32],
                "attention_levels": [1],
                "temporal_attention_levels": [1],
                "num_heads": 2,
            },
            "scheduler": {"num_train_timesteps": 100, "prediction_type": "v_prediction"},
            "sampling": {"num_inference_steps": 2, "guidance_scale": 2.0},
            "stages": {
                "vae": stage(),
                "vae_temporal": stage(),
                "unet_image": stage(),
                "unet_temporal": stage(context_fraction=0.5, noise_correlation=0.3),
                **{name: stage(**extra) for name, extra in stages.items()},
            },
        },
    )


@pytest.fixture
def fake_encoder(monkeypatch, fake_text_encoder):
    monkeypatch.setattr(kinetoscope.text, "load_text_encoder", lambda *a, **k: fake_text_encoder)
    return fake_text_encoder


def test_interpolation_stage_fine_tunes_only_the_trained_temporal_layers(tmp_path, fake_encoder):
    run = tmp_path / "run"
    first = TextToVideoPipeline.from_pretrained(train_ldm(tiny_recipe(), run))
    first._text_encoder = fake_encoder
    clip = first("a small red circle is moving left", seed=0, progress=False).frames[0]
    assert clip.frames.shape == (5, 32, 32, 3)  # the recipe's resolution and length

    # The same run with an interpolation stage: stages 1-5 resume as they ended, then stage 6
    # moves on from stage 5's temporal layers, and no spatial weight changes.
    recipe = tiny_recipe(unet_interpolation={"interpolation_fraction": 1.0})
    second = TextToVideoPipeline.from_pretrained(train_ldm(recipe, run))
    before = dict(first.unet.named_parameters())
    temporal = set(first.unet.temporal_parameter_names())
    moved = {n for n, p in second.unet.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= temporal
    after = dict(second.unet.named_parameters())
    fresh = dict(VideoUNet.from_pretrained(run / "unet-image").named_parameters())
    from_trained = sum((after[n] - before[n]).abs().sum() for n in temporal)
    from_fresh = sum((after[n] - fresh[n]).abs().sum() for n in temporal)
    assert from_trained < from_fresh / 10
    assert second.defaults["noise_correlation"] == 0.3  # inherited from stage 5
    second._text_encoder = fake_encoder
    smooth = second.interpolate(clip, factor=2, seed=0, progress=False)
    assert smooth.num_frames == 9 and smooth.fps == 2 * clip.fps

    with pytest.raises(ValueError, match="keep unet_temporal's noise_correlation"):
        train_ldm(tiny_recipe(unet_interpolation={"noise_correlation": 0.0}), tmp_path / "r2")
    with pytest.raises(ValueError, match="unknown stage"):
        train_ldm(tiny_recipe(unet_interpolaton={}), tmp_path / "r3")


def test_a_separate_interpolation_model_leaves_the_generator_as_stage_5_made_it(
    tmp_path, fake_encoder
):
    """separate: true trains the interpolation stage's temporal layers apart; the saved
    pipeline generates with stage 5's UNet and interpolates with the new layers."""
    import dataclasses

    run = tmp_path / "run"
    plain = TextToVideoPipeline.from_pretrained(train_ldm(tiny_recipe(), run))
    recipe = tiny_recipe(unet_interpolation={"interpolation_fraction": 1.0, "separate": True})
    recipe = dataclasses.replace(recipe, weights_dtype="float16")
    pipe = TextToVideoPipeline.from_pretrained(train_ldm(recipe, run))
    assert (run / "pipeline" / "interpolation" / "temporal.safetensors").is_file()
    for (name, a), b in zip(plain.unet.named_parameters(), pipe.unet.parameters(), strict=True):
        assert b.dtype == torch.float32
        assert torch.equal(a.half().float(), b), name  # stage 5's generator, stored in float16
    temporal = plain.unet.temporal_parameter_names()
    interp = dict(pipe.interpolation_unet.named_parameters())
    moved = {n for n, p in pipe.unet.named_parameters() if not torch.equal(p, interp[n])}
    assert moved and moved <= temporal  # same image model, its own temporal layers
    pipe._text_encoder = fake_encoder
    clip = pipe("a small red circle is moving left", seed=0, progress=False).frames[0]
    assert pipe.interpolate(clip, factor=2, seed=0, progress=False).num_frames == 9

    with pytest.raises(ValueError, match="separate must be true or false"):
        train_ldm(tiny_recipe(unet_interpolation={"separate": "yes"}), tmp_path / "r2")
    with pytest.raises(ValueError, match="weights_dtype"):
        dataclasses.replace(recipe, weights_dtype="int8")


def test_a_joint_video_stage_trains_spatial_weights_and_keeps_the_image_model_for_frame_0(
    tmp_path, fake_encoder
):
    """spatial_lr_scale > 0 trains the spatial weights on clips too; the pipeline keeps the
    image model's own weights apart, saves and reloads them, and draws frame 0 with them."""
    import dataclasses

    run = tmp_path / "run"
    recipe = tiny_recipe(unet_temporal={"context_fraction": 0.5, "spatial_lr_scale": 0.5})
    recipe = dataclasses.replace(recipe, sampling={**recipe.sampling, "first_frame": "image"})
    pipe = TextToVideoPipeline.from_pretrained(train_ldm(recipe, run))
    assert (run / "pipeline" / "image" / "spatial.safetensors").is_file()
    image = VideoUNet.from_pretrained(run / "unet-image")
    trained, kept = dict(pipe.unet.named_parameters()), dict(pipe.image_unet.named_parameters())
    temporal = pipe.unet.temporal_parameter_names()
    for name, weight in image.named_parameters():
        if name not in temporal:
            assert torch.equal(kept[name], weight), name  # the image model, as stage 4 left it
    moved = {n for n in trained if n not in temporal and not torch.equal(trained[n], kept[n])}
    assert moved  # the clips trained spatial weights as well
    assert all(torch.equal(trained[n], kept[n]) for n in temporal)  # one set of temporal layers

    # Image-first sampling draws frame 0 with the image model alone, the clip with the
    # generator; swapping the generator in for the image model changes the clip.
    pipe._text_encoder, pipe.graphs.after = fake_encoder, None
    calls = []
    for model in (pipe.unet, pipe.image_unet):
        forward = model.forward

        def spy(*args, use_temporal=True, model=model, forward=forward):
            calls.append((model is pipe.image_unet, use_temporal))
            return forward(*args, use_temporal=use_temporal)

        model.forward = spy
    prompt = "a small red circle is moving left"
    clip = pipe(prompt, seed=0, progress=False, precision="float32").frames[0].frames
    assert set(calls) == {(True, False), (False, True)}
    pipe.image_unet = pipe.unet
    other = pipe(prompt, seed=0, progress=False, precision="float32").frames[0].frames
    assert not np.array_equal(clip, other)

    with pytest.raises(ValueError, match="spatial_lr_scale must be 0"):
        train_ldm(
            tiny_recipe(unet_interpolation={"separate": True, "spatial_lr_scale": 0.1}),
            tmp_path / "r2",
        )
    with pytest.raises(ValueError, match="spatial_lr_scale must be >= 0"):
        train_ldm(tiny_recipe(unet_temporal={"spatial_lr_scale": -1.0}), tmp_path / "r3")


def test_a_temporal_stage_can_grow_a_trained_model(tmp_path, fake_encoder):
    """init_temporal_from: a wider level 0 starts from another run's trained temporal layers."""
    import dataclasses
    import shutil

    first_run, grown_run = tmp_path / "first", tmp_path / "grown"
    recipe = tiny_recipe()
    first = TextToVideoPipeline.from_pretrained(train_ldm(recipe, first_run))
    grown_run.mkdir()
    for part in ("vae", "unet-image"):  # the same autoencoder and image model
        shutil.copytree(first_run / part, grown_run / part)
    shutil.copy(first_run / "latents.pt", grown_run / "latents.pt")
    stages = dict(recipe.stages)
    stages["unet_temporal"] = {
        **stages["unet_temporal"],
        "lr": 1e-5,
        "extra": {
            **stages["unet_temporal"]["extra"],
            "init_temporal_from": str(first_run / "pipeline" / "unet"),
        },
    }
    wider = dataclasses.replace(
        recipe, unet={**recipe.unet, "wide_temporal_levels": [0]}, stages=stages
    )
    grown = TextToVideoPipeline.from_pretrained(train_ldm(wider, grown_run))
    assert grown.unet.config.wide_temporal_levels == [0]
    trained = first.unet.state_dict()
    fresh = VideoUNet(**grown.unet.config).state_dict()
    near = far = 0.0
    for name, value in grown.unet.state_dict().items():
        if name in grown.unet.temporal_parameter_names() and value.shape == trained[name].shape:
            near += (value - trained[name]).abs().sum().item()
            far += (value - fresh[name]).abs().sum().item()
    assert near < far / 10  # it moved on from the first run, not from scratch


def test_a_first_frame_stage_adds_a_frame_0_model_and_changes_nothing_else(tmp_path, fake_encoder):
    """unet_first_frame tunes a copy of the image model on the clips' first frames only; the
    pipeline draws frame 0 with it, and a finished run given the stage afterwards keeps every
    other weight (generator, autoencoder) as it was."""
    import dataclasses
    import shutil

    plain_run, run = tmp_path / "plain", tmp_path / "run"
    recipe = tiny_recipe()
    recipe = dataclasses.replace(recipe, sampling={**recipe.sampling, "first_frame": "image"})
    plain = TextToVideoPipeline.from_pretrained(train_ldm(recipe, plain_run))
    assert plain.image_unet is plain.unet
    shutil.copytree(plain_run, run)
    shutil.rmtree(run / "pipeline")
    with_stage = tiny_recipe(unet_first_frame={"clips": 10})
    with_stage = dataclasses.replace(with_stage, sampling=recipe.sampling)
    pipe = TextToVideoPipeline.from_pretrained(train_ldm(with_stage, run))
    assert (run / "pipeline" / "image" / "spatial.safetensors").is_file()

    # Its data: the first frames of the first 10 training clips, as the clip cache codes them.
    first = torch.load(run / "first-frames.pt", weights_only=False)
    clips = torch.load(run / "latents.pt", weights_only=False)
    assert first["latents"].shape[0] == 10 and first["latents"].shape[2] == 1
    assert torch.allclose(
        first["latents"][:6, :, 0].float(), clips["latents"][:, :, 0].float(), atol=2e-3
    )
    assert first["wordings"][:6] == clips["wordings"]

    for name, weight in plain.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[name], weight), name  # the generator
    for name, weight in plain.vae.state_dict().items():
        assert torch.equal(pipe.vae.state_dict()[name], weight), name
    image = VideoUNet.from_pretrained(run / "unet-image").state_dict()
    temporal = pipe.unet.temporal_parameter_names()
    kept = pipe.image_unet.state_dict()
    moved = [n for n in image if n not in temporal and not torch.equal(kept[n], image[n])]
    assert moved  # tuned on from the image model
    assert all(torch.equal(kept[n], pipe.unet.state_dict()[n]) for n in temporal)

    pipe._text_encoder, plain._text_encoder = fake_encoder, fake_encoder
    pipe.graphs.after = plain.graphs.after = None
    prompt = "a small red circle is moving left"
    ours = pipe(prompt, seed=0, progress=False, precision="float32").frames[0].frames
    before = plain(prompt, seed=0, progress=False, precision="float32").frames[0].frames
    assert not np.array_equal(ours[0], before[0])  # frame 0 comes from the tuned model

    with pytest.raises(ValueError, match="clips must be a positive integer"):
        train_ldm(tiny_recipe(unet_first_frame={"clips": 0}), tmp_path / "bad")


def test_an_image_stage_can_continue_a_saved_image_model(tmp_path, fake_encoder):
    """unet_image's init_from: the stage starts from a saved image model, not from scratch."""
    import dataclasses
    import shutil

    from safetensors.torch import load_file

    first_run, second_run = tmp_path / "first", tmp_path / "second"
    train_ldm(tiny_recipe(), first_run)
    second_run.mkdir()
    shutil.copytree(first_run / "vae", second_run / "vae")
    shutil.copy(first_run / "latents.pt", second_run / "latents.pt")
    saved = first_run / "unet-image"
    # Another seed: started afresh, the second image model would begin somewhere else.
    second = dataclasses.replace(tiny_recipe(unet_image={"init_from": str(saved)}), seed=1)
    train_ldm(second, second_run)

    def weights(run):
        return load_file(next((run / "unet-image").glob("*.safetensors")))

    before, after = weights(first_run), weights(second_run)
    torch.manual_seed(1)
    model = VideoUNet(**VideoUNet.load_config(saved))
    fresh = model.state_dict()  # the seed-1 start
    temporal = model.temporal_parameter_names()  # (saved too, but not continued)
    spatial = [k for k in fresh if k not in temporal and not torch.equal(before[k], fresh[k])]
    assert spatial
    near = sum((after[k] - before[k]).abs().sum().item() for k in spatial)
    far = sum((after[k] - fresh[k]).abs().sum().item() for k in spatial)
    assert near < far / 5  # two more steps from the saved model, not two from scratch


def test_interpolation_keeps_its_keyframes_and_windows_see_only_theirs(
    tmp_path, fake_text_encoder, monkeypatch
):
    from helpers import tiny_ldm_pipeline

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)  # 4-frame window
    with torch.no_grad():  # temporal layers that mix frames (they start as the image model)
        for param in pipe.unet.temporal_parameters():
            param.add_(torch.randn_like(param) * 0.2)
    frames = torch.rand(7, 16, 16, 3).mul(255).to(torch.uint8).numpy()
    video = Video(frames, fps=4.0, metadata={"prompt": "a red circle"})
    decoded = []
    decode = pipe.vae.decode_chunked
    monkeypatch.setattr(
        pipe.vae, "decode_chunked", lambda z, **kw: decoded.append(z.clone()) or decode(z, **kw)
    )
    out = pipe.interpolate(video, factor=3, seed=0, progress=False)
    assert out.num_frames == 19 and out.fps == 12.0 and out.metadata["prompt"] == "a red circle"
    assert out.metadata["interpolation_factor"] == 3
    keys = pipe.vae.encode(video.to_tensor()[None])
    latents = decoded[-1]
    assert torch.equal(latents[:, :, ::3], keys)  # the keyframes are the input's latents
    # Windows span one keyframe interval each (4-frame window, factor 3): changing the last
    # input frame changes only the last interval's new frames.
    changed = frames.copy()
    changed[-1] = 255 - changed[-1]
    pipe.interpolate(
        Video(changed, fps=4.0), factor=3, seed=0, prompt="a red circle", progress=False
    )
    other = decoded[-1]
    assert torch.equal(other[:, :, :16], latents[:, :, :16])
    assert not torch.allclose(other[:, :, 16:18], latents[:, :, 16:18])


def test_interpolation_prompts_follow_a_storys_segments(fake_text_encoder):
    from kinetoscope.pipelines.interpolation import window_prompt

    story = Video(
        torch.zeros(8, 4, 4, 3, dtype=torch.uint8).numpy(),
        metadata={
            "prompt": "a / b",
            "segments": [
                {"prompt": "a", "start": 0, "end": 4},
                {"prompt": "b", "start": 4, "end": 8},
            ],
        },
    )
    assert window_prompt(story, None, 0, 3) == "a"
    assert window_prompt(story, None, 3, 6) == "b"
    assert window_prompt(story, None, 7, 8) == "b"
    assert window_prompt(story, "c", 0, 3) == "c"
    assert window_prompt(Video(story.frames), None, 0, 3) == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": 1}, "factor must be an integer >= 2"),
        ({"factor": 2.0}, "factor must be an integer >= 2"),
        ({"factor": 4}, "use at most 3"),
        ({"prompt": 3}, "prompt must be a string"),
    ],
)
def test_interpolation_rejects_bad_arguments(fake_text_encoder, kwargs, message):
    from helpers import tiny_ldm_pipeline

    pipe = tiny_ldm_pipeline(fake_text_encoder)
    video = Video(torch.zeros(3, 16, 16, 3, dtype=torch.uint8).numpy())
    with pytest.raises(ValueError, match=message):
        pipe.interpolate(video, progress=False, **kwargs)
    with pytest.raises(ValueError, match="at least 2 frames"):
        pipe.interpolate(video[:1], progress=False)


def test_interpolation_windows_in_batches_match_one_batch(fake_text_encoder, monkeypatch):
    import kinetoscope.pipelines.interpolation as interpolation_module
    from helpers import tiny_ldm_pipeline

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    video = Video(torch.rand(6, 16, 16, 3).mul(255).to(torch.uint8).numpy(), fps=4.0)
    whole = pipe.interpolate(video, factor=3, prompt="a red circle", seed=1, progress=False)
    monkeypatch.setattr(
        interpolation_module, "INTERPOLATION_BATCH", 2
    )  # 5 windows: batches of 2, 2 and 1
    parts = pipe.interpolate(video, factor=3, prompt="a red circle", seed=1, progress=False)
    assert whole.num_frames == parts.num_frames == 16
    assert abs(whole.frames.astype(int) - parts.frames.astype(int)).max() <= 1


def test_a_decoder_stage_fine_tunes_the_decoder_and_keeps_the_latent_space(tmp_path, fake_encoder):
    """vae_decoder: a run holding a trained autoencoder in vae-temporal/ gets only its decoder
    trained; encoder weights and latent statistics stay, so latents (and the UNet) still fit."""
    import shutil

    from kinetoscope.autoencoders.vae import VideoAutoencoderKL

    first_run, tuned_run = tmp_path / "first", tmp_path / "tuned"
    first = TextToVideoPipeline.from_pretrained(train_ldm(tiny_recipe(), first_run))
    tuned_run.mkdir()
    shutil.copytree(first_run / "vae", tuned_run / "vae-temporal")
    for part in ("unet-image", "stage-unet_temporal"):  # the finished UNet stages resume
        shutil.copytree(first_run / part, tuned_run / part)
    shutil.copy(first_run / "latents.pt", tuned_run / "latents.pt")
    tuned = TextToVideoPipeline.from_pretrained(
        train_ldm(tiny_recipe(vae_decoder={"diff_weight": 0.5}), tuned_run)
    )
    decoder = {id(p) for p in tuned.vae.decoder_parameters()}
    before = dict(first.vae.named_parameters())
    moved = {n for n, p in tuned.vae.named_parameters() if not torch.equal(p, before[n])}
    decoder_names = {n for n, p in tuned.vae.named_parameters() if id(p) in decoder}
    assert moved and moved <= decoder_names
    assert any(n.startswith("dec_blocks") for n in moved)  # spatial decoder weights too
    assert any(n.startswith("dec_temporal") for n in moved)
    assert tuned.vae.config.scaling_factor == first.vae.config.scaling_factor
    assert tuned.vae.config.latent_shift == first.vae.config.latent_shift
    for name, value in first.unet.state_dict().items():  # the UNet is the first run's
        assert torch.equal(value, tuned.unet.state_dict()[name]), name
    kept = VideoAutoencoderKL.from_pretrained(tuned_run / "vae-temporal")
    assert all(torch.equal(p, before[n]) for n, p in kept.named_parameters())


def test_a_clause_recipe_trains_and_samples_on_clause_encoded_prompts(
    tmp_path, monkeypatch, fake_text_encoder
):
    """text_clauses: true reaches the training's encoder and the saved pipeline's."""
    import dataclasses
    import json

    from kinetoscope.text.clauses import ClauseTextEncoder

    calls = []

    def load(*args, clauses=False, **kwargs):
        calls.append(clauses)
        return ClauseTextEncoder(fake_text_encoder) if clauses else fake_text_encoder

    monkeypatch.setattr(kinetoscope.text, "load_text_encoder", load)
    recipe = dataclasses.replace(tiny_recipe(), text_clauses=True)
    saved = train_ldm(recipe, tmp_path / "run")
    assert calls == [True]
    assert json.loads((saved / "model_index.json").read_text())["text_clauses"] is True
    pipe = TextToVideoPipeline.from_pretrained(saved)
    assert pipe.text_clauses and isinstance(pipe.text_encoder, ClauseTextEncoder)
    assert calls == [True, True]
    clip = pipe(
        "a red circle is moving left and a blue square is moving up", seed=0, progress=False
    )
    assert clip.frames[0].frames.shape == (5, 32, 32, 3)

    plain = train_ldm(tiny_recipe(), tmp_path / "plain")  # the default: whole prompts
    assert "text_clauses" not in json.loads((plain / "model_index.json").read_text())
    assert not TextToVideoPipeline.from_pretrained(plain).text_clauses
