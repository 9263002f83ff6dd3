"""Text encoders behind one interface: ``encode(list[str]) -> (emb (B, L, D), mask (B, L))``.

``load_text_encoder()`` gives the bundled all-MiniLM-L6-v2 (or any local Hugging Face encoder
directory), shared process-wide and cached in memory, or on disk with ``cache_dir``.
"""

from kinetoscope.text.cache import CachedTextEncoder, cache_key, default_cache_dir
from kinetoscope.text.encoders import (
    DEFAULT_TEXT_ENCODER,
    HFTextEncoder,
    TextEncoder,
    default_encoder_path,
    encoder_status,
    load_text_encoder,
)

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "CachedTextEncoder",
    "HFTextEncoder",
    "TextEncoder",
    "cache_key",
    "default_cache_dir",
    "default_encoder_path",
    "encoder_status",
    "load_text_encoder",
]
