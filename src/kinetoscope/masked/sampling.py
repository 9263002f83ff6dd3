"""Iterative parallel decoding of video tokens (MaskGIT, Chang et al. 2022, §3.2) and story
continuation (Phenaki, Villegas et al. 2022, §2.3 and Fig. 3).

``maskgit_sample`` starts from a fully masked token grid (except a frozen prefix). At step
s of S it predicts every position, samples a token per masked position (Gumbel-max at
``temperature``), scores each sample by its log-probability plus Gumbel noise whose scale
``choice_temperature * (1 - (s + 1) / S)`` anneals to zero, keeps the most confident, and
re-masks the rest so that ``floor(n * cos(pi/2 * (s + 1) / S))`` of the n initially masked
tokens stay masked (the cosine schedule used in training). At least one token is fixed per
step and none remain masked after the last. Classifier-free guidance evaluates the
conditional and the unconditional (empty-prompt) inputs in one batched forward:
``logits = uncond + s * (cond - uncond)``. All randomness comes from the given generator(s).

Story continuation. Phenaki generates a long video as segments, each conditioned on its own
prompt and on the last frames of the previous segment. C-ViViT is causal and its first time
step covers a single frame, so the tokens of a clip's *last* frames depend on everything
before them and are not a valid start of a clip. Instead we take the last ``1 + 2m`` frames
of the previous segment, re-encode them as a fresh clip -> (1 + m) time steps of tokens, and
freeze them as the prefix of the next segment. This is exactly what the model saw in
training with ``frozen_prefix = 1 + m`` (the first P time steps of a clip's tokens equal the
tokens of its first 1 + 2(P - 1) frames encoded alone). Decoding the new tokens gives
``1 + 2(T' - 1)`` frames whose first ``1 + 2m`` re-create the context; drop them and append
the rest to the story.

Axis legend: B batch, T' token time steps, P prefix time steps, h/w token grid,
N = T'*h*w, K codebook size, L text tokens, D text width, C/T/H/W video axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from einops import rearrange
from torch import nn

Generators = torch.Generator | Sequence[torch.Generator] | None


def _uniform(
    shape: tuple[int, ...], batch: int, generator: Generators, device: torch.device
) -> torch.Tensor:
    """U(0, 1) noise (B, *shape); with a list of generators, row i comes from generator i,
    so a sample does not depend on what else is in the batch."""
    if isinstance(generator, Sequence):
        if len(generator) != batch:
            raise ValueError(
                f"got {len(generator)} generators for a batch of {batch}; pass one per sample"
            )
        rows = [torch.rand(shape, generator=g, device=g.device) for g in generator]
        return torch.stack(rows).to(device)
    noise_device = generator.device if generator is not None else device
    return torch.rand((batch, *shape), generator=generator, device=noise_device).to(device)


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(uniform.dtype).tiny
    return -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - 1e-7)))


def guided_logits(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    text_emb: torch.Tensor,
    text_mask: torch.Tensor,
    null_emb: torch.Tensor | None,
    null_mask: torch.Tensor | None,
    guidance_scale: float,
    trajectory: torch.Tensor | None = None,
) -> torch.Tensor:
    """Classifier-free guided logits (B, N, K) for tokens (B, N), in one batched forward.

    null_emb (1 or B, L, D) / null_mask (1 or B, L) is the empty (or negative) prompt; with
    ``guidance_scale == 1`` it is not needed and only the conditional pass runs.
    trajectory (B, S, T', 2): object tracks for a model with anchor attentions; the
    conditional branch follows them and the unconditional one runs without (as trained: the
    tracks are dropped with the text), so guidance pushes towards both.
    """
    extra = () if trajectory is None else (trajectory,)
    if guidance_scale == 1.0:
        return model(tokens, text_emb, text_mask, *extra)
    if null_emb is None or null_mask is None:
        raise ValueError(
            "guidance_scale != 1 needs null_emb and null_mask (the text encoder's encoding of the "
            "empty or negative prompt); pass them or set guidance_scale=1"
        )
    batch = tokens.shape[0]
    if null_emb.shape[1:] != text_emb.shape[1:] or null_mask.shape[1:] != text_mask.shape[1:]:
        raise ValueError(
            f"null condition {tuple(null_emb.shape)} must match the text condition "
            f"{tuple(text_emb.shape)} except in the batch axis (same text encoder and max_length)"
        )
    null_emb = null_emb.to(text_emb).expand(batch, -1, -1)
    null_mask = null_mask.to(text_mask.device).bool().expand(batch, -1)
    if trajectory is not None:
        extra = (torch.cat([trajectory, torch.full_like(trajectory, math.nan)]),)
    logits = model(
        torch.cat([tokens, tokens]),
        torch.cat([text_emb, null_emb]),
        torch.cat([text_mask.bool(), null_mask]),
        *extra,
    )  # (2B, N, K)
    cond, uncond = logits.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _initial_tokens(
    mask_id: int,
    batch: int,
    token_shape: tuple[int, int, int],
    prefix_tokens: torch.Tensor | None,
    device,
) -> torch.Tensor:
    """All-masked grid (B, T', h, w) with the prefix copied in; validates the prefix."""
    tokens = torch.full((batch, *token_shape), mask_id, dtype=torch.long, device=device)
    if prefix_tokens is None:
        return tokens
    num_steps, height, width = token_shape
    if (
        prefix_tokens.ndim != 4
        or prefix_tokens.shape[0] != batch
        or prefix_tokens.shape[2:] != (height, width)
    ):
        raise ValueError(
            f"prefix_tokens must be (B={batch}, P, {height}, {width}), got {tuple(prefix_tokens.shape)}"
        )
    if not 0 < prefix_tokens.shape[1] < num_steps:
        raise ValueError(
            f"prefix_tokens covers {prefix_tokens.shape[1]} time steps; it must be fewer than T'={num_steps}"
        )
    if prefix_tokens.min() < 0 or prefix_tokens.max() >= mask_id:
        raise ValueError(f"prefix_tokens must be codebook ids in [0, {mask_id}) without mask ids")
    tokens[:, : prefix_tokens.shape[1]] = prefix_tokens.long()
    return tokens


def _sample_with_confidence(
    logits: torch.Tensor, *, temperature: float, generator: Generators, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per position (B, N) from logits (B, N, K) and its log-probability (B, N).

    Gumbel-max sampling at ``temperature`` (0 = argmax); the noise comes from ``generator``.
    """
    if temperature > 0:
        noise = _gumbel(_uniform(tuple(logits.shape[1:]), logits.shape[0], generator, device))
        sampled = (logits / temperature + noise).argmax(dim=-1)  # (B, N)
    else:
        sampled = logits.argmax(dim=-1)
    confidence = logits.log_softmax(dim=-1).gather(-1, sampled[..., None])[..., 0]  # (B, N)
    return sampled, confidence


def _remask_least_confident(
    tokens: torch.Tensor,
    sampled: torch.Tensor,
    confidence: torch.Tensor,
    is_masked: torch.Tensor,
    *,
    num_masked: int,
    mask_id: int,
) -> torch.Tensor:
    """Tokens (B, N) after one step: the samples, with the least confident re-masked.

    Only masked positions (``is_masked``) take new samples; per row, ``num_masked`` of them stay
    masked, but at least one is fixed.
    """
    sampled = torch.where(is_masked, sampled, tokens)
    confidence = torch.where(is_masked, confidence, torch.full_like(confidence, math.inf))
    keep_masked = (is_masked.sum(dim=1) - 1).clamp(min=0).clamp(max=num_masked)  # (B,)
    ranks = confidence.argsort(dim=1, stable=True).argsort(
        dim=1, stable=True
    )  # (B, N) 0 = least confident
    return torch.where(ranks < keep_masked[:, None], torch.full_like(sampled, mask_id), sampled)


@torch.no_grad()
def maskgit_sample(
    model: nn.Module,
    *,
    text_emb: torch.Tensor,
    text_mask: torch.Tensor,
    null_emb: torch.Tensor | None,
    null_mask: torch.Tensor | None,
    token_shape: tuple[int, int, int],
    num_steps: int = 12,
    guidance_scale: float = 3.0,
    temperature: float = 1.0,
    choice_temperature: float = 4.5,
    generator: Generators = None,
    prefix_tokens: torch.Tensor | None = None,
    decode_until: int | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    trajectory: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample a token grid (B, T', h, w) by MaskGIT iterative decoding.

    Args:
        model: ``MaskedVideoTransformer`` (``mask_id``, ``forward(tokens, text_emb, text_mask)``).
        text_emb / text_mask: prompt condition (B, L, D) / (B, L).
        null_emb / null_mask: empty or negative prompt (1 or B, L, D) / (1 or B, L); may be None
            when ``guidance_scale == 1``.
        token_shape: (T', h, w) of the result.
        num_steps: decoding steps S.
        guidance_scale: classifier-free guidance scale (1 = conditional only).
        temperature: sampling temperature of the tokens (0 = argmax).
        choice_temperature: scale of the Gumbel noise on confidences, annealed to 0.
        generator: one generator, or one per sample.
        prefix_tokens: (B, P, h, w) time steps that are given and never changed.
        decode_until: decode only the time steps before this one (P < decode_until <= T'); the
            later ones stay masked, in the model's input and in the result. None: all of them.
        callback: ``callback(step, num_steps, tokens (B, T', h, w))`` after every step (mask
            ids mark undecided positions). Decoding stops early once nothing is masked, which
            only happens when ``num_steps`` exceeds the number of tokens to decode.
        trajectory: (B, S, T', 2) object tracks for a transformer with anchor attentions
            (see ``guided_logits``); None samples without.
    """
    if len(token_shape) != 3 or min(token_shape) < 1:
        raise ValueError(f"token_shape must be (T', h, w) with positive sizes, got {token_shape}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if temperature < 0 or choice_temperature < 0:
        raise ValueError("temperature and choice_temperature must be >= 0")
    batch, device, mask_id = text_emb.shape[0], text_emb.device, model.mask_id
    grid = _initial_tokens(mask_id, batch, tuple(token_shape), prefix_tokens, device)
    tokens = rearrange(grid, "b t h w -> b (t h w)")  # (B, N)
    num_prefix = 0 if prefix_tokens is None else prefix_tokens.shape[1]
    until = token_shape[0] if decode_until is None else decode_until
    if not num_prefix < until <= token_shape[0]:
        raise ValueError(
            f"decode_until must be in ({num_prefix}, {token_shape[0]}] (after the prefix, within "
            f"T'), got {decode_until}"
        )
    decoded = torch.arange(tokens.shape[1], device=device) < until * token_shape[1] * token_shape[2]
    num_unknown = int(((tokens[0] == mask_id) & decoded).sum())
    for step in range(num_steps):
        is_masked = (tokens == mask_id) & decoded  # (B, N) still to decode
        if not is_masked.any():
            break
        logits = guided_logits(
            model,
            tokens,
            text_emb=text_emb,
            text_mask=text_mask,
            null_emb=null_emb,
            null_mask=null_mask,
            guidance_scale=guidance_scale,
            trajectory=trajectory,
        ).float()  # (B, N, K)
        sampled, confidence = _sample_with_confidence(
            logits, temperature=temperature, generator=generator, device=device
        )
        choice_scale = choice_temperature * (1.0 - (step + 1) / num_steps)
        if choice_scale > 0:
            confidence = confidence + choice_scale * _gumbel(
                _uniform((tokens.shape[1],), batch, generator, device)
            )
        # How many stay masked after this step: cosine schedule, but fix >= 1 new token.
        target = math.floor(num_unknown * math.cos(math.pi / 2 * (step + 1) / num_steps))
        tokens = _remask_least_confident(
            tokens, sampled, confidence, is_masked, num_masked=target, mask_id=mask_id
        )
        if callback is not None:
            callback(
                step,
                num_steps,
                rearrange(tokens, "b (t h w) -> b t h w", t=token_shape[0], h=token_shape[1]),
            )
    return rearrange(tokens, "b (t h w) -> b t h w", t=token_shape[0], h=token_shape[1])


@torch.no_grad()
def prefix_from_video(
    tokenizer: nn.Module, video: torch.Tensor, *, context_frames: int
) -> torch.Tensor:
    """Re-encode the last ``context_frames`` (= 1 + 2m) frames of video (B, C, T, H, W) in
    [-1, 1] as a fresh clip -> prefix tokens (B, 1 + m, h, w)."""
    if context_frames < 1 or context_frames % 2 == 0:
        raise ValueError(
            f"context_frames must be 1 + 2m (C-ViViT's first time step is one frame), got {context_frames}"
        )
    if context_frames > video.shape[2]:
        raise ValueError(
            f"context_frames={context_frames} exceeds the previous clip's {video.shape[2]} frames"
        )
    return tokenizer.encode(video[:, :, -context_frames:])


def continue_tokens(
    model: nn.Module,
    tokenizer: nn.Module,
    *,
    previous_video: torch.Tensor,
    context_frames: int,
    text_emb: torch.Tensor,
    text_mask: torch.Tensor,
    null_emb: torch.Tensor | None,
    null_mask: torch.Tensor | None,
    token_shape: tuple[int, int, int],
    **sample_options,
) -> torch.Tensor:
    """Tokens (B, T', h, w) of the next story segment, continuing ``previous_video``.

    previous_video (B, C, T, H, W) in [-1, 1] (clamp decoded frames first); its last
    ``context_frames`` = 1 + 2m frames become the frozen prefix (1 + m time steps).
    ``sample_options`` go to ``maskgit_sample`` (num_steps, guidance_scale, temperature,
    generator, callback, ...). Decode the result with ``tokenizer.decode_indices`` and drop
    its first ``context_frames`` frames, which re-create the context.
    """
    prefix = prefix_from_video(tokenizer, previous_video, context_frames=context_frames)
    return maskgit_sample(
        model,
        text_emb=text_emb,
        text_mask=text_mask,
        null_emb=null_emb,
        null_mask=null_mask,
        token_shape=token_shape,
        prefix_tokens=prefix,
        **sample_options,
    )
