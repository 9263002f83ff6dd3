"""Starting a model's weights from another saved model: the image model's spatial weights
under fresh temporal layers, or a trained model's temporal layers in a grown one."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from kinetoscope.diffusion.unet import VideoUNet

logger = logging.getLogger(__name__)


def load_spatial_weights(model: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Copy the spatial (non-temporal) weights saved by ``save_pretrained`` in ``directory``.

    Stage-2 models start from the stage-1 image model with fresh temporal layers, so only the
    spatial weights are taken; a missing or mismatched spatial weight is an error.
    """
    from safetensors.torch import load_file

    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no weights in {directory}; re-run the stage that writes it")
    saved = load_file(files[0])
    temporal = model.temporal_parameter_names()
    spatial = {
        k: v for k, v in saved.items() if k not in temporal and not k.startswith(tuple(temporal))
    }
    own = {k for k in model.state_dict() if k not in temporal}
    if own - set(spatial):
        raise ValueError(f"{directory} lacks spatial weights {sorted(own - set(spatial))[:5]}")
    model.load_state_dict(spatial, strict=False)
    return model


def load_temporal_weights(
    model: VideoUNet, directory: str | Path, *, same_image_model: bool = True
) -> VideoUNet:
    """Start ``model``'s temporal layers from those of the trained UNet saved in ``directory``.

    For growing a trained model instead of retraining its temporal stage: every temporal
    weight is copied, and a per-pixel temporal convolution (k, 1, 1) saved there fills the
    centre of a wider (k, s, s) one here, the rest zero, so the model starts out computing
    exactly what the saved one did. The spatial weights must already equal the saved ones
    (both grown from the same image model); anything else that differs is an error. With
    ``same_image_model=False`` they may differ (an image model continued after those temporal
    layers were trained, ``unet_image``'s ``init_from``): the temporal layers then re-adapt.
    """
    from safetensors.torch import load_file

    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no UNet weights in {directory} (init_temporal_from)")
    saved = load_file(files[0])
    temporal = model.temporal_parameter_names()
    own = model.state_dict()
    # Anchor attentions may be new here: they start at their zero-output initialisation, so
    # the grown model still starts out computing what the saved one did.
    fresh = {k for k in temporal - set(saved) if ".temporal_anchor." in k}
    missing = sorted(set(own) - set(saved) - fresh)
    if missing:
        raise ValueError(f"{directory} lacks weights {missing[:5]}: not the same architecture")
    for name, value in own.items():  # check everything first: an error leaves model as it was
        if name in fresh:
            continue
        src = saved[name].to(value.dtype)
        if name not in temporal:
            # Compared in the saved dtype: a model stored in float16 (weights_dtype) holds this
            # run's image model rounded once.
            if same_image_model and not torch.equal(value.to(saved[name].dtype), saved[name]):
                raise ValueError(f"{directory}: spatial weight {name} differs from this run's")
        elif src.shape != value.shape and not _widens(src, value):
            raise ValueError(
                f"{directory}: {name} has shape {tuple(src.shape)}, not {tuple(value.shape)}"
            )
    for name in temporal - fresh:
        value, src = own[name], saved[name].to(own[name].dtype)
        if src.shape == value.shape:
            value.copy_(src)
        else:  # a per-pixel kernel fills the centre taps of a wider one
            value.zero_()
            value[..., value.shape[3] // 2, value.shape[4] // 2] = src[..., 0, 0]
    logger.info(
        "temporal layers start from %s (%d new anchor weights start fresh)", directory, len(fresh)
    )
    return model


def _widens(src: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether ``src`` is a per-pixel (k, 1, 1) temporal kernel of the wider ``value``."""
    return src.ndim == 5 and src.shape[:3] == value.shape[:3] and src.shape[3:] == (1, 1)


def load_grown(
    model: torch.nn.Module, state: dict[str, torch.Tensor], *, new_prefixes: tuple[str, ...]
) -> torch.nn.Module:
    """Load ``state`` into ``model``, which may have grown new layers since it was saved.

    Only weights under ``new_prefixes`` may be missing from ``state`` (they keep their
    initialisation, which for zero-output layers leaves the model computing what the saved one
    did); any other missing or unexpected weight is an error.
    """
    own = set(model.state_dict())
    missing = sorted(k for k in own - set(state) if not k.startswith(new_prefixes))
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise ValueError(
            f"not the same architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.load_state_dict(state, strict=False)
    fresh = sum(1 for k in own - set(state))
    if fresh:
        logger.info("%d weights of new layers start from their initialisation", fresh)
    return model
