"""C-ViViT video tokenizer of the Phenaki family (Villegas et al. 2022, §2.1, Fig. 2).

A clip of T = 1 + 2k frames becomes a grid of discrete tokens (1 + k, h, w):

1. Patch embedding. The first frame is cut into p x p patches on its own; every later pair
   of frames is cut into 2 x p x p tubelets. So the first frame can be tokenized (and
   decoded) alone, which is what lets Phenaki condition on an image or on the last frames
   of a previous clip.
2. A spatial transformer (all-to-all over the h*w tokens of one time step), then a causal
   temporal transformer (over the 1 + k time steps at one spatial position; step t attends
   to steps <= t only).
3. A linear projection to a few channels and finite scalar quantization (FSQ, Mentzer et al.
   2023; the paper uses a VQ codebook, FSQ needs no codebook losses) -> token indices.
4. The decoder mirrors it: codes -> linear -> causal temporal transformer -> spatial
   transformer -> linear un-patchify (first time step -> 1 frame, others -> 2 frames).

Every operation acts within a time step or attends causally across time, and the norms are
per token, so the tokens (and latents) of frames <= t do not depend on later frames, and
decoded frames <= t do not depend on later tokens. Positions: learned embeddings over the
h*w grid and sinusoidal embeddings over time, so any length 1 + 2k works.

Axis legend: B batch, C image channels, T frames, H/W image height/width, p patch size,
T' = 1 + k token time steps, h = H/p, w = W/p token grid, D model width, d FSQ channels.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from kinetoscope.autoencoders.quantizers import FSQ
from kinetoscope.nn.attention import TransformerBlock
from kinetoscope.nn.embeddings import sinusoidal_embedding


def check_num_frames(num_frames: int) -> int:
    """Return k for ``num_frames = 1 + 2k``; otherwise raise a ValueError naming the nearest lengths."""
    if num_frames >= 1 and num_frames % 2 == 1:
        return (num_frames - 1) // 2
    nearest = "1" if num_frames < 1 else f"{num_frames - 1} or {num_frames + 1}"
    raise ValueError(
        f"C-ViViT needs num_frames = 1 + 2k (the first frame alone, then 2-frame tubelets); "
        f"got {num_frames}. Nearest valid lengths: {nearest}."
    )


class FactorisedTransformer(nn.Module):
    """Spatial blocks over the h*w tokens of each time step and causal temporal blocks over the
    T' time steps at each position, applied in the given ``order``."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        spatial_depth: int,
        temporal_depth: int,
        mlp_mult: int,
        order: str,
    ) -> None:
        super().__init__()
        self.order = order
        self.spatial = nn.ModuleList(
            TransformerBlock(dim, num_heads=num_heads, mlp_mult=mlp_mult)
            for _ in range(spatial_depth)
        )
        self.temporal = nn.ModuleList(
            TransformerBlock(dim, num_heads=num_heads, mlp_mult=mlp_mult, causal=True)
            for _ in range(temporal_depth)
        )

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width, _ = x.shape
        h = rearrange(x, "b t h w d -> (b t) (h w) d")
        for block in self.spatial:
            h = block(h)
        return rearrange(h, "(b t) (h w) d -> b t h w d", b=batch, h=height, w=width)

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width, _ = x.shape
        h = rearrange(x, "b t h w d -> (b h w) t d")
        for block in self.temporal:
            h = block(h)
        return rearrange(h, "(b h w) t d -> b t h w d", b=batch, h=height, w=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T', h, w, D) -> (B, T', h, w, D)."""
        if self.order == "spatial_first":
            return self._temporal(self._spatial(x))
        return self._spatial(self._temporal(x))


class CViViT(ModelMixin, ConfigMixin):
    """Causal video tokenizer with an FSQ bottleneck.

    Args:
        in_channels: image channels C.
        image_size: H = W of the clips it accepts (must be a multiple of ``patch_size``).
        patch_size: p; tokens cover p x p pixels (x 2 frames after the first).
        dim: transformer width D.
        num_heads: attention heads.
        spatial_depth / temporal_depth: blocks in each transformer, the same in encoder and decoder.
        mlp_mult: MLP expansion.
        fsq_levels: values per FSQ channel; ``prod(fsq_levels)`` is the number of codes.
    """

    @register_to_config
    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        patch_size: int = 8,
        dim: int = 128,
        num_heads: int = 4,
        spatial_depth: int = 2,
        temporal_depth: int = 2,
        mlp_mult: int = 4,
        fsq_levels: tuple[int, ...] = (8, 5, 5, 5),
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size={image_size} must be a multiple of patch_size={patch_size}"
            )
        self.grid = image_size // patch_size
        first_dim = in_channels * patch_size * patch_size  # one frame per token
        tube_dim = 2 * first_dim  # two frames per token
        self.quantizer = FSQ(fsq_levels)
        block_args = {
            "num_heads": num_heads,
            "spatial_depth": spatial_depth,
            "temporal_depth": temporal_depth,
            "mlp_mult": mlp_mult,
        }
        # Encoder.
        self.embed_first = nn.Linear(first_dim, dim)
        self.embed_tube = nn.Linear(tube_dim, dim)
        self.enc_pos = nn.Parameter(torch.randn(self.grid, self.grid, dim) * 0.02)
        self.encoder = FactorisedTransformer(dim, order="spatial_first", **block_args)
        self.enc_norm = nn.LayerNorm(dim)
        self.to_latent = nn.Linear(dim, self.quantizer.dim)
        # Decoder.
        self.from_latent = nn.Linear(self.quantizer.dim, dim)
        self.dec_pos = nn.Parameter(torch.randn(self.grid, self.grid, dim) * 0.02)
        self.decoder = FactorisedTransformer(dim, order="temporal_first", **block_args)
        self.dec_norm = nn.LayerNorm(dim)
        self.head_first = nn.Linear(dim, first_dim)
        self.head_tube = nn.Linear(dim, tube_dim)

    @property
    def num_codes(self) -> int:
        """Number of distinct token ids, ``prod(fsq_levels)``."""
        return self.quantizer.num_codes

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every weight after the quantizer: what fine-tuning the decoder trains while the
        encoder, and so every token it gives, stays as it is."""
        parts = (self.from_latent, self.decoder, self.dec_norm, self.head_first, self.head_tube)
        return [self.dec_pos, *(p for part in parts for p in part.parameters())]

    def tokens_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Token grid (T', h, w) of a clip of ``num_frames`` x ``height`` x ``width``."""
        k = check_num_frames(num_frames)
        size = self.config.image_size
        if (height, width) != (size, size):
            raise ValueError(
                f"this C-ViViT was built for {size}x{size} frames, got {height}x{width}; "
                f"resize the clip or build a tokenizer with image_size={height}"
            )
        return 1 + k, self.grid, self.grid

    def _positions(self, table: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Learned (h, w) table + sinusoidal time -> (T', h, w, D)."""
        times = torch.arange(num_steps, device=table.device)
        temporal = sinusoidal_embedding(times, table.shape[-1]).to(table.dtype)  # (T', D)
        return table[None] + temporal[:, None, None, :]

    def encode_latents(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) in [-1, 1] -> pre-quantization latents (B, T', h, w, d)."""
        if video.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        num_steps, _, _ = self.tokens_shape(*video.shape[2:])
        p = self.config.patch_size
        video = video.to(self.dtype)
        first = rearrange(
            video[:, :, :1], "b c 1 (h p1) (w p2) -> b 1 h w (c p1 p2)", p1=p, p2=p
        )  # (B, 1, h, w, C*p*p)
        tokens = [self.embed_first(first)]
        if num_steps > 1:
            tubes = rearrange(
                video[:, :, 1:],
                "b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)",
                pt=2,
                p1=p,
                p2=p,
            )  # (B, k, h, w, C*2*p*p)
            tokens.append(self.embed_tube(tubes))
        x = torch.cat(tokens, dim=1) + self._positions(self.enc_pos, num_steps)  # (B, T', h, w, D)
        x = self.encoder(x)
        return self.to_latent(self.enc_norm(x))

    def quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latents (B, T', h, w, d) -> (codes (B, T', h, w, d), indices (B, T', h, w) long)."""
        return self.quantizer(latents)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, 1+2k, H, W) in [-1, 1] -> token indices (B, 1+k, h, w) long."""
        return self.quantize(self.encode_latents(video))[1]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T', h, w, d) -> video (B, C, 1 + 2(T'-1), H, W), not clamped."""
        num_steps = codes.shape[1]
        if codes.shape[2:4] != (self.grid, self.grid):
            raise ValueError(
                f"token grid must be {self.grid}x{self.grid} for this tokenizer, got "
                f"{tuple(codes.shape[2:4])}"
            )
        p = self.config.patch_size
        x = self.from_latent(codes.to(self.dtype)) + self._positions(self.dec_pos, num_steps)
        x = self.dec_norm(self.decoder(x))  # (B, T', h, w, D)
        first = rearrange(
            self.head_first(x[:, :1]), "b 1 h w (c p1 p2) -> b c 1 (h p1) (w p2)", p1=p, p2=p
        )  # (B, C, 1, H, W)
        if num_steps == 1:
            return first
        rest = rearrange(
            self.head_tube(x[:, 1:]),
            "b t h w (c pt p1 p2) -> b c (t pt) (h p1) (w p2)",
            pt=2,
            p1=p,
            p2=p,
        )  # (B, C, 2k, H, W)
        return torch.cat([first, rest], dim=2)

    def code_maps(self, indices: torch.Tensor) -> torch.Tensor:
        """One time step's token indices (B, h, w) -> their code vectors as maps (B, d, h, w),
        the form a trajectory planner reads a first frame in."""
        return self.quantizer.indices_to_codes(indices).permute(0, 3, 1, 2)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, T', h, w) long -> video (B, C, 1 + 2(T'-1), H, W), not clamped."""
        if indices.ndim != 4:
            raise ValueError(f"indices must be (B, T', h, w), got shape {tuple(indices.shape)}")
        return self.decode_codes(self.quantizer.indices_to_codes(indices))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, C, T, H, W) -> (reconstruction (B, C, T, H, W), indices (B, T', h, w)).

        Gradients flow through the quantizer (straight-through), so an MSE on the
        reconstruction trains encoder and decoder together.
        """
        codes, indices = self.quantize(self.encode_latents(video))
        return self.decode_codes(codes), indices
