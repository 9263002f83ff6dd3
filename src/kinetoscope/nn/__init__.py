"""Layers shared by both model families (attention, embeddings, transformer blocks)."""

from kinetoscope.nn.attention import Attention, FeedForward, TransformerBlock
from kinetoscope.nn.embeddings import sinusoidal_embedding

__all__ = ["Attention", "FeedForward", "TransformerBlock", "sinusoidal_embedding"]
