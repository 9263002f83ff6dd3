"""Training recipe of the masked video-token family (Phenaki, Villegas et al. 2022, §2).

Stages, each resumable and bounded by steps and minutes (like the Video LDM recipe):
  1. ``tokenizer``   C-ViViT with FSQ on ``num_frames`` (1 + 2k) clips of the worlds,
                     reconstruction L1 + L2 (§2.1; the paper adds perceptual and adversarial
                     terms, which we leave out on CPU). Logs PSNR and codebook usage.
  1b. ``tokenizer_decoder`` (optional) only the weights after the quantizer, with the encoder
                     frozen: the tokens stay the same (a trained transformer stays valid) and
                     the decoder learns to draw them better. The stage-1 tokenizer is kept in
                     out/tokenizer-encoder, the result in out/tokenizer.
  2. token cache     ``num_token_clips`` training clips encoded to tokens once (int16 on disk)
                     with their caption wordings, so the transformer never pays for the encoder.
  2b. ``trajectory_planner`` (with ``transformer.anchor_slots``) a planner of object tracks
                     from the prompt and the first time step's token codes (``train/tracks.py``).
  3. ``transformer`` masked-token cross-entropy (§2.2, MaskGIT masking). Classifier-free
                     guidance: with probability ``text_dropout`` a clip's text becomes the
                     embedding of "" (the sampler's unconditional input). Continuation: a
                     fraction of clips (``extra.continuation_fraction``) keep their first
                     1..``extra.max_prefix_steps`` token time steps frozen, which is what story
                     mode feeds (re-encoded context frames, see ``masked/sampling.py``).
                     Joint image-video training (§2.2 of the paper trains on images too): a
                     fraction of the steps (``extra.image_fraction``) are batches of single
                     frames, whose tokens are the first time step of a one-frame clip (C-ViViT
                     codes the first frame on its own), cached for ``extra.image_frames``. A
                     pipeline sampled with ``first_frame: image`` draws such an image first.
                     ``extra.init_from`` starts the stage from a saved transformer.
  3b. ``transformer_finetune`` (optional) the same training, continued from stage 3's result
                     (kept in out/transformer-base) with its own settings and ``extra``; the
                     shipped models spend it on image batches after a clip-only stage 3, all in
                     one command. The result goes to out/transformer.
  3c. ``transformer_tracks`` (optional, with anchors) continues the previous transformer
                     stage's result (then kept in out/transformer-finetune, or -base) on clips
                     with their object tracks, which the anchor attentions follow. With it,
                     only this stage gives the anchors tracks: the stages before train as a
                     model without anchors would (the anchors are drawn last and pass their
                     input through). Without it, every transformer stage of a model with
                     anchors trains with tracks.
  3d. ``transformer_first_frame`` (optional, last) a copy of the final transformer tuned on
                     first-frame tokens only: the model image-first sampling draws frame 0's
                     tokens with (``train/first_frame.py``).
Stages 1 and 1b are in ``kinetoscope.train.phenaki_tokenizer``. The trained tokenizer is scored
on the test split of every world (reconstruction PSNR and codebook usage,
``tokenizer_report.json``), then the pipeline is saved to ``out/pipeline``.

Axis legend: B batch, C channels, T frames, H/W pixels, T' token time steps, h/w token grid.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kinetoscope.autoencoders.cvivit import CViViT, check_num_frames
from kinetoscope.diffusion.planner import TrajectoryPlanner
from kinetoscope.masked import MaskedVideoTransformer, masked_token_loss
from kinetoscope.masked.transformer import token_step_tracks
from kinetoscope.pipelines.base import model_fingerprint
from kinetoscope.pipelines.phenaki import PhenakiPipeline, encode_text
from kinetoscope.text import load_text_encoder
from kinetoscope.train.first_frame import first_frame_clips, train_phenaki_first_frame
from kinetoscope.train.loop import atomic_save
from kinetoscope.train.phenaki_tokenizer import (
    _loop_options,
    tokenizer_image_fraction,
    tokenizer_report,
    train_tokenizer,
)
from kinetoscope.train.recipe import (
    CaptionBank,
    Recipe,
    _world_datasets,
    clip_chunks,
    save_pipeline,
    start_run,
    train_stage,
)
from kinetoscope.train.tracks import cache_tracks, train_planner
from kinetoscope.train.weights import load_grown

logger = logging.getLogger(__name__)

TOKEN_CACHE_VERSION = 1
PHENAKI_STAGES = (
    "tokenizer",
    "tokenizer_decoder",
    "transformer",
    "transformer_finetune",
    "trajectory_planner",
    "transformer_tracks",
    "transformer_first_frame",
    "prompt_reader",
)
TRANSFORMER_STAGES = ("transformer", "transformer_finetune", "transformer_tracks")


@dataclass(frozen=True, kw_only=True)
class PhenakiRecipe(Recipe):
    """Everything that defines a shipped Phenaki model: the shared ``Recipe`` fields and the
    options below.

    ``tokenizer`` holds CViViT options (image_size comes from ``resolution``); ``transformer``
    holds MaskedVideoTransformer options (codebook, grid, length and text width are derived).
    ``num_frames`` defaults to 17, a length C-ViViT codes (1 + 2k). ``family`` is accepted so a
    recipe YAML can be read directly; it must be "phenaki".
    """

    tokenizer: dict[str, Any]
    transformer: dict[str, Any]
    num_frames: int = 17
    num_token_clips: int = 4000
    family: str = "phenaki"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.family != "phenaki":
            raise ValueError(f"a PhenakiRecipe needs family: phenaki, got {self.family!r}")
        if not self.worlds:
            raise ValueError("worlds is empty; list at least one, e.g. [mnist-1, mnist-2]")
        check_num_frames(self.num_frames)
        if not 0.0 <= self.text_dropout <= 1.0:
            raise ValueError(f"text_dropout must be in [0, 1], got {self.text_dropout}")
        if self.num_token_clips < 1:
            raise ValueError(f"num_token_clips must be >= 1, got {self.num_token_clips}")
        if "image_size" in self.tokenizer and self.tokenizer["image_size"] != self.resolution:
            raise ValueError(
                f"tokenizer.image_size={self.tokenizer['image_size']} differs from "
                f"resolution={self.resolution}; drop tokenizer.image_size"
            )

    @property
    def token_steps(self) -> int:
        """Token time steps T' of a training clip."""
        return 1 + check_num_frames(self.num_frames)


def build_transformer(
    recipe: PhenakiRecipe, tokenizer: CViViT, *, text_dim: int
) -> MaskedVideoTransformer:
    """A freshly initialised masked transformer over ``tokenizer``'s code grid.

    ``factorized_codes: true`` in the recipe's ``transformer:`` gives it the tokenizer's FSQ
    levels as ``code_levels``.
    """
    options = dict(recipe.transformer)
    if options.pop("factorized_codes", False):
        options["code_levels"] = tuple(tokenizer.quantizer.levels_list)
    return MaskedVideoTransformer(
        num_codes=tokenizer.num_codes,
        max_time_tokens=recipe.token_steps,
        height_tokens=tokenizer.grid,
        width_tokens=tokenizer.grid,
        text_dim=text_dim,
        **options,
    )


def pipeline_defaults(recipe: PhenakiRecipe) -> dict[str, Any]:
    """The sampling defaults a trained pipeline stores besides the recipe's ``sampling:``."""
    return {"fps": recipe.fps, "resolution": recipe.resolution}


# ----------------------------------------------------------------------------- token cache


def _stage_image_frames(recipe: PhenakiRecipe, name: str) -> list[int]:
    """``image_frames`` of transformer stage ``name`` (checked); empty without image batches."""
    extra = recipe.stage(name).extra
    fraction = float(extra.get("image_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"stages.{name}.extra.image_fraction must be in [0, 1), got {fraction}")
    if not fraction:
        return []
    frames = [int(f) for f in extra.get("image_frames", [0])]
    if not frames or not all(0 <= f < recipe.num_frames for f in frames):
        raise ValueError(
            f"stages.{name}.extra.image_frames must list frames in [0, {recipe.num_frames}), "
            f"got {frames}"
        )
    return frames


def image_frames(recipe: PhenakiRecipe) -> list[int]:
    """Frames of each cached clip also cached as images: those of the transformer stages with
    image batches (which must agree); empty when none has them."""
    found = {
        name: frames
        for name in TRANSFORMER_STAGES
        if name in recipe.stages and (frames := _stage_image_frames(recipe, name))
    }
    if len({tuple(f) for f in found.values()}) > 1:
        raise ValueError(
            f"the transformer stages ask for different image_frames {found}; one token cache "
            "serves them all, so give them the same list"
        )
    return next(iter(found.values()), [])


@torch.no_grad()
def build_token_cache(
    recipe: PhenakiRecipe, tokenizer: CViViT, path: Path, *, fingerprint: str = ""
) -> dict[str, Any]:
    """Encode ``num_token_clips`` training clips once; tokens (N, T', h, w) int16 + wordings.

    With image batches, each clip's ``image_frames`` are also encoded as one-frame clips:
    image_tokens (N, F, h, w). ``fingerprint`` names the tokenizer that made them (a cache is
    only reused with it)."""
    tokens, images, wordings = [], [], []
    frames = image_frames(recipe)
    tokenizer.eval()
    for video, chunk_wordings in clip_chunks(_world_datasets(recipe), recipe.num_token_clips):
        tokens.append(tokenizer.encode(video).to(torch.int16))  # codes < 2**15
        if frames:
            per_frame = [tokenizer.encode(video[:, :, f : f + 1])[:, 0] for f in frames]
            images.append(torch.stack(per_frame, dim=1).to(torch.int16))  # (n, F, h, w)
        wordings.extend(chunk_wordings)
    cache = {
        "version": TOKEN_CACHE_VERSION,
        "tokenizer": fingerprint,
        "tokens": torch.cat(tokens),
        "wordings": wordings,
        "image_frames": frames,
    }
    if frames:
        cache["image_tokens"] = torch.cat(images)
    atomic_save(cache, path)
    return cache


def load_token_cache(recipe: PhenakiRecipe, out: Path, tokenizer: CViViT) -> dict[str, Any]:
    """out/tokens.pt if it matches the recipe and the tokenizer saved in out/tokenizer, else a
    freshly built cache."""
    path, fingerprint = out / "tokens.pt", model_fingerprint(out / "tokenizer")
    if path.exists():
        cache = torch.load(path, weights_only=False)
        expected = (
            recipe.num_token_clips,
            *tokenizer.tokens_shape(recipe.num_frames, recipe.resolution, recipe.resolution),
        )
        if (
            cache.get("version") == TOKEN_CACHE_VERSION
            and cache.get("tokenizer") == fingerprint
            and tuple(cache["tokens"].shape) == expected
            and cache.get("image_frames", []) == image_frames(recipe)
        ):
            return cache
        logger.info("token cache %s does not match the recipe or tokenizer; rebuilding it", path)
    return build_token_cache(recipe, tokenizer, path, fingerprint=fingerprint)


# ----------------------------------------------------------------------------- transformer


def token_batches(
    cache: dict[str, Any],
    bank: CaptionBank,
    *,
    batch_size: int,
    continuation_fraction: float,
    max_prefix_steps: int,
    seed: int,
    image_fraction: float = 0.0,
    image_batch_size: int = 0,
    tracks: torch.Tensor | None = None,
    track_dropout: float = 0.0,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Infinite (tokens (B, T', h, w) long, text_emb, text_mask, frozen_prefix (B,) long).

    Each clip gets a random training wording of its caption; with probability
    ``continuation_fraction`` its first 1..max_prefix_steps time steps are frozen. With
    probability ``image_fraction`` a batch is instead ``image_batch_size`` cached images
    (tokens (B, 1, h, w), nothing frozen), each with a wording of its clip's caption.

    With ``tracks`` (N, S, T, 2), the cached clips' per-frame object tracks, each batch also
    carries its clips' tracks per token time step (B, S, T', 2); a clip loses them (NaN) with
    probability ``track_dropout``, and image batches have none.
    """
    rng = random.Random(seed)
    tokens, wordings = cache["tokens"], cache["wordings"]
    if image_fraction and "image_tokens" not in cache:
        raise ValueError("image_fraction > 0 needs a token cache built with image_frames")
    while True:
        if image_fraction and rng.random() < image_fraction:
            images = cache["image_tokens"]  # (N, F, h, w)
            picks = [
                (rng.randrange(len(wordings)), rng.randrange(images.shape[1]))
                for _ in range(image_batch_size)
            ]
            clips, frames = map(list, zip(*picks, strict=True))
            emb, mask = bank([rng.choice(wordings[i]) for i in clips])
            batch = images[clips, frames][:, None].long()  # (B, 1, h, w)
            nothing = torch.zeros(len(clips), dtype=torch.long)
            yield (batch, emb, mask, nothing) + (() if tracks is None else (None,))
            continue
        idx = [rng.randrange(len(wordings)) for _ in range(batch_size)]
        captions = [rng.choice(wordings[i]) for i in idx]
        prefix = [
            rng.randint(1, max_prefix_steps) if rng.random() < continuation_fraction else 0
            for _ in idx
        ]
        emb, mask = bank(captions)
        batch = (tokens[idx].long(), emb, mask, torch.tensor(prefix))
        if tracks is None:
            yield batch
            continue
        steps = token_step_tracks(tracks[idx].float())  # (B, S, T', 2)
        dropped = torch.tensor([rng.random() < track_dropout for _ in idx])
        yield (*batch, steps.masked_fill(dropped[:, None, None, None], math.nan))


def continuation_settings(recipe: PhenakiRecipe, name: str = "transformer") -> tuple[float, int]:
    """(continuation_fraction, max_prefix_steps) of transformer stage ``name``, checked."""
    extra = recipe.stage(name).extra
    fraction = float(extra.get("continuation_fraction", 0.3))
    max_prefix = int(extra.get("max_prefix_steps", recipe.token_steps // 2))
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"stages.{name}.extra.continuation_fraction must be in [0, 1], got {fraction}"
        )
    if not 1 <= max_prefix < recipe.token_steps:
        raise ValueError(
            f"stages.{name}.extra.max_prefix_steps must be in [1, {recipe.token_steps - 1}] "
            f"for {recipe.num_frames}-frame clips, got {max_prefix}"
        )
    return fraction, max_prefix


class _NonEmptyTextEncoder:
    """Wraps a text encoder so every row has a real token (see ``pipelines.phenaki.encode_text``)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.dim = encoder, encoder.dim

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_text(self.encoder, texts)


def anchor_slots(recipe: PhenakiRecipe) -> int:
    """The transformer's ``anchor_slots`` (0: no object tracks), checked against the recipe's
    stages: anchors need a planner to propose their tracks at sampling, and a planner needs
    anchors to follow them."""
    slots = int(recipe.transformer.get("anchor_slots", 0))
    if slots and "trajectory_planner" not in recipe.stages:
        raise ValueError(
            "transformer.anchor_slots needs a trajectory_planner stage: sampling plans the "
            "tracks the anchors follow"
        )
    for stage in ("trajectory_planner", "transformer_tracks"):
        if not slots and stage in recipe.stages:
            raise ValueError(f"stages.{stage} needs transformer.anchor_slots > 0")
    return slots


def _trains_with_tracks(recipe: PhenakiRecipe, name: str) -> bool:
    """Whether transformer stage ``name`` gives the anchors tracks: only ``transformer_tracks``
    when the recipe has it, else every clip transformer stage (never the frame-0 model)."""
    if name == "transformer_tracks":
        return True
    return "transformer_tracks" not in recipe.stages and name in TRANSFORMER_STAGES


def train_phenaki_planner(
    recipe: PhenakiRecipe, out: Path, tokenizer: CViViT, cache: dict[str, Any], encoder: Any
) -> TrajectoryPlanner | None:
    """Stage ``trajectory_planner``, for a transformer with ``anchor_slots``: object tracks
    from the prompt and the first frame's token codes (the tokenizer's quantised vectors of
    the first time step, (Z, h, w)), which image-first sampling draws before the clip."""
    slots = anchor_slots(recipe)
    if not slots:
        return None
    tracks = cache_tracks(recipe, cache, out / "tokens.pt", slots=slots)
    codes = tokenizer.code_maps(cache["tokens"][:, 0].long())  # (N, Z, h, w)
    view = {
        "latents": codes[:, :, None].contiguous(),  # (N, Z, 1, h, w): the first time step
        "wordings": cache["wordings"],
        "objects": cache["objects"],
    }
    bank = CaptionBank(_NonEmptyTextEncoder(encoder))
    return train_planner(
        recipe, out, view, tracks, bank, latent_channels=codes.shape[1], text_dim=encoder.dim
    )


def train_transformer(
    recipe: PhenakiRecipe, out: Path, tokenizer: CViViT, cache: dict[str, Any], encoder: Any
) -> MaskedVideoTransformer:
    """Stage 3, then 3b and 3c when the recipe has them, each continuing the one before; each
    is skipped when its result exists. Returns the final transformer (out/transformer)."""
    parts = {"tokenizer": tokenizer, "cache": cache, "encoder": encoder}
    chain = [name for name in TRANSFORMER_STAGES if name in recipe.stages]
    folders = {"transformer": "transformer-base", "transformer_finetune": "transformer-finetune"}
    previous, transformer = None, None
    for index, name in enumerate(chain):
        final = out / ("transformer" if index == len(chain) - 1 else folders[name])
        transformer = _train_transformer_stage(recipe, name, final, init_from=previous, **parts)
        previous = final
    return transformer


def _train_transformer_stage(
    recipe: PhenakiRecipe,
    name: str,
    final: Path,
    *,
    tokenizer: CViViT,
    cache: dict[str, Any],
    encoder: Any,
    init_from: Path | None = None,
) -> MaskedVideoTransformer:
    """Transformer stage ``name`` on cached tokens, saved to ``final`` (loaded instead when it
    exists); it starts from ``init_from`` (or the stage's ``extra.init_from``) when given."""
    if (final / "config.json").exists():
        return MaskedVideoTransformer.from_pretrained(final).eval()
    stage = recipe.stage(name)
    bank = CaptionBank(_NonEmptyTextEncoder(encoder))
    null_emb, null_mask = bank([""])  # (1, L, D), (1, L)
    # The same seeds in both stages: a fine-tuning stage then trains exactly as a second run of
    # stage 3 with init_from would.
    torch.manual_seed(recipe.seed + 1)
    transformer = build_transformer(recipe, tokenizer, text_dim=encoder.dim)
    start_from = init_from or stage.extra.get("init_from")
    if start_from:
        # A checkpoint of this stage, if there is one, replaces these weights when it resumes.
        start = MaskedVideoTransformer.from_pretrained(start_from)
        load_grown(transformer, start.state_dict(), new_prefixes=("anchors.",))
    fraction, max_prefix = continuation_settings(recipe, name)
    image_fraction = float(stage.extra.get("image_fraction", 0.0))  # checked by image_frames

    tracks, track_dropout = None, float(stage.extra.get("track_dropout", 0.0))
    if transformer.takes_trajectory and _trains_with_tracks(recipe, name):
        tracks = cache_tracks(
            recipe, cache, final.parent / "tokens.pt", slots=transformer.config.anchor_slots
        )

    def loss_fn(model, batch):
        tokens, emb, mask, prefix, *trajectory = batch
        return masked_token_loss(
            model,
            tokens,
            emb,
            mask,
            null_text_emb=null_emb,
            null_text_mask=null_mask,
            text_dropout=recipe.text_dropout,
            frozen_prefix=prefix,
            trajectory=trajectory[0] if trajectory else None,
        )

    transformer = train_stage(
        stage,
        model=transformer,
        loss_fn=loss_fn,
        batches=token_batches(
            cache,
            bank,
            batch_size=stage.batch_size,
            continuation_fraction=fraction,
            max_prefix_steps=max_prefix,
            seed=recipe.seed + 1,
            image_fraction=image_fraction,
            image_batch_size=int(
                stage.extra.get("image_batch_size", stage.batch_size * recipe.token_steps)
            ),
            tracks=tracks,
            track_dropout=track_dropout,
        ),
        out_dir=final.parent / f"stage-{name.replace('_', '-')}",
        ema_decay=stage.ema_decay,
        weight_decay=float(stage.extra.get("weight_decay", 0.0)),
        **_loop_options(stage),
    )
    transformer.save_pretrained(final)
    return transformer


def train_phenaki(recipe: PhenakiRecipe, out_dir: str | Path) -> Path:
    """Run every stage of ``recipe`` (resuming finished ones) and save the pipeline to
    out_dir/pipeline."""
    unknown = set(recipe.stages) - set(PHENAKI_STAGES)  # fail fast, before any training
    if unknown:
        raise ValueError(
            f"unknown stage(s) {sorted(unknown)}; a Phenaki recipe has {PHENAKI_STAGES}"
        )
    tokenizer_image_fraction(recipe)
    continuation_settings(recipe)
    for name in TRANSFORMER_STAGES[1:]:
        if name not in recipe.stages:
            continue
        continuation_settings(recipe, name)
        if "init_from" in recipe.stage(name).extra:
            raise ValueError(
                f"stages.{name} starts from the previous transformer stage's result; put "
                "init_from in stages.transformer.extra instead"
            )
    image_frames(recipe)
    anchor_slots(recipe)
    if "transformer_first_frame" in recipe.stages:
        first_frame_clips(recipe, "transformer_first_frame")
    out = start_run(recipe, out_dir)
    tokenizer = train_tokenizer(recipe, out)
    report_path = out / "tokenizer_report.json"
    if not report_path.exists():
        report = tokenizer_report(
            tokenizer, recipe.worlds, num_frames=recipe.num_frames, seed=recipe.seed
        )
        tmp = report_path.with_name(report_path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, report_path)
        for world, row in report.items():
            logger.info("tokenizer on %s (test split): %s", world, row)
    cache = load_token_cache(recipe, out, tokenizer)
    encoder = load_text_encoder(
        recipe.text_encoder,
        max_length=recipe.max_length,
        cache_dir=out / "text-cache",
        clauses=recipe.text_clauses,
    )
    planner = train_phenaki_planner(recipe, out, tokenizer, cache, encoder)
    transformer = train_transformer(recipe, out, tokenizer, cache, encoder)
    extras = {}
    if "transformer_first_frame" in recipe.stages:
        # Frame 0's tokens from a copy tuned on first frames only (train/first_frame.py).
        extras["image_transformer"] = train_phenaki_first_frame(recipe, out, tokenizer, encoder)
    return save_pipeline(
        PhenakiPipeline,
        recipe,
        out,
        defaults=pipeline_defaults(recipe),
        tokenizer=tokenizer,
        transformer=transformer,
        planner=planner,
        **extras,
    )
