"""Masked-token training loss of the Phenaki family (Villegas et al. 2022, §2.2; MaskGIT,
Chang et al. 2022, §3.1-3.2).

Per clip: draw r ~ U(0, 1), mask ceil(cos(pi/2 * r) * n) of its n maskable tokens (at least
one) chosen uniformly at random, and take the cross-entropy of the model's logits at the
masked positions only.

Classifier-free guidance (Ho & Salimans 2021): with probability ``text_dropout`` a clip's
text condition is replaced by the text encoder's embedding of the empty prompt
(``null_text_emb``, ``null_text_mask``), the same input the sampler uses for the
unconditional pass. We do not zero the text mask instead: an all-False key mask makes
attention undefined (NaN), and the empty prompt is a real input at sampling time anyway.

Continuation: ``frozen_prefix`` leading time steps are never masked, so the model learns to
continue a clip from given tokens. Because C-ViViT is causal, the first P time steps of a
clip's tokens are exactly the tokens of its first 1 + 2(P - 1) frames encoded as a clip of
their own, which is what the story sampler feeds as a prefix (see ``sampling.py``).

Axis legend: B batch, T' token time steps, h/w token grid, N = T'*h*w, L text tokens,
D text width, K codebook size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """U[0, 1) noise drawn on the generator's device (deterministic), moved to ``device``."""
    noise_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=noise_device).to(device)


def cosine_mask_count(ratio_draw: torch.Tensor, num_maskable: torch.Tensor) -> torch.Tensor:
    """r (B,) in [0, 1), n (B,) -> tokens to mask (B,) long: ceil(cos(pi/2 r) * n), at least 1."""
    ratio = torch.cos(math.pi / 2 * ratio_draw)
    counts = (ratio * num_maskable).ceil().long()
    return torch.minimum(counts.clamp(min=1), num_maskable)


def random_mask(
    num_tokens: int,
    *,
    num_frozen: torch.Tensor,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Boolean mask (B, N), True = masked, with a cosine-scheduled count per row.

    Row b never masks its first ``num_frozen[b]`` positions.
    """
    batch = num_frozen.shape[0]
    counts = cosine_mask_count(_rand((batch,), generator, device), num_tokens - num_frozen)  # (B,)
    scores = _rand((batch, num_tokens), generator, device)  # (B, N)
    frozen = torch.arange(num_tokens, device=device)[None, :] < num_frozen[:, None]  # (B, N)
    scores = scores.masked_fill(frozen, math.inf)  # frozen positions rank last, never picked
    ranks = scores.argsort(dim=1, stable=True).argsort(
        dim=1, stable=True
    )  # (B, N) rank of each position
    return ranks < counts[:, None]


def drop_text(
    text_emb: torch.Tensor,
    text_mask: torch.Tensor,
    null_text_emb: torch.Tensor,
    null_text_mask: torch.Tensor,
    drop: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the rows where ``drop`` (B,) is True by the empty-prompt condition.

    null_text_emb (1 or B, L, D) and null_text_mask (1 or B, L) broadcast over the batch.
    """
    if (
        null_text_emb.shape[1:] != text_emb.shape[1:]
        or null_text_mask.shape[1:] != text_mask.shape[1:]
    ):
        raise ValueError(
            f"null text condition {tuple(null_text_emb.shape)} / {tuple(null_text_mask.shape)} must "
            f"match the text condition {tuple(text_emb.shape)} / {tuple(text_mask.shape)} except in "
            "the batch axis; encode the empty prompt with the same text encoder and max_length"
        )
    null_emb = null_text_emb.to(text_emb).expand_as(text_emb)
    null_mask = null_text_mask.to(text_mask.device).bool().expand_as(text_mask)
    emb = torch.where(drop[:, None, None], null_emb, text_emb)
    mask = torch.where(drop[:, None], null_mask, text_mask.bool())
    return emb, mask


def masked_token_loss(
    model: nn.Module,
    tokens: torch.Tensor,
    text_emb: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    null_text_emb: torch.Tensor | None = None,
    null_text_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    text_dropout: float = 0.1,
    frozen_prefix: int | torch.Tensor = 0,
    trajectory: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of a masked video-token transformer on randomly masked tokens.

    Args:
        model: a ``MaskedVideoTransformer`` (anything with ``mask_id`` and
            ``forward(tokens (B, N), text_emb, text_mask) -> logits (B, N, K)``).
        tokens: tokenizer indices (B, T', h, w) long.
        text_emb / text_mask: text condition (B, L, D) float / (B, L) bool.
        null_text_emb / null_text_mask: empty-prompt condition (1 or B, L, D) / (1 or B, L),
            required when ``text_dropout > 0``.
        generator: makes the masks and the text dropout reproducible.
        text_dropout: probability of training a clip unconditionally (for guidance).
        frozen_prefix: leading time steps that are never masked (0 <= P < T'), one int for
            the batch or a (B,) long tensor per clip (mixes generation and continuation).
        trajectory: (B, S, T', 2) object tracks for a model with anchor attentions (rows of NaN
            train without); a clip whose text is dropped loses its tracks too, so the
            unconditional model guidance subtracts has neither.

    Returns:
        (loss, logs) with logs ``{"loss", "mask_ratio", "masked_accuracy"}`` as floats.
    """
    if tokens.ndim != 4:
        raise ValueError(f"tokens must be (B, T', h, w), got shape {tuple(tokens.shape)}")
    batch, num_steps, height, width = tokens.shape
    prefix = torch.as_tensor(frozen_prefix, device=tokens.device).long()
    if prefix.ndim > 1 or (prefix.ndim == 1 and prefix.shape[0] != batch):
        raise ValueError(
            f"frozen_prefix must be an int or a (B={batch},) tensor, got {tuple(prefix.shape)}"
        )
    prefix = prefix.expand(batch)  # (B,)
    if prefix.min() < 0 or prefix.max() >= num_steps:
        raise ValueError(
            f"frozen_prefix must be in [0, {num_steps - 1}] for T'={num_steps}, got {frozen_prefix}"
        )
    if not 0.0 <= text_dropout <= 1.0:
        raise ValueError(f"text_dropout must be a probability in [0, 1], got {text_dropout}")
    device = tokens.device
    flat = rearrange(tokens, "b t h w -> b (t h w)")  # (B, N)
    num_frozen = prefix * (height * width)  # (B,)
    masked = random_mask(flat.shape[1], num_frozen=num_frozen, generator=generator, device=device)
    inputs = torch.where(masked, torch.full_like(flat, model.mask_id), flat)
    if text_dropout > 0:
        if null_text_emb is None or null_text_mask is None:
            raise ValueError(
                "text_dropout > 0 needs null_text_emb and null_text_mask (the text encoder's "
                "encoding of the empty prompt ''); pass them or set text_dropout=0"
            )
        drop = _rand((batch,), generator, device) < text_dropout  # (B,)
        text_emb, text_mask = drop_text(text_emb, text_mask, null_text_emb, null_text_mask, drop)
        if trajectory is not None:
            trajectory = trajectory.masked_fill(drop[:, None, None, None], math.nan)
    extra = () if trajectory is None else (trajectory,)
    logits = model(inputs, text_emb, text_mask, *extra)  # (B, N, K)
    loss = F.cross_entropy(logits[masked], flat[masked])
    with torch.no_grad():
        accuracy = (logits[masked].argmax(dim=-1) == flat[masked]).float().mean()
        ratio = (masked.sum(dim=1) / (flat.shape[1] - num_frozen)).mean()
    logs = {
        "loss": float(loss.detach()),
        "mask_ratio": float(ratio),
        "masked_accuracy": float(accuracy),
    }
    return loss, logs
