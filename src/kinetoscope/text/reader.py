"""Prompt reader: a world prompt's facts read clause by clause, the prompt rewritten canonically.

A generator trained on a world's captions reads other wordings of the same facts less well than
the captions it saw: on mnist-1 test prompts, the shipped ``ldm-mnist`` gets 49 of 50 clips
right when worded canonically and 35 of 50 when worded with the evaluation's held-out
templates; 11 of those 15 failures come right with the canonical caption in their place. A
small learned reader closes that gap before sampling, as prompt rewriting does for large
text-to-image models: each clause of the prompt (``split_clauses``) is read into the world's
facts (digit, or colour, shape and size, and motion) by an ensemble of attention read-outs over
the frozen text encoder's token states, and when every fact of every clause is read with
confidence the prompt is replaced by the world's canonical caption of those facts.

The reader is trained on the same noisy and paraphrased training wordings as the trajectory
planner (``WordingAugmenter``: training templates and training-only paraphrases, never the
evaluation's templates) of objects from the training split's compositions only, plus clauses
of random words that it learns to leave unread (uniform target): a prompt that is not about the
world keeps its own words.

Axis legend: E ensemble members, B clauses, L tokens, D text width, Q queries, W read-out width.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from kinetoscope.text.clauses import split_clauses

logger = logging.getLogger(__name__)


def world_fields(world: str) -> dict[str, list[str]]:
    """The facts a clause of ``world`` states, each with its values (as strings)."""
    from kinetoscope.data.worlds.captions import MOTION_FORMS
    from kinetoscope.data.worlds.shapes import COLORS, SHAPES, SIZES

    motions = list(MOTION_FORMS)
    if world == "mnist":
        return {"digit": [str(d) for d in range(10)], "motion": motions}
    if world == "shapes":
        return {
            "color": list(COLORS),
            "shape": list(SHAPES),
            "size": list(SIZES),
            "motion": motions,
        }
    raise ValueError(f"no prompt reader for world {world!r}; use 'mnist' or 'shapes'")


def _object(world: str, facts: dict[str, str]) -> dict:
    """A world object dict from read facts (the digit as an int)."""
    return {**facts, "digit": int(facts["digit"])} if world == "mnist" else dict(facts)


@dataclass
class Reading:
    """What the reader made of one prompt: ``text`` is what the model is given (the canonical
    caption, or the prompt itself when ``objects`` is None), ``confidence`` the least
    probability among the facts read."""

    prompt: str
    text: str
    objects: list[dict] | None
    confidence: float


class PromptReader(ModelMixin, ConfigMixin):
    """(clause token states) -> per-fact probabilities, averaged over ``members`` read-outs.

    Each member projects the tokens to ``width``, lets ``queries`` learned queries attend to
    them and reads each fact from the queries' outputs with a linear head. Members differ by
    initialisation and by the batches they train on; their averaged probabilities are steadier
    than any one member's reading of words it never saw.

    Args:
        world: "mnist" or "shapes" (its facts: ``world_fields``).
        text_dim: width of the token states read (``text_layers`` concatenated).
        text_layers: the text encoder's hidden states read (``load_text_encoder(layers=...)``).
        threshold: a prompt is rewritten only when every fact is read with at least this
            probability.
    """

    @register_to_config
    def __init__(
        self,
        *,
        world: str,
        text_dim: int = 384,
        text_layers: list[int] | None = None,
        members: int = 5,
        width: int = 128,
        queries: int = 4,
        threshold: float = 0.9,
    ) -> None:
        super().__init__()
        fields = world_fields(world)
        if members < 1 or queries < 1:
            raise ValueError("a reader needs members >= 1 and queries >= 1")
        self.proj = nn.Parameter(torch.randn(members, text_dim, width) / text_dim**0.5)
        self.proj_bias = nn.Parameter(torch.zeros(members, 1, 1, width))
        self.query = nn.Parameter(torch.randn(members, queries, width) * 0.1)
        self.heads = nn.ParameterDict(
            {
                name: nn.Parameter(torch.randn(members, queries * width, len(values)) * 0.02)
                for name, values in fields.items()
            }
        )
        self.head_bias = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(members, 1, len(v))) for name, v in fields.items()}
        )

    @property
    def fields(self) -> dict[str, list[str]]:
        return world_fields(self.config.world)

    def logits(self, emb: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """emb (E, B, L, D) or (B, L, D) (shared by the members), mask (..., B, L) ->
        {fact: logits (E, B, values)}."""
        if emb.dim() == 3:
            emb, mask = (
                emb.expand(self.proj.shape[0], *emb.shape),
                mask.expand(self.proj.shape[0], *mask.shape),
            )
        keys = torch.einsum("ebld,edw->eblw", emb, self.proj) + self.proj_bias
        weights = torch.einsum("eqw,eblw->ebql", self.query, keys) / keys.shape[-1] ** 0.5
        weights = weights.masked_fill(~mask.bool()[:, :, None], float("-inf")).softmax(-1)
        read = torch.einsum("ebql,eblw->ebqw", weights, keys).flatten(2)  # (E, B, Q*W)
        return {
            name: torch.einsum("ebk,ekv->ebv", read, self.heads[name]) + self.head_bias[name]
            for name in self.heads
        }

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """emb (B, L, D), mask (B, L) -> {fact: probabilities (B, values)}, members averaged."""
        return {k: v.float().softmax(-1).mean(0) for k, v in self.logits(emb, mask).items()}

    @torch.no_grad()
    def read(self, prompts: list[str], encoder: Any) -> list[Reading]:
        """Read each prompt clause by clause with ``encoder`` (one that gives this reader's
        ``text_layers``); a prompt whose every fact is read with at least ``threshold`` is
        rewritten as the world's canonical caption of what was read."""
        from kinetoscope.data.worlds.captions import canonical_caption

        clauses = [split_clauses(p) for p in prompts]
        flat = [c for parts in clauses for c in parts]
        emb, mask = encoder.encode(flat)
        param = self.proj
        probs = self(emb.to(param.device, param.dtype), mask.to(param.device))
        best = {k: v.max(-1) for k, v in probs.items()}
        fields, readings, row = self.fields, [], 0
        for prompt, parts in zip(prompts, clauses, strict=True):
            objects, confidence = [], 1.0
            for k in range(row, row + len(parts)):
                facts = {n: fields[n][int(best[n].indices[k])] for n in best}
                objects.append(_object(self.config.world, facts))
                confidence = min([confidence, *(float(best[n].values[k]) for n in best)])
            row += len(parts)
            if confidence >= self.config.threshold:
                text = canonical_caption(self.config.world, objects)
                readings.append(Reading(prompt, text, objects, confidence))
            else:
                readings.append(Reading(prompt, prompt, None, confidence))
        return readings


# ----------------------------------------------------------------------------- training


def reader_clauses(
    worlds: list[str],
    augmenter: Any,
    *,
    count: int,
    seed: int,
    noise_share: float = 0.1,
    noise_words: list[str] | None = None,
) -> tuple[list[str], list[dict | None]]:
    """``count`` training clauses and their objects (None: a clause of random words).

    Captions are the ``augmenter``'s wordings of objects drawn from the training split's
    compositions of ``worlds`` (e.g. ["mnist-1", "mnist-2"]), cut into clauses as prompts are
    at sampling; a caption whose clauses do not match its objects one to one is skipped.
    ``noise_share`` of the clauses are 2-6 random ``noise_words``."""
    from kinetoscope.data.worlds.common import make_rng, parse_world_name
    from kinetoscope.data.worlds.dataset import _WORLD_MODULES

    rng = random.Random(seed)
    draws = make_rng("kinetoscope.reader", seed)
    parsed = [parse_world_name(w) for w in worlds]
    clauses: list[str] = []
    objects: list[dict | None] = []
    while len(clauses) < count:
        if noise_words and rng.random() < noise_share:
            clauses.append(" ".join(rng.choice(noise_words) for _ in range(rng.randint(2, 6))))
            objects.append(None)
            continue
        world, num_objects = parsed[rng.randrange(len(parsed))]
        drawn = _WORLD_MODULES[world].sample_objects(num_objects, split="train", rng=draws)
        parts = split_clauses(augmenter(world, drawn, rng))
        if len(parts) == len(drawn):
            clauses.extend(parts)
            objects.extend(drawn)
    return clauses[:count], objects[:count]


def train_reader(
    reader: PromptReader,
    emb: torch.Tensor,
    mask: torch.Tensor,
    objects: list[dict | None],
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    minutes: float | None = None,
) -> list[float]:
    """Train every member on its own random batches of the encoded clauses (emb (N, L, D),
    mask (N, L)); clauses without objects learn uniform probabilities. Stops after ``steps``
    or ``minutes`` of training, whichever comes first. Returns the losses."""
    import time

    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    fields = reader.fields
    targets = {
        name: torch.tensor([-1 if o is None else values.index(str(o[name])) for o in objects])
        for name, values in fields.items()
    }
    members = reader.proj.shape[0]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(reader.parameters(), lr=lr, weight_decay=1e-4)
    losses = []
    reader.train()
    for _ in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("prompt reader: stopped at its %.1f-minute budget", minutes)
            break
        idx = torch.randint(0, len(objects), (members, batch_size), generator=generator)
        logits = reader.logits(emb[idx], mask[idx])
        loss = 0.0
        for name, out in logits.items():
            target = targets[name][idx]  # (E, B)
            logp = out.log_softmax(-1)
            known = target >= 0
            nll = -logp.gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
            uniform = -logp.mean(-1)  # cross-entropy against the uniform distribution
            loss = loss + torch.where(known, nll, uniform).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    reader.eval()
    return losses


def build_reader(
    worlds: list[str],
    *,
    text_encoder: str,
    max_length: int,
    layers: tuple[int, ...] = (-1,),
    count: int = 6000,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    minutes: float | None = None,
    noise: float = 0.5,
    paraphrase: float = 0.3,
    **config: Any,
) -> PromptReader:
    """A reader of ``worlds`` (all of one world, e.g. mnist-1 and mnist-2), trained on
    ``count`` clauses of captions noised (``noise``) and paraphrased (``paraphrase``) as the
    planner's are, encoded once by ``text_encoder``'s hidden states ``layers``."""
    from kinetoscope.data.worlds.common import parse_world_name
    from kinetoscope.text import load_text_encoder
    from kinetoscope.train.text_augment import WordingAugmenter, vocabulary_words

    names = {parse_world_name(w)[0] for w in worlds}
    if len(names) != 1:
        raise ValueError(f"a reader reads one world's prompts, got {sorted(names)}")
    encoder = load_text_encoder(text_encoder, max_length=max_length, layers=layers)
    vocabulary = vocabulary_words(encoder)
    augmenter = WordingAugmenter(vocabulary, p=noise, paraphrase=paraphrase)
    clauses, objects = reader_clauses(
        worlds, augmenter, count=count, seed=seed, noise_words=vocabulary
    )
    emb, mask = encoder.encode(clauses)
    torch.manual_seed(seed)
    reader = PromptReader(
        world=names.pop(), text_dim=encoder.dim, text_layers=list(layers), **config
    )
    losses = train_reader(
        reader, emb, mask, objects, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        minutes=minutes,
    )  # fmt: skip
    logger.info("prompt reader: %d clauses, final loss %.3f", len(clauses), losses[-1])
    return reader
