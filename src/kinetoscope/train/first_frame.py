"""Optional last stages ``unet_first_frame`` (LDM) and ``transformer_first_frame`` (Phenaki): a
model for the frame image-first sampling draws.

The image model (stage ``unet_image``) learns single frames taken anywhere in the training
clips, so where it puts an object follows the marginal over all frames. Image-first sampling
asks it for frame 0, whose distribution differs: a clip moving up for 16 frames starts in the
lower part of the canvas, and an object drawn near the top edge leaves the generator no way to
follow the prompt (the worlds' clips never stop at a border). This stage continues a copy of
the image model on the first frames of many training clips only, and the pipeline keeps it
apart (``image/spatial.safetensors``) as the model that draws frame 0. The generator, its
temporal layers and every stage before this one are untouched.

Phenaki's counterpart continues a copy of the final transformer on the first time step's
tokens of many clips (frame 0 coded alone, as the causal tokenizer codes it in a clip); the
pipeline keeps it apart (``image_transformer/``) to draw frame 0's tokens, and the clip
transformer continues them as before.

Extra keys: ``clips`` (how many training clips give their frame 0, default 20,000; rendering
and encoding one costs a few milliseconds) and, for the LDM, the image stage's noise options
(``high_noise_fraction``, ``high_noise_start``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from kinetoscope.train.loop import atomic_save
from kinetoscope.train.recipe import _world_datasets, clip_chunks
from kinetoscope.train.weights import load_spatial_weights

logger = logging.getLogger(__name__)

STAGE = "unet_first_frame"
PHENAKI_STAGE = "transformer_first_frame"
DEFAULT_CLIPS = 20_000


def first_frame_clips(recipe: Any, stage: str = STAGE) -> int:
    """Stage ``stage``'s ``clips`` (checked): how many training clips give their first frame."""
    value = recipe.stage(stage).extra.get("clips", DEFAULT_CLIPS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"stages.{stage}.extra.clips must be a positive integer, got {value!r}")
    return value


def first_frame_cache(
    recipe: Any, encode: Any, path: Path, num_clips: int, *, key: str, **meta: Any
) -> dict[str, Any]:
    """``{key: encode(frame 0) of training clips 0 .. num_clips - 1, "wordings": each clip's
    caption wordings, "clips": num_clips, **meta}``: ``path`` if it holds those clips with the
    same ``meta`` (e.g. the tokenizer's fingerprint), else built and saved there."""
    if path.exists():
        cache = torch.load(path, weights_only=False)
        if all(cache.get(k) == v for k, v in {"clips": num_clips, **meta}.items()):
            return cache
    coded, wordings = [], []
    for video, chunk_wordings in clip_chunks(_world_datasets(recipe), num_clips, chunk_size=64):
        with torch.inference_mode():
            coded.append(encode(video[:, :, :1].contiguous()))
        wordings.extend(chunk_wordings)
    cache = {key: torch.cat(coded), "wordings": wordings, "clips": num_clips, **meta}
    atomic_save(cache, path)
    return cache


def train_first_frame(
    recipe: Any, out: Path, unet: Any, vae: Any, scheduler: Any, bank: Any, image_dir: Path
) -> dict[str, torch.Tensor]:
    """Run the stage (or reuse its saved result) and return the frame-0 model's spatial weights.

    ``unet`` only supplies the architecture: the stage starts from the image model saved in
    ``image_dir`` (stage ``unet_image``), on a copy, so the caller's model is not changed.
    """
    from kinetoscope.diffusion.unet import VideoUNet
    from kinetoscope.train.ldm import _unet_stage

    final = out / "unet-first-frame"
    if (final / "config.json").exists():
        return VideoUNet.from_pretrained(final).spatial_state()
    vae.eval()
    cache = first_frame_cache(  # latents (N, Z, 1, h, w), fp16 posterior means
        recipe, lambda frames: vae.encode(frames).half(), out / "first-frames.pt",
        first_frame_clips(recipe), key="latents",
    )  # fmt: skip
    logger.info("first-frame stage on %d first frames", cache["latents"].shape[0])
    model = load_spatial_weights(copy.deepcopy(unet), image_dir)
    model = _unet_stage(recipe, out, model, scheduler, cache, bank, STAGE, temporal=False)
    model.save_pretrained(final)
    return model.spatial_state()


def train_phenaki_first_frame(recipe: Any, out: Path, tokenizer: Any, encoder: Any) -> Any:
    """Stage ``transformer_first_frame``: the final transformer (out/transformer) continued on
    first-frame tokens only, without tracks or frozen prefixes; saved to
    out/transformer-first-frame (loaded instead when it exists)."""
    from kinetoscope.pipelines.base import model_fingerprint
    from kinetoscope.train.phenaki import _train_transformer_stage

    tokenizer.eval()
    cache = first_frame_cache(  # tokens (N, 1, h, w) int16: frame 0 coded alone
        recipe, lambda frames: tokenizer.encode(frames).to(torch.int16),
        out / "first-frame-tokens.pt", first_frame_clips(recipe, PHENAKI_STAGE), key="tokens",
        tokenizer=model_fingerprint(out / "tokenizer"),
    )  # fmt: skip
    stage = recipe.stages[PHENAKI_STAGE]
    images_only = {**stage, "extra": {**stage.get("extra", {}), "continuation_fraction": 0.0}}
    recipe = dataclasses.replace(recipe, stages={**recipe.stages, PHENAKI_STAGE: images_only})
    return _train_transformer_stage(
        recipe,
        PHENAKI_STAGE,
        out / "transformer-first-frame",
        tokenizer=tokenizer,
        cache=cache,
        encoder=encoder,
        init_from=out / "transformer",
    )
