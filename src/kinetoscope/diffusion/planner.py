"""Trajectory planner: where each object of a prompt goes, given the clip's first frame.

A Video LDM with given-trajectory anchor attention (``VideoUNet(anchor_read_out="given")``)
denoises a clip along object tracks: the displacement of each object from its place in frame 0,
frame by frame. In training the tracks come with the data; at sampling this planner proposes
them from the prompt and the first frame's latents (drawn first by the image model), in the
spirit of layout-then-video generation (LLM-grounded Video Diffusion, Lian et al. 2023), with a
small learned planner in place of a language model.

A prompt does not fix every track: "moving left and right" leaves the start direction open. The
planner therefore proposes ``modes`` tracks per object slot with a probability each, trained
winner-takes-all (only the closest proposal learns a track, its probability learns how often
it is the closest; multiple-hypothesis prediction as in trajectory forecasting), and sampling
draws one proposal per slot with the sample's generator.

Axis legend: B batch, S object slots, M modes per slot, T frames, Z latent channels, h/w latent
height/width, L text tokens, D text width, C planner width.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from kinetoscope.diffusion.trajectories import grid_positions

RELAX = 0.05  # share of the loss the modes that did not win still get


class TrajectoryPlanner(ModelMixin, ConfigMixin):
    """(first-frame latents, prompt) -> per-slot track proposals and their probabilities.

    Learned queries, one per (slot, mode), attend to the first frame's latent cells (a small
    convolutional stem plus row/column positions) and to the prompt's token states in a
    transformer decoder; each query then reads out a track of ``num_frames`` displacements
    (frame 0's is zero), (x, y) in frame widths, and a logit.

    ``text_layers`` names the text encoder's hidden states the planner reads, concatenated per
    token (``load_text_encoder(layers=...)``; ``text_dim`` is then their total width); None
    reads the last hidden state, as the denoiser does. Pipelines encode the planner's prompts
    accordingly.
    """

    @register_to_config
    def __init__(
        self,
        *,
        latent_channels: int = 4,
        text_dim: int = 384,
        num_frames: int = 16,
        slots: int = 2,
        modes: int = 2,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        boxes: bool = False,
        text_layers: list[int] | None = None,
    ) -> None:
        super().__init__()
        if num_frames < 2 or slots < 1 or modes < 1:
            raise ValueError("a planner needs num_frames >= 2, slots >= 1 and modes >= 1")
        self.stem = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.text_proj = nn.Linear(text_dim, width)
        self.queries = nn.Parameter(torch.randn(slots * modes, width) * 0.02)
        layer = nn.TransformerDecoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        # Per query: the track's steps, the mode's logit and (boxes) its object's frame-0 box.
        self.head = nn.Linear(width, 2 * (num_frames - 1) + 1 + (4 if boxes else 0))

    def forward(
        self, first: torch.Tensor, text_emb: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """first (B, Z, h, w), text_emb (B, L, D), text_mask (B, L) ->
        (tracks (B, S, M, T, 2) in frame widths, logits (B, S, M)); with ``boxes`` the
        tracks are layouts (B, S, M, T + 2, 2): each mode's track, then its object's frame-0
        box, corners (x0, y0), (x1, y1) in frame widths (``pack_layout``)."""
        cfg = self.config
        batch, _, height, width = first.shape
        cells = self.stem(first).flatten(2).transpose(1, 2)  # (B, h*w, C)
        cells = cells + grid_positions(cfg.width, height, width, first.device).to(cells.dtype)
        memory = torch.cat([cells, self.text_proj(text_emb)], dim=1)
        padding = torch.cat(
            [torch.zeros(batch, height * width, dtype=torch.bool, device=first.device),
             ~text_mask.bool()],
            dim=1,
        )  # fmt: skip
        queries = self.queries[None].expand(batch, -1, -1)
        out = self.head(self.norm(self.decoder(queries, memory, memory_key_padding_mask=padding)))
        out = out.view(batch, cfg.slots, cfg.modes, -1)
        count = 2 * (cfg.num_frames - 1)
        steps = out[..., :count].reshape(batch, cfg.slots, cfg.modes, cfg.num_frames - 1, 2)
        tracks = torch.cat([torch.zeros_like(steps[..., :1, :]), steps], dim=-2)
        if cfg.boxes:
            corners = out[..., count + 1 :].reshape(batch, cfg.slots, cfg.modes, 2, 2)
            tracks = torch.cat([tracks, corners], dim=-2)
        return tracks, out[..., count]

    def loss(
        self,
        first: torch.Tensor,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        tracks: torch.Tensor,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Winner-takes-all loss against the true ``tracks`` (B, S, T, 2).

        Slots are matched to objects by the assignment of least error (objects have no order
        the first frame shows); in each slot the closest mode regresses onto its track (mean
        squared error, in frame widths; the others with weight ``RELAX``), and the logits
        learn which mode was closest. A planner with ``boxes`` also regresses every mode's
        box onto the frame-0 box (B, S, 2, 2) of the object its slot was matched to.
        """
        pred, logits = self(first, text_emb, text_mask)
        if self.config.boxes:
            if boxes is None:
                raise ValueError("a planner with boxes trains on the objects' frame-0 boxes")
            pred, pred_boxes = pred[..., :-2, :], pred[..., -2:, :]
        slots = self.config.slots
        if tracks.shape[1] != slots:
            raise ValueError(f"need {slots} tracks per clip, got {tracks.shape[1]}")
        orders = torch.tensor(list(itertools.permutations(range(slots))), device=tracks.device)
        targets = tracks[:, orders]  # (B, P, S, T, 2): the tracks in every slot order
        err = (pred[:, None] - targets[:, :, :, None]).square().mean(dim=(-1, -2))  # (B, P, S, M)
        order = err.min(dim=-1).values.sum(dim=-1).argmin(dim=1)  # (B,) the best assignment
        all_err = err[torch.arange(len(err), device=err.device), order]  # (B, S, M)
        best_err, best_mode = all_err.min(dim=-1)  # (B, S)
        # Relaxed winner-takes-all: the other modes get a small share of the error, so a mode
        # that never wins is still pulled towards the data instead of staying where it began.
        regression = (1 - RELAX) * best_err.mean() + RELAX * all_err.mean()
        choice = F.cross_entropy(logits.flatten(0, 1), best_mode.flatten())
        # Mean squared error in frame widths is ~1e-3 for a few pixels: scale it up so the
        # mode logits do not dominate.
        loss = 100.0 * regression + 0.1 * choice
        track_px = float(best_err.detach().mean().sqrt()) * 64
        logs = {"track_px": track_px, "choice": float(choice.detach())}
        if self.config.boxes:
            matched = boxes[:, orders][torch.arange(len(order), device=order.device), order]
            box_err = (pred_boxes - matched[:, :, None]).square().mean()  # every mode
            loss = loss + 100.0 * box_err
            logs["box_px"] = float(box_err.detach().sqrt()) * 64
        return loss, logs

    @torch.no_grad()
    def sample(
        self,
        first: torch.Tensor,
        text_emb: torch.Tensor,
        text_mask: torch.Tensor,
        generators: list[torch.Generator] | None = None,
        *,
        agree_px: float = 2.0,
        num_frames: int | None = None,
        boxes: bool = False,
    ) -> torch.Tensor:
        """(B, S, T, 2) tracks, their first ``num_frames`` (default: all planned): one mode per
        slot, drawn by its probability with sample b's generator (the most likely mode without
        generators). With ``boxes`` (a planner built with ``boxes``), layouts (B, S, T + 2, 2):
        each track, then its object's frame-0 box (``pack_layout``).

        Slots in turn: a slot with a mode within ``agree_px`` (root mean square, pixels of a
        64-wide frame) of a track already chosen for an earlier slot takes that mode. Every
        slot of a one-object prompt proposes that object's tracks, and drawn independently
        they could send its anchors two ways at once (a bounce starting left in one slot and
        right in the other); two objects whose proposals coincide lose nothing by it.
        """
        if boxes and not self.config.boxes:
            raise ValueError("this planner proposes no boxes")
        tracks, logits = self(first, text_emb, text_mask)
        probs = logits.float().softmax(-1)  # (B, S, M)
        if generators is None:
            mode = probs.argmax(-1)
        else:
            if len(generators) != len(probs):
                raise ValueError(f"need one generator per sample ({len(probs)})")
            mode = torch.stack(
                [
                    torch.multinomial(p, 1, generator=g).squeeze(-1)
                    for p, g in zip(probs, generators, strict=True)
                ]
            )
        tol = (agree_px / 64) ** 2
        frames = self.config.num_frames
        for s in range(1, tracks.shape[1]):
            chosen = tracks[:, :s].gather(
                2, mode[:, :s, None, None, None].expand(-1, -1, 1, *tracks.shape[-2:])
            )  # (B, s, 1, T, 2): the earlier slots' chosen tracks
            # agreement is judged on the tracks alone (a layout's last two rows are its box)
            err = (tracks[:, s, None, :, :frames] - chosen[..., :frames, :]).square()
            err = err.mean(dim=(-1, -2))  # (B, s, M)
            best, where = err.flatten(1).min(dim=1)
            agree = best < tol
            mode[:, s] = torch.where(agree, where % tracks.shape[2], mode[:, s])
        index = mode[..., None, None, None].expand(-1, -1, 1, *tracks.shape[-2:])
        chosen = tracks.gather(2, index).squeeze(2)
        kept = chosen[:, :, :frames][:, :, :num_frames]
        return torch.cat([kept, chosen[:, :, frames:]], dim=2) if boxes else kept


def track_sketch(first: torch.Tensor, track: torch.Tensor) -> torch.Tensor:
    """A rough clip: frame 0's latents ``first`` (B, Z, h, w) moved along one ``track``
    (B, T, 2) of displacements in frame widths -> (B, Z, T, h, w).

    Cells moved in from outside the frame take the frame's background, its per-channel median
    latent (the worlds' objects cover a small part of a black frame). Sub-cell moves
    interpolate bilinearly. The sketch is what a clip of one object moving along the track
    looks like before any detail; sampling can start from it partly noised (``track_start``).
    """
    batch, channels, height, width = first.shape
    frames = track.shape[1]
    background = first.flatten(2).median(dim=-1).values[..., None, None]  # (B, Z, 1, 1)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=first.device)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=first.device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # (h, w, (x, y))
    # A move of d frame widths is 2 d in grid_sample's [-1, 1] coordinates; each output cell
    # reads frame 0 at its own place minus the move.
    grid = grid[None, None] - 2 * track.to(grid.dtype)[:, :, None, None, :]  # (B, T, h, w, 2)
    source = (first - background).repeat_interleave(frames, dim=0)  # (B*T, Z, h, w)
    moved = F.grid_sample(
        source.float(), grid.flatten(0, 1).float(), mode="bilinear", align_corners=False
    )
    moved = moved.view(batch, frames, channels, height, width).transpose(1, 2)
    return (moved + background[:, :, None]).to(first.dtype)


Boxes = list[tuple[torch.Tensor, torch.Tensor] | None]


def content_boxes(first: torch.Tensor, *, threshold: float = 0.3) -> tuple[torch.Tensor, Boxes]:
    """Where frame 0's latents ``first`` (B, Z, h, w) hold content: (background (B, Z, 1, 1),
    per sample the (x, y) cells of its content's first and last corner, or None).

    The background is the per-channel median latent (as in ``track_sketch``); the content is
    where the latents differ from it by more than ``threshold`` times the largest difference,
    inside the frame's outermost ring of cells (which an encoder's padding marks)."""
    background = first.flatten(2).median(dim=-1).values[..., None, None]
    deviation = (first - background).float().norm(dim=1)  # (B, h, w)
    deviation[:, [0, -1], :] = 0
    deviation[:, :, [0, -1]] = 0
    boxes: Boxes = []
    for b in range(first.shape[0]):
        peak = deviation[b].max()
        if not peak > 0:
            boxes.append(None)
            continue
        rows, cols = torch.nonzero(deviation[b] > threshold * peak, as_tuple=True)
        low = torch.stack([cols.min(), rows.min()]).float().cpu()
        high = torch.stack([cols.max(), rows.max()]).float().cpu()
        boxes.append((low, high))
    return background, boxes


def pixel_boxes(frames: torch.Tensor, downscale: int, *, threshold: float = 0.5) -> Boxes:
    """Where decoded frames (B, C, H, W) in [-1, 1] hold content, per sample the (x, y) cells
    (of ``downscale`` pixels) of its content's first and last corner, or None.

    The content is every pixel one of whose channels differs from that channel's median
    over the frame by more than ``threshold``. The box is in fractional cells, so that it
    stays inside a frame of ``w`` cells exactly when the content's pixels do (low >= 0,
    high <= w - 1; for content narrower than a cell, high < low). The latents of an
    autoencoder that spreads an object's colour over the frame's cells give no box to go by
    (``content_boxes`` found boxes as wide as the frame for most of ``ldm-shapes``' frames);
    their pixels do."""
    frames = frames.float()
    background = frames.flatten(2).median(dim=-1).values[..., None, None]
    content = (frames - background).abs().amax(dim=1) > threshold  # (B, H, W)
    boxes: Boxes = []
    for mask in content:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        if not len(rows):
            boxes.append(None)
            continue
        low = torch.stack([cols.min(), rows.min()]).float().cpu() / downscale
        high = (torch.stack([cols.max(), rows.max()]).float().cpu() + 1) / downscale - 1
        boxes.append((low, high))
    return boxes


def centre_content(
    first: torch.Tensor, *, threshold: float = 0.3, boxes: Boxes | None = None
) -> torch.Tensor:
    """Frame 0's latents (B, Z, h, w) moved by whole cells so that its content's box
    (``boxes``, by default ``content_boxes``') is centred: a place from which any motion
    stays in the frame, to plan from when the place frame 0 was drawn at may rule the asked
    motion out."""
    background, found = content_boxes(first, threshold=threshold)
    boxes = found if boxes is None else boxes
    size = torch.tensor([first.shape[-1], first.shape[-2]], dtype=torch.float32)
    out = first.clone()
    for b, box in enumerate(boxes):
        if box is not None:
            shift = torch.round((size - 1) / 2 - (box[0] + box[1]) / 2).long()
            out[b] = _move_content(first[b], int(shift[0]), int(shift[1]), background[b])
    return out


def start_shifts(
    first: torch.Tensor,
    tracks: torch.Tensor,
    *,
    threshold: float = 0.3,
    boxes: Boxes | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fewest whole cells (B, 2), (x, y), by which to move frame 0's latents ``first``
    (B, Z, h, w) so that its content stays inside the frame all along the planned ``tracks``
    (B, S, T, 2) of displacements in frame widths, and whether any move can (B,) bool.

    The content's box (``boxes``, by default ``content_boxes``'), moved along every slot's
    track, must stay within the frame. A frame without content needs no move; one no move
    can fit gets (0, 0) and False."""
    height, width = first.shape[-2:]
    if boxes is None:
        _, boxes = content_boxes(first, threshold=threshold)
    size = torch.tensor([width, height], dtype=torch.float32)
    moves = (tracks.float().cpu() * size).flatten(1, 2)  # (B, S*T, 2) in cells, (x, y)
    shifts = torch.zeros(first.shape[0], 2, dtype=torch.long)
    feasible = torch.ones(first.shape[0], dtype=torch.bool)
    for b, box in enumerate(boxes):
        if box is None:
            continue
        low, high = box
        # shift s keeps the box inside: low + s + min(move) >= 0, high + s + max(move) <= size-1
        lower = torch.ceil(-(low + moves[b].min(0).values) - 1e-4)
        upper = torch.floor(size - 1 - (high + moves[b].max(0).values) + 1e-4)
        if (lower > upper).any():
            feasible[b] = False
            continue
        shifts[b] = torch.clamp(torch.zeros(2), lower, upper).long()
    return shifts, feasible


def track_overlap(
    box: tuple[torch.Tensor, torch.Tensor], moves: torch.Tensor, occupied: torch.Tensor
) -> int:
    """How many occupied cells a content box meets along its planned motion: the box (x, y
    cells of its first and last corner) moved by ``moves`` (S, T, 2) cells, (x, y), counted
    against ``occupied`` (T, h, w) bool in every frame and slot."""
    height, width = occupied.shape[-2:]
    low, high = box
    total = 0
    for slot in moves:
        for t, move in enumerate(slot[: occupied.shape[0]].tolist()):
            x0 = max(int(math.floor(float(low[0]) + move[0])), 0)
            y0 = max(int(math.floor(float(low[1]) + move[1])), 0)
            x1 = min(int(math.ceil(float(high[0]) + move[0])), width - 1)
            y1 = min(int(math.ceil(float(high[1]) + move[1])), height - 1)
            if x0 <= x1 and y0 <= y1:
                total += int(occupied[t, y0 : y1 + 1, x0 : x1 + 1].sum())
    return total


def fit_start(
    first: torch.Tensor,
    tracks: torch.Tensor,
    *,
    threshold: float = 0.3,
    boxes: Boxes | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame 0's latents ``first`` (B, Z, h, w) moved by whole cells, as little as possible, so
    that its content stays inside the frame all along the planned ``tracks`` (B, S, T, 2) of
    displacements in frame widths (``start_shifts``) -> (moved latents, the move (B, 2) in
    cells, (x, y)).

    Where no move can do that (or there is no content) frame 0 stays as it is. Cells moved in
    from outside take the background. For data whose objects never leave the frame (the
    built-in worlds): an image model can draw the object where the asked motion would carry
    it out.
    """
    background, found = content_boxes(first, threshold=threshold)
    shifts, _ = start_shifts(first, tracks, boxes=found if boxes is None else boxes)
    out = first.clone()
    for b, shift in enumerate(shifts.tolist()):
        if any(shift):
            out[b] = _move_content(first[b], shift[0], shift[1], background[b])
    return out, shifts


def _move_content(latents: torch.Tensor, dx: int, dy: int, fill: torch.Tensor) -> torch.Tensor:
    """(Z, h, w) with what lies inside the outermost ring of cells moved by (dx, dy) whole
    cells; the ring (the encoder's padding marks of the frame's edge) stays where it is, and
    cells left behind take ``fill`` (Z, 1, 1)."""
    inner = latents.clone()
    ring = torch.ones(latents.shape[-2:], dtype=torch.bool, device=latents.device)
    ring[1:-1, 1:-1] = False
    inner[:, ring] = fill[:, :, 0].expand(-1, int(ring.sum()))
    moved = _shift_cells(inner, dx, dy, fill)
    moved[:, ring] = latents[:, ring]
    return moved


def _shift_cells(latents: torch.Tensor, dx: int, dy: int, fill: torch.Tensor) -> torch.Tensor:
    """(Z, h, w) moved by (dx, dy) whole cells; cells moved in take ``fill`` (Z, 1, 1)."""
    _, height, width = latents.shape
    out = fill.expand_as(latents).clone()
    ys, xs = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
    src_y, src_x = slice(max(-dy, 0), height - max(dy, 0)), slice(max(-dx, 0), width - max(dx, 0))
    out[:, ys, xs] = latents[:, src_y, src_x]
    return out
