"""Shared fixtures: one thread per test process (CI machines have 2 cores), tiny models."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


class FakeTextEncoder:
    """Deterministic stand-in encoder (hash of each word -> a fixed random vector)."""

    name = "fake"
    fingerprint = "fake-16"
    dim = 16
    max_length = 8

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.zeros(len(texts), self.max_length, self.dim)
        mask = torch.zeros(len(texts), self.max_length, dtype=torch.bool)
        for i, text in enumerate(texts):
            for j, word in enumerate(text.split()[: self.max_length]):
                seed = sum(ord(c) * (k + 1) for k, c in enumerate(word))
                emb[i, j] = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
                mask[i, j] = True
        return emb, mask


@pytest.fixture
def fake_text_encoder() -> FakeTextEncoder:
    return FakeTextEncoder()


@pytest.fixture
def one_thread():
    """Run the test on one torch thread, then restore the caller's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
