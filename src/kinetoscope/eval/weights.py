"""Files of the project-trained evaluation networks (digit classifier, world features).

Each ships as ``kinetoscope/assets/<name>.safetensors`` next to a ``<name>.json`` training
report, and each names the command that re-makes it when the file is missing.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from torch import nn


def weights_path(path: str | Path | None, *, asset_name: str, what: str, make_command: str) -> Path:
    """``path``, or the packaged asset ``asset_name`` when None; it must be an existing file.

    Args:
        path: a weights file, or None for ``kinetoscope/assets/<asset_name>``.
        asset_name: the file name under the package's assets.
        what: the network, for the error message (e.g. "digit classifier").
        make_command: the command that writes the file, named in the error message.
    """
    if path is None:
        path = Path(str(resources.files("kinetoscope") / "assets" / asset_name))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights not found at {path}. Make them with `{make_command}`."
        )
    return path


def save_weights(
    model: nn.Module, path: str | Path, report: dict, *, metadata: dict[str, str] | None = None
) -> Path:
    """Write weights (safetensors) and ``<path>.json`` atomically (temp file, then rename).

    Args:
        model: the network whose ``state_dict`` is written.
        path: the ``.safetensors`` file; the report goes beside it with a ``.json`` suffix.
        report: the training report (JSON-serialisable).
        metadata: safetensors header entries besides ``format``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"format": "pt", **(metadata or {})})
    os.chmod(tmp, 0o644)  # package data: readable by every user
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp_meta = meta.with_name(meta.name + ".tmp")
    tmp_meta.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_meta, meta)
    return path
