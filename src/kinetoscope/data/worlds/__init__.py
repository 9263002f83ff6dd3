"""Built-in text-video worlds ``mnist`` (Bouncing MNIST with captions) and ``shapes``.

Procedurally rendered clips with exact ground truth, as fixed by specs/worlds.md:
16 frames of 64x64 RGB at 8 fps by default, six motions, compositional train/test splits.

    >>> from kinetoscope.data.worlds import WorldDataset
    >>> clip = WorldDataset("shapes-1", split="train")[0]
    >>> clip.frames.shape
    (16, 64, 64, 3)
"""

from kinetoscope.data.worlds.captions import canonical_caption, caption_wordings, eval_wordings
from kinetoscope.data.worlds.common import MOTIONS, WORLD_NAMES, WorldClip
from kinetoscope.data.worlds.dataset import (
    WorldDataset,
    WorldPairs,
    eval_prompts,
    is_held_out,
    manifest_objects,
    render_clip,
)
from kinetoscope.data.worlds.export import export_world, preview_sheet

__all__ = [
    "MOTIONS",
    "WORLD_NAMES",
    "WorldClip",
    "WorldDataset",
    "WorldPairs",
    "canonical_caption",
    "caption_wordings",
    "eval_prompts",
    "eval_wordings",
    "export_world",
    "is_held_out",
    "manifest_objects",
    "preview_sheet",
    "render_clip",
]
