"""Text-conditioned UNet with temporal layers (Video LDM, Blattmann et al. 2023, §3).

The spatial part is an ordinary latent-image UNet: ResBlocks conditioned on the timestep
(and on the pooled prompt), and spatial transformers that cross-attend to the text tokens.
After every spatial block sits a temporal block (a temporal convolution and a temporal
transformer that attends over frames at each pixel and to the text), whose output is mixed
in as ``alpha * spatial + (1 - alpha) * temporal`` with a learned alpha per block (§3.1);
temporal branches are residuals with zero-initialised outputs, so the network starts as the
image model exactly (see ``kinetoscope.nn.blocks.AlphaMix``). Stage 1 trains the spatial
weights on single frames (``use_temporal=False``); stage 2 freezes them and trains only
``temporal_parameters()`` on clips.

Axis legend: B batch, Z latent channels, T frames, h/w latent height/width, C features,
L text tokens, D text width, N = B*T frames seen as images.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange, repeat
from torch import nn

from kinetoscope.diffusion.trajectories import AnchorAttention, MotionBias, grid_positions
from kinetoscope.nn.attention import TransformerBlock
from kinetoscope.nn.blocks import (
    AlphaMix,
    Downsample,
    ResBlock,
    TemporalConvBlock,
    Upsample,
    group_norm,
)
from kinetoscope.nn.embeddings import sinusoidal_embedding


class SpatialTransformer(nn.Module):
    """Self- and cross-attention over the h*w positions of each frame."""

    def __init__(
        self, channels: int, *, num_heads: int, context_dim: int, norm_group_size: int = 1
    ) -> None:
        super().__init__()
        self.norm = group_norm(channels, min_group_size=norm_group_size)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.block = TransformerBlock(channels, num_heads=num_heads, context_dim=context_dim)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B*T, C, h, w), context (B, L, D), context_mask (B, L) -> (B*T, C, h, w)."""
        height, width = x.shape[-2:]
        tokens = rearrange(self.proj_in(self.norm(x)), "n c h w -> n (h w) c")
        tokens = self.block(tokens, context, context_mask=context_mask)
        return x + self.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=height, w=width))


class TemporalTransformer(nn.Module):
    """Attention over the T frames at each latent pixel, plus cross-attention to the text.

    Tokens carry a sinusoidal embedding of their frame index and, with
    ``spatial_positions``, of their row and column: the text-given motion of a clip is a
    function of (row, column, frame), which per-pixel features of a frozen image model
    encode only weakly (through the zero padding of its convolutions).

    ``spacetime`` attends over all T*h*w positions of a clip at once instead (with frame, row
    and column positions). Per-pixel attention can copy content between frames only at the
    same place, and a (3, s, s) convolution moves it by a pixel per frame and layer; moving an
    object 30 px over a clip as the prompt says takes a token that can look anywhere in
    space-time. Meant for the coarsest levels, where T*h*w stays small (16 * 4 * 4 = 256).
    ``motion_bias`` adds a ``MotionBias`` (prompt-given trajectories) to that attention.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int,
        context_dim: int,
        norm_group_size: int = 1,
        spatial_positions: bool = False,
        spacetime: bool = False,
        motion_bias: bool = False,
    ) -> None:
        super().__init__()
        if motion_bias and not spacetime:
            raise ValueError("motion_bias needs space-time attention (spacetime=True)")
        spatial_positions = spatial_positions or spacetime
        if spatial_positions and channels % 4:
            raise ValueError(f"spatial positions need channels divisible by 4, got {channels}")
        self.channels = channels
        self.spatial_positions = spatial_positions
        self.spacetime = spacetime
        self.norm = group_norm(channels, min_group_size=norm_group_size)
        self.block = TransformerBlock(channels, num_heads=num_heads, context_dim=context_dim)
        self.motion_bias = MotionBias(context_dim, num_heads=num_heads) if motion_bias else None
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity (see AlphaMix)
        nn.init.zeros_(self.proj_out.bias)
        self._position_cache: dict[tuple, torch.Tensor] = {}

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor, *, num_frames: int
    ) -> torch.Tensor:
        """x (B*T, C, h, w), context (B, L, D) -> (B*T, C, h, w)."""
        height, width = x.shape[-2:]
        bias = None
        if self.motion_bias is not None:
            bias = self.motion_bias(
                context, context_mask, num_frames=num_frames, height=height, width=width
            )
        if self.spacetime:  # one sequence of T*h*w tokens per clip
            layout = "b (t h w) c"
            tokens = rearrange(self.norm(x), f"(b t) c h w -> {layout}", t=num_frames)
            pos = self._positions(num_frames, height, width, tokens.dtype, x.device)
            tokens = tokens + pos.flatten(0, 1)
        else:  # a sequence of T frames per clip and pixel
            layout = "(b h w) t c"
            tokens = rearrange(self.norm(x), "(b t) c h w -> b (h w) t c", t=num_frames)
            pos = self._positions(num_frames, height, width, tokens.dtype, x.device)
            tokens = (tokens + pos.transpose(0, 1)).flatten(0, 1)
        tokens = self.block(tokens, context, context_mask=context_mask, self_bias=bias)
        tokens = self.proj_out(tokens)
        return x + rearrange(tokens, f"{layout} -> (b t) c h w", t=num_frames, h=height, w=width)

    def _positions(
        self, num_frames: int, height: int, width: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """(T, h*w, C) frame (+ row and column) embeddings; (T, 1, C) without spatial ones.

        Constants of the shape, kept per shape and dtype (a sampler asks for the same ones
        every step). Inference-mode tensors are kept apart: autograd must not meet them.
        """
        key = (num_frames, height, width, dtype, device, torch.is_inference_mode_enabled())
        if key not in self._position_cache:
            pos = self._compute_positions(num_frames, height, width, device)
            self._position_cache[key] = pos.to(dtype)
        return self._position_cache[key]

    def _compute_positions(
        self, num_frames: int, height: int, width: int, device: torch.device
    ) -> torch.Tensor:
        pos = sinusoidal_embedding(torch.arange(num_frames, device=device), self.channels)
        pos = pos[:, None]
        if self.spatial_positions:
            pos = pos + grid_positions(self.channels, height, width, device)[None]
        return pos


@dataclass(frozen=True)
class TemporalOptions:
    """How one block's temporal layers are built (the per-level reading of VideoUNet's
    temporal arguments, which document each option)."""

    attention: bool = True
    kernel: tuple[int, int, int] = (3, 1, 1)
    conditioning: bool = False
    spatial_positions: bool = False
    spacetime: bool = False
    motion_bias: bool = False
    anchor: bool = False
    anchor_heads: int = 2
    anchor_read_out: str = "mean"
    anchor_max_speed: float | None = None
    anchor_sink: bool = False
    anchor_velocities: tuple | None = None
    anchor_regions: bool = False


class SpatioTemporalBlock(nn.Module):
    """ResBlock (+ spatial transformer), then the temporal layers mixed in through alpha."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        emb_dim: int,
        context_dim: int,
        num_heads: int,
        spatial_attention: bool,
        temporal: TemporalOptions,
        norm_group_size: int = 1,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        norms = {"norm_group_size": norm_group_size}
        self.res = ResBlock(
            in_channels, out_channels, emb_dim=emb_dim, scale_shift=scale_shift, **norms
        )
        self.attn = (
            SpatialTransformer(out_channels, num_heads=num_heads, context_dim=context_dim, **norms)
            if spatial_attention
            else None
        )
        self.temporal_conv = TemporalConvBlock(
            out_channels,
            kernel_size=tuple(temporal.kernel),
            emb_dim=emb_dim if temporal.conditioning else None,
            scale_shift=scale_shift,
            **norms,
        )
        self.temporal_attn = (
            TemporalTransformer(
                out_channels,
                num_heads=num_heads,
                context_dim=context_dim,
                spatial_positions=temporal.spatial_positions,
                spacetime=temporal.spacetime,
                motion_bias=temporal.motion_bias,
                **norms,
            )
            if temporal.attention
            else None
        )
        self.temporal_anchor = (
            AnchorAttention(
                out_channels,
                num_heads=temporal.anchor_heads,
                context_dim=context_dim,
                read_out=temporal.anchor_read_out,
                max_speed=temporal.anchor_max_speed,
                sink=temporal.anchor_sink,
                velocities=temporal.anchor_velocities,
                regions=temporal.anchor_regions,
                **norms,
            )
            if temporal.anchor
            else None
        )
        self.mix = AlphaMix()

    def temporal_modules(self) -> list[nn.Module]:
        modules = (self.temporal_conv, self.temporal_attn, self.temporal_anchor, self.mix)
        return [m for m in modules if m is not None]

    def forward(
        self, x, emb, context, context_mask, *, num_frames: int, use_temporal: bool, trajectory=None
    ):
        """x (B*T, Cin, h, w), emb (B*T, E), context (B, L, D) -> (B*T, Cout, h, w)."""
        h = self.res(x, emb)
        if self.attn is not None:
            h = self.attn(h, context, context_mask)  # each clip's frames share its prompt
        if not use_temporal:
            return h
        t = self.temporal_conv(h, num_frames=num_frames, emb=emb)
        if self.temporal_attn is not None:
            t = self.temporal_attn(t, context, context_mask, num_frames=num_frames)
        if self.temporal_anchor is not None:
            t = self.temporal_anchor(
                t, context, context_mask, num_frames=num_frames, trajectory=trajectory
            )
        return self.mix(h, t)


class VideoUNet(ModelMixin, ConfigMixin):
    """Latent video denoiser: predicts the noise in ``sample`` given timestep and text.

    Args:
        latent_channels: Z of the autoencoder.
        channels: width per resolution level (each next level halves h and w).
        layers_per_level: blocks per level on the way down (one more on the way up).
        attention_levels: levels that have spatial cross-attention (by index).
        temporal_attention_levels: levels whose temporal layers include attention over frames.
        temporal_kernel: (k, s, s) of the temporal convolutions: (3, 1, 1) per pixel, or a
            spatial extent s > 1 that lets them shift content between frames.
        wide_temporal_levels: levels whose temporal convolutions reach (k, 3, 3) whatever
            ``temporal_kernel`` says (e.g. the finest level, which has no attention across
            frames, while the coarser ones stay per pixel).
        temporal_conditioning: the temporal convolutions also see the timestep and pooled-text
            embedding (so they can tell the noise level and the asked motion apart).
        norm_group_size: smallest number of channels per GroupNorm group. 1 (the default of
            earlier models) normalises 32-channel features channel by channel, which erases
            an embedding added per channel; 4 or more keeps it.
        scale_shift: inject the timestep/text embedding as FiLM scale and shift after the
            norm (robust to any grouping) instead of adding it before.
        temporal_spatial_positions: temporal transformers also see each pixel's row and
            column (not only its frame index).
        spacetime_attention_levels: levels (among ``temporal_attention_levels``) whose
            temporal transformers attend over all frames and positions of a clip at once.
        motion_bias: those space-time attentions also get a prompt-given trajectory bias
            (``MotionBias``).
        anchor_levels: levels whose temporal layers end with an ``AnchorAttention`` (every
            frame reads the first frame along a prompt-given trajectory).
        anchor_heads: heads (trajectories) of those anchor attentions.
        anchor_read_out: how their heads read a velocity from the prompt: "mean" (an MLP on
            the mean token state), "attention" (each head pools the tokens with a learned
            query first), "fixed" (``anchor_velocities``) or "given" (each head follows one
            object's track, passed to ``forward`` as ``trajectory``; see
            ``kinetoscope.diffusion.planner``).
        anchor_max_speed: bound (frame widths per frame) of their velocities; None: unbounded.
        anchor_sink: give them a learned key and value beside frame 0's, which a query can
            attend to when frame 0 has nothing for it.
        anchor_regions: with given tracks, each head reads frame 0 only inside its object's
            frame-0 box: ``forward``'s trajectory is then a layout (B, heads, T + 2, 2), the
            tracks and the boxes (``kinetoscope.diffusion.trajectories.pack_layout``).
        anchor_velocities: with ``anchor_read_out: fixed``, one (vx, vy) per head in frame
            widths per frame: a bank of given trajectories instead of prompt-read ones.
        num_heads: attention heads everywhere.
        text_dim: width D of the text encoder's token states.
    """

    @register_to_config
    def __init__(
        self,
        *,
        latent_channels: int = 4,
        channels: tuple[int, ...] = (64, 128, 128),
        layers_per_level: int = 1,
        attention_levels: tuple[int, ...] = (1, 2),
        temporal_attention_levels: tuple[int, ...] = (0, 1, 2),
        temporal_kernel: tuple[int, int, int] = (3, 1, 1),
        wide_temporal_levels: tuple[int, ...] = (),
        temporal_conditioning: bool = False,
        norm_group_size: int = 1,
        scale_shift: bool = False,
        temporal_spatial_positions: bool = False,
        spacetime_attention_levels: tuple[int, ...] = (),
        motion_bias: bool = False,
        anchor_levels: tuple[int, ...] = (),
        anchor_heads: int = 2,
        anchor_read_out: str = "mean",
        anchor_max_speed: float | None = None,
        anchor_sink: bool = False,
        anchor_velocities: list[list[float]] | None = None,
        anchor_regions: bool = False,
        num_heads: int = 4,
        text_dim: int = 384,
    ) -> None:
        super().__init__()
        if motion_bias and not spacetime_attention_levels:
            raise ValueError("motion_bias needs spacetime_attention_levels")
        if anchor_velocities is not None and len(anchor_velocities) != anchor_heads:
            raise ValueError(
                f"anchor_heads ({anchor_heads}) must match the {len(anchor_velocities)} "
                "anchor_velocities (one per head)"
            )
        channels = tuple(channels)
        temporal_kernel = tuple(temporal_kernel)
        wide_kernel = (temporal_kernel[0], max(temporal_kernel[1], 3), max(temporal_kernel[2], 3))
        emb_dim = 4 * channels[0]
        self.time_embed = nn.Sequential(
            nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.text_pool_proj = nn.Linear(text_dim, emb_dim)
        self.conv_in = nn.Conv2d(latent_channels, channels[0], 3, padding=1)

        def block(cin: int, cout: int, level: int) -> SpatioTemporalBlock:
            return SpatioTemporalBlock(
                cin,
                cout,
                emb_dim=emb_dim,
                context_dim=text_dim,
                num_heads=num_heads,
                spatial_attention=level in attention_levels,
                temporal=TemporalOptions(
                    attention=level in temporal_attention_levels,
                    kernel=wide_kernel if level in wide_temporal_levels else temporal_kernel,
                    conditioning=temporal_conditioning,
                    spatial_positions=temporal_spatial_positions,
                    spacetime=level in spacetime_attention_levels,
                    motion_bias=motion_bias and level in spacetime_attention_levels,
                    anchor=level in anchor_levels,
                    anchor_heads=anchor_heads,
                    anchor_read_out=anchor_read_out,
                    anchor_max_speed=anchor_max_speed,
                    anchor_sink=anchor_sink,
                    anchor_velocities=anchor_velocities,
                    anchor_regions=anchor_regions,
                ),
                norm_group_size=norm_group_size,
                scale_shift=scale_shift,
            )

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_channels = [channels[0]]
        width = channels[0]
        for level, level_width in enumerate(channels):
            for _ in range(layers_per_level):
                self.down_blocks.append(block(width, level_width, level))
                width = level_width
                skip_channels.append(width)
            if level < len(channels) - 1:
                self.downsamplers.append(Downsample(width))
                skip_channels.append(width)
        deepest = len(channels) - 1
        self.mid_blocks = nn.ModuleList(
            [block(width, width, deepest), block(width, width, deepest)]
        )
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(channels))):
            for _ in range(layers_per_level + 1):
                self.up_blocks.append(block(width + skip_channels.pop(), channels[level], level))
                width = channels[level]
            if level > 0:
                self.upsamplers.append(Upsample(width))
        self.norm_out = group_norm(width, min_group_size=norm_group_size)
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def takes_trajectory(self) -> bool:
        """Whether anchor attentions follow given object tracks (``forward``'s trajectory)."""
        return bool(self.config.anchor_levels) and self.config.anchor_read_out == "given"

    def _all_blocks(self) -> list[SpatioTemporalBlock]:
        return [*self.down_blocks, *self.mid_blocks, *self.up_blocks]

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The weights stage 2 trains: temporal convolutions, temporal transformers, alphas."""
        return [p for b in self._all_blocks() for m in b.temporal_modules() for p in m.parameters()]

    def temporal_parameter_names(self) -> set[str]:
        ids = {id(p) for p in self.temporal_parameters()}
        return {name for name, p in self.named_parameters() if id(p) in ids}

    def temporal_state(self) -> dict[str, torch.Tensor]:
        """The temporal weights by name (detached copies): what a second set of temporal
        layers on the same image model, such as a separate interpolation model, replaces."""
        names = self.temporal_parameter_names()
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}

    def with_temporal_state(self, state: dict[str, torch.Tensor]) -> VideoUNet:
        """A copy of this UNet (same spatial weights) whose temporal weights are ``state``.

        ``state`` must hold exactly this UNet's temporal weights (``temporal_state`` of a UNet
        of the same configuration); a missing, unexpected or mis-shaped one is an error.
        """
        return self._with_state(state, self.temporal_parameter_names(), kind="temporal")

    def _with_state(self, state: dict[str, torch.Tensor], names: set[str], kind: str) -> VideoUNet:
        """A copy of this UNet with the weights ``names`` replaced by ``state``'s."""
        own = self.state_dict()
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        if missing or unexpected:
            raise ValueError(
                f"{kind} weights do not fit this UNet: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
        shapes = [k for k in names if tuple(state[k].shape) != tuple(own[k].shape)]
        if shapes:
            raise ValueError(f"{kind} weights of other shapes: {sorted(shapes)[:3]}")
        twin = copy.deepcopy(self)
        twin.load_state_dict(state, strict=False)  # copied into twin's dtype and device
        return twin

    def spatial_parameters(self) -> list[nn.Parameter]:
        """Every weight that is not a temporal one (trained in stage 1, frozen in stage 2)."""
        temporal = {id(p) for p in self.temporal_parameters()}
        return [p for p in self.parameters() if id(p) not in temporal]

    def spatial_state(self) -> dict[str, torch.Tensor]:
        """The spatial weights by name (detached copies): the image model, when a joint video
        stage has trained the spatial weights on clips too."""
        temporal = self.temporal_parameter_names()
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k not in temporal}

    def with_spatial_state(self, state: dict[str, torch.Tensor]) -> VideoUNet:
        """A copy of this UNet (same temporal weights) whose spatial weights are ``state``
        (``spatial_state`` of a UNet of the same configuration); a missing, unexpected or
        mis-shaped weight is an error."""
        spatial = set(self.state_dict()) - self.temporal_parameter_names()
        return self._with_state(state, spatial, kind="spatial")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        trajectory: torch.Tensor | None = None,
        *,
        use_temporal: bool = True,
    ) -> torch.Tensor:
        """Predict noise.

        Args:
            sample: noisy latents (B, Z, T, h, w).
            timestep: scalar, (B,), or (B, T) per-frame diffusion timesteps (context frames
                given clean carry timestep 0).
            text_emb: (B, L, D) token states; text_mask: (B, L) True for real tokens.
            trajectory: (B, anchor_heads, T, 2) object tracks for given-trajectory anchor
                attention (displacement from frame 0, x then y, in frame widths); with
                ``anchor_regions`` the layout (B, anchor_heads, T + 2, 2) of tracks and
                frame-0 boxes; None runs those anchors as identities.
            use_temporal: False runs the image model only (stage 1, frames independent).
        Returns:
            (B, Z, T, h, w) predicted noise.
        """
        # Channels-last 5-D inputs crash the CPU conv3d backward (torch 2.13); keep them dense.
        sample = sample.contiguous()
        batch, _, num_frames, height, width = sample.shape
        levels = len(self.config.channels) - 1
        if height % (2**levels) or width % (2**levels):
            raise ValueError(f"latent size {height}x{width} must be divisible by {2**levels}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 2:
            if timestep.shape != (batch, num_frames):
                raise ValueError(
                    f"per-frame timesteps must be (B, T) = {(batch, num_frames)}, "
                    f"got {tuple(timestep.shape)}"
                )
            frame_timesteps = timestep.reshape(-1)  # (B*T,)
        else:
            frame_timesteps = timestep.reshape(-1).expand(batch).repeat_interleave(num_frames)
        text_mask = text_mask.bool()
        pooled = (text_emb * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True).clamp(
            min=1
        )
        text = repeat(self.text_pool_proj(pooled), "b e -> (b t) e", t=num_frames)
        emb = self.time_embed(sinusoidal_embedding(frame_timesteps, self.config.channels[0]))
        emb = emb + text  # (B*T, E)

        def run(blk: SpatioTemporalBlock, x: torch.Tensor) -> torch.Tensor:
            return blk(
                x,
                emb,
                text_emb,
                text_mask,
                num_frames=num_frames,
                use_temporal=use_temporal,
                trajectory=trajectory,
            )

        # Channels-last frames: the CPU's 2-D convolutions run several times faster on them
        # (the outputs are the same); see GroupNorm for the one layer that is slower there.
        frames = rearrange(sample, "b z t h w -> (b t) z h w")
        h = self.conv_in(frames.contiguous(memory_format=torch.channels_last))
        skips = [h]
        blocks = iter(self.down_blocks)
        for level in range(levels + 1):
            for _ in range(self.config.layers_per_level):
                h = run(next(blocks), h)
                skips.append(h)
            if level < levels:
                h = self.downsamplers[level](h)
                skips.append(h)
        for blk in self.mid_blocks:
            h = run(blk, h)
        blocks = iter(self.up_blocks)
        for index, level in enumerate(reversed(range(levels + 1))):
            for _ in range(self.config.layers_per_level + 1):
                h = run(next(blocks), torch.cat([h, skips.pop()], dim=1))
            if level > 0:
                h = self.upsamplers[index](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return rearrange(out, "(b t) z h w -> b z t h w", t=num_frames)
