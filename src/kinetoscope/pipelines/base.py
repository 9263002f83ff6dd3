"""What every inference pipeline shares: prompt checks, seeds, text conditioning, save/load.

Seeds: sample i of a batch generated with seed s uses ``torch.Generator().manual_seed(s + i)``,
so any sample can be reproduced on its own. Text: prompts and negative prompts (or "" for
the unconditional branch of classifier-free guidance) go through the model's text encoder.
Save/load: a saved pipeline is a directory with ``model_index.json`` (class, family, text
encoder, sampling defaults) and one ``save_pretrained`` folder per model component.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch
import torch.nn.functional as F

import kinetoscope

if TYPE_CHECKING:
    from kinetoscope.video import Video

logger = logging.getLogger(__name__)

MODEL_INDEX = "model_index.json"

# callback(step_index, num_steps, state) after every sampling step (latents or tokens).
StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass
class PipelineOutput:
    """Result of a pipeline call: one ``Video`` per prompt."""

    frames: list[Video]


def normalize_prompts(
    prompt: str | list[str], negative_prompt: str | list[str] | None, *, allow_empty: bool = False
):
    """Check prompts and pair each with a negative prompt ("" when none). Returns two lists.

    ``allow_empty`` accepts "" (unconditional), for work that is not generation from text."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompt given: pass a non-empty string or list of strings")
    for p in prompts:
        if not isinstance(p, str) or not (p.strip() or allow_empty):
            raise ValueError(
                f"empty prompt {p!r}: describe the video you want, e.g. 'the digit 7 is moving up'"
            )
    if negative_prompt is None:
        negatives = [""] * len(prompts)
    elif isinstance(negative_prompt, str):
        negatives = [negative_prompt] * len(prompts)
    else:
        negatives = list(negative_prompt)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
    return prompts, negatives


def check_count(name: str, value: int) -> int:
    """Return ``value`` if it is at least 1, else raise a ValueError naming argument ``name``."""
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def story_prompts(
    prompts: list[str], negative_prompt: str | list[str] | None, frames_per_prompt: int
) -> tuple[list[str], list[str]]:
    """Validated story prompts and their negatives (one string or one per prompt)."""
    if isinstance(prompts, str):
        raise ValueError("story takes a list of prompts (one per segment); use pipe(...) for one")
    check_count("frames_per_prompt", frames_per_prompt)
    return normalize_prompts(list(prompts), negative_prompt)


def check_story_context(num_prompts: int, frames_per_prompt: int, context_frames: int) -> None:
    """A later segment continues the last ``context_frames`` frames of the previous one."""
    if num_prompts > 1 and frames_per_prompt < context_frames:
        raise ValueError(
            f"frames_per_prompt={frames_per_prompt} is shorter than context_frames="
            f"{context_frames}; raise frames_per_prompt or lower context_frames"
        )


def segment_generator(seed: int, index: int, generator: torch.Generator | None):
    """Story segment ``index`` draws from ``seed + index`` unless one generator is shared."""
    return torch.Generator().manual_seed(seed + index) if generator is None else generator


def check_continuation(video: Video, prompt: str, num_frames: int) -> None:
    """``continue_video``'s arguments: a Video, one prompt string, at least one new frame."""
    from kinetoscope.video import Video

    if not isinstance(video, Video):
        raise ValueError(
            f"continue_video takes a kinetoscope.video.Video (e.g. Video.read(path)), "
            f"got {type(video).__name__}"
        )
    if not isinstance(prompt, str):
        raise ValueError("continue_video takes one prompt string")
    check_count("num_frames", num_frames)


def sample_generators(
    batch: int, *, seed: int | list[int] | None, generator: torch.Generator | None, device: Any
) -> tuple[list[torch.Generator], list[int | None]]:
    """One generator per sample (seed + i), or the caller's single generator shared by all."""
    if generator is not None:
        return [generator] * batch, [None] * batch
    if seed is None:
        seed = random.randrange(2**31)
    seeds = [seed + i for i in range(batch)] if isinstance(seed, int) else list(seed)
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds for {batch} prompts")
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds], seeds


def randn(
    shape: tuple[int, ...], generators: list[torch.Generator], device: Any, dtype: Any
) -> torch.Tensor:
    """(B, *shape) standard normal noise, sample i from generators[i] (drawn on CPU for portability)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)


def fit_video(video: Video, size: int) -> tuple[Video, bool]:
    """Centre-crop ``video`` to a square and resize it to ``size`` x ``size`` (antialiased
    bilinear). Returns (video, whether it was changed)."""
    from kinetoscope.video import Video

    if (video.height, video.width) == (size, size):
        return video, False
    side = min(video.height, video.width)
    if side < size:
        logger.warning(
            "upscaling a %dx%d video to the model's %dx%d", video.width, video.height, size, size
        )
    top, left = (video.height - side) // 2, (video.width - side) // 2
    frames = video.to_tensor()[:, :, top : top + side, left : left + side]  # (C, T, S, S)
    resized = F.interpolate(
        frames.transpose(0, 1), size=(size, size), mode="bilinear", antialias=True
    )  # (T, C, size, size)
    return Video.from_tensor(resized.transpose(0, 1).clamp(-1, 1), fps=video.fps), True


def prepend_input(clip: Video, continuation: Video) -> Video:
    """The input of ``continue_video`` (fitted to the model's size) followed by its
    continuation, as one video with the continuation's fps and metadata."""
    from kinetoscope.video import Video

    fitted, _ = fit_video(clip, continuation.height)
    whole = Video.concat([fitted, continuation])
    whole.fps = continuation.fps
    whole.metadata = {**continuation.metadata, "continued_frames": clip.num_frames}
    return whole


def read_model_index(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MODEL_INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a saved kinetoscope model (no {MODEL_INDEX}); "
            "pass a model name from `kinetoscope models` or a directory written by save_pretrained"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is corrupt ({err}); re-save or re-train the model") from err


class AtomicDirectory:
    """Write a directory under a temporary name and move it into place on success."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}-", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)


STORAGE_DTYPES = {"float32": None, "float16": torch.float16}


def storage_dtype(name: str | None) -> torch.dtype | None:
    """The dtype weights are stored in (None: as they are, float32)."""
    if name is None:
        return None
    if name not in STORAGE_DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(STORAGE_DTYPES)}, got {name!r}")
    return STORAGE_DTYPES[name]


def write_model_index(directory: Path, class_name: str, **fields: Any) -> None:
    index = {"_class_name": class_name, "kinetoscope_version": kinetoscope.__version__, **fields}
    (directory / MODEL_INDEX).write_text(json.dumps(index, indent=2))


def model_fingerprint(directory: str | Path) -> str:
    """Short sha256 over a saved model's files (reported with every evaluation)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class LazyTextEncoder:
    """Mixin: ``text_encoder`` loads ``text_encoder_name`` on first use and keeps it."""

    _text_encoder = None
    _layered: dict | None = None  # layers -> encoder of those hidden states (planner, reader)
    text_clauses = False  # encode prompts clause by clause (kinetoscope.text.clauses)
    reader: Any = None  # a PromptReader (kinetoscope.text.reader), or None
    _readings: tuple[Any, dict[str, str]] | None = None  # (reader, prompt -> what it gives)

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from kinetoscope.text import load_text_encoder

            self._text_encoder = load_text_encoder(
                self.text_encoder_name,
                max_length=self.max_length,
                clauses=self.text_clauses,
            )
        return self._text_encoder

    def planner_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The prompts' token states as the trajectory planner reads them, when it reads other
        hidden states of the text encoder than the denoiser (its ``text_layers``); else None
        (it reads the denoiser's)."""
        planner = getattr(self, "planner", None)
        layers = None if planner is None else getattr(planner.config, "text_layers", None)
        if not layers:
            return None
        return self._layered_encoder(tuple(layers), clauses=self.text_clauses).encode(prompts)

    def _layered_encoder(self, layers: tuple[int, ...], *, clauses: bool = False) -> Any:
        """The text encoder giving hidden states ``layers`` concatenated, loaded once."""
        key = (tuple(layers), clauses)
        if self._layered is None:
            self._layered = {}
        if key not in self._layered:
            from kinetoscope.text import load_text_encoder

            self._layered[key] = load_text_encoder(
                self.text_encoder_name, max_length=self.max_length, clauses=clauses, layers=key[0]
            )
        return self._layered[key]

    def read_prompts(self, prompts: list[str]) -> list[str]:
        """What the model is given for ``prompts``: with a prompt reader (and the default
        ``read_prompts`` on), each prompt the reader reads with confidence becomes its world's
        canonical caption (``PromptReader.read``); otherwise the prompts as they are."""
        if self.reader is None or not self.defaults.get("read_prompts", True):
            return list(prompts)
        # Read once per prompt (a call reads them to encode and again to stamp the metadata).
        if self._readings is None or self._readings[0] is not self.reader:
            self._readings = (self.reader, {})
        known = self._readings[1]
        new = list(dict.fromkeys(p for p in prompts if p not in known))
        if new:
            layers = tuple(self.reader.config.text_layers or (-1,))
            for reading in self.reader.read(new, self._layered_encoder(layers)):
                known[reading.prompt] = reading.text
        return [known[p] for p in prompts]


PLANNER = "planner"  # folder of a saved pipeline's trajectory planner
READER = "reader"  # folder of a saved pipeline's prompt reader


class Pipeline(LazyTextEncoder):
    """Base of the text-to-video pipelines: sampling defaults, components, save/load, metadata.

    A subclass sets ``family``, its sampling ``default_options``, its model ``components``
    (attribute name -> ``ModelMixin`` class; each is saved to a folder of that name) and the
    ``device_component`` whose device is the pipeline's. Its constructor takes the components
    as keyword arguments plus ``text_encoder``, ``max_length``, ``text_clauses`` (prompts
    encoded clause by clause, ``kinetoscope.text.clauses``) and ``defaults``. A family that
    follows object tracks keeps its ``TrajectoryPlanner`` in ``planner`` (saved in
    ``planner/`` by ``_save_planner``, read back by ``_load_planner``).
    """

    family: ClassVar[str]
    default_options: ClassVar[dict[str, Any]]
    components: ClassVar[dict[str, Any]]
    device_component: ClassVar[str]
    planner: Any = None

    def __init__(
        self,
        *,
        text_encoder: str,
        max_length: int,
        defaults: dict[str, Any] | None,
        text_clauses: bool = False,
    ) -> None:
        self.text_encoder_name = text_encoder
        self.max_length = max_length
        self.text_clauses = bool(text_clauses)
        self.defaults = {**self.default_options, **(defaults or {})}
        self._text_encoder = None

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> Self:
        """Load a pipeline written by ``save_pretrained``, with its components on ``device``."""
        directory = Path(directory)
        index = read_model_index(directory)
        if index.get("_class_name") != cls.__name__:
            raise ValueError(
                f"{directory} holds a {index.get('_class_name')}, not a {cls.__name__}"
            )
        for part in cls.components:
            if not (directory / part / "config.json").is_file():
                raise FileNotFoundError(
                    f"{directory} has no {part}/config.json; the save is incomplete, re-save it "
                    "with save_pretrained or re-run `kinetoscope train`"
                )
        parts = {
            part: model_class.from_pretrained(directory / part).to(device)
            for part, model_class in cls.components.items()
        }
        pipe = cls(
            **parts,
            **cls._load_extras(directory),
            text_encoder=index["text_encoder"],
            max_length=index["max_length"],
            text_clauses=bool(index.get("text_clauses", False)),
            defaults=index.get("defaults"),
        )
        pipe.source = directory
        if (directory / READER / "config.json").is_file():
            from kinetoscope.text.reader import PromptReader

            reader = PromptReader.from_pretrained(directory / READER)
            pipe.reader = torch.nn.Module.to(reader, device, torch.float32).eval()
        return pipe

    @classmethod
    def _load_extras(cls, directory: Path) -> dict[str, Any]:
        """Constructor arguments saved beside the components by ``_save_extras`` (none here)."""
        return {}

    def _save_extras(self, directory: Path, dtype: torch.dtype | None) -> None:
        """Write what ``_load_extras`` reads back into ``directory`` (nothing here); weights
        in ``dtype`` when given."""

    def save_pretrained(self, directory: str | Path, *, weights_dtype: str | None = None) -> Path:
        """Write the pipeline to ``directory`` atomically; returns ``directory``.

        ``weights_dtype="float16"`` stores every weight in half precision: half the size on
        disk (the shipped models are stored so). Loading always gives float32 weights, so
        the pipeline computes as before, with its weights rounded to float16 once.
        """
        dtype = storage_dtype(weights_dtype)
        with AtomicDirectory(directory) as tmp:
            for part in self.components:
                module = getattr(self, part)
                if dtype is not None:
                    # A cast copy: the live pipeline is unchanged. (nn.Module.to: diffusers'
                    # override warns about fp32-only modules, which these models have none of.)
                    module = torch.nn.Module.to(copy.deepcopy(module), dtype)
                module.save_pretrained(tmp / part)
            self._save_extras(tmp, dtype)
            if self.reader is not None:
                reader = self.reader
                if dtype is not None:
                    reader = torch.nn.Module.to(copy.deepcopy(reader), dtype)
                reader.save_pretrained(tmp / READER)
            write_model_index(
                tmp,
                type(self).__name__,
                family=self.family,
                text_encoder=self.text_encoder_name,
                max_length=self.max_length,
                **({"text_clauses": True} if self.text_clauses else {}),
                defaults=self.defaults,
                weights_dtype=weights_dtype or "float32",
            )
        return Path(directory)

    @property
    def device(self) -> torch.device:
        """Where ``device_component`` lives (sampling inputs are created there)."""
        return next(getattr(self, self.device_component).parameters()).device

    def to(self, device: str | torch.device) -> Self:
        """Move every component, and the trajectory planner and prompt reader if any, to
        ``device``; returns the pipeline."""
        for part in self.components:
            getattr(self, part).to(device)
        for extra in (self.planner, self.reader):
            if extra is not None:
                extra.to(device)
        return self

    @staticmethod
    def _load_planner(directory: Path) -> dict[str, Any]:
        """``{"planner": TrajectoryPlanner}`` from ``directory/planner/``, or {} without one."""
        if not (directory / PLANNER / "config.json").is_file():
            return {}
        from kinetoscope.diffusion.planner import TrajectoryPlanner

        return {"planner": TrajectoryPlanner.from_pretrained(directory / PLANNER)}

    def _save_planner(self, directory: Path, dtype: torch.dtype | None) -> None:
        """Write the trajectory planner, if any, to ``directory/planner/`` (in ``dtype``)."""
        if self.planner is None:
            return
        planner = self.planner
        if dtype is not None:
            planner = torch.nn.Module.to(copy.deepcopy(planner), dtype)
        planner.save_pretrained(directory / PLANNER)

    # ------------------------------------------------------------------ options and output
    def _option(self, value: Any, key: str) -> Any:
        """``value``, or the pipeline's default ``key`` when it is None."""
        return self.defaults[key] if value is None else value

    def _count_option(self, value: int | None, key: str) -> int:
        """``value`` (or the default ``key``) as an int, checked to be at least 1."""
        return check_count(key, int(self._option(value, key)))

    def _run_metadata(self, **settings: Any) -> dict[str, Any]:
        """Metadata of one generation: model name, family, then ``settings`` in order."""
        model_name = self.defaults.get("model_name", getattr(self, "source", ""))
        return {"model": str(model_name), "family": self.family, **settings}

    def _stamp_story(
        self,
        story: Video,
        *,
        prompts: list[str],
        negatives: list[str],
        segments: list[dict[str, Any]],
        seed: int,
        generator: torch.Generator | None,
        fps: float,
        frames_per_prompt: int,
        **settings: Any,
    ) -> Video:
        """Set a story's ``fps`` and metadata: its prompts, segments and seed (None when one
        ``generator`` drove every segment), the run's ``settings`` (see ``_run_metadata``) and
        its length. Returns ``story``."""
        story.fps = fps
        read = self.read_prompts(prompts)
        story.metadata = {
            "prompt": " / ".join(prompts),
            "prompts": prompts,
            **({"prompts_read": read} if read != prompts else {}),
            "negative_prompts": negatives,
            "segments": segments,
            "seed": None if generator is not None else seed,
            **self._run_metadata(**settings),
            "num_frames": story.num_frames,
            "frames_per_prompt": frames_per_prompt,
        }
        return story

    def _stamp(
        self,
        videos: list[Video],
        prompts: list[str],
        negatives: list[str],
        seeds: list[int | None],
        *,
        fps: float,
        **settings: Any,
    ) -> list[Video]:
        """Set each video's ``fps`` and metadata: its prompt, negative prompt and seed (the
        parallel lists ``prompts``, ``negatives``, ``seeds``), then the run's ``settings`` (see
        ``_run_metadata``). Returns ``videos``."""
        read = self.read_prompts(prompts)
        for video, p, r, n, s in zip(videos, prompts, read, negatives, seeds, strict=True):
            video.fps = fps
            video.metadata = {
                "prompt": p,
                **({"prompt_read": r} if r != p else {}),
                "negative_prompt": n,
                "seed": s,
                **self._run_metadata(**settings),
            }
        return videos
