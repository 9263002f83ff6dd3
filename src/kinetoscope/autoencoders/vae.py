"""Video autoencoder of the latent video diffusion family (Video LDM, Blattmann et al. 2023, §3.1.1).

A KL autoencoder compresses each frame by ``2 ** (len(channels) - 1)`` in space into a few
latent channels; the diffusion model works in that latent space. The decoder carries
temporal layers (residual convolutions over time, zero-initialised and mixed in through a
learned alpha) which are fine-tuned on clips after the image autoencoder is trained, so
decoded videos do not flicker.

Axis legend: B batch, C channels, T frames, H height, W width, Z latent channels.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import nn

from kinetoscope.nn.blocks import (
    AlphaMix,
    Downsample,
    ResBlock,
    TemporalConvBlock,
    Upsample,
    group_norm,
)


class VideoAutoencoderKL(ModelMixin, ConfigMixin):
    """KL autoencoder with a temporally aware decoder.

    Args:
        in_channels: image channels (3).
        latent_channels: Z.
        channels: width per resolution level; each level after the first halves H and W.
        scaling_factor: multiplies latents so they have unit variance for the diffusion model
            (measured after training and stored in the config).
        latent_shift: per-channel mean subtracted before scaling (measured with the scale), so
            the diffusion model sees zero-mean latents: the mostly-black frames of the worlds
            give every channel a large offset that an epsilon- or v-predicting model would
            otherwise have to reproduce exactly from pure noise. None = no shift.

    ``encode`` returns ``(z - latent_shift) * scaling_factor``; ``decode`` inverts it.
    """

    @register_to_config
    def __init__(
        self,
        *,
        in_channels: int = 3,
        latent_channels: int = 4,
        channels: tuple[int, ...] = (32, 64, 64),
        scaling_factor: float = 1.0,
        latent_shift: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        self.downscale = 2 ** (len(channels) - 1)
        # Encoder: conv, then per level a ResBlock (and a downsample except at the last level).
        self.enc_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.enc_blocks = nn.ModuleList()
        for level, width in enumerate(channels):
            prev = channels[max(level - 1, 0)]
            self.enc_blocks.append(ResBlock(prev, width))
            if level < len(channels) - 1:
                self.enc_blocks.append(Downsample(width))
        self.enc_out = nn.Sequential(
            group_norm(channels[-1]),
            nn.SiLU(),
            nn.Conv2d(channels[-1], 2 * latent_channels, 3, padding=1),
        )
        # Decoder mirrors the encoder; every ResBlock is followed by a temporal block + mix.
        rev = channels[::-1]
        self.dec_in = nn.Conv2d(latent_channels, rev[0], 3, padding=1)
        self.dec_blocks = nn.ModuleList()
        self.dec_temporal = nn.ModuleList()
        self.dec_mix = nn.ModuleList()
        self.dec_up = nn.ModuleList()
        for level, width in enumerate(rev):
            prev = rev[max(level - 1, 0)]
            self.dec_blocks.append(ResBlock(prev, width))
            self.dec_temporal.append(TemporalConvBlock(width))
            self.dec_mix.append(AlphaMix())
            self.dec_up.append(Upsample(width) if level < len(rev) - 1 else nn.Identity())
        self.dec_out = nn.Sequential(
            group_norm(rev[-1]), nn.SiLU(), nn.Conv2d(rev[-1], in_channels, 3, padding=1)
        )

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Weights trained in the decoder's temporal fine-tuning (temporal blocks and alphas)."""
        return [*self.dec_temporal.parameters(), *self.dec_mix.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every decoder weight, spatial and temporal: what fine-tuning the decoder on clips
        trains while the encoder, and so the latent space, stays as it is."""
        parts = (
            self.dec_in,
            self.dec_blocks,
            self.dec_temporal,
            self.dec_mix,
            self.dec_up,
            self.dec_out,
        )
        return [p for part in parts for p in part.parameters()]

    def temporal_parameter_names(self) -> set[str]:
        ids = {id(p) for p in self.temporal_parameters()}
        return {name for name, p in self.named_parameters() if id(p) in ids}

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, C, H, W) in [-1, 1] -> posterior mean and log-variance, each (N, Z, h, w)."""
        h = self.enc_in(frames)
        for block in self.enc_blocks:
            h = block(h)
        mean, logvar = self.enc_out(h).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode_frames(
        self, latents: torch.Tensor, *, num_frames: int | None = None
    ) -> torch.Tensor:
        """latents (N, Z, h, w) -> frames (N, C, H, W). With ``num_frames`` the N frames are
        read as N / num_frames clips and the temporal layers run; without it they are skipped."""
        h = self.dec_in(latents)
        for block, temporal, mix, up in zip(
            self.dec_blocks, self.dec_temporal, self.dec_mix, self.dec_up, strict=True
        ):
            h = block(h)
            if num_frames is not None and num_frames > 1:
                h = mix(h, temporal(h, num_frames=num_frames))
            h = up(h)
        return self.dec_out(h)

    def encode(self, video: torch.Tensor, *, sample: bool = False, generator=None) -> torch.Tensor:
        """video (B, C, T, H, W) in [-1, 1] -> scaled latents (B, Z, T, h, w)."""
        num_frames = video.shape[2]
        frames = rearrange(video, "b c t h w -> (b t) c h w")
        mean, logvar = self.encode_frames(frames)
        z = mean
        if sample:
            noise = torch.randn(
                mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
            )
            z = mean + (0.5 * logvar).exp() * noise
        z = (z - self._shift(z)) * self.config.scaling_factor
        return rearrange(z, "(b t) z h w -> b z t h w", t=num_frames)

    def _shift(self, z: torch.Tensor) -> torch.Tensor | float:
        """latent_shift as a (1, Z, 1, 1) tensor matching ``z`` (N, Z, h, w), or 0."""
        shift = self.config.latent_shift
        if shift is None:
            return 0.0
        if len(shift) != z.shape[1]:
            raise ValueError(f"latent_shift has {len(shift)} values for {z.shape[1]} channels")
        return torch.tensor(shift, device=z.device, dtype=z.dtype)[None, :, None, None]

    def decode(self, latents: torch.Tensor, *, temporal: bool = True) -> torch.Tensor:
        """scaled latents (B, Z, T, h, w) -> video (B, C, T, H, W) (not clamped)."""
        num_frames = latents.shape[2]
        z = rearrange(latents, "b z t h w -> (b t) z h w") / self.config.scaling_factor
        z = z + self._shift(z)
        frames = self.decode_frames(z, num_frames=num_frames if temporal else None)
        return rearrange(frames, "(b t) c h w -> b c t h w", t=num_frames)

    def decode_chunked(self, latents: torch.Tensor, *, chunk_size: int | None) -> torch.Tensor:
        """Decode a long clip in overlapping windows of ``chunk_size`` frames to bound memory.

        Windows overlap by one frame on each side so the temporal convolutions see the same
        neighbours as in a full decode; only the centre of each window is kept.
        """
        num_frames = latents.shape[2]
        if chunk_size is None or chunk_size >= num_frames:
            return self.decode(latents)
        if chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {chunk_size}")
        halo = self._temporal_halo()
        pieces = []
        for start in range(0, num_frames, chunk_size):
            stop = min(start + chunk_size, num_frames)
            lo, hi = max(start - halo, 0), min(stop + halo, num_frames)
            decoded = self.decode(latents[:, :, lo:hi])
            pieces.append(decoded[:, :, start - lo : start - lo + (stop - start)])
        return torch.cat(pieces, dim=2)

    def _temporal_halo(self) -> int:
        """Frames of context on each side that make a windowed decode exact (receptive field)."""
        per_block = sum(
            (conv.kernel_size[0] // 2)
            for block in self.dec_temporal
            for conv in (block.conv1, block.conv2)
        )
        return per_block
