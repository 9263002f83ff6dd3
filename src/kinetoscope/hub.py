"""Finding and loading models: shipped ones by name, saved ones by directory.

Shipped models live in the package (``kinetoscope/models/<name>/``), so ``generate`` works
offline out of the box. ``$KINETOSCOPE_MODELS`` may point at extra folders (``:``-separated)
of saved models, e.g. a training run's output.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from kinetoscope.pipelines.base import MODEL_INDEX, read_model_index

DEFAULT_MODEL = "ldm-mnist"


def model_dirs() -> list[Path]:
    """Folders searched for models by name, in order."""
    dirs = [Path(p) for p in os.environ.get("KINETOSCOPE_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path(str(resources.files("kinetoscope") / "models")))
    return dirs


def list_models() -> dict[str, Path]:
    """Every model found by name -> its directory (first hit wins)."""
    found: dict[str, Path] = {}
    for root in model_dirs():
        if root.is_dir():
            for index in sorted(root.glob(f"*/{MODEL_INDEX}")):
                found.setdefault(index.parent.name, index.parent)
    return found


def resolve_model(name_or_dir: str | Path) -> Path:
    """A model name or a directory -> the directory holding its model_index.json."""
    path = Path(name_or_dir)
    if (path / MODEL_INDEX).is_file():
        return path
    models = list_models()
    if str(name_or_dir) in models:
        return models[str(name_or_dir)]
    known = ", ".join(models) or "none installed"
    raise FileNotFoundError(
        f"no model named or saved at {name_or_dir!r}. Known models: {known}. "
        "Train one with `kinetoscope train configs/<recipe>.yaml` or pass a saved directory."
    )


def load(name_or_dir: str | Path = DEFAULT_MODEL, *, device: str = "cpu") -> Any:
    """Load the right pipeline (any family) for a shipped model name or a saved directory."""
    directory = resolve_model(name_or_dir)
    class_name = read_model_index(directory).get("_class_name")
    if class_name == "TextToVideoPipeline":
        from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

        return TextToVideoPipeline.from_pretrained(directory, device=device)
    if class_name == "PhenakiPipeline":
        from kinetoscope.pipelines.phenaki import PhenakiPipeline

        return PhenakiPipeline.from_pretrained(directory, device=device)
    raise ValueError(f"{directory} holds an unknown pipeline class {class_name!r}")


# What each optional pipeline method does, for the error when a model lacks it.
_ABILITIES = {
    "story": "has no story mode",
    "continue_video": "cannot continue a video",
    "interpolate": "cannot interpolate (latent diffusion models can)",
}


def require(pipe: Any, method: str, name: str | Path) -> Any:
    """``pipe``, after checking that it has ``method`` (ValueError naming model ``name``)."""
    if not hasattr(pipe, method):
        raise ValueError(f"model {name} {_ABILITIES.get(method, f'has no {method}')}")
    return pipe
