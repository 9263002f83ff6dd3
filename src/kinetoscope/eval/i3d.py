"""Inflated 3D ConvNet (I3D) for the standard Fréchet video distance.

I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?", Sec. 2.4) inflates the
Inception-v1 image network (Szegedy et al. 2015) to 3D: every N×N convolution and pooling
becomes N×N×N (the stem is 7×7×7 with stride 2 in time and space; the first two max-pools do
not pool time). FVD (Unterthiner et al. 2018, Sec. 3) embeds each clip with the RGB I3D network
trained on Kinetics-400 and compares the Gaussians fitted to the real and generated embeddings.

The standard FVD protocol, implemented by ``i3d_features`` and recorded as ``I3D_PROTOCOL``:
frames are resized to 224×224 (bilinear), scaled to [-1, 1], and the features are the 400
Kinetics logits averaged over the remaining time steps.

No weights are shipped or downloaded. ``load_i3d(path)`` reads a user-supplied Kinetics-400
``state_dict`` (``.pt`` / ``.pth`` via ``torch.load(weights_only=True)``, or ``.safetensors``)
whose keys follow the layout of the common PyTorch I3D port, which these module names mirror::

    Conv3d_1a_7x7.conv3d.weight                 (64, 3, 7, 7, 7)   no conv bias
    Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var[,num_batches_tracked]}
    Conv3d_2b_1x1.*, Conv3d_2c_3x3.*            same pattern
    Mixed_3b.b0.*   1×1 branch                  each branch conv is a Unit3D (conv3d + bn)
    Mixed_3b.b1a.*, Mixed_3b.b1b.*              1×1 then 3×3×3
    Mixed_3b.b2a.*, Mixed_3b.b2b.*              1×1 then 3×3×3
    Mixed_3b.b3b.*                              1×1 after a 3×3×3 max-pool (b3a, no weights)
    ... Mixed_3c, Mixed_4b-4f, Mixed_5b, Mixed_5c
    logits.conv3d.{weight,bias}                 (400, 1024, 1, 1, 1), (400,)

Convolutions and max-pools use TensorFlow "SAME" padding (computed from the input size), and
BatchNorm uses eps = 1e-3, as in the original TensorFlow model. ``num_batches_tracked`` may
be present or absent. A wrapping ``{"state_dict": ...}`` and a ``module.`` prefix are accepted.

Axes: B batch, C channels, T frames, H W height/width.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

NUM_CLASSES = 400
RESIZE = 224
I3D_PROTOCOL = {
    "backbone": "i3d-kinetics400",
    "resize": RESIZE,
    "range": "[-1, 1]",
    "features": "logits",
}
NEEDS_WEIGHTS = (
    "the i3d backbone needs Kinetics-400 I3D weights, which kinetoscope neither ships nor "
    "downloads: pass a local state_dict file (.pt/.pth/.safetensors, keys like "
    "'Conv3d_1a_7x7.conv3d.weight' ... 'logits.conv3d.bias') with --i3d-weights PATH "
    "(i3d_weights= in Python), or use the 'world' backbone for the built-in worlds"
)
_OPTIONAL_KEY = "num_batches_tracked"
_BN_EPS = 1e-3

# name -> (input channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels), Inception-v1 widths
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(
    size: tuple[int, int, int], kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> tuple[int, ...]:
    """TensorFlow "SAME" padding of a (T, H, W) input, in F.pad order (W, W, H, H, T, T)."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - (s if n % s == 0 else n % s), 0)
        pads += [total // 2, total - total // 2]  # the extra pixel goes after, as in TF
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d ("SAME" padding, no bias) + BatchNorm3d + ReLU; the logits unit has bias only."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        *,
        stride: tuple[int, int, int] = (1, 1, 1),
        norm: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=not norm)
        self.bn = nn.BatchNorm3d(out_channels, eps=_BN_EPS, momentum=0.01) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max-pool with "SAME" padding; padded cells never win (TensorFlow semantics)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride), value=-torch.inf)
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Inflated Inception module: four branches concatenated along channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)  # (B, out_channels, T, H, W)


class I3D(nn.Module):
    """RGB I3D: (B, 3, T, H, W) in [-1, 1] -> logits (B, num_classes, T').

    At the protocol input (T, 224, 224) the stages give (T/2, 112²) after the stem,
    (T/2, 28²) before Mixed_3b, (T/4, 14²) before Mixed_4b, (T/8, 7²) before Mixed_5b, and
    the 2×7×7 average pool leaves T' = T/8 - 1 steps (1 for 16 frames). For smaller test
    inputs the pool window shrinks to what is left, so any T, H, W >= 1 runs.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(*_MIXED["Mixed_4b"])
        self.Mixed_4c = InceptionBlock(*_MIXED["Mixed_4c"])
        self.Mixed_4d = InceptionBlock(*_MIXED["Mixed_4d"])
        self.Mixed_4e = InceptionBlock(*_MIXED["Mixed_4e"])
        self.Mixed_4f = InceptionBlock(*_MIXED["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(*_MIXED["Mixed_5c"])
        self.dropout = nn.Dropout(0.5)  # identity in eval mode; kept for the layout
        self.logits = Unit3D(
            self.Mixed_5c.out_channels, num_classes, norm=False, activation=False
        )  # 1024 -> num_classes

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels:
            raise ValueError(f"expected (B, 3, T, H, W) in [-1, 1], got {tuple(video.shape)}")
        x = video
        for stage in (
            self.Conv3d_1a_7x7,
            self.MaxPool3d_2a_3x3,
            self.Conv3d_2b_1x1,
            self.Conv3d_2c_3x3,
            self.MaxPool3d_3a_3x3,
            self.Mixed_3b,
            self.Mixed_3c,
            self.MaxPool3d_4a_3x3,
            self.Mixed_4b,
            self.Mixed_4c,
            self.Mixed_4d,
            self.Mixed_4e,
            self.Mixed_4f,
            self.MaxPool3d_5a_2x2,
            self.Mixed_5b,
            self.Mixed_5c,
        ):
            x = stage(x)
        t, h, w = x.shape[2:]  # (B, 1024, T/8, H/32, W/32)
        x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)  # valid 2×7×7 pool
        x = self.logits(self.dropout(x))  # (B, num_classes, T', H', W'), H' = W' = 1 at 224
        return x.mean(dim=(3, 4))  # (B, num_classes, T')


@torch.no_grad()
def i3d_features(model: I3D, video: torch.Tensor) -> torch.Tensor:
    """FVD features of (B, 3, T, H, W) in [-1, 1]: resize to 224² -> (B, 400) time-mean logits."""
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
    if (h, w) != (RESIZE, RESIZE):
        frames = F.interpolate(frames, size=(RESIZE, RESIZE), mode="bilinear", align_corners=False)
    video = frames.reshape(b, t, c, RESIZE, RESIZE).transpose(1, 2)  # (B, C, T, 224, 224)
    return model(video.clamp(-1, 1)).mean(dim=2)  # (B, num_classes, T') -> (B, num_classes)


# ----------------------------------------------------------------------------- weights


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or of a torch-saved (possibly wrapped) state_dict."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"could not read {path} as a torch state_dict ({err}). Save the weights with "
            "torch.save(model.state_dict(), path) or as .safetensors (TorchScript archives "
            "are not supported)."
        ) from err
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a dict of name -> tensor)")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_i3d(path: str | Path | None, *, num_classes: int = NUM_CLASSES) -> I3D:
    """An I3D with the user's Kinetics-400 weights from ``path``, in eval mode.

    Raises:
        ValueError: no path given, unreadable file, or keys/shapes that do not match the
            layout in the module docstring (the message lists missing and unexpected keys).
        FileNotFoundError: ``path`` does not exist.
    """
    if path is None or str(path) == "":
        raise ValueError(NEEDS_WEIGHTS)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights not found at {path}. {NEEDS_WEIGHTS}")
    state = _read_state_dict(path)
    model = I3D(num_classes=num_classes)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEY)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the I3D layout (Conv3d_1a_7x7.conv3d.weight, "
            f"Mixed_3b.b1b.bn.running_var, ..., logits.conv3d.bias): "
            f"{len(missing)} missing keys [{_listing(missing)}]; "
            f"{len(unexpected)} unexpected keys [{_listing(unexpected)}]. "
            "Rename the keys to this layout (see kinetoscope.eval.i3d)."
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(
            f"{path} has tensors of the wrong shape for an I3D with {num_classes} classes: "
            f"{_listing(wrong)}"
        )
    model.load_state_dict(state, strict=False)  # only the optional counters may be absent
    logger.info("loaded I3D weights from %s", path)
    return model.eval()
