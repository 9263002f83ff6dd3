"""The command line: help everywhere, data commands, models, errors for people."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kinetoscope.cli import build_parser, main

COMMANDS = [
    [],
    ["generate"],
    ["story"],
    ["continue"],
    ["train"],
    ["models"],
    ["data"],
    ["data", "preview"],
    ["data", "export"],
    ["eval"],
    ["compare"],
    ["bench"],
    ["doctor"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: kinetoscope" in capsys.readouterr().out


def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "kinetoscope", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "generate" in result.stdout


def test_data_export_and_preview(tmp_path):
    out = tmp_path / "clips"
    assert (
        main(
            ["data", "export", "shapes-1", "--split", "test", "--count", "3", "--out-dir", str(out)]
        )
        == 0
    )
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["video"] for r in rows] == ["0000.mp4", "0001.mp4", "0002.mp4"]
    assert set(rows[0]["objects"][0]) == {"color", "shape", "size", "motion"}
    sheet = tmp_path / "sheet.png"
    assert main(["data", "preview", "mnist-2", "-o", str(sheet), "--count", "2"]) == 0
    assert sheet.stat().st_size > 0


def test_generate_needs_prompt_or_file(capsys):
    assert main(["generate", "--model", "nope"]) == 2
    assert "PROMPT or --prompts-file" in capsys.readouterr().err


def test_unknown_model_is_explained(capsys, tmp_path):
    assert main(["generate", "a red circle", "--model", str(tmp_path / "missing")]) == 2
    assert "Known models" in capsys.readouterr().err


def test_train_rejects_unknown_recipe_keys(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "name: x\nworlds: [mnist-1]\nstages: {}\nvae: {}\nunet: {}\nscheduler: {}\nsampling: {}\nbogus: 1\n"
    )
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "bogus" in capsys.readouterr().err


def test_parser_defaults():
    args = build_parser().parse_args(["generate", "a red circle"])
    assert args.model == "ldm-mnist" and args.seed == 0 and args.output == "out.mp4"


def test_bench_measures_a_saved_model_and_its_peer(tmp_path, capsys):
    import torch
    from diffusers import DDPMScheduler

    from kinetoscope.autoencoders.vae import VideoAutoencoderKL
    from kinetoscope.diffusion.unet import VideoUNet
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

    torch.manual_seed(0)
    pipe = TextToVideoPipeline(
        vae=VideoAutoencoderKL(channels=(8, 16), latent_channels=4),
        unet=VideoUNet(
            channels=(16, 32), attention_levels=(1,), temporal_attention_levels=(1,), num_heads=2
        ),
        scheduler_config=dict(DDPMScheduler(num_train_timesteps=100).config),
        text_encoder="all-MiniLM-L6-v2",
        max_length=8,
        defaults={"num_frames": 2, "resolution": 16, "num_inference_steps": 2},
    )
    pipe.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "bench"
    code = main(
        ["bench", str(tmp_path / "tiny"), "--peer", "--repeats", "1", "--warmup", "0"]
        + ["--threads", "1", "-o", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ratio peer/ours" in printed and "default generation <= 1.5 s" in printed
    report = json.loads((out / "bench.json").read_text())
    ours, peer = report["results"]
    assert ours["system"] == "kinetoscope" and peer["system"] == "diffusers-peer"
    assert ours["steps"] == peer["steps"] == 2 and ours["num_frames"] == 2
    assert 0 < ours["seconds_per_step"] < ours["seconds_per_clip"]
    assert peer["match"]["unet_params"] > 0
    (summary,) = report["summary"]["models"]
    ratio = summary["ratios_peer_over_ours"]["seconds_per_step"]
    assert ratio == pytest.approx(peer["seconds_per_step"] / ours["seconds_per_step"])
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_continue_and_story_write_whole_videos(tmp_path, monkeypatch, fake_text_encoder):
    import numpy as np

    import kinetoscope
    from helpers import tiny_ldm_pipeline
    from kinetoscope.video import Video

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    monkeypatch.setattr(kinetoscope, "load", lambda *args, **kwargs: pipe)
    clip = Video(np.full((4, 16, 16, 3), 40, dtype=np.uint8), fps=6.0)
    clip.save(tmp_path / "clip")
    args = ["continue", str(tmp_path / "clip"), "the digit 1 is moving up", "--num-frames", "3"]
    assert main([*args, "-o", str(tmp_path / "whole"), "--quiet"]) == 0
    whole = Video.read(tmp_path / "whole")
    assert whole.num_frames == 7 and whole.metadata["continued_frames"] == 4
    assert np.array_equal(whole.frames[:4], clip.frames)  # the input, then the new frames
    assert main([*args, "-o", str(tmp_path / "new"), "--only-new", "--quiet"]) == 0
    new = Video.read(tmp_path / "new")
    assert np.array_equal(new.frames, whole.frames[4:])
    story = ["story", "a red circle", "a blue square", "--frames-per-prompt", "3"]
    interval = ["--guidance-interval", "0.5", "1"]
    assert main([*story, "--context-frames", "1", *interval, "-o", str(tmp_path / "story")]) == 0
    told = Video.read(tmp_path / "story")
    assert told.num_frames == 6 and told.metadata["context_frames"] == 1
    assert told.metadata["guidance_interval"] == [0.5, 1.0]
    args = ["generate", "a red circle", "--num-frames", "3", "--precision", "bfloat16"]
    assert main([*args, "-o", str(tmp_path / "bf16"), "--quiet"]) == 0
    assert Video.read(tmp_path / "bf16").metadata["precision"] == "bfloat16"


def test_cli_precision_choices_are_the_pipelines():
    from kinetoscope.cli import PRECISION_CHOICES
    from kinetoscope.pipelines.text_to_video import PRECISION_CHOICES as PIPELINE_CHOICES

    assert PRECISION_CHOICES == PIPELINE_CHOICES


def test_guidance_interval_is_refused_for_a_phenaki_model(monkeypatch, capsys):
    from types import SimpleNamespace

    import kinetoscope

    monkeypatch.setattr(kinetoscope, "load", lambda *a, **k: SimpleNamespace(family="phenaki"))
    args = [
        "generate",
        "a red circle",
        "--model",
        "phenaki-shapes",
        "--guidance-interval",
        "0",
        "1",
    ]
    assert main(args) == 2
    assert "applies to latent diffusion models" in capsys.readouterr().err


def test_interpolate_writes_the_video_at_a_higher_frame_rate(
    tmp_path, monkeypatch, fake_text_encoder
):
    import numpy as np

    import kinetoscope
    from helpers import tiny_ldm_pipeline
    from kinetoscope.video import Video

    pipe = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    monkeypatch.setattr(kinetoscope, "load", lambda *args, **kwargs: pipe)
    Video(np.full((3, 16, 16, 3), 90, dtype=np.uint8), fps=4.0).save(tmp_path / "clip")
    args = ["interpolate", str(tmp_path / "clip"), "--factor", "3", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "smooth")]) == 0
    smooth = Video.read(tmp_path / "smooth")
    assert smooth.num_frames == 7 and smooth.fps == 12.0
    assert smooth.metadata["interpolation_factor"] == 3
    assert main([*args, "--fps", "4", "-o", str(tmp_path / "slow")]) == 0
    assert Video.read(tmp_path / "slow").fps == 4.0
    assert main([*args[:2], "--factor", "1", "-o", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("native", [True, False])
def test_doctor_tells_the_precision_auto_picks(monkeypatch, capsys, native):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    main(["doctor"])
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "precision" in x]
    assert ("bfloat16" in line) == native and ("float32" in line) != native


@pytest.mark.parametrize("works", [True, False])
def test_doctor_tells_whether_denoisers_run_traced(monkeypatch, capsys, works):
    import torch

    from kinetoscope.nn import graphs

    assert graphs.tracing_works()  # this torch traces
    if not works:
        monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: (_ for _ in ()).throw(
            RuntimeError("no tracer")
        ))  # fmt: skip
        assert not graphs.tracing_works()
    main(["doctor"])
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "graphs" in x]
    assert ("run traced" in line) == works and ("stays eager" in line) != works


def test_generate_tells_what_the_reader_read_and_literal_turns_it_off(
    tmp_path, monkeypatch, fake_text_encoder, capsys
):
    import torch

    import kinetoscope
    from helpers import tiny_ldm_pipeline
    from kinetoscope.text.reader import PromptReader
    from kinetoscope.video import Video

    pipe = tiny_ldm_pipeline(fake_text_encoder)
    torch.manual_seed(0)
    pipe.reader = PromptReader(world="mnist", text_dim=16, members=1, width=8, threshold=0.0)
    monkeypatch.setattr("kinetoscope.text.load_text_encoder", lambda *a, **k: fake_text_encoder)
    monkeypatch.setattr(kinetoscope, "load", lambda *args, **kwargs: pipe)
    args = ["generate", "a 4 climbing", "--num-frames", "2", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "read")]) == 0
    read = pipe.read_prompts(["a 4 climbing"])[0]
    assert f"read as: {read}" in capsys.readouterr().out
    assert Video.read(tmp_path / "read").metadata["prompt_read"] == read
    assert main([*args, "--literal", "-o", str(tmp_path / "literal")]) == 0
    assert "read as" not in capsys.readouterr().out
    assert "prompt_read" not in Video.read(tmp_path / "literal").metadata


def test_generate_says_when_it_made_objects_one_by_one_and_no_compose_turns_it_off(
    tmp_path, monkeypatch, fake_text_encoder, capsys
):
    import kinetoscope
    from helpers import tiny_ldm_pipeline
    from kinetoscope.video import Video

    pipe = tiny_ldm_pipeline(fake_text_encoder)
    pipe.defaults["compose_objects"] = True
    monkeypatch.setattr(kinetoscope, "load", lambda *args, **kwargs: pipe)
    prompt = "the digit 1 is moving up and the digit 2 is moving down"
    args = ["generate", prompt, "--num-frames", "2", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "composed")]) == 0
    out = capsys.readouterr().out
    assert "made object by object: the digit 1 is moving up | the digit 2 is moving down" in out
    assert len(Video.read(tmp_path / "composed").metadata["composed_from"]) == 2
    assert main([*args, "--no-compose", "-o", str(tmp_path / "whole")]) == 0
    assert "object by object" not in capsys.readouterr().out
    assert "composed_from" not in Video.read(tmp_path / "whole").metadata
