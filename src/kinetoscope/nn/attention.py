"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``.

Axis legend: B batch, N query tokens, M key/value tokens, D model width,
H heads, E head width (D = H * E).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self-attention, or cross-attention when ``context`` is given.

    Args:
        dim: width D of the queries.
        num_heads: number of heads H (``dim`` must be divisible by it).
        context_dim: width of the keys/values source; defaults to ``dim``.
    """

    def __init__(self, dim: int, *, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        context_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        context_mask: torch.Tensor | None = None,
        causal: bool = False,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` (B, N, D) to ``context`` (Bc, M, Dc) or to itself.

        ``context_mask`` (Bc, M) is True where a key is real (False = padding).
        ``causal`` lets query n see keys 0..n only (self-attention).
        ``bias`` (B, H, N, M) is added to the attention logits (not with grouped queries,
        ``context_mask`` or ``causal``).

        ``context`` may be shared by groups of queries: with B = Bc * G, rows
        ``c*G .. c*G + G-1`` of ``x`` all attend to context row ``c`` (frames of one clip,
        or pixels of one clip, to their prompt). The G query sets are then attended as
        one longer sequence, so keys and values are projected once per prompt rather
        than once per frame or pixel; the result equals repeating the context G times.
        """
        source = x if context is None else context
        batch, tokens = x.shape[:2]
        groups = batch // source.shape[0]
        if groups * source.shape[0] != batch or (groups > 1 and causal):
            raise ValueError(f"context batch {source.shape[0]} does not divide query batch {batch}")
        # Native reshapes rather than einops here: this runs a few hundred times per UNet call.
        contexts, heads, width = source.shape[0], self.num_heads, x.shape[-1]
        q = self.to_q(x).view(contexts, groups, tokens, heads, width // heads)
        q = q.permute(0, 3, 1, 2, 4).reshape(contexts, heads, groups * tokens, width // heads)
        kv = self.to_kv(source).view(contexts, source.shape[1], 2, heads, width // heads)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (c, h, m, e)
        attn_mask = None
        if context_mask is not None:
            attn_mask = context_mask.bool()[:, None, None, :]
        if bias is not None:
            if groups > 1 or attn_mask is not None or causal:
                raise ValueError(
                    "an attention bias needs ungrouped, unmasked, non-causal attention"
                )
            attn_mask = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)
        out = out.reshape(contexts, heads, groups, tokens, width // heads).permute(0, 2, 3, 1, 4)
        return self.to_out(out.reshape(batch, tokens, width))


class FeedForward(nn.Sequential):
    """Position-wise MLP: D -> mult*D -> D with GELU."""

    def __init__(self, dim: int, *, mult: int = 4) -> None:
        super().__init__(nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention to text, MLP.

    Args:
        dim: token width D.
        num_heads: attention heads.
        context_dim: width of the cross-attention source (text tokens); None disables it.
        causal: self-attention sees only earlier tokens (C-ViViT's temporal transformer).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        context_dim: int | None = None,
        causal: bool = False,
        mlp_mult: int = 4,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads=num_heads)
        self.cross_attn = None
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, num_heads=num_heads, context_dim=context_dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mult=mlp_mult)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        context_mask: torch.Tensor | None = None,
        self_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, D), context (B, M, Dc), context_mask (B, M) -> (B, N, D).

        ``self_bias`` (B, H, N, N) is added to the self-attention logits.
        """
        x = x + self.self_attn(self.norm_self(x), causal=self.causal, bias=self_bias)
        if self.cross_attn is not None and context is not None:
            x = x + self.cross_attn(self.norm_cross(x), context, context_mask=context_mask)
        return x + self.mlp(self.norm_mlp(x))
