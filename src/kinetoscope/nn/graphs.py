"""Traced graphs of a denoiser: the same operations without the Python around them.

On a CPU, much of a shipped denoiser's call is Python around the operations (module calls,
reshapes, dispatch): traced, a guided 16-frame call of ``ldm-mnist`` takes 66 ms instead of
80 ms and a one-frame call 11 ms instead of 15 ms. ``torch.jit.trace`` records the operations
of one call into a graph that runs without that Python. Run by the plain interpreter
(``torch.jit.optimized_execution(False)``: no fusion, no autocast pass of its own), the graph
performs exactly the recorded operations, casts included, so its outputs are bit-identical to
the eager model's (tested).

A trace is specific to its input shapes, dtypes and flags (one per "signature") and costs
about 0.6 s for the one-frame pass and 1.1 s for the 16-frame one (some 40 and 15 eager calls).
A ``DenoiserGraphs`` therefore traces a signature only when it comes back in a later denoising
pass than its first ``after`` ones (default 4): a session of a few clips runs eagerly, and
longer runs (an eval, a batch from a prompts file, the demo) trace on their fifth clip and save
about 8% of every clip after it, which repays the traces after about ten more clips.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kinetoscope.nn.precision import weights_key

logger = logging.getLogger(__name__)

# Denoising passes of a signature that run eagerly before it is traced (see the module docs).
AFTER = 4


class _Forward(nn.Module):
    """``model(sample, timestep, text_emb, text_mask, use_temporal=...)`` with the flag fixed,
    so that the four tensors are the traced graph's whole input."""

    def __init__(self, model: nn.Module, use_temporal: bool) -> None:
        super().__init__()
        self.model = model
        self.use_temporal = use_temporal

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(*args, use_temporal=self.use_temporal)


def _signature(args: tuple[torch.Tensor, ...], use_temporal: bool) -> tuple[Any, ...]:
    """What a traced graph is specific to: shapes, dtypes, devices, flags and the autocast
    and inference modes it was recorded under."""
    device = args[0].device.type
    autocast = torch.is_autocast_enabled(device)
    return (
        tuple((tuple(a.shape), a.dtype, a.device) for a in args),
        use_temporal,
        autocast,
        torch.get_autocast_dtype(device) if autocast else None,
        torch.is_inference_mode_enabled(),
    )


class DenoiserGraphs:
    """Traced graphs per model and signature, made once a signature returns after ``after``
    earlier denoising passes (None: never trace). Graphs are dropped when the model's weights
    change. CPU only (GPUs have CUDA graphs and ``torch.compile`` for this). Like the pipeline
    that owns it, not for calls from several threads at once: the interpreter switch
    (``torch.jit.optimized_execution``) is process-wide (the demo runs one job at a time)."""

    def __init__(self, after: int | None = AFTER) -> None:
        self.after = after
        self._models: weakref.WeakKeyDictionary[nn.Module, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def for_pass(self, model: nn.Module) -> Callable[..., torch.Tensor]:
        """A callable with the model's signature for one denoising pass: every signature it
        meets counts one pass, and runs traced once it has ``after`` earlier passes."""
        state, key = self._models.get(model), weights_key(model)
        if state is None or state["key"] != key:
            state = self._models[model] = {"key": key, "passes": {}, "graphs": {}}
        seen: set[tuple[Any, ...]] = set()

        def call(*args: torch.Tensor, use_temporal: bool = True) -> torch.Tensor:
            """args: sample, timestep, text_emb, text_mask, as ``VideoUNet.forward`` takes them."""
            if (
                self.after is None
                or args[0].device.type != "cpu"
                or not all(isinstance(a, torch.Tensor) for a in args)
                or torch.is_grad_enabled()
            ):
                return model(*args, use_temporal=use_temporal)
            signature = _signature(args, use_temporal)
            if signature not in seen:
                seen.add(signature)
                state["passes"][signature] = state["passes"].get(signature, 0) + 1
            graph = state["graphs"].get(signature)
            if graph is None and state["passes"][signature] > self.after:
                graph = state["graphs"][signature] = trace(model, args, use_temporal)
            if graph is None or graph is False:  # not yet, or the trace failed: eager
                return model(*args, use_temporal=use_temporal)
            with torch.jit.optimized_execution(False):
                return graph(*args)

        return call


def trace(
    model: nn.Module, args: tuple[torch.Tensor, ...], use_temporal: bool
) -> torch.jit.ScriptModule | bool:
    """The graph of ``model`` called on ``args`` under the current autocast and inference
    modes (run it under ``torch.jit.optimized_execution(False)`` for the eager results), or
    False if this torch cannot trace it (the caller then stays eager).

    ``torch.jit.trace`` is deprecated in favour of ``torch.compile`` and ``torch.export``. Here
    ``torch.compile`` took 99 s to compile the UNet on this CPU and ``torch.export`` dropped
    its autocast casts; the trace takes a second and keeps the results exact.
    """
    with warnings.catch_warnings(), torch.jit.optimized_execution(False):
        # Shape checks in the model become constants of the graph: that is the signature.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", DeprecationWarning)
        try:
            return torch.jit.trace(_Forward(model, use_temporal).eval(), args, check_trace=False)
        except (AttributeError, RuntimeError) as err:
            logger.warning("denoiser not traced, staying eager: %s", err)
            return False


def tracing_works() -> bool:
    """Whether this torch can trace a small model and replay it exactly (what
    ``DenoiserGraphs`` needs; without it, sampling stays eager)."""
    layer = nn.Sequential(nn.Linear(4, 4), nn.GELU()).eval()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.jit.optimized_execution(False):
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", DeprecationWarning)
        try:
            graph = torch.jit.trace(layer, (x,), check_trace=False)
            return bool(torch.equal(graph(x + 1), layer(x + 1)))
        except (AttributeError, RuntimeError):
            return False
