"""The web demo: ``kinetoscope demo`` (needs the ``[demo]`` extra, which installs gradio).

Four tabs, one per way of making a video: *Generate* (one prompt, one clip), *Story* (one
prompt per line, one continuous video), *Continue* (extend an uploaded clip under a prompt) and
*Interpolate* (an uploaded clip at a higher frame rate; latent diffusion models).
Every shipped or saved model can be picked; each is loaded once and kept.

The work is done by `DemoSession`, which knows nothing of gradio: its methods take the form's
values and return the written file and the settings used, so they are tested (and usable) on
their own. `build_demo` only lays out the page and turns a `ValueError` into a message on it.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinetoscope.hub import DEFAULT_MODEL, list_models, load, require
from kinetoscope.video import Video

FORMATS = ("mp4", "webm")  # what a browser plays in the video player
MAX_FRAMES = 64  # per clip or story segment: about 8 s at the models' 8 fps
MAX_STORY_PROMPTS = 8
EXAMPLES = (  # (model, prompt): one per shipped model family and world
    ("ldm-mnist", "the digit 7 is moving up"),
    ("ldm-mnist", "the digit 3 is moving left and right"),
    ("ldm-shapes", "a small red circle is moving right"),
    ("phenaki-mnist", "the digit 5 is moving down"),
)
STORY_EXAMPLE = "the digit 3 is moving left\nthe digit 3 is moving up\nthe digit 3 is moving right"

# Called as progress(fraction in [0, 1], description) while a video is made.
Progress = Callable[[float, str], None]


def _text(value: str | None) -> str | None:
    """A form's text field: stripped, and None when empty."""
    value = (value or "").strip()
    return value or None


def _count(value: float | int | None, name: str, low: int, high: int) -> int | None:
    """A form's whole-number field (gradio sends floats): None when empty, else checked."""
    if value is None or value == "":
        return None
    if float(value) != int(float(value)) or not low <= int(float(value)) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value}")
    return int(float(value))


class DemoSession:
    """Loads models on first use and writes each video the demo makes into ``out_dir``."""

    def __init__(self, *, device: str = "cpu", out_dir: str | Path | None = None) -> None:
        self.device = device
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="kinetoscope-demo-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pipes: dict[str, Any] = {}
        self._lock = threading.Lock()  # gradio runs callbacks in worker threads
        self._written = 0

    def models(self) -> list[str]:
        """Names of every model the demo offers (shipped ones and $KINETOSCOPE_MODELS)."""
        return list(list_models())

    def pipeline(self, model: str) -> Any:
        """The pipeline of ``model``, loaded once."""
        with self._lock:
            if model not in self._pipes:
                self._pipes[model] = load(model, device=self.device)
            return self._pipes[model]

    def _options(
        self,
        negative_prompt: str | None,
        seed: float | int | None,
        steps: float | int | None,
        guidance: float | None,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Sampling keywords shared by the three tabs; empty fields keep the model's defaults."""
        options: dict[str, Any] = {
            "seed": _count(seed, "seed", 0, 2**31 - 1) or 0,
            "negative_prompt": _text(negative_prompt),
            "num_inference_steps": _count(steps, "steps", 1, 200),
            "guidance_scale": None if guidance is None else float(guidance),
            "progress": False,
        }
        if progress is not None:
            options["callback"] = lambda step, total, _latents: progress(
                min((step + 1) / max(total, 1), 1.0), f"step {step + 1} of {total}"
            )
        return {k: v for k, v in options.items() if v is not None}

    def _write(self, video: Video, fmt: str) -> tuple[str, dict[str, Any]]:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        with self._lock:
            self._written += 1
            path = self.out_dir / f"{self._written:04d}.{fmt}"
        video.save(path)
        return str(path), dict(video.metadata)

    def generate(
        self,
        model: str,
        prompt: str,
        negative_prompt: str | None = None,
        seed: float | int | None = 0,
        steps: float | int | None = None,
        guidance: float | None = None,
        num_frames: float | int | None = None,
        fmt: str = "mp4",
        progress: Progress | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """One clip of ``prompt`` -> (its file, the settings it was made with)."""
        text = _text(prompt)
        if text is None:
            raise ValueError("write a prompt first, e.g. 'the digit 7 is moving up'")
        options = self._options(negative_prompt, seed, steps, guidance, progress)
        frames = _count(num_frames, "frames", 1, MAX_FRAMES)
        if frames is not None:
            options["num_frames"] = frames
        video = self.pipeline(model)(text, **options).frames[0]
        return self._write(video, fmt)

    def story(
        self,
        model: str,
        prompts: str,
        frames_per_prompt: float | int = 16,
        negative_prompt: str | None = None,
        seed: float | int | None = 0,
        steps: float | int | None = None,
        guidance: float | None = None,
        fmt: str = "mp4",
        progress: Progress | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """One continuous video from one prompt per line -> (its file, its settings)."""
        lines = [line.strip() for line in (prompts or "").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise ValueError("write the story: one prompt per line")
        if len(lines) > MAX_STORY_PROMPTS:
            raise ValueError(f"a story has at most {MAX_STORY_PROMPTS} prompts, got {len(lines)}")
        pipe = require(self.pipeline(model), "story", model)
        frames = _count(frames_per_prompt, "frames per prompt", 2, MAX_FRAMES) or 16
        options = self._options(negative_prompt, seed, steps, guidance, progress)
        video = pipe.story(lines, frames_per_prompt=frames, **options)
        return self._write(video, fmt)

    def continue_video(
        self,
        model: str,
        video_path: str | None,
        prompt: str,
        num_frames: float | int = 16,
        negative_prompt: str | None = None,
        seed: float | int | None = 0,
        steps: float | int | None = None,
        guidance: float | None = None,
        fmt: str = "mp4",
        progress: Progress | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The uploaded clip followed by ``num_frames`` new ones -> (its file, its settings)."""
        from kinetoscope.pipelines.base import prepend_input

        if not video_path:
            raise ValueError("upload a video to continue")
        text = _text(prompt)
        if text is None:
            raise ValueError("write a prompt for the continuation")
        clip = Video.read(video_path)
        pipe = require(self.pipeline(model), "continue_video", model)
        frames = _count(num_frames, "new frames", 1, MAX_FRAMES) or 16
        options = self._options(negative_prompt, seed, steps, guidance, progress)
        new = pipe.continue_video(clip, text, num_frames=frames, **options)
        return self._write(prepend_input(clip, new), fmt)

    def interpolate(
        self,
        model: str,
        video_path: str | None,
        factor: float | int = 2,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        seed: float | int | None = 0,
        steps: float | int | None = None,
        guidance: float | None = None,
        fmt: str = "mp4",
        progress: Progress | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The uploaded clip at ``factor`` times its frame rate -> (its file, its settings)."""
        if not video_path:
            raise ValueError("upload a video to interpolate")
        pipe = require(self.pipeline(model), "interpolate", model)
        times = _count(factor, "factor", 2, 8) or 2
        options = self._options(negative_prompt, seed, steps, guidance, progress)
        video = pipe.interpolate(
            Video.read(video_path), factor=times, prompt=_text(prompt), **options
        )
        return self._write(video, fmt)


def build_demo(session: DemoSession | None = None) -> Any:
    """The gradio Blocks app over ``session`` (a new one by default); not launched."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError("the web demo needs gradio: pip install 'kinetoscope[demo]'") from err

    session = session or DemoSession()
    models = session.models()
    if not models:
        raise FileNotFoundError("no models found; train one or set $KINETOSCOPE_MODELS")
    default = DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]

    def run(method: Callable[..., tuple[str, dict]]) -> Callable[..., tuple[str, dict]]:
        """A gradio callback: the form's values in, (video, settings) out, errors shown."""

        # gradio hands a progress tracker to a parameter whose default is gr.Progress()
        def callback(*values: Any, progress: Any = gr.Progress()) -> tuple[str, dict]:  # noqa: B008
            try:
                return method(*values, progress=lambda f, desc: progress(f, desc=desc))
            except (ValueError, FileNotFoundError) as err:
                raise gr.Error(str(err)) from err

        return callback

    def sampling_fields() -> list[Any]:
        with gr.Accordion("Sampling", open=False):
            negative = gr.Textbox(label="Negative prompt", placeholder="what it should not show")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                steps = gr.Number(label="Steps (empty: the model's)", precision=0, minimum=1)
                guidance = gr.Number(label="Guidance (empty: the model's)", minimum=0)
                fmt = gr.Dropdown(list(FORMATS), value="mp4", label="Format")
        return [negative, seed, steps, guidance, fmt]

    def outputs() -> list[Any]:
        return [gr.Video(label="Video", autoplay=True, loop=True), gr.JSON(label="Settings")]

    with gr.Blocks(title="kinetoscope") as demo:
        gr.Markdown(
            "# kinetoscope\nText to video with the models shipped in the package: "
            "`ldm-*` (latent video diffusion) and `phenaki-*` (masked video tokens). "
            "The models know their worlds: digits, or coloured shapes, that move left, right, "
            "up, down, left and right, or up and down."
        )
        with gr.Tab("Generate"):
            model = gr.Dropdown(models, value=default, label="Model")
            prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0][1])
            frames = gr.Number(label="Frames (empty: the model's)", precision=0, minimum=1)
            fields = sampling_fields()
            button = gr.Button("Generate", variant="primary")
            result = outputs()
            inputs = [model, prompt, *fields[:4], frames, fields[4]]
            button.click(run(session.generate), inputs, result, api_name="generate")
            gr.Examples([list(e) for e in EXAMPLES if e[0] in models], [model, prompt])
        with gr.Tab("Story"):
            model = gr.Dropdown(models, value=default, label="Model")
            prompts = gr.Textbox(label="Prompts, one per segment", lines=4, value=STORY_EXAMPLE)
            per_prompt = gr.Number(label="Frames per prompt", value=16, precision=0, minimum=2)
            fields = sampling_fields()
            button = gr.Button("Tell the story", variant="primary")
            button.click(
                run(session.story),
                [model, prompts, per_prompt, *fields],
                outputs(),
                api_name="story",
            )
        with gr.Tab("Continue"):
            model = gr.Dropdown(models, value=default, label="Model")
            clip = gr.Video(label="Video to continue", sources=["upload"])
            prompt = gr.Textbox(label="Prompt for what happens next")
            new_frames = gr.Number(label="New frames", value=16, precision=0, minimum=1)
            fields = sampling_fields()
            button = gr.Button("Continue", variant="primary")
            button.click(
                run(session.continue_video),
                [model, clip, prompt, new_frames, *fields],
                outputs(),
                api_name="continue",
            )
        with gr.Tab("Interpolate"):
            model = gr.Dropdown(models, value=default, label="Model")
            clip = gr.Video(label="Video to make smoother", sources=["upload"])
            factor = gr.Number(label="Frame-rate factor", value=2, precision=0, minimum=2)
            prompt = gr.Textbox(label="What it shows (empty: its sidecar's prompt, else none)")
            fields = sampling_fields()
            button = gr.Button("Interpolate", variant="primary")
            button.click(
                run(session.interpolate),
                [model, clip, factor, prompt, *fields],
                outputs(),
                api_name="interpolate",
            )
    return demo


def launch(*, host: str = "127.0.0.1", port: int = 7860, device: str = "cpu") -> None:
    """Serve the demo until interrupted (``kinetoscope demo``)."""
    build_demo(DemoSession(device=device)).queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port
    )
