"""Copies of a model for autocast inference that keep their matmul weights in low precision.

Under ``torch.autocast(dtype=bfloat16)`` every convolution and linear layer casts its float32
weight and bias to bfloat16 at every call: at the sizes of the shipped denoisers that is about a
seventh of a forward pass on a CPU. An ``autocast_twin`` stores those weights in bfloat16 once;
autocast then has nothing to cast, and everything else (norms, embeddings, mixing factors) stays
float32 as autocast would run it, so the twin's outputs are bit-identical to the model's.
Also here: which precision "auto" means on a device (``resolve_precision``).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from torch import nn

# The layers whose weights CPU and CUDA autocast cast to the low-precision dtype.
AUTOCAST_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def autocast_twin(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``model`` (in eval mode) whose ``AUTOCAST_LAYERS`` hold their weights in
    ``dtype``; under autocast to ``dtype`` it computes exactly what ``model`` does."""
    twin = copy.deepcopy(model).eval().requires_grad_(False)
    for module in twin.modules():
        if isinstance(module, AUTOCAST_LAYERS):
            module.to(dtype)
    return twin


def weights_key(model: nn.Module) -> tuple[Any, ...]:
    """Changes whenever a parameter of ``model`` is replaced, moved, cast or updated in place."""
    # Inference tensors (an autocast twin made under inference mode) keep no version counter.
    return tuple(
        (id(p), p.device, p.dtype, None if p.is_inference() else p._version)
        for p in model.parameters()
    )


class AutocastTwins:
    """One ``autocast_twin`` per model and dtype, made on first use and made again when the
    model's weights change (training, ``load_state_dict``, ``.to``)."""

    def __init__(self) -> None:
        self._twins: weakref.WeakKeyDictionary[nn.Module, dict[torch.dtype, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, model: nn.Module, dtype: torch.dtype) -> nn.Module:
        by_dtype = self._twins.setdefault(model, {})
        key = weights_key(model)
        cached = by_dtype.get(dtype)
        if cached is None or cached[0] != key:
            cached = by_dtype[dtype] = (key, autocast_twin(model, dtype))
        return cached[1]


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively, so bf16 autocast pays:
    a CUDA GPU with bf16 support, or a CPU with AMX tiles or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu, private
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` checked; "auto" becomes "bfloat16" where that is native, else "float32"."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {list(PRECISION_CHOICES)}"
        )
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision
