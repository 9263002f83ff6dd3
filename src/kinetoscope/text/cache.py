"""Embedding cache for a frozen text encoder: compute each prompt once per encoder.

Training sees the same captions thousands of times and sampling re-encodes the same negative
prompt ("") every call, so ``CachedTextEncoder`` keeps every prompt's features in an in-memory
LRU and, optionally, on disk.

Disk layout: ``cache_dir/ab/<sha256>.safetensors`` with key = sha256(fingerprint + "\\n" + text),
so two encoders (or one encoder at two ``max_length``) never share an entry. Each file holds
``mask`` (L,) bool and ``emb`` (N, D) float32, the rows of the real tokens only (padding rows are
zero by contract); the fingerprint and text go into the file metadata and are checked on read.
Files are written to a unique temp name and renamed into place, so concurrent readers see
either nothing or a whole file; a file that fails to read is treated as a miss and rewritten.

Axis legend
    B  batch of prompts
    L  tokens per prompt (``max_length``)
    N  real tokens of one prompt (mask.sum())
    D  hidden size of the encoder (``dim``)
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kinetoscope.text.encoders import TextEncoder, check_texts

logger = logging.getLogger(__name__)

Entry = tuple[torch.Tensor, torch.Tensor]  # (emb (N, D) float32, mask (L,) bool)


def default_cache_dir() -> Path:
    """``$KINETOSCOPE_CACHE/text``, else ``$XDG_CACHE_HOME/kinetoscope/text`` (~/.cache)."""
    root = os.environ.get("KINETOSCOPE_CACHE")
    if root:
        return Path(root).expanduser() / "text"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "kinetoscope" / "text"


def cache_key(fingerprint: str, text: str) -> str:
    """Hex sha256 naming one (encoder, prompt) pair."""
    return hashlib.sha256(f"{fingerprint}\n{text}".encode()).hexdigest()


class CachedTextEncoder:
    """Wraps a ``TextEncoder``; ``encode`` runs the encoder once, on the missing prompts only.

    Args:
        encoder: any TextEncoder (its ``fingerprint`` keys the cache).
        cache_dir: directory of the disk cache; None means ``default_cache_dir()``.
        disk: False keeps entries in memory only (``cache_dir`` is then ignored).
        memory_items: prompts kept in the in-memory LRU.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        cache_dir: str | Path | None = None,
        *,
        disk: bool = True,
        memory_items: int = 4096,
    ) -> None:
        if memory_items < 0:
            raise ValueError(f"memory_items must be >= 0, got {memory_items}")
        self.encoder = encoder
        self.cache_dir = (
            (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) if disk else None
        )
        self.memory_items = memory_items
        self.hits = 0  # prompts answered from memory or disk
        self.misses = 0  # prompts the encoder had to compute
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._disk_failed = False

    # The TextEncoder attributes are the wrapped encoder's.
    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def __repr__(self) -> str:
        return f"CachedTextEncoder({self.encoder!r}, cache_dir={self.cache_dir})"

    def path_for(self, text: str) -> Path:
        """File of ``text``'s entry (whether or not it exists)."""
        if self.cache_dir is None:
            raise ValueError("this cache keeps entries in memory only (disk=False)")
        key = cache_key(self.fingerprint, text)
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    # ------------------------------------------------------------------ memory
    def _remember(self, key: str, entry: Entry) -> None:
        if self.memory_items == 0:
            return
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    # ------------------------------------------------------------------ disk
    def _read(self, text: str) -> Entry | None:
        path = self.path_for(text)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as file:
                meta = file.metadata() or {}
                emb, mask = file.get_tensor("emb"), file.get_tensor("mask")
        except Exception as error:  # unreadable -> recompute and overwrite
            logger.warning("ignoring unreadable text-cache file %s (%s)", path, error)
            return None
        ok = (
            meta.get("fingerprint") == self.fingerprint
            and meta.get("text") == text
            and mask.dtype == torch.bool
            and mask.shape == (self.max_length,)
            and emb.shape == (int(mask.sum()), self.dim)
        )
        if not ok:
            logger.warning("ignoring text-cache file %s: it does not match this encoder", path)
            return None
        return emb.float(), mask

    def _write(self, text: str, entry: Entry) -> None:
        if self._disk_failed:
            return
        path = self.path_for(text)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            emb, mask = entry
            metadata = {"fingerprint": self.fingerprint, "text": text}
            save_file({"emb": emb, "mask": mask}, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        except OSError as error:
            # The cache only saves time: keep encoding, but say once why it is off.
            self._disk_failed = True
            tmp.unlink(missing_ok=True)
            logger.warning(
                "text cache disabled: cannot write to %s (%s); pass a writable cache_dir",
                self.cache_dir,
                error,
            )

    # ------------------------------------------------------------------ encode
    def _compute(self, texts: list[str], keys: list[str]) -> dict[str, Entry]:
        emb, mask = self.encoder.encode(texts)  # (M, L, D), (M, L)
        if emb.shape != (len(texts), self.max_length, self.dim) or mask.shape != emb.shape[:2]:
            raise ValueError(
                f"{self.name} returned emb {tuple(emb.shape)} / mask {tuple(mask.shape)}; "
                f"expected ({len(texts)}, {self.max_length}, {self.dim}) / "
                f"({len(texts)}, {self.max_length})"
            )
        found = {}
        # inference_mode(False): stored tensors must stay usable by autograd later (training)
        # even when this call happens inside a sampling pipeline's inference_mode.
        with torch.inference_mode(False):
            for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
                row_mask = mask[i].detach().cpu().bool().clone()  # (L,)
                row_emb = emb[i].detach().cpu().float()[row_mask].clone()  # (N, D)
                found[key] = (row_emb, row_mask)
                if self.cache_dir is not None:
                    self._write(text, found[key])
        return found

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """emb float32 (B, L, D), mask bool (B, L); cached prompts don't reach the encoder."""
        texts = check_texts(texts)
        keys = [cache_key(self.fingerprint, text) for text in texts]
        with self._lock:
            entries: dict[str, Entry] = {}
            missing: dict[str, str] = {}  # key -> text, unique, in first-seen order
            for text, key in zip(texts, keys, strict=True):
                if key in entries or key in missing:
                    continue
                entry = self._memory.get(key)
                if entry is None and self.cache_dir is not None:
                    entry = self._read(text)
                if entry is None:
                    missing[key] = text
                else:
                    entries[key] = entry
                    self._remember(key, entry)
            self.hits += len(entries)
            self.misses += len(missing)
            if missing:
                computed = self._compute(list(missing.values()), list(missing))
                for key, entry in computed.items():
                    entries[key] = entry
                    self._remember(key, entry)
        emb = torch.zeros(len(texts), self.max_length, self.dim)  # (B, L, D)
        mask = torch.zeros(len(texts), self.max_length, dtype=torch.bool)  # (B, L)
        for i, key in enumerate(keys):
            row_emb, row_mask = entries[key]
            emb[i, row_mask] = row_emb
            mask[i] = row_mask
        return emb, mask

    def clear_memory(self) -> None:
        """Drop the in-memory entries (the disk cache stays)."""
        with self._lock:
            self._memory.clear()
