"""Text-to-video and story inference with a masked video-token model (Phenaki, Villegas et al.
2022, §2.3 and Fig. 3).

prompt -> text encoder -> MaskGIT decoding of C-ViViT tokens (B, T', h, w) with classifier-free
guidance -> C-ViViT decoder -> Video.

Lengths. C-ViViT codes ``1 + 2k`` frames (one frame, then 2-frame tubelets). A request for an
even number of frames generates the next valid length and drops the *last* frame (C-ViViT is
causal, so no earlier frame depends on it): ``num_frames=16`` samples 17 frames and returns
frames 0..15. One window covers at most ``window_frames = 1 + 2 (max_time_tokens - 1)``
frames (17 for the shipped models); longer requests are continued window by window.

Continuation (``story``, ``continue_video`` and long clips). Each window re-encodes the last
``context_frames`` (= 1 + 2m) frames of the video so far as a fresh clip, freezes those
1 + m token time steps as the prefix (``masked.continue_tokens``) and decodes a full window
under the current prompt; its first ``context_frames`` frames re-create the context and are
dropped, so a window adds ``window_frames - context_frames`` new frames and nothing is
duplicated at a join. The context always goes through ``Video`` (uint8), so continuing a clip
in memory and continuing the same clip read back from a lossless file give the same result:
``story(prompts, seed=s)`` equals ``pipe(prompts[0], seed=s)`` followed by
``continue_video(..., prompts[i], seed=s + i)`` for each later prompt.

Object tracks. A transformer with anchor attentions (``anchor_slots``) comes with a
``TrajectoryPlanner``: once a window's first time step is known (drawn as an image, or the
re-encoded context), the planner proposes each object's track from the prompt and that step's
token codes, and the window's later steps are decoded following it. The default
``track_continuations: false`` leaves continuation windows (long clips, story segments after
the first) without tracks.

Axis legend: B batch, C channels, T frames, H/W pixels, T' token time steps, h/w token grid,
L text tokens, D text width.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.diffusion.planner import TrajectoryPlanner
from kinetoscope.masked import MaskedVideoTransformer, maskgit_sample
from kinetoscope.masked.sampling import prefix_from_video
from kinetoscope.masked.transformer import token_step_tracks
from kinetoscope.pipelines.base import (
    Pipeline,
    PipelineOutput,
    StepCallback,
    check_continuation,
    check_story_context,
    fit_video,
    normalize_prompts,
    sample_generators,
    segment_generator,
    story_prompts,
)
from kinetoscope.pipelines.compose import composable
from kinetoscope.pipelines.phenaki_run import Run, RunProgress, RunSettings
from kinetoscope.video import Video, videos_from_tensor, videos_to_tensor

logger = logging.getLogger(__name__)


IMAGE_TRANSFORMER = "image_transformer"  # the frame-0 transformer's folder, when kept apart

DEFAULTS = {
    "num_frames": 16,
    "fps": 8.0,
    "num_inference_steps": 12,
    "guidance_scale": 3.0,
    "temperature": 1.0,
    "choice_temperature": 4.5,
    "context_frames": 5,
    "first_frame": "joint",
    "compose_objects": False,  # several objects made one by one, merged (pipelines/compose.py)
    "compose_candidates": 1,  # > 1: later objects drawn that often, the least overlap kept
}


def _settings_of(model: Any) -> dict[str, Any]:
    """A model's configuration without its load metadata (keys starting with "_"), tuples as
    lists (as a saved and loaded configuration holds them)."""
    return json.loads(json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}))


def encode_text(encoder: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """emb (B, L, D), mask (B, L) of ``texts``; a row with no real token (an encoder without
    special tokens given "") gets one zero "null" token, since the transformer's cross-attention
    needs at least one key. Training and sampling both encode through here."""
    emb, mask = encoder.encode(list(texts))
    empty = ~mask.bool().any(dim=1)  # (B,)
    if empty.any():
        emb, mask = emb.clone(), mask.bool().clone()
        emb[empty, 0] = 0.0
        mask[empty, 0] = True
    return emb, mask.bool()


def next_clip_length(num_frames: int) -> int:
    """Smallest C-ViViT length ``1 + 2k >= num_frames``."""
    return num_frames if num_frames % 2 == 1 else num_frames + 1


class PhenakiPipeline(Pipeline):
    """Phenaki pipeline in the diffusers call convention, with story mode.

    Args:
        tokenizer: the C-ViViT video tokenizer.
        transformer: the text-conditioned masked token transformer.
        text_encoder: name or local directory of the text encoder the transformer was trained with.
        max_length: text tokens per prompt.
        text_clauses: encode prompts clause by clause (``kinetoscope.text.clauses``), as the
            model was trained.
        defaults: sampling defaults (num_frames, fps, num_inference_steps, guidance_scale,
            temperature, choice_temperature, context_frames, model_name).
        planner: proposes the object tracks a transformer with anchor attentions follows;
            without one, such a transformer samples without tracks.
    """

    family = "phenaki"
    default_options = DEFAULTS
    components = {"tokenizer": CViViT, "transformer": MaskedVideoTransformer}
    device_component = "transformer"

    def __init__(
        self,
        *,
        tokenizer: CViViT,
        transformer: MaskedVideoTransformer,
        text_encoder: str = "all-MiniLM-L6-v2",
        max_length: int = 32,
        text_clauses: bool = False,
        defaults: dict[str, Any] | None = None,
        planner: TrajectoryPlanner | None = None,
        image_transformer: MaskedVideoTransformer | None = None,
    ) -> None:
        if image_transformer is not None and _settings_of(image_transformer) != _settings_of(
            transformer
        ):
            raise ValueError("the frame-0 transformer must have the clip transformer's config")
        if tokenizer.num_codes != transformer.num_codes:
            raise ValueError(
                f"tokenizer has {tokenizer.num_codes} codes but the transformer predicts "
                f"{transformer.num_codes}; build the transformer with num_codes={tokenizer.num_codes}"
            )
        grid = (transformer.config.height_tokens, transformer.config.width_tokens)
        if grid != (tokenizer.grid, tokenizer.grid):
            raise ValueError(
                f"tokenizer makes a {tokenizer.grid}x{tokenizer.grid} token grid but the "
                f"transformer expects {grid[0]}x{grid[1]}"
            )
        super().__init__(
            text_encoder=text_encoder,
            max_length=max_length,
            defaults=defaults,
            text_clauses=text_clauses,
        )
        self.tokenizer = tokenizer.eval()
        self.transformer = transformer.eval()
        self.planner = None if planner is None else planner.to(self.device).eval()
        # The model frame 0's tokens come from in image-first sampling: the clip transformer
        # unless a copy tuned on first frames is kept apart (stage transformer_first_frame).
        self.image_transformer = transformer
        if image_transformer is not None:
            self.image_transformer = image_transformer.to(self.device).eval()

    @classmethod
    def _load_extras(cls, directory: Path) -> dict[str, Any]:
        """The trajectory planner in ``planner/`` and the frame-0 transformer in
        ``image_transformer/``, if there are any."""
        extras = cls._load_planner(directory)
        if (directory / IMAGE_TRANSFORMER / "config.json").is_file():
            extras["image_transformer"] = MaskedVideoTransformer.from_pretrained(
                directory / IMAGE_TRANSFORMER
            )
        return extras

    def _save_extras(self, directory: Path, dtype: torch.dtype | None) -> None:
        """Write the trajectory planner and the frame-0 transformer, if any."""
        self._save_planner(directory, dtype)
        if self.image_transformer is not self.transformer:
            model = self.image_transformer
            if dtype is not None:
                model = torch.nn.Module.to(copy.deepcopy(model), dtype)
            model.save_pretrained(directory / IMAGE_TRANSFORMER)

    def to(self, device: str | torch.device) -> PhenakiPipeline:
        """Move every component, the planner and the frame-0 transformer to ``device``."""
        super().to(device)
        self.image_transformer.to(device)
        return self

    @property
    def resolution(self) -> int:
        """Frame height = width the tokenizer works at."""
        return int(self.tokenizer.config.image_size)

    @property
    def window_frames(self) -> int:
        """Most frames one MaskGIT window covers: 1 + 2 (max_time_tokens - 1)."""
        return 1 + 2 * (self.transformer.max_time_tokens - 1)

    # ------------------------------------------------------------------ helpers
    def _settings(
        self,
        *,
        num_inference_steps: int | None,
        guidance_scale: float | None,
        temperature: float | None,
        context_frames: int | None,
        fps: float | None,
        first_frame: str | None = None,
    ) -> RunSettings:
        settings = RunSettings(
            steps=self._count_option(num_inference_steps, "num_inference_steps"),
            guidance=float(self._option(guidance_scale, "guidance_scale")),
            temperature=float(self._option(temperature, "temperature")),
            choice_temperature=float(self.defaults["choice_temperature"]),
            context_frames=int(self._option(context_frames, "context_frames")),
            fps=float(self._option(fps, "fps")),
            first_frame=str(self._option(first_frame, "first_frame")),
        )
        if settings.first_frame not in ("joint", "image"):
            raise ValueError(
                f"first_frame must be 'joint' or 'image', got {settings.first_frame!r}"
            )
        if settings.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {settings.temperature}")
        if settings.fps <= 0:
            raise ValueError(f"fps must be positive, got {settings.fps}")
        ctx = settings.context_frames
        if ctx < 1 or ctx % 2 == 0 or ctx >= self.window_frames:
            raise ValueError(
                f"context_frames must be 1 + 2m and below this model's window of "
                f"{self.window_frames} frames (1, 3, ..., {self.window_frames - 2}); got {ctx}"
            )
        return settings

    def _text(self, prompts: list[str], negatives: list[str], guided: bool) -> dict[str, Any]:
        """maskgit_sample's text options (the prompts as the prompt reader, if any, rewrites
        them); negatives form the unconditional branch."""
        prompts = self.read_prompts(prompts)
        texts = prompts + negatives if guided else prompts
        emb, mask = encode_text(self.text_encoder, texts)
        expected = self.transformer.config.text_dim
        if emb.shape[-1] != expected:
            raise ValueError(
                f"the text encoder gives {emb.shape[-1]}-dim embeddings but this transformer was "
                f"trained on {expected}-dim ones from {self.text_encoder_name!r}; use that encoder"
            )
        emb, mask, batch = emb.to(self.device), mask.to(self.device), len(prompts)
        null_emb, null_mask = (emb[batch:], mask[batch:]) if guided else (None, None)
        text = {
            "text_emb": emb[:batch],
            "text_mask": mask[:batch],
            "null_emb": null_emb,
            "null_mask": null_mask,
        }
        own = self.planner_text(prompts)  # a planner that reads other encoder layers
        if own is not None:
            text.update(plan_emb=own[0].to(self.device), plan_mask=own[1].to(self.device))
        return text

    def _num_windows(self, num_frames: int, *, continuing: bool, settings: RunSettings) -> int:
        """MaskGIT windows needed for ``num_frames`` new frames."""
        per_window = self.window_frames - settings.context_frames
        if continuing:
            return math.ceil(num_frames / per_window)
        return 1 + math.ceil(max(num_frames - self.window_frames, 0) / per_window)

    def _sample_window(
        self, run: Run, *, num_frames: int, context: torch.Tensor | None
    ) -> torch.Tensor:
        """One MaskGIT window of ``num_frames`` (1 + 2k) frames -> video (B, C, T, H, W) in
        [-1, 1]; context (B, C, 1 + 2m, H, W) becomes the frozen token prefix."""
        token_shape = self.tokenizer.tokens_shape(num_frames, self.resolution, self.resolution)
        settings = run.settings
        options = {
            **{k: v for k, v in run.text.items() if not k.startswith("plan_")},
            "token_shape": token_shape,
            "num_steps": settings.steps,
            "guidance_scale": settings.guidance,
            "temperature": settings.temperature,
            "choice_temperature": settings.choice_temperature,
            "generator": run.generators,
            "callback": run.progress,
        }
        if context is None and settings.first_frame == "image":
            # The first frame's tokens on their own (an image), then the clip continuing them.
            tokens = maskgit_sample(
                self.image_transformer, **{**options, "token_shape": (1, *token_shape[1:])}
            )
            if token_shape[0] > 1:
                tracks = self._plan(run, tokens[:, 0], num_frames)
                tokens = maskgit_sample(
                    self.transformer, **options, prefix_tokens=tokens, trajectory=tracks
                )
        elif context is None:
            tokens = maskgit_sample(self.transformer, **options)
        else:
            prefix = prefix_from_video(self.tokenizer, context, context_frames=context.shape[2])
            tracks = None
            if self.defaults.get("track_continuations", True):
                tracks = self._plan(run, prefix[:, 0], num_frames)
            tokens = maskgit_sample(
                self.transformer, **options, prefix_tokens=prefix, trajectory=tracks
            )
        return self.tokenizer.decode_indices(tokens).clamp(-1.0, 1.0)

    def _plan(self, run: Run, first: torch.Tensor, num_frames: int) -> torch.Tensor | None:
        """Object tracks per token time step (B, S, T', 2) for a window of ``num_frames``
        frames whose first time step holds the tokens ``first`` (B, h, w); None without a
        planner (or with a transformer that takes no tracks)."""
        if self.planner is None or not self.transformer.takes_trajectory:
            return None
        if num_frames > self.planner.config.num_frames:
            logger.warning(
                "the trajectory planner plans %d frames, not %d: sampling without tracks",
                self.planner.config.num_frames,
                num_frames,
            )
            return None
        tracks = self.planner.sample(
            self.tokenizer.code_maps(first).float(),
            run.text.get("plan_emb", run.text["text_emb"]),
            run.text.get("plan_mask", run.text["text_mask"]),
            list(run.generators),
            agree_px=float(self.defaults.get("agree_px", 2.0)),
        )  # (B, S, planned frames, 2)
        return token_step_tracks(tracks[:, :, :num_frames])

    def _generate(self, run: Run, *, num_frames: int, history: list[Video] | None) -> list[Video]:
        """``num_frames`` new frames per sample: a first window from scratch when ``history`` is
        None, then continuation windows on the last ``context_frames`` of the video so far."""
        ctx, window = run.settings.context_frames, self.window_frames
        new: list[Video] | None = None
        if history is None:
            length = min(next_clip_length(num_frames), window)
            video = self._sample_window(run, num_frames=length, context=None)
            new = history = videos_from_tensor(video[:, :, : min(num_frames, length)])
        while (produced := 0 if new is None else new[0].num_frames) < num_frames:
            context = videos_to_tensor([v[-ctx:] for v in history]).to(self.device)
            video = self._sample_window(run, num_frames=window, context=context)
            # video (B, C, window, H, W); its frames [0, ctx) re-create the context
            take = min(window - ctx, num_frames - produced)
            chunk = videos_from_tensor(video[:, :, ctx : ctx + take])
            new = chunk if new is None else [Video.concat(p) for p in zip(new, chunk, strict=True)]
            history = [Video.concat([h[-ctx:], c]) for h, c in zip(history, chunk, strict=True)]
        return new

    # ------------------------------------------------------------------ sampling
    @composable
    @torch.inference_mode()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        seed: int | list[int] | None = None,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        context_frames: int | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
        first_frame: str | None = None,
        compose_objects: bool | None = None,
    ) -> PipelineOutput:
        """Generate one video per prompt.

        Args:
            prompt: a prompt or a list of prompts.
            num_frames: frames per video (default 16). An even count samples one more frame and
                drops the last; more than ``window_frames`` continues window by window.
            num_inference_steps: MaskGIT decoding steps per window.
            guidance_scale: classifier-free guidance weight (1 disables guidance).
            negative_prompt: replaces the empty prompt in the unconditional branch.
            seed: base seed; sample i uses seed + i (or pass one seed per prompt).
            generator: a single torch.Generator shared by the batch (instead of seed).
            temperature: token sampling temperature (0 = greedy).
            context_frames: frames re-encoded as the prefix of each continuation window.
            callback: called as callback(step, total_steps, tokens (B, T', h, w)) after every
                decoding step of every window (mask ids mark undecided tokens).
            progress: show a progress bar.
            fps: frame rate of the returned videos.
            first_frame: "joint" decodes every token of the first window together; "image"
                first decodes the first frame's tokens on their own (an image, which models
                trained with image batches draw best), then the clip with them frozen.
            compose_objects: make a prompt about several objects one object at a time, merged
                by the pixel-wise maximum (``kinetoscope.pipelines.compose``; default: the
                model's).
        Returns:
            PipelineOutput whose ``frames`` holds one Video per prompt.
        """
        prompts, negatives = normalize_prompts(prompt, negative_prompt)
        del compose_objects  # handled by @composable
        num_frames = self._count_option(num_frames, "num_frames")
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            context_frames=context_frames,
            fps=fps,
            first_frame=first_frame,
        )
        generators, seeds = sample_generators(
            len(prompts), seed=seed, generator=generator, device=self.device
        )
        text = self._text(prompts, negatives, settings.guidance != 1.0)
        windows = self._num_windows(num_frames, continuing=False, settings=settings)
        total = settings.total_steps(windows, fresh=True)
        with RunProgress(total, enabled=progress, callback=callback) as bar:
            run = Run(text, generators, settings, bar)
            videos = self._generate(run, num_frames=num_frames, history=None)
        self._stamp(
            videos,
            prompts,
            negatives,
            seeds,
            fps=settings.fps,
            **settings.metadata(),
            num_frames=num_frames,
        )
        return PipelineOutput(frames=videos)

    @torch.inference_mode()
    def story(
        self,
        prompts: list[str],
        *,
        frames_per_prompt: int = 16,
        context_frames: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        temperature: float | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
    ) -> Video:
        """One continuous video telling ``prompts`` in order, ``frames_per_prompt`` frames each.

        Segment 1 is generated from prompt 1; segment i + 1 continues the last
        ``context_frames`` frames of the story so far (re-encoded, frozen as the token prefix)
        under prompt i + 1 and contributes only new frames. Segment i draws its randomness from
        ``seed + i`` (unless a ``generator`` is given). Other arguments as in ``__call__``;
        ``negative_prompt`` may be one string or one per prompt.

        Returns:
            A Video of ``len(prompts) * frames_per_prompt`` frames whose metadata lists the
            prompts and each segment's [start, end) frame range.
        """
        prompts, negatives = story_prompts(prompts, negative_prompt, frames_per_prompt)
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            context_frames=context_frames,
            fps=fps,
        )
        check_story_context(len(prompts), frames_per_prompt, settings.context_frames)
        windows = self._num_windows(frames_per_prompt, continuing=False, settings=settings)
        windows += (len(prompts) - 1) * self._num_windows(
            frames_per_prompt, continuing=True, settings=settings
        )
        story: Video | None = None
        segments = []
        total = settings.total_steps(windows, fresh=True)
        with RunProgress(total, enabled=progress, callback=callback) as bar:
            for i, (p, n) in enumerate(zip(prompts, negatives, strict=True)):
                gen = segment_generator(seed, i, generator)
                run = Run(self._text([p], [n], settings.guidance != 1.0), [gen], settings, bar)
                history = None if story is None else [story]
                (segment,) = self._generate(run, num_frames=frames_per_prompt, history=history)
                start = 0 if story is None else story.num_frames
                story = segment if story is None else Video.concat([story, segment])
                segments.append({"prompt": p, "start": start, "end": story.num_frames})
        return self._stamp_story(
            story,
            prompts=prompts,
            negatives=negatives,
            segments=segments,
            seed=seed,
            generator=generator,
            fps=settings.fps,
            frames_per_prompt=frames_per_prompt,
            **settings.metadata(),
        )

    @torch.inference_mode()
    def continue_video(
        self,
        video: Video,
        prompt: str,
        *,
        num_frames: int = 16,
        context_frames: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        temperature: float | None = None,
        callback: StepCallback | None = None,
        progress: bool = True,
        fps: float | None = None,
    ) -> Video:
        """The ``num_frames`` frames that follow ``video`` under ``prompt``.

        ``video`` (e.g. ``Video.read(path)``) is centre-cropped and resized to the model's
        resolution when needed; its last ``context_frames`` frames become the frozen prefix.
        Returns only the new frames (at the model's resolution), so
        ``Video.concat([video, new])`` is the whole clip when sizes match. Other arguments as
        in ``__call__``; fps defaults to the input's.
        """
        check_continuation(video, prompt, num_frames)
        prompts, negatives = normalize_prompts(prompt, negative_prompt)
        settings = self._settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            context_frames=context_frames,
            fps=video.fps if fps is None else fps,
        )
        if video.num_frames < settings.context_frames:
            raise ValueError(
                f"the video has {video.num_frames} frame(s) but context_frames="
                f"{settings.context_frames}; pass a longer clip or context_frames <= "
                f"{video.num_frames - (video.num_frames + 1) % 2} (an odd number)"
            )
        fitted, resized = fit_video(video[-settings.context_frames :], self.resolution)
        generators, seeds = sample_generators(1, seed=seed, generator=generator, device=self.device)
        text = self._text(prompts, negatives, settings.guidance != 1.0)
        windows = self._num_windows(num_frames, continuing=True, settings=settings)
        total = settings.total_steps(windows, fresh=False)
        with RunProgress(total, enabled=progress, callback=callback) as bar:
            run = Run(text, generators, settings, bar)
            (new,) = self._generate(run, num_frames=num_frames, history=[fitted])
        self._stamp(
            [new],
            prompts,
            negatives,
            seeds,
            fps=settings.fps,
            **settings.metadata(),
            num_frames=num_frames,
            continued_from=video.metadata.get("prompt"),
            resized_from=[video.height, video.width] if resized else None,
        )
        return new
