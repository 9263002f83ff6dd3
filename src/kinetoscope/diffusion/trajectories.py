"""Trajectory-biased attention for the temporal layers: where a frame's content came from.

``MotionBias`` turns a prompt into per-head trajectories (a velocity and a spread) and the
attention-logit bias they imply; ``AnchorAttention`` lets every frame read the clip's first
frame along such trajectories, or along given object tracks (``read_out="given"``; see
``kinetoscope.diffusion.planner``). Both are options of ``VideoUNet``'s temporal layers
(``motion_bias``, ``anchor_levels``); the shipped ``ldm-mnist`` has given-track anchors at its
finest level.

Axis legend: B batch, T frames, h/w latent height/width, C features, L text tokens,
D text width, H heads, E head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from kinetoscope.nn.blocks import group_norm
from kinetoscope.nn.embeddings import sinusoidal_embedding


class MotionBias(nn.Module):
    """Text-conditioned trajectory bias for space-time attention: (B, H, N, N) logits to add.

    Each head reads a velocity (vx, vy) and a spread (sx, sy) from the prompt (a small MLP on
    the mean of its token states). A query at frame t and place p then favours the keys at
    frame s around p - v (t - s), where the content it shows at frame t was at frame s if it
    moves at v:

        bias = -((dx + vx (t - s)) / sx)^2 / 2 - ((dy + vy (t - s)) / sy)^2 / 2,  d = p_key - p_query

    Places are in cells of the attention grid, velocities in frame widths per frame (so one
    velocity means the same motion at every level). The MLP's last layer starts at zero: at
    first every head looks at the same place in all frames, 1.5 cells wide, for any prompt.
    With a content-based attention alone a head has to learn positional queries and keys
    that line up along the asked direction; here the prompt moves the line directly, and a
    wide spread on one axis (a large sx for "left and right") leaves the head free along it.
    """

    def __init__(
        self,
        context_dim: int,
        *,
        num_heads: int,
        hidden: int = 128,
        read_out: str = "mean",
        max_speed: float | None = None,
        velocities: list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        if read_out not in ("mean", "attention", "fixed"):
            raise ValueError(f"read_out must be 'mean', 'attention' or 'fixed', got {read_out!r}")
        if (read_out == "fixed") != (velocities is not None):
            raise ValueError("velocities are given exactly when read_out is 'fixed'")
        if velocities is not None and torch.tensor(velocities).shape != (num_heads, 2):
            raise ValueError(f"need one (vx, vy) per head ({num_heads}), got {velocities}")
        if max_speed is not None and max_speed <= 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        self.num_heads = num_heads
        # Velocities saturate softly at max_speed (frame widths per frame): a head cannot send
        # its trajectory off the frame within a few frames, which reads only background.
        self.max_speed = max_speed
        self.log_spread = nn.Parameter(torch.full((num_heads, 2), math.log(1.5)))
        # "fixed": a bank of given trajectories (one velocity per head, not read from the prompt;
        # the layers after the attention choose among them), with learned spreads.
        self.fixed_velocity: torch.Tensor | None
        if velocities is not None:
            self.net = None
            self.register_buffer("fixed_velocity", torch.tensor(velocities), persistent=False)
            self.read_query = None
            return
        self.fixed_velocity = None
        self.net = nn.Sequential(
            nn.Linear(context_dim, hidden), nn.SiLU(), nn.Linear(hidden, 4 * num_heads)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.log_spread = nn.Parameter(torch.full((num_heads, 2), math.log(1.5)))
        # "attention": each head pools the tokens with its own learned query, so it can find the
        # motion words (in a token mean they are one word among many). Zero queries: the mean.
        self.read_query = (
            nn.Parameter(torch.zeros(num_heads, context_dim)) if read_out == "attention" else None
        )

    def motion(
        self, context: torch.Tensor, context_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity (B, H, 2) in frame widths per frame, spread (B, H, 2) in cells), x then y."""
        if self.fixed_velocity is not None:
            shape = (context.shape[0], self.num_heads, 2)
            velocity = self.fixed_velocity.to(context.dtype).expand(shape)
            return velocity, self.log_spread.exp().to(context.dtype).expand(shape)
        mask = context_mask.bool()
        if self.read_query is None:
            weights = mask[..., None].to(context.dtype)
            pooled = (context * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, D)
            out = rearrange(self.net(pooled), "b (h k) -> b h k", h=self.num_heads)
        else:
            logits = torch.einsum("bld,hd->bhl", context, self.read_query.to(context.dtype))
            weights = logits.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
            pooled = weights @ context  # (B, H, D): head h's own read-out
            out = self.net(pooled).view(*pooled.shape[:2], self.num_heads, 4)
            out = out.diagonal(dim1=1, dim2=2).transpose(1, 2)  # head h's outputs from its own
        velocity = out[..., :2]
        if self.max_speed is not None:
            velocity = self.max_speed * torch.tanh(velocity / self.max_speed)
        return velocity, (self.log_spread + out[..., 2:]).exp()

    def forward(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        num_frames: int,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """context (B, L, D), context_mask (B, L) -> bias (B, H, T*h*w, T*h*w), tokens (t h w)."""
        velocity, spread = self.motion(context, context_mask)
        device, dtype = context.device, context.dtype
        # The bias is a sum of an x term and a y term, each a function of (place offset,
        # elapsed frames) only: evaluate both on those small tables, then gather to N x N.
        elapsed = torch.arange(-(num_frames - 1), num_frames, device=device, dtype=dtype)
        terms = []
        for axis, size in ((0, width), (1, height)):
            offset = torch.arange(-(size - 1), size, device=device, dtype=dtype)  # key - query
            speed = velocity[..., axis, None, None] * size  # cells per frame, (B, H, 1, 1)
            scaled = (offset[:, None] + speed * elapsed[None, :]) / spread[..., axis, None, None]
            terms.append(-0.5 * scaled.square().flatten(2))  # (B, H, (2 size - 1)(2T - 1))
        t, y, x = (
            c.flatten()
            for c in torch.meshgrid(
                torch.arange(num_frames, device=device),
                torch.arange(height, device=device),
                torch.arange(width, device=device),
                indexing="ij",
            )
        )  # (N,) frame, row and column of each token
        steps = elapsed.numel()
        frames = t[:, None] - t[None, :] + num_frames - 1  # query - key, as a table index
        index_x = (x[None, :] - x[:, None] + width - 1) * steps + frames  # (N, N)
        index_y = (y[None, :] - y[:, None] + height - 1) * steps + frames
        return terms[0][..., index_x] + terms[1][..., index_y]

    def anchor(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        num_frames: int,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """The bias of queries at every frame towards keys of frame 0 only (``AnchorAttention``).

        context (B, L, D) -> (B, H, T*h*w, h*w), queries in (t h w) order, keys in (h w) order:
        the key columns of frame 0 in ``forward``'s bias, without its N x N table. (The
        attention itself carries this bias in extra channels: ``AnchorAttention``.)
        """
        velocity, spread = self.motion(context, context_mask)
        device, dtype = context.device, context.dtype
        frames = torch.arange(num_frames, device=device, dtype=dtype)  # elapsed since frame 0
        terms = []  # (B, H, T, query place, key place) per axis: rows, then columns
        for axis, size in ((1, height), (0, width)):
            place = torch.arange(size, device=device, dtype=dtype)
            offset = place[None, :] - place[:, None]  # key - query
            speed = velocity[..., axis, None, None, None] * size  # cells per frame
            scaled = (offset + speed * frames[:, None, None]) / spread[..., axis, None, None, None]
            terms.append(-0.5 * scaled.square())
        rows, cols = terms
        bias = rows[..., :, None, :, None] + cols[..., None, :, None, :]
        return bias.flatten(-2).flatten(2, 4)


class AnchorAttention(nn.Module):
    """Every frame attends to the clip's first frame, along a prompt-given trajectory.

    In this project's sampling the first frame is known before the others (drawn by the
    image model, or given as context), and in a clip of the worlds every later frame shows
    that frame's content moved along the asked motion. A query at frame t and place p reads
    frame 0's tokens with a ``MotionBias`` (keys around p - v t favoured, v read from the
    prompt per head, or one of a fixed bank) on top of the content and position match. Unlike space-time attention
    over all T*h*w tokens it costs T*h*w x h*w, so it fits the finest level, where places
    are 4 px cells and a digit's strokes are still resolved. Residual with a zero-initialised
    output projection: a model grown with it starts out computing what it did without.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int,
        context_dim: int,
        norm_group_size: int = 1,
        read_out: str = "mean",
        max_speed: float | None = None,
        sink: bool = False,
        velocities: list[list[float]] | None = None,
        regions: bool = False,
    ) -> None:
        super().__init__()
        if regions and read_out != "given":
            raise ValueError("regions need given trajectories (read_out='given')")
        if channels % (2 * num_heads) or channels % 4:
            raise ValueError(
                f"anchor attention needs channels divisible by 4 and by 2 * heads, got {channels}"
            )
        self.channels, self.num_heads = channels, num_heads
        self.norm = group_norm(channels, min_group_size=norm_group_size)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_kv = nn.Linear(channels, 2 * channels, bias=False)
        # "given": each head follows a trajectory passed in with the clip (one object's
        # displacement from frame 0 per frame: the data's tracks in training, a
        # ``TrajectoryPlanner``'s at sampling), with a learned spread; no prompt read-out.
        self.given = read_out == "given"
        self.motion_bias: MotionBias | None = None
        if self.given:
            if velocities is not None or max_speed is not None:
                raise ValueError("given trajectories take no velocities and no max_speed")
            self.log_spread = nn.Parameter(torch.full((num_heads, 2), math.log(1.5)))
        else:
            self.motion_bias = MotionBias(
                context_dim,
                num_heads=num_heads,
                read_out=read_out,
                max_speed=max_speed,
                velocities=velocities,
            )
        # A sink: one learned key and value per head beside frame 0's, outside the trajectory
        # bias, that a query can attend to when frame 0 has nothing for it (zero value at first).
        self.sink = nn.Parameter(torch.zeros(2, num_heads, channels // num_heads)) if sink else None
        # regions: each head reads frame 0 only inside its object's frame-0 box (a layout,
        # see ``pack_layout``), so a place between two objects takes each one's content from
        # its own head and not a blend of both.
        self.regions = regions
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)  # starts as the identity (see AlphaMix)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        *,
        num_frames: int,
        trajectory: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B*T, C, h, w), context (B, L, D) -> (B*T, C, h, w).

        ``trajectory`` (B, H, T, 2): with ``read_out="given"``, head h's displacement from
        frame 0 at frame t, (x, y) in frame widths; with ``regions``, a layout (B, H, T + 2,
        2) of ``pack_layout``: the tracks, then each head's frame-0 box. Without one, a
        given-trajectory anchor passes ``x`` through unchanged (as for clips trained without
        tracks); so it does for the clips whose tracks hold NaN (e.g. the unconditional half
        of a guided batch).
        """
        height, width = x.shape[-2:]
        absent, boxes = None, None
        if trajectory is not None and self.given:
            absent = trajectory.isnan().flatten(1).any(1)  # (B,)
            trajectory = trajectory.nan_to_num(0.0)
            if self.regions:
                trajectory, boxes = unpack_layout(trajectory)
        displacement, spread = self._motion(
            context, context_mask, trajectory, num_frames=num_frames, batch=len(x) // num_frames
        )
        if displacement is None:
            return x
        tokens = rearrange(self.norm(x), "(b t) c h w -> b t (h w) c", t=num_frames)
        grid = grid_positions(self.channels, height, width, x.device).to(tokens.dtype)
        frame = sinusoidal_embedding(torch.arange(num_frames, device=x.device), self.channels)
        queries = tokens + grid + frame[:, None].to(tokens.dtype)  # (B, T, hw, C)
        heads = self.num_heads
        q = rearrange(self.to_q(queries), "b t n (h e) -> b h (t n) e", h=heads)
        k, v = rearrange(self.to_kv(tokens[:, 0] + grid), "b n (k h e) -> k b h n e", k=2, h=heads)
        q, k = self._with_trajectory(q, k, displacement, spread, height, width)
        if boxes is not None:
            q, k = with_regions(q, k, boxes, height, width)
        if self.sink is not None:  # its extra channels are 0: no trajectory bias
            sink_k, sink_v = (
                s.to(q.dtype)[None, :, None].expand(len(q), -1, -1, -1) for s in self.sink
            )
            k = torch.cat([k, F.pad(sink_k, (0, k.shape[-1] - sink_k.shape[-1]))], dim=2)
            v = torch.cat([v, sink_v], dim=2)
        # Values padded to the queries' width: the CPU's fused kernel is several times slower
        # when the two differ.
        dim = v.shape[-1]
        out = F.scaled_dot_product_attention(q, k, F.pad(v, (0, q.shape[-1] - dim)), scale=1.0)
        out = self.proj_out(rearrange(out[..., :dim], "b h n e -> b n (h e)"))
        out = rearrange(out, "b (t y x) c -> (b t) c y x", t=num_frames, y=height, x=width)
        if absent is not None:
            out = out * (~absent).repeat_interleave(num_frames)[:, None, None, None].to(out.dtype)
        return x + out

    def _motion(self, context, context_mask, trajectory, *, num_frames: int, batch: int):
        """(displacement (B, H, T, 2) in frame widths or None, spread (B, H, 2) in cells)."""
        if not self.given:
            if trajectory is not None:
                raise ValueError("this anchor attention reads its trajectories from the prompt")
            velocity, spread = self.motion_bias.motion(context, context_mask)  # (B, H, 2) each
            frames = torch.arange(num_frames, device=velocity.device, dtype=velocity.dtype)
            return velocity[:, :, None, :] * frames[:, None], spread
        if trajectory is None:
            return None, None
        expected = (batch, self.num_heads, num_frames, 2)
        if tuple(trajectory.shape) != expected:
            raise ValueError(
                f"trajectory must be (B, heads, T, 2) = {expected}, got {tuple(trajectory.shape)}"
            )
        return trajectory, self.log_spread.exp()[None].expand(batch, -1, -1)

    def _with_trajectory(self, q, k, displacement, spread, height, width):
        """Queries and keys whose dot products are the content logits plus the MotionBias.

        The bias of a query and a key is a sum over the two axes of -((key - centre) / s)^2 / 2,
        where the centre (the query's place moved back along the prompted velocity) and s
        belong to the query. Expanded, key^2 / s^2 and key * centre / s^2 are products of a
        query factor and a key factor, and centre^2 / s^2 is the same for every key of a
        query, which softmax ignores. Two extra channels per axis carry the products, so the
        fused attention kernel (no mask: its fast path) computes the biased attention exactly.
        q (B, H, T*h*w, E), k (B, H, h*w, E) -> (B, H, T*h*w, E + 4), (B, H, h*w, E + 4),
        content already scaled by E^-1/2 (attend with scale 1).
        """
        device, dtype = q.device, torch.float32
        query_parts, key_parts = [], []
        for axis, size in ((1, height), (0, width)):
            place = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2  # centred
            inverse = spread[..., axis].float().reciprocal().square()[..., None, None]
            moved = displacement[..., axis].float()[..., None] * size  # (B, H, T, 1) in cells
            centre = place[None, None, None, :] - moved  # (B, H, T, size)
            query_parts.append((centre * inverse, (-0.5 * inverse).expand_as(centre)))
            key_parts.append((place, place.square()))
        (cy, qy), (cx, qx) = query_parts
        # Broadcast the per-axis factors to every query (t, y, x) and key (y, x).
        shape = (*cy.shape[:3], height, width)
        q_extra = torch.stack(
            [
                cx[..., None, :].expand(shape),
                qx[..., None, :].expand(shape),
                cy[..., :, None].expand(shape),
                qy[..., :, None].expand(shape),
            ],
            dim=-1,
        ).flatten(2, 4)  # (B, H, T*h*w, 4)
        (ky, ky2), (kx, kx2) = key_parts
        k_extra = torch.stack(
            [
                kx[None, :].expand(height, width),
                kx2[None, :].expand(height, width),
                ky[:, None].expand(height, width),
                ky2[:, None].expand(height, width),
            ],
            dim=-1,
        ).flatten(0, 1)  # (h*w, 4)
        k_extra = k_extra.expand(*k.shape[:2], -1, -1)
        scale = q.shape[-1] ** -0.5
        return (
            torch.cat([q * scale, q_extra.to(q.dtype)], dim=-1),
            torch.cat([k, k_extra.to(k.dtype)], dim=-1),
        )


REGION_MARGIN = 0.5  # a cell belongs to a box when its centre lies within half a cell of it
OUTSIDE_LOGIT = -30.0  # attention logit added to frame-0 places outside a head's box


def pack_layout(tracks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """One tensor for the layout of a clip's objects, as region anchors take it: tracks (B, S,
    T, 2) and frame-0 boxes (B, S, 2, 2), corners (x0, y0), (x1, y1) in frame widths ->
    (B, S, T + 2, 2)."""
    if boxes.shape != (*tracks.shape[:2], 2, 2):
        raise ValueError(f"boxes must be (B, S, 2, 2) for tracks {tuple(tracks.shape)}")
    return torch.cat([tracks, boxes.to(tracks.dtype)], dim=2)


def unpack_layout(layout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tracks (B, S, T, 2), boxes (B, S, 2, 2)) of a ``pack_layout`` tensor."""
    return layout[:, :, :-2], layout[:, :, -2:]


def with_regions(q, k, boxes, height: int, width: int):
    """One more query and key channel: every query of head h gets ``OUTSIDE_LOGIT`` on the
    frame-0 keys of cells that do not overlap head h's box (B, H, 2, 2), so it reads its own
    object only (or the sink, whose extra channels are 0). A box as wide as
    the frame leaves the head unrestricted."""
    cells_y = (torch.arange(height, device=q.device, dtype=torch.float32) + 0.5) / height
    cells_x = (torch.arange(width, device=q.device, dtype=torch.float32) + 0.5) / width
    x0, y0, x1, y1 = boxes.float().flatten(2).unbind(-1)  # (B, H) each
    inside_x = (cells_x > x0[..., None] - REGION_MARGIN / width) & (
        cells_x < x1[..., None] + REGION_MARGIN / width
    )  # (B, H, w): the cells the box overlaps
    inside_y = (cells_y > y0[..., None] - REGION_MARGIN / height) & (
        cells_y < y1[..., None] + REGION_MARGIN / height
    )  # (B, H, h)
    inside = (inside_y[..., :, None] & inside_x[..., None, :]).flatten(2)  # (B, H, h*w)
    bias = torch.where(inside, 0.0, OUTSIDE_LOGIT).to(k.dtype)
    return torch.cat([q, torch.ones_like(q[..., :1])], dim=-1), torch.cat(
        [k, bias[..., None]], dim=-1
    )


def grid_positions(channels: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(h*w, C): sin/cos of the row in the first C/2 channels, of the column in the rest."""
    half = channels // 2
    rows = sinusoidal_embedding(torch.arange(height, device=device), half, max_period=100.0)
    cols = sinusoidal_embedding(torch.arange(width, device=device), half, max_period=100.0)
    return torch.cat(
        [repeat(rows, "h c -> (h w) c", w=width), repeat(cols, "w c -> (h w) c", h=height)],
        dim=-1,
    )
