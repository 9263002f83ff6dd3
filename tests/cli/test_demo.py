"""The web demo: its session does the work (no gradio needed), its page wires the tabs."""

from __future__ import annotations

import numpy as np
import pytest

from kinetoscope.demo import DemoSession
from kinetoscope.video import Video

PROMPT = "the digit 1 is moving up"


@pytest.fixture
def session(tmp_path, fake_text_encoder) -> DemoSession:
    """A session whose "ldm-mnist" is a tiny random LDM (prompts change its output)."""
    from helpers import tiny_ldm_pipeline

    demo = DemoSession(out_dir=tmp_path / "out")
    demo._pipes["ldm-mnist"] = tiny_ldm_pipeline(fake_text_encoder, conv_out_std=0.2)
    return demo


def test_generate_writes_the_clip_with_its_settings(session):
    seen = []
    path, settings = session.generate(
        "ldm-mnist", f"  {PROMPT} ", "blurry", 3, 2, 2.5, 5, "mp4",
        progress=lambda fraction, text: seen.append((fraction, text)),
    )  # fmt: skip
    video = Video.read(path)
    assert path.endswith("0001.mp4") and video.num_frames == 5
    assert settings["prompt"] == PROMPT and settings["negative_prompt"] == "blurry"
    assert settings["seed"] == 3 and settings["steps"] == 2 and settings["guidance_scale"] == 2.5
    assert seen == [(0.5, "step 1 of 2"), (1.0, "step 2 of 2")]


def test_generate_is_reproducible_by_seed_and_keeps_model_defaults(session):
    first, settings = session.generate("ldm-mnist", PROMPT, "", 7, None, None, None, "webm")
    again, _ = session.generate("ldm-mnist", PROMPT, "", 7, None, None, None, "webm")
    other, _ = session.generate("ldm-mnist", PROMPT, "", 8, None, None, None, "webm")
    assert first != again and first.endswith(".webm")  # each call writes its own file
    frames = [Video.read(p).frames.astype(int) for p in (first, again, other)]
    assert np.abs(frames[0] - frames[1]).max() <= 2  # same seed (codec rounding aside)
    assert np.abs(frames[0] - frames[2]).mean() > 1  # another seed, another video
    assert settings["steps"] == 2 and settings["num_frames"] == 4  # the model's defaults


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "   ", "write a prompt"),
        ("num_frames", 0, "frames must be a whole number from 1"),
        ("steps", 2.5, "steps must be a whole number"),
        ("seed", -1, "seed must be a whole number"),
        ("fmt", "avi", "format must be one of mp4, webm"),
    ],
)
def test_generate_rejects_bad_fields(session, field, value, message):
    fields = {"prompt": PROMPT, "seed": 0, "steps": None, "num_frames": None, "fmt": "mp4"}
    with pytest.raises(ValueError, match=message):
        session.generate("ldm-mnist", **{**fields, field: value})


def test_unknown_model_is_reported(session):
    with pytest.raises(FileNotFoundError, match="no model named"):
        session.generate("no-such-model", PROMPT)


def test_story_is_one_video_of_every_line(session):
    path, settings = session.story("ldm-mnist", "a red circle\n\n a blue square \n", 3, fmt="mp4")
    assert Video.read(path).num_frames == 6
    assert settings["prompts"] == ["a red circle", "a blue square"]
    with pytest.raises(ValueError, match="one prompt per line"):
        session.story("ldm-mnist", " \n ", 3)
    with pytest.raises(ValueError, match="at most 8 prompts"):
        session.story("ldm-mnist", "\n".join(["a red circle"] * 9), 3)


def test_continue_returns_the_upload_then_new_frames(session, tmp_path):
    clip = Video(np.full((4, 16, 16, 3), 40, dtype=np.uint8), fps=6.0)
    upload = clip.save(tmp_path / "upload")  # a folder of PNG frames: lossless
    path, settings = session.continue_video("ldm-mnist", str(upload), PROMPT, 3)
    whole = Video.read(path)
    assert whole.num_frames == 7 and settings["continued_frames"] == 4
    assert np.abs(whole.frames[:4].astype(int) - 40).max() <= 3  # mp4 rounding of the input
    with pytest.raises(ValueError, match="upload a video"):
        session.continue_video("ldm-mnist", None, PROMPT, 3)


def test_interpolate_raises_the_frame_rate_of_the_upload(session, tmp_path):
    clip = Video(np.full((3, 16, 16, 3), 40, dtype=np.uint8), fps=4.0)
    upload = clip.save(tmp_path / "upload")
    path, settings = session.interpolate("ldm-mnist", str(upload), 3, "", fmt="webm")
    video = Video.read(path)
    assert video.num_frames == 7 and video.fps == 12.0 and settings["interpolation_factor"] == 3
    with pytest.raises(ValueError, match="factor must be a whole number from 2"):
        session.interpolate("ldm-mnist", str(upload), 1)
    with pytest.raises(ValueError, match="upload a video"):
        session.interpolate("ldm-mnist", "", 2)
    session._pipes["tokens-only"] = object()  # a model without the method
    with pytest.raises(ValueError, match="model tokens-only cannot interpolate"):
        session.interpolate("tokens-only", str(upload), 2)
    with pytest.raises(ValueError, match="model tokens-only has no story mode"):
        session.story("tokens-only", "a red circle", 3)


def test_page_has_four_tabs_whose_buttons_run_the_session(session):
    gr = pytest.importorskip("gradio")
    from kinetoscope.demo import build_demo

    page = build_demo(session)
    tabs = [c["props"].get("label") for c in page.config["components"] if c["type"] == "tabitem"]
    assert tabs == ["Generate", "Story", "Continue", "Interpolate"]
    names = {f.api_name: f for f in page.fns.values()}
    assert {"generate", "story", "continue", "interpolate"} <= set(names)
    generate = names["generate"]
    path, settings = generate.fn("ldm-mnist", PROMPT, "", 5, None, None, 3, "mp4")
    assert Video.read(path).num_frames == 3 and settings["seed"] == 5
    with pytest.raises(gr.Error, match="write a prompt"):
        generate.fn("ldm-mnist", "", "", 0, None, None, None, "mp4")


def test_served_page_answers_a_client(session):
    """The page served over HTTP, called as a user's script would call it."""
    pytest.importorskip("gradio")
    from gradio_client import Client

    from kinetoscope.demo import build_demo

    page = build_demo(session).queue()
    _, url, _ = page.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        client = Client(url, verbose=False)
        video, settings = client.predict(
            "ldm-mnist", PROMPT, "", 4, None, None, None, "mp4", api_name="/generate"
        )
        assert Video.read(video).num_frames == 4 and settings["seed"] == 4
        _, story = client.predict(
            "ldm-mnist", "a red circle\na blue square", 2, "", 0, None, None, "webm",
            api_name="/story",
        )  # fmt: skip
        assert story["prompts"] == ["a red circle", "a blue square"]
    finally:
        page.close()
