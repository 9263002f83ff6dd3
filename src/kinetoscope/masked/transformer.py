"""Bidirectional masked video-token transformer of the Phenaki family (Villegas et al. 2022, §2.2).

The C-ViViT tokens of a clip, (T', h, w), are flattened into one sequence of N = T'*h*w
tokens. Some are replaced by a [MASK] id; a bidirectional transformer that cross-attends
to the text tokens predicts a distribution over the codebook at every position (MaskGIT,
Chang et al. 2022, §3). Positions are learned and factorised: time + row + column
embeddings, so a model trained on T' time steps also runs on any T' <= ``max_time_tokens``.

With ``local_mixing`` every block is preceded by a residual depthwise 3x3x3 convolution over
the (T', h, w) token grid. Attention learns locality from absolute positions only slowly; on
sparse clips (a digit on a black background, 84% of the tokens are background) a model
without it stays at the background marginal for hundreds of steps, since it cannot yet tell
which masked positions border visible foreground tokens.

With ``code_levels`` (the FSQ levels of the tokenizer, e.g. (5, 5, 5)) a code is also seen
through its per-channel digits: its input embedding adds one learned vector per (channel,
level), and its logit adds one score per (channel, level), so
``logit(k) = joint(k) + sum_i head_i(level_i(k))``. Codes that share levels share evidence,
which rare foreground codes need (each of them is seen a few times per batch only); the
joint term keeps the full codebook expressible, and sampling is unchanged (it sees K logits).

With ``anchor_slots`` = S, every block is followed by an ``AnchorAttention`` with S heads that
follow given object tracks (as in the Video LDM, ``kinetoscope.diffusion.trajectories``): a
token at time step t and cell p reads the first time step's tokens around p moved back along
head s's track. The tracks come with the data in training and from a ``TrajectoryPlanner`` at
sampling; without them (``trajectory=None``, or NaN rows such as the unconditional half of a
guided batch) these layers pass their input through. Their output projections start at zero,
so a model grown with them starts out as the model it was grown from.

Axis legend: B batch, N = T'*h*w video tokens, T' token time steps, h/w token grid,
L text tokens, Dt text width, D model width, K = num_codes codebook size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from kinetoscope.autoencoders.quantizers import FSQ
from kinetoscope.diffusion.trajectories import AnchorAttention
from kinetoscope.nn.attention import TransformerBlock


class LocalMixing(nn.Module):
    """Residual depthwise 3x3x3 convolution over the token grid, then a pointwise projection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """x (B, N, D) with N = T'*h*w in (t h w) order -> (B, N, D)."""
        steps, height, width = grid
        h = rearrange(self.norm(x), "b (t h w) d -> b d t h w", t=steps, h=height, w=width)
        h = rearrange(self.conv(h), "b d t h w -> b (t h w) d")
        return x + self.proj(F.gelu(h))


class MaskedVideoTransformer(ModelMixin, ConfigMixin):
    """Text-conditioned bidirectional transformer over video tokens.

    Args:
        num_codes: codebook size K of the tokenizer; id K is [MASK].
        max_time_tokens: largest T' (17 frames -> 9 time steps for C-ViViT).
        height_tokens / width_tokens: h and w of the token grid.
        text_dim: width Dt of the text encoder's token embeddings.
        dim: model width D.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_mult: MLP expansion.
        local_mixing: a depthwise 3x3x3 convolution over the token grid before every block.
        code_levels: FSQ levels of the tokenizer (their product is ``num_codes``); adds the
            factorised code embeddings and scores described above.
        anchor_slots: object tracks S the given-track anchor attentions follow (0: none).
    """

    @register_to_config
    def __init__(
        self,
        *,
        num_codes: int = 1000,
        max_time_tokens: int = 9,
        height_tokens: int = 8,
        width_tokens: int = 8,
        text_dim: int = 384,
        dim: int = 192,
        depth: int = 4,
        num_heads: int = 4,
        mlp_mult: int = 4,
        local_mixing: bool = False,
        code_levels: tuple[int, ...] | None = None,
        anchor_slots: int = 0,
    ) -> None:
        super().__init__()
        self.token_emb = nn.Embedding(num_codes + 1, dim)  # + [MASK]
        self.level_emb = self.level_heads = None
        if code_levels is not None:
            levels = [int(level) for level in code_levels]
            if math.prod(levels) != num_codes:
                raise ValueError(
                    f"code_levels {levels} multiply to {math.prod(levels)}, not {num_codes}"
                )
            digits = FSQ(levels).indices_to_digits(torch.arange(num_codes))  # (K, d)
            mask_digits = torch.tensor(levels)[None]  # [MASK] has its own row per channel
            self.register_buffer(
                "code_digits", torch.cat([digits, mask_digits]), persistent=False
            )  # (K + 1, d)
            self.level_emb = nn.ModuleList(nn.Embedding(level + 1, dim) for level in levels)
            self.level_heads = nn.ModuleList(nn.Linear(dim, level) for level in levels)
            for table in self.level_emb:
                nn.init.normal_(table.weight, std=0.02)
        self.time_emb = nn.Parameter(torch.randn(max_time_tokens, dim) * 0.02)
        self.row_emb = nn.Parameter(torch.randn(height_tokens, dim) * 0.02)
        self.col_emb = nn.Parameter(torch.randn(width_tokens, dim) * 0.02)
        self.text_norm = nn.LayerNorm(text_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads=num_heads, context_dim=text_dim, mlp_mult=mlp_mult)
            for _ in range(depth)
        )
        self.local = nn.ModuleList(LocalMixing(dim) for _ in range(depth)) if local_mixing else None
        self.norm_out = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, num_codes)
        nn.init.normal_(self.token_emb.weight, std=0.02)
        # Built last, on a forked random state: every other weight, and every draw after this
        # constructor, is as in a model without them, which so trains the same as long as no
        # tracks are given.
        self.anchors = None
        if anchor_slots:
            with torch.random.fork_rng(devices=[]):
                self.anchors = nn.ModuleList(
                    AnchorAttention(
                        dim, num_heads=anchor_slots, context_dim=text_dim, read_out="given"
                    )
                    for _ in range(depth)
                )

    @property
    def mask_id(self) -> int:
        """Token id that marks a masked position (== num_codes)."""
        return self.config.num_codes

    @property
    def num_codes(self) -> int:
        """Codebook size K; logits have K entries (the mask id is never predicted)."""
        return self.config.num_codes

    @property
    def max_time_tokens(self) -> int:
        """Largest number of token time steps T' the position table covers."""
        return self.config.max_time_tokens

    @property
    def takes_trajectory(self) -> bool:
        """Whether ``forward`` follows given object tracks (``anchor_slots`` > 0)."""
        return bool(self.config.anchor_slots)

    @property
    def tokens_per_step(self) -> int:
        """h * w tokens per time step."""
        return self.config.height_tokens * self.config.width_tokens

    def _positions(self, num_steps: int) -> torch.Tensor:
        """Factorised learned positions -> (T'*h*w, D)."""
        pos = (
            self.time_emb[:num_steps, None, None, :]
            + self.row_emb[None, :, None, :]
            + self.col_emb[None, None, :, :]
        )  # (T', h, w, D)
        return rearrange(pos, "t h w d -> (t h w) d")

    def _check_inputs(
        self, tokens: torch.Tensor, text_emb: torch.Tensor, text_mask: torch.Tensor
    ) -> int:
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be (B, N) long, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        num_tokens = tokens.shape[1]
        per_step = self.tokens_per_step
        if num_tokens % per_step or not 0 < num_tokens // per_step <= self.max_time_tokens:
            raise ValueError(
                f"N={num_tokens} tokens must be T' x {per_step} (h*w) with 1 <= T' <= "
                f"{self.max_time_tokens}; use a shorter clip or a model with larger max_time_tokens"
            )
        if tokens.min() < 0 or tokens.max() > self.mask_id:
            raise ValueError(
                f"token ids must lie in [0, {self.num_codes}] ({self.mask_id} = [MASK]), got range "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        if text_emb.ndim != 3 or text_emb.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"text_emb must be (B, L, D) with B={tokens.shape[0]}, got {tuple(text_emb.shape)}"
            )
        if text_mask.shape != text_emb.shape[:2]:
            raise ValueError(
                f"text_mask must be (B, L) = {tuple(text_emb.shape[:2])}, got {tuple(text_mask.shape)}"
            )
        if not text_mask.bool().any(dim=1).all():
            raise ValueError(
                "every text_mask row needs at least one real token; for an unconditional pass use the "
                "text encoder's embedding of the empty prompt instead of an all-False mask"
            )
        return num_tokens // per_step

    def forward(
        self,
        tokens: torch.Tensor,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        trajectory: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens (B, N) long (mask_id where masked), text_emb (B, L, Dt), text_mask (B, L) bool
        (True = real token) -> logits (B, N, K).

        trajectory (B, S, T', 2): each object's displacement from the first time step at every
        token time step, (x, y) in frame widths (``token_step_tracks``); rows holding NaN, or
        None, run without tracks. Only for models with ``anchor_slots``.
        """
        num_steps = self._check_inputs(tokens, text_emb, text_mask)
        if trajectory is not None and self.anchors is None:
            raise ValueError(
                "this transformer has no anchor attentions; build it with anchor_slots"
            )
        x = self.token_emb(tokens) + self._positions(num_steps)  # (B, N, D)
        if self.level_emb is not None:
            digits = self.code_digits[tokens]  # (B, N, d)
            for channel, table in enumerate(self.level_emb):
                x = x + table(digits[..., channel])
        context = self.text_norm(text_emb.to(x.dtype))  # (B, L, Dt)
        context_mask = text_mask.bool()
        grid = (num_steps, self.config.height_tokens, self.config.width_tokens)
        for index, block in enumerate(self.blocks):
            if self.local is not None:
                x = self.local[index](x, grid)
            x = block(x, context, context_mask=context_mask)
            if self.anchors is not None and trajectory is not None:
                x = self._follow_tracks(
                    self.anchors[index], x, context, context_mask, trajectory, grid
                )
        x = self.norm_out(x)
        logits = self.to_logits(x)  # (B, N, K)
        if self.level_heads is not None:
            digits = self.code_digits[: self.num_codes]  # (K, d)
            for channel, head in enumerate(self.level_heads):
                logits = logits + head(x)[..., digits[:, channel]]  # (B, N, L_i) -> (B, N, K)
        return logits

    @staticmethod
    def _follow_tracks(anchor, x, context, context_mask, trajectory, grid) -> torch.Tensor:
        """x (B, N, D) through a given-track anchor attention on the (T', h, w) token grid."""
        steps, height, width = grid
        maps = rearrange(x, "b (t h w) d -> (b t) d h w", t=steps, h=height, w=width)
        maps = anchor(maps, context, context_mask, num_frames=steps, trajectory=trajectory)
        return rearrange(maps, "(b t) d h w -> b (t h w) d", t=steps)


def token_step_tracks(tracks: torch.Tensor) -> torch.Tensor:
    """Per-frame tracks (B, S, 1 + 2k, 2) -> per-token-time-step tracks (B, S, 1 + k, 2).

    C-ViViT's first time step is frame 0 and step j >= 1 the tubelet of frames 2j - 1 and 2j,
    so step j sits at the mean of those two frames' displacements.
    """
    frames = tracks.shape[2]
    if frames % 2 == 0:
        raise ValueError(f"tracks must cover 1 + 2k frames (C-ViViT clips), got {frames}")
    if frames == 1:
        return tracks
    tubes = tracks[:, :, 1:].unflatten(2, (frames // 2, 2)).mean(dim=3)  # (B, S, k, 2)
    return torch.cat([tracks[:, :, :1], tubes], dim=2)
