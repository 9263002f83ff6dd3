"""The phenaki-pytorch peer of the Phenaki speed benchmark (``benchmarks/bench_phenaki.py``).

The ``phenaki-pytorch`` package (C-ViViT with lookup-free quantization, a MaskGit transformer
and ``Phenaki.sample``) assembled from random components whose tokenizer and transformer
parameter counts match a kinetoscope Phenaki model (Villegas et al. 2022, §2), behind the
kinetoscope call convention (``PhenakiPytorchPeer``), so ``kinetoscope.eval.bench`` measures
it like our pipelines (``run_system`` dispatches ``spec["system"] == PHENAKI_PEER`` to
``build_phenaki_peer_system``).

Fairness. Prompts are encoded by the kinetoscope model's own text encoder inside the timed
call (it replaces the peer's T5 encoder, so nothing is downloaded); the peer derives its text
mask from the exactly-zero padding. Both sides keep the depths and heads of our recipe and
the peer's widths are scaled until each part's count is closest to ours. Our pipeline is also
built from the recipe with random weights (``kinetoscope.eval.bench.build_pipeline_from_recipe``): the same
sizes, hence the same speed, as a trained model.

Importing. The package's ``__init__`` also imports its trainers (torchvision, OpenCV,
accelerate, ema-pytorch); sampling needs none of them, so ``import_phenaki_pytorch`` loads
``phenaki_pytorch.phenaki_pytorch`` without running that ``__init__`` (and, when torchvision
is absent, with an empty stand-in for the one ``import torchvision`` of its C-ViViT module,
which only uses it for the VGG perceptual loss we switch off).

Axes: B batch, C channels, T frames, H W pixels; L text tokens, D text width.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import logging
import math
import sys
import warnings
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
from torch import nn

from kinetoscope.autoencoders.cvivit import check_num_frames
from kinetoscope.eval.bench_peer import PeerOutput, count_parameters, match_widths
from kinetoscope.eval.bench_report import RATIO_KEYS, TARGET_PEAK_MB

logger = logging.getLogger(__name__)

PHENAKI_PEER = "phenaki-peer"
INSTALL_HINT = (
    "phenaki-pytorch is not importable; install it without touching torch: "
    "pip install --no-deps phenaki-pytorch==0.5.0 && pip install beartype vector-quantize-pytorch"
)
PEER_CODEBOOK_SIZE = 1024  # lookup-free quantization needs a power of two; ours has 1000 codes
PEER_TEXT_NAME = "kinetoscope-text-encoder"  # stands in for the peer's T5 name (never loaded)
PARAM_TOLERANCE = 0.10
TOKENIZER_SHAPE_KEYS = ("patch_size", "dim", "num_heads", "spatial_depth", "temporal_depth")
TARGET_SPEEDUP = 4.0  # our default generation vs the peer's, seconds per clip


# ----------------------------------------------------------------------------- importing


def import_phenaki_pytorch() -> ModuleType:
    """``phenaki_pytorch.phenaki_pytorch`` (CViViT, MaskGit, Phenaki) without the package
    ``__init__`` and its trainer dependencies; raises ModuleNotFoundError naming the install."""
    loaded = sys.modules.get("phenaki_pytorch.phenaki_pytorch")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("phenaki_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(INSTALL_HINT, name="phenaki_pytorch")
    # Its T5 module imports these; load them before any stand-in exists, so transformers'
    # own check for torchvision sees the real installation.
    from transformers import T5Config, T5EncoderModel, T5Tokenizer  # noqa: F401

    sys.modules.setdefault("phenaki_pytorch", importlib.util.module_from_spec(spec))
    stand_in = importlib.util.find_spec("torchvision") is None
    if stand_in:
        sys.modules["torchvision"] = ModuleType("torchvision")
    try:
        with warnings.catch_warnings():  # its typing.List/Tuple hints make beartype warn
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("phenaki_pytorch.phenaki_pytorch")
    except ImportError as error:
        sys.modules.pop("phenaki_pytorch", None)
        raise ModuleNotFoundError(f"{INSTALL_HINT} ({error})", name="phenaki_pytorch") from error
    finally:
        if stand_in:
            sys.modules.pop("torchvision", None)


# ----------------------------------------------------------------------------- our side


def phenaki_match(pipe: Any) -> dict[str, Any]:
    """The keyword arguments of ``build_phenaki_peer`` that size a peer like our ``pipe``
    (plus its text encoder's name and length), JSON-serialisable for a subprocess spec."""
    tokenizer, transformer = pipe.tokenizer.config, pipe.transformer.config
    return {
        "tokenizer_params": count_parameters(pipe.tokenizer),
        "transformer_params": count_parameters(pipe.transformer),
        "tokenizer_shape": {k: tokenizer[k] for k in TOKENIZER_SHAPE_KEYS},
        "transformer_shape": {k: transformer[k] for k in ("dim", "depth", "num_heads", "mlp_mult")},
        "resolution": int(pipe.resolution),
        "max_time_tokens": int(pipe.transformer.max_time_tokens),
        "text_dim": int(transformer["text_dim"]),
        "text_encoder": pipe.text_encoder_name,
        "max_length": int(pipe.max_length),
    }


# ----------------------------------------------------------------------------- the peer


class PhenakiPytorchPeer:
    """phenaki-pytorch's ``Phenaki.sample`` behind the kinetoscope call convention.

    ``text_encoder`` (the kinetoscope model's) replaces the peer's T5 encoder, so prompts are
    encoded inside the call; without one, fixed random states (1, L, D) stand in. The callback
    fires after the guided transformer pass of every sampling step (the peer has no hook of
    its own), with the step's logits (B, N, K) in place of tokens.
    """

    family = PHENAKI_PEER

    def __init__(
        self,
        phenaki: nn.Module,
        *,
        text_encoder: Any,
        random_states: torch.Tensor,
        defaults: dict[str, Any],
        match: dict[str, Any],
    ) -> None:
        # Attributes named like our pipeline's, so pipeline_parameter_counts compares them.
        self.tokenizer, self.transformer = phenaki.cvivit, phenaki.maskgit
        self._phenaki, self._text_encoder, self._random_states = (
            phenaki,
            text_encoder,
            random_states,
        )
        self.defaults, self.match = dict(defaults), dict(match)
        self._on_step: Callable[[torch.Tensor], None] | None = None
        phenaki.encode_texts = self._encode_texts
        guided_logits = phenaki.maskgit.forward_with_cond_scale

        def guided_logits_and_report(*args: Any, **kwargs: Any) -> torch.Tensor:
            logits = guided_logits(*args, **kwargs)
            if self._on_step is not None:
                self._on_step(logits)
            return logits

        phenaki.maskgit.forward_with_cond_scale = guided_logits_and_report

    def _encode_texts(self, texts: list[str], output_device: Any = None) -> torch.Tensor:
        """(B, L, D) text states, padding exactly zero (the peer masks all-zero rows)."""
        if self._text_encoder is None:
            return self._random_states.expand(len(texts), -1, -1).to(output_device)
        states, _ = self._text_encoder.encode(list(texts))
        return states.to(output_device)

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        *,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        progress: bool = False,
    ) -> PeerOutput:
        """One clip of ``num_frames`` (1 + 2k) frames; ``progress`` is accepted and ignored."""
        num_frames = int(num_frames or self.defaults["num_frames"])
        check_num_frames(num_frames)
        steps = int(num_inference_steps or self.defaults["num_inference_steps"])
        guidance = self.defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        self._phenaki.steps = steps
        torch.manual_seed(seed)  # the peer samples from torch's global generator
        if callback is not None:
            counter = itertools.count()
            self._on_step = lambda logits: callback(next(counter), steps, logits)
        try:
            video = self._phenaki.sample(
                texts=[prompt], num_frames=num_frames, cond_scale=float(guidance)
            )  # (B, C, T, H, W), trained on [0, 1]
        finally:
            self._on_step = None
        frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
        return PeerOutput(frames=list(frames.numpy()))  # (T, H, W, C) each


def _peer_tokenizer(
    widths: tuple[int, ...], *, shape: dict[str, Any], resolution: int, codebook_size: int
) -> nn.Module:
    """The peer's CViViT at width ``widths[0]`` with our patch size, depths and heads."""
    heads = int(shape["num_heads"])
    return import_phenaki_pytorch().CViViT(
        dim=widths[0],
        codebook_size=codebook_size,
        image_size=resolution,
        patch_size=shape["patch_size"],
        temporal_patch_size=2,  # like ours: the first frame alone, then 2-frame tubelets
        spatial_depth=shape["spatial_depth"],
        temporal_depth=shape["temporal_depth"],
        heads=heads,
        dim_head=widths[0] // heads,
        use_vgg_and_gan=False,  # losses only; no VGG download
    )


def _peer_transformer(
    widths: tuple[int, ...],
    *,
    shape: dict[str, Any],
    num_tokens: int,
    max_seq_len: int,
    text_dim: int,
) -> nn.Module:
    """The peer's MaskGit at width ``widths[0]`` with our depth, heads and MLP expansion."""
    heads = int(shape["num_heads"])
    return import_phenaki_pytorch().MaskGit(
        dim=widths[0],
        num_tokens=num_tokens,
        max_seq_len=max_seq_len,
        heads=heads,
        dim_head=widths[0] // heads,
        depth=shape["depth"],
        ff_mult=shape["mlp_mult"],
        dim_context=text_dim,
    )


def _match_one(
    build: Callable[[tuple[int, ...]], nn.Module], base: int, target: int, heads: int, part: str
) -> tuple[int, int, float]:
    """(width, count, relative error) of the peer's ``part`` closest to ``target`` parameters."""
    (width,), count = match_widths(build, (base,), target, multiple=math.lcm(4, heads))
    error = count / target - 1
    if abs(error) > PARAM_TOLERANCE:
        logger.warning("peer %s: %d parameters, %+.0f%% off %d", part, count, 100 * error, target)
    return width, count, error


def build_phenaki_peer(
    *,
    tokenizer_params: int,
    transformer_params: int,
    tokenizer_shape: dict[str, Any],
    transformer_shape: dict[str, Any],
    resolution: int,
    max_time_tokens: int,
    text_dim: int,
    num_frames: int,
    steps: int,
    guidance_scale: float = 3.0,
    max_length: int = 32,
    text_encoder: Any = None,
    codebook_size: int = PEER_CODEBOOK_SIZE,
    seed: int = 0,
) -> PhenakiPytorchPeer:
    """phenaki-pytorch's Phenaki from random parts whose counts match a kinetoscope model's.

    Args:
        tokenizer_params, transformer_params: our C-ViViT's and transformer's parameter counts.
        tokenizer_shape: our CViViT's patch_size, dim, num_heads, spatial_depth and
            temporal_depth; transformer_shape: our transformer's dim, depth, num_heads and
            mlp_mult. Depths and heads are kept; each width is scaled (from ours) until the
            part's count is closest (a warning is logged beyond 10% off).
        resolution: H = W; max_time_tokens: T' of the longest clip (sizes the peer's positions).
        text_dim, max_length: shape of the text states; text_encoder: encodes prompts in the call.
        num_frames, steps, guidance_scale: the call defaults.
        codebook_size: the peer's lookup-free codebook (a power of two).
    """
    tokenizer_of = functools.partial(
        _peer_tokenizer, shape=tokenizer_shape, resolution=resolution, codebook_size=codebook_size
    )
    grid = resolution // int(tokenizer_shape["patch_size"])
    transformer_of = functools.partial(
        _peer_transformer,
        shape=transformer_shape,
        num_tokens=codebook_size,
        max_seq_len=max_time_tokens * grid * grid,
        text_dim=text_dim,
    )
    tok_width, tok_count, tok_error = _match_one(
        tokenizer_of,
        tokenizer_shape["dim"],
        tokenizer_params,
        tokenizer_shape["num_heads"],
        "tokenizer",
    )
    tf_width, tf_count, tf_error = _match_one(
        transformer_of,
        transformer_shape["dim"],
        transformer_params,
        transformer_shape["num_heads"],
        "transformer",
    )
    module = import_phenaki_pytorch()
    # Phenaki sizes its text input with the T5 config of its encoder's name: register ours.
    module_t5 = importlib.import_module("phenaki_pytorch.t5")
    module_t5.T5_CONFIGS[PEER_TEXT_NAME] = {"config": SimpleNamespace(d_model=text_dim)}
    torch.manual_seed(seed)
    phenaki = module.Phenaki(
        maskgit=transformer_of((tf_width,)),
        cvivit=tokenizer_of((tok_width,)),
        t5_name=PEER_TEXT_NAME,
        text_embed_dim=text_dim,
        steps=steps,
    ).eval()
    match = {
        "target_tokenizer_params": tokenizer_params,
        "tokenizer_params": tok_count,
        "tokenizer_dim": tok_width,
        "tokenizer_param_error": tok_error,
        "target_transformer_params": transformer_params,
        "transformer_params": tf_count,
        "transformer_dim": tf_width,
        "transformer_param_error": tf_error,
        "codebook_size": codebook_size,
    }
    defaults = {
        "num_frames": num_frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
    }
    states = torch.randn(1, max_length, text_dim, generator=torch.Generator().manual_seed(seed))
    return PhenakiPytorchPeer(
        phenaki, text_encoder=text_encoder, random_states=states, defaults=defaults, match=match
    )


def build_phenaki_peer_system(spec: dict[str, Any]) -> tuple[PhenakiPytorchPeer, dict[str, Any]]:
    """(peer, extra result fields) for ``kinetoscope.eval.bench.run_system``.

    ``spec["match"]`` holds ``phenaki_match(our pipeline)``; its text encoder (None: random
    states) is loaded here, and the spec's num_frames, steps and guidance_scale are the defaults.
    """
    match = dict(spec["match"])
    name, max_length = match.pop("text_encoder", None), int(match.pop("max_length", 32))
    text_encoder = None
    if name:
        from kinetoscope.text import load_text_encoder

        text_encoder = load_text_encoder(name, max_length=max_length)
    peer = build_phenaki_peer(
        **match,
        num_frames=int(spec["num_frames"]),
        steps=int(spec["steps"]),
        guidance_scale=float(spec["guidance_scale"]),
        max_length=max_length,
        text_encoder=text_encoder,
    )
    return peer, {"match": peer.match, "text_encoder": name}


# ----------------------------------------------------------------------------- comparing


def compare_phenaki(
    ours_default: dict[str, Any], ours_like: dict[str, Any], peer: dict[str, Any]
) -> dict[str, Any]:
    """Peer/ours ratios (above 1 = ours faster) and PASS/FAIL per target.

    Args:
        ours_default: our default generation; ours_like: ours at the peer's frames and steps;
        peer: the peer's result (``measure_generation`` keys, e.g. ``seconds_per_clip``).
    Returns:
        ``{"ratios_peer_over_ours": {"default": {...}, "like_for_like": {...}}, "speedup":
        peer/ours seconds per clip of the default generation, "targets": {name: bool}}``.
    """
    ratios = {
        label: {k: peer[k] / ours[k] for k in RATIO_KEYS}
        for label, ours in (("default", ours_default), ("like_for_like", ours_like))
    }
    speedup = ratios["default"]["seconds_per_clip"]
    speed_target = f"ours >= {TARGET_SPEEDUP:g}x faster than the peer (default generation)"
    memory_target = f"peak memory <= {TARGET_PEAK_MB / 1024:.1f} GB (our default generation)"
    targets = {
        speed_target: speedup >= TARGET_SPEEDUP,
        memory_target: ours_default["peak_rss_mb"] <= TARGET_PEAK_MB,
    }
    return {"ratios_peer_over_ours": ratios, "speedup": speedup, "targets": targets}
