"""Rendering clips of the built-in worlds: the on-the-fly dataset, expectations, eval prompts.

Implements specs/worlds.md for ``mnist-1``, ``mnist-2``, ``shapes-1`` and ``shapes-2``.

Determinism: clip ``index`` of ``(name, split, seed)`` is drawn from its own numpy Generator,
seeded by ``SeedSequence([crc32("kinetoscope.worlds"), crc32(name), crc32(split), seed, index])``,
so a clip never depends on which other clips were rendered, on worker processes or on Python's
hash seed. The draws happen in a fixed order: the objects' identities and motions first (the
compositional split), then per object its image (mnist) and its trajectory.

Two-object clips: the objects' start positions (top-left corners at frame 0) differ; a
trajectory drawn onto the other object's start is redrawn. Overlaps keep the pixel-wise max.

Axis legend
    T frames, R canvas side, frames uint8 (T, R, R, 3); tensors (C, T, H, W) in [-1, 1].
"""

from __future__ import annotations

import operator
from types import ModuleType

import numpy as np
import torch

from kinetoscope.data.worlds import mnist, shapes
from kinetoscope.data.worlds.captions import canonical_caption, caption_wordings, eval_wordings
from kinetoscope.data.worlds.common import (
    DEFAULT_FPS,
    DEFAULT_NUM_FRAMES,
    DEFAULT_RESOLUTION,
    WorldClip,
    check_clip_settings,
    check_seed,
    check_split,
    check_world,
    make_rng,
    parse_world_name,
    paste_max,
    sample_trajectory,
)

_WORLD_MODULES: dict[str, ModuleType] = {"mnist": mnist, "shapes": shapes}
_CLIP_KEY = "kinetoscope.worlds"
_RENDER_KEY = "kinetoscope.render"
_WORDING_KEY = "kinetoscope.wording"
_EVAL_WORDING_KEY = "kinetoscope.eval-wording"
_MAX_START_DRAWS = 1000


def is_held_out(world: str, obj: dict) -> bool:
    """Whether an object's composition belongs to the test split of ``world``."""
    return _WORLD_MODULES[check_world(world)].is_held_out(obj)


def manifest_objects(world: str, objects: list[dict]) -> list[dict]:
    """Objects reduced to the manifest schema keys (drops positions, box, image_index)."""
    module = _WORLD_MODULES[check_world(world)]
    return [module.check_object(obj) for obj in objects]


def _render(
    world: str,
    objects: list[dict],
    *,
    split: str,
    rng: np.random.Generator,
    num_frames: int,
    resolution: int,
    fps: float,
) -> WorldClip:
    """Draw images/trajectories for ``objects`` from ``rng`` and composite them on black."""
    module = _WORLD_MODULES[world]
    frames = np.zeros((num_frames, resolution, resolution, 3), dtype=np.uint8)  # (T, R, R, 3)
    starts: set[tuple[int, int]] = set()
    rendered = []
    for obj in objects:
        identity = module.check_object(obj)
        sprite, extras = module.make_sprite(obj, split=split, rng=rng)  # (box, box, 3)
        box = sprite.shape[0]
        for _ in range(_MAX_START_DRAWS):
            positions = sample_trajectory(
                identity["motion"], box=box, resolution=resolution, num_frames=num_frames, rng=rng
            )  # (T, 2)
            start = (int(positions[0, 0]), int(positions[0, 1]))
            if start not in starts:
                break
        else:
            raise ValueError(f"could not place {len(objects)} objects at different starts")
        starts.add(start)
        paste_max(frames, sprite, positions)
        rendered.append({**identity, **extras, "box": box, "positions": positions.tolist()})
    caption = canonical_caption(world, objects)
    return WorldClip(frames=frames, caption=caption, world=world, objects=rendered, fps=float(fps))


def render_clip(
    world: str,
    objects: list[dict],
    *,
    seed: int,
    split: str = "test",
    num_frames: int = DEFAULT_NUM_FRAMES,
    resolution: int = DEFAULT_RESOLUTION,
    fps: float = DEFAULT_FPS,
) -> WorldClip:
    """Render a clip showing the given expectation (any composition, held out or not).

    Args:
        world: ``"mnist"`` or ``"shapes"`` (a full name such as ``"mnist-2"`` is accepted).
        objects: manifest-schema dicts; an mnist object may pin ``"image_index"``.
        seed: non-negative; same (world, objects, seed, split, settings) -> same clip.
        split: which writers the mnist images come from (``"test"`` by default).
    """
    world = check_world(world)
    split = check_split(split)
    seed = check_seed(seed)
    module = _WORLD_MODULES[world]
    if not isinstance(objects, list | tuple) or not objects:
        raise ValueError("objects must be a non-empty list of object dicts")
    max_box = max(module.box_of(obj) for obj in objects)
    check_clip_settings(num_frames=num_frames, resolution=resolution, fps=fps, max_box=max_box)
    rng = make_rng(_RENDER_KEY, world, split, seed)
    return _render(
        world,
        list(objects),
        split=split,
        rng=rng,
        num_frames=num_frames,
        resolution=resolution,
        fps=fps,
    )


class WorldDataset(torch.utils.data.Dataset):
    """Clips of a built-in world rendered on the fly: ``ds[i]`` -> WorldClip.

    Deterministic in (name, split, seed, i); ``size`` only sets ``len`` (any size is free).

    Args:
        name: ``"mnist-1"``, ``"mnist-2"``, ``"shapes-1"`` or ``"shapes-2"``.
        split: ``"train"`` (no held-out composition, train writers) or ``"test"`` (only
            held-out compositions, test writers).
    """

    def __init__(
        self,
        name: str,
        *,
        split: str = "train",
        size: int = 10_000,
        seed: int = 0,
        num_frames: int = DEFAULT_NUM_FRAMES,
        resolution: int = DEFAULT_RESOLUTION,
        fps: float = DEFAULT_FPS,
    ) -> None:
        self.world, self.num_objects = parse_world_name(name)
        self.name = name
        self.split = check_split(split)
        self.seed = check_seed(seed)
        self.size = check_seed(size, "size")
        self.num_frames, self.resolution, self.fps = num_frames, resolution, float(fps)
        check_clip_settings(
            num_frames=num_frames,
            resolution=resolution,
            fps=fps,
            max_box=_WORLD_MODULES[self.world].BOX,
        )

    @property
    def _module(self) -> ModuleType:  # looked up, not stored, so the dataset pickles for workers
        return _WORLD_MODULES[self.world]

    def __len__(self) -> int:
        return self.size

    def _index(self, index: int) -> int:
        index = operator.index(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of size {self.size}")
        return index % self.size

    def sample_objects(self, index: int) -> list[dict]:
        """Identities and motions of clip ``index`` (manifest schema), without rendering it."""
        rng = make_rng(_CLIP_KEY, self.name, self.split, self.seed, self._index(index))
        return self._module.sample_objects(self.num_objects, split=self.split, rng=rng)

    def __getitem__(self, index: int) -> WorldClip:
        rng = make_rng(_CLIP_KEY, self.name, self.split, self.seed, self._index(index))
        objects = self._module.sample_objects(self.num_objects, split=self.split, rng=rng)
        return _render(
            self.world,
            objects,
            split=self.split,
            rng=rng,
            num_frames=self.num_frames,
            resolution=self.resolution,
            fps=self.fps,
        )

    def sample_wording(self, clip: WorldClip, rng: np.random.Generator) -> str:
        """A training wording of ``clip``'s caption, uniform over ``caption_wordings``."""
        wordings = caption_wordings(clip.world, clip.objects)
        return wordings[int(rng.integers(0, len(wordings)))]

    def pairs(self, *, wording: str = "random", as_tensor: bool = True) -> WorldPairs:
        """A (frames, caption) view for ``torch.utils.data.DataLoader`` (see WorldPairs)."""
        return WorldPairs(self, wording=wording, as_tensor=as_tensor)


class WorldPairs(torch.utils.data.Dataset):
    """``(frames, caption)`` items that the DataLoader's default collate batches directly.

    frames is a float tensor (C, T, H, W) in [-1, 1] (``as_tensor=True``; batched to
    (B, C, T, H, W)) or the uint8 array (T, H, W, 3); caption is the canonical caption
    (``wording="canonical"``) or a training wording drawn from a Generator seeded by
    (name, split, seed, epoch, index), so call ``set_epoch`` to vary wordings across epochs.
    """

    def __init__(
        self, dataset: WorldDataset, *, wording: str = "random", as_tensor: bool = True
    ) -> None:
        if wording not in ("random", "canonical"):
            raise ValueError(f"wording must be 'random' or 'canonical', got {wording!r}")
        self.dataset, self.wording, self.as_tensor = dataset, wording, as_tensor
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_seed(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | np.ndarray, str]:
        ds = self.dataset
        clip = ds[index]
        caption = clip.caption
        if self.wording == "random":
            key = (ds.name, ds.split, ds.seed, self.epoch, ds._index(index))
            caption = ds.sample_wording(clip, make_rng(_WORDING_KEY, *key))
        if not self.as_tensor:
            return clip.frames, caption
        return clip.to_video().to_tensor(), caption


def eval_prompts(
    name: str, *, split: str, count: int, seed: int = 0
) -> list[tuple[str, list[dict]]]:
    """``count`` evaluation prompts with their expected objects (manifest schema).

    Prompt ``i`` describes the objects of ``WorldDataset(name, split=split, seed=seed)[i]``.
    Even ``i`` use the canonical caption, odd ``i`` a wording from an eval-only template that
    no training template produces.
    """
    world, num_objects = parse_world_name(name)
    split, seed = check_split(split), check_seed(seed)
    count = check_seed(count, "count")
    module = _WORLD_MODULES[world]
    prompts = []
    for index in range(count):
        rng = make_rng(_CLIP_KEY, name, split, seed, index)
        objects = module.sample_objects(num_objects, split=split, rng=rng)
        if index % 2 == 0:
            prompt = canonical_caption(world, objects)
        else:
            choices = eval_wordings(world, objects)
            pick = make_rng(_EVAL_WORDING_KEY, name, split, seed, index).integers(0, len(choices))
            prompt = choices[int(pick)]
        prompts.append((prompt, objects))
    return prompts
