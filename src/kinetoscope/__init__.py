"""kinetoscope: text to video with latent video diffusion and masked video-token transformers.

>>> import kinetoscope
>>> pipe = kinetoscope.load("ldm-mnist")                      # doctest: +SKIP
>>> video = pipe("the digit 7 is moving up", seed=0).frames[0]  # doctest: +SKIP
>>> video.save("seven.mp4")                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["TextToVideoPipeline", "Video", "list_models", "load", "__version__"]

if TYPE_CHECKING:
    from kinetoscope.hub import list_models, load
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline
    from kinetoscope.video import Video

_LAZY = {
    "load": ("kinetoscope.hub", "load"),
    "list_models": ("kinetoscope.hub", "list_models"),
    "TextToVideoPipeline": ("kinetoscope.pipelines.text_to_video", "TextToVideoPipeline"),
    "PhenakiPipeline": ("kinetoscope.pipelines.phenaki", "PhenakiPipeline"),
    "Video": ("kinetoscope.video", "Video"),
}


def __getattr__(name: str) -> Any:
    """Import heavy modules (torch, diffusers) only when first used."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'kinetoscope' has no attribute {name!r}")
