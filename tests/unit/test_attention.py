"""Attention with a context shared by groups of queries equals repeating the context."""

from __future__ import annotations

import pytest
import torch

from kinetoscope.nn.attention import Attention


@pytest.mark.parametrize("groups", [1, 3, 16])
def test_shared_context_equals_repeated_context(groups):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, context_dim=24)
    x = torch.randn(2 * groups, 5, 32)  # rows c*G .. c*G+G-1 belong to prompt c
    context = torch.randn(2, 7, 24)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    shared = attn(x, context, context_mask=mask)
    repeated = attn(
        x,
        context.repeat_interleave(groups, dim=0),
        context_mask=mask.repeat_interleave(groups, dim=0),
    )
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=1e-5)
    # the padded keys of prompt 1 are really ignored
    changed = context.clone()
    changed[1, 4:] = 100.0
    torch.testing.assert_close(attn(x, changed, context_mask=mask), shared, atol=1e-5, rtol=1e-5)


def test_context_batch_must_divide_query_batch():
    attn = Attention(16, num_heads=2, context_dim=8)
    with pytest.raises(ValueError, match="does not divide"):
        attn(torch.randn(5, 3, 16), torch.randn(2, 4, 8))
