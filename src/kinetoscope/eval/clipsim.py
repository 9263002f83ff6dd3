"""CLIPSIM: text-video agreement measured with a user-supplied CLIP model.

CLIPSIM (Wu et al. 2021, GODIVA, Sec. 4; reported by Make-A-Video and Phenaki) is the mean over
frames of the cosine similarity between the CLIP image embedding of a frame and the CLIP text
embedding of the prompt, times 100 as usually reported. Per video::

    clipsim(v, p) = 100 / T * sum_t cos(E_img(v_t), E_txt(p))

and the reported score is the mean over videos. Cosines are not clipped at zero.

No CLIP weights are shipped or downloaded. ``clip_model`` points to a local directory in one
of two formats:

- transformers: ``config.json`` of a ``CLIPModel`` + weights + tokenizer files, and normally
  ``preprocessor_config.json`` (without it the standard CLIP preprocessing at the model's
  image size is used). Loaded with ``local_files_only=True``.
- open_clip: ``open_clip_config.json`` + ``open_clip_pytorch_model.bin`` or
  ``open_clip_model.safetensors``; needs the ``open_clip`` package (its ``local-dir:`` loader).

A directory with both uses transformers. Without a directory ``clipsim`` returns a skipped
result whose message says how to enable it.

Axes: N videos, T frames, H W height/width, P CLIP embedding dim.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SKIP_MESSAGE = (
    "CLIPSIM skipped: pass --clip-model DIR (a local CLIP in transformers or open_clip format)"
)
_OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class ClipSimResult:
    """CLIPSIM of a set of videos (score None and ``skipped`` set when no model was given)."""

    score: float | None
    per_video: list[float] = field(default_factory=list)
    model: str | None = None
    backend: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.score is None:
            return self.skipped or SKIP_MESSAGE
        return f"CLIPSIM {self.score:.2f} ({len(self.per_video)} videos, {self.model})"


class ClipScorer:
    """A loaded CLIP: L2-normalised frame and prompt embeddings."""

    backend = "none"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def encode_images(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """N uint8 frames (H, W, 3) -> (N, P) unit vectors."""
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """N prompts -> (N, P) unit vectors."""
        raise NotImplementedError


def _pooled(output: Any) -> torch.Tensor:
    """transformers 4.x returns the projected embedding, 5.x an output with it as pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class TransformersClip(ClipScorer):
    """``CLIPModel`` + tokenizer + ``CLIPImageProcessor`` from a local transformers directory."""

    backend = "transformers"

    def __init__(self, directory: Path, *, device: str | torch.device = "cpu") -> None:
        super().__init__(directory)
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(directory, local_files_only=True).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            if (directory / "preprocessor_config.json").is_file():
                self.processor = CLIPImageProcessor.from_pretrained(
                    directory, local_files_only=True
                )
            else:
                side = self.model.config.vision_config.image_size
                logger.warning("%s has no preprocessor_config.json; using CLIP defaults", directory)
                self.processor = CLIPImageProcessor(
                    size={"shortest_edge": side}, crop_size={"height": side, "width": side}
                )
        except Exception as err:
            raise ValueError(
                f"could not load a CLIP model in transformers format from {directory} ({err}); "
                "the directory needs config.json (CLIPModel), weights and tokenizer files"
            ) from err
        self.model.to(device)
        self.device = device
        self.max_length = self.model.config.text_config.max_position_embeddings

    @torch.no_grad()
    def encode_images(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]
        emb = _pooled(self.model.get_image_features(pixel_values=pixels.to(self.device)))
        return F.normalize(emb.float(), dim=-1)  # (N, P)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k != "token_type_ids"}
        emb = _pooled(self.model.get_text_features(**tokens))
        return F.normalize(emb.float(), dim=-1)  # (N, P)


class OpenClip(ClipScorer):
    """An open_clip model from a local directory (``open_clip_config.json`` + weights)."""

    backend = "open_clip"

    def __init__(self, directory: Path, *, device: str | torch.device = "cpu") -> None:
        super().__init__(directory)
        try:
            import open_clip
        except ImportError as err:
            raise ImportError(
                f"{directory} holds an open_clip model, but the open_clip package is not "
                "installed: install open_clip_torch, or point --clip-model to a CLIP in "
                "transformers format"
            ) from err
        name = f"local-dir:{directory}"
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(name)
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as err:
            raise ValueError(
                f"could not load the open_clip model in {directory} ({err}); it needs "
                f"open_clip_config.json and one of {', '.join(_OPEN_CLIP_WEIGHTS)}, and an "
                "open_clip version with the 'local-dir:' loader"
            ) from err
        self.model.eval().to(device)
        self.device = device

    @torch.no_grad()
    def encode_images(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames])
        return F.normalize(self.model.encode_image(pixels.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)


def load_clip(directory: str | Path, *, device: str | torch.device = "cpu") -> ClipScorer:
    """A CLIP scorer from a local directory in transformers or open_clip format."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"CLIP model directory {directory} does not exist")
    if (directory / "config.json").is_file():
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        if model_type not in (None, "clip"):
            raise ValueError(
                f"{directory}/config.json describes a {model_type!r} model; CLIPSIM needs a "
                "CLIPModel (model_type 'clip')"
            )
        return TransformersClip(directory, device=device)
    if (directory / "open_clip_config.json").is_file():
        return OpenClip(directory, device=device)
    raise ValueError(
        f"{directory} is neither a transformers CLIP (config.json + weights + tokenizer) nor an "
        f"open_clip model (open_clip_config.json + {' or '.join(_OPEN_CLIP_WEIGHTS)})"
    )


def _video_frames(video: Any, index: int) -> np.ndarray:
    frames = np.asarray(video.frames if hasattr(video, "frames") else video)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"video {index} must be uint8 frames (T, H, W, 3) or a Video, got "
            f"{frames.dtype} {frames.shape}"
        )
    return frames


def clipsim(
    videos: Sequence[Any],
    prompts: Sequence[str],
    *,
    clip_model: str | Path | ClipScorer | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> ClipSimResult:
    """CLIPSIM (×100) of each video with its prompt, and their mean.

    Args:
        videos: ``Video`` objects or uint8 arrays (T, H, W, 3), one per prompt.
        prompts: the prompts the videos were generated from.
        clip_model: a local CLIP directory (transformers or open_clip format) or a loaded
            ``ClipScorer``; None returns a skipped result carrying ``SKIP_MESSAGE``.
        batch_size: frames per CLIP image batch.
    """
    if clip_model is None or str(clip_model) == "":
        logger.info(SKIP_MESSAGE)
        return ClipSimResult(score=None, skipped=SKIP_MESSAGE)
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, one per video")
    if len(videos) != len(prompts) or not videos:
        raise ValueError(
            f"need one prompt per video, got {len(videos)} videos, {len(prompts)} prompts"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    all_frames = [_video_frames(v, i) for i, v in enumerate(videos)]
    scorer = (
        clip_model if isinstance(clip_model, ClipScorer) else load_clip(clip_model, device=device)
    )
    text = scorer.encode_texts([str(p) for p in prompts])  # (N, P)
    flat = [frame for frames in all_frames for frame in frames]  # sizes may differ per video
    image = torch.cat(
        [
            scorer.encode_images(flat[begin : begin + batch_size])
            for begin in range(0, len(flat), batch_size)
        ]
    )  # (sum of T, P)
    per_video, begin = [], 0
    for i, frames in enumerate(all_frames):
        cosine = image[begin : begin + len(frames)] @ text[i]  # (T,)
        per_video.append(100.0 * float(cosine.mean()))
        begin += len(frames)
    return ClipSimResult(
        score=float(np.mean(per_video)),
        per_video=per_video,
        model=str(scorer.directory),
        backend=scorer.backend,
    )
