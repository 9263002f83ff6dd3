"""Video features for Fréchet distances on the built-in worlds, trained by the project.

The standard Fréchet video distance (FVD, Unterthiner et al. 2018) embeds clips with an I3D
network trained on Kinetics-400 (see ``kinetoscope.eval.i3d``). Those weights are not shipped,
and Kinetics features say little about 64×64 digits and shapes on black, so the worlds get
their own embedding: a small two-pathway 3D-convolutional network (``WorldFeatureNet``)
trained on fresh train-split clips of all four worlds (mnist-1, mnist-2, shapes-1, shapes-2)
with multi-task heads, so its features encode what a caption asks for — identity and motion —
and not only pixel statistics:

    world    mnist / shapes                               (softmax)
    count    one or two objects                           (softmax)
    motion   the motions shown (6)                        (set)
    digit    the digits shown (10)                        (set, mnist clips only)
    color / shape / size   the values shown (5 / 3 / 2)   (set, shapes clips only)

A *set* head is a softmax trained towards the uniform distribution over the values the clip
shows (one value, or two for two different objects); its prediction is every value with
probability above 1/4. Attributes are sets rather than "the first object's" classes because
nothing in a two-object clip says which object the caption names first. Test accuracy is the
fraction of clips whose predicted value (class heads) or set (set heads) is exactly right.

Features are the 128-d projection of the pooled pathways (before the heads). Inputs are
(B, 3, T, 64, 64) in [-1, 1]; the network is convolutional, so other frame counts run, but the
shipped weights are trained at the benchmark setting (16 frames, 64×64), and the FVD wrapper
resizes other resolutions to 64×64. Training adds mild gain and noise to half of each batch,
so features describe content rather than the exact pixel levels of the renderer.

Make the shipped weights (seeded; about 4-5 minutes on one CPU thread)::

    python -m kinetoscope.eval.world_features --out src/kinetoscope/assets/world_features.safetensors

Axes: B batch, C channels, T frames, H W height/width, D feature dim (128).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.data.worlds import MOTIONS, WORLD_NAMES, WorldClip, WorldDataset
from kinetoscope.eval.weights import save_weights, weights_path

logger = logging.getLogger(__name__)

FEATURE_DIM = 128
RESOLUTION = 64  # frames are resized to this side before the network (the worlds' default)
NUM_FRAMES = 16  # the frame count the shipped weights are trained on
ASSET_NAME = "world_features.safetensors"
SET_THRESHOLD = 0.25  # a set head shows a value when its probability exceeds this
MAKE_COMMAND = (
    "python -m kinetoscope.eval.world_features --out src/kinetoscope/assets/" + ASSET_NAME
)

COLORS = ("red", "green", "blue", "yellow", "white")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
# head name -> (number of outputs, kind, world it applies to or None for all)
HEADS: dict[str, tuple[int, str, str | None]] = {
    "world": (2, "class", None),
    "count": (2, "class", None),
    "motion": (len(MOTIONS), "set", None),
    "digit": (10, "set", "mnist"),
    "color": (len(COLORS), "set", "shapes"),
    "shape": (len(SHAPES), "set", "shapes"),
    "size": (len(SIZES), "set", "shapes"),
}
# Shape and digit need learned spatial features; colour and size are read off pixel sums and
# are learned first. Without extra weight they starve the harder heads (shape-only training
# reaches 86% train accuracy in 100 steps, the unweighted multi-task mix about 40%).
LOSS_WEIGHTS = {"shape": 3.0, "digit": 2.0}
_VOCAB = {"motion": MOTIONS, "digit": tuple(range(10)), "color": COLORS, "shape": SHAPES}
_VOCAB["size"] = SIZES


def _unit(c_in: int, c_out: int, kernel, stride, padding) -> list[nn.Module]:
    """Conv3d (no bias) + BatchNorm3d + ReLU."""
    conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
    return [conv, nn.BatchNorm3d(c_out), nn.ReLU()]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, 2C): mean and max over space-time (objects are small on black)."""
    return torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)


class WorldFeatureNet(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, D) features; ``head_logits(features)`` -> task logits.

    Two pathways, as in SlowFast (Feichtenhofer et al. 2019, Sec. 3):

    - *appearance* ("slow"): every ``slow_stride``-th frame at full resolution, plus its
      brightness (max over RGB: the silhouette whatever the colour), through per-frame
      (1×3×3) convolutions, so it cannot see motion;
    - *motion* ("fast"): every frame at 1/4 resolution with the frame differences as extra
      channels, through 3×3×3 convolutions.

    Each pathway is pooled by mean and max over space-time (objects are small on black) and
    projected to half of the D-d feature vector: ``features = [appearance | motion]``. The
    identity heads (digit, colour, shape, size) read only the appearance half and the motion
    head only the motion half, so neither can lean on the correlations between identity and
    motion that the compositional train split has (e.g. "digit 3 never moves left"); world
    and count read both. (Coordinate input channels, tried for position awareness, kept the
    network from learning shapes within the training budget: on these mostly black frames
    they dominate the first BatchNorm.)
    """

    def __init__(self, *, feature_dim: int = FEATURE_DIM, slow_stride: int = 4) -> None:
        super().__init__()
        self.slow_stride = slow_stride
        self.feature_dim = feature_dim
        half = feature_dim // 2
        # Shapes at the benchmark setting (T, H, W) = (16, 64, 64), slow_stride 4:
        self.slow = nn.Sequential(
            *_unit(3 + 1, 32, (1, 3, 3), (1, 2, 2), (0, 1, 1)),  # -> (32, 4, 32, 32)
            *_unit(32, 64, (1, 3, 3), (1, 2, 2), (0, 1, 1)),  # -> (64, 4, 16, 16)
            *_unit(64, 128, (1, 3, 3), (1, 2, 2), (0, 1, 1)),  # -> (128, 4, 8, 8)
            *_unit(128, 128, (1, 3, 3), (1, 2, 2), (0, 1, 1)),  # -> (128, 4, 4, 4), sees 31 px
        )
        self.fast = nn.Sequential(
            *_unit(3 + 3, 16, (1, 4, 4), (1, 4, 4), 0),  # 4×4 patches -> (16, 16, 16, 16)
            *_unit(16, 32, 3, (1, 2, 2), 1),  # -> (32, 16, 8, 8)
            *_unit(32, 64, 3, (2, 2, 2), 1),  # -> (64, 8, 4, 4)
            *_unit(64, 64, 3, (2, 1, 1), 1),  # -> (64, 4, 4, 4)
        )
        self.project_slow = nn.Linear(2 * 128, half)
        self.project_fast = nn.Linear(2 * 64, feature_dim - half)
        self.heads = nn.ModuleDict()
        for head, (size, _, _) in HEADS.items():
            inputs = {"motion": feature_dim - half, "world": feature_dim, "count": feature_dim}
            self.heads[head] = nn.Linear(inputs.get(head, half), size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) in [-1, 1], got {tuple(video.shape)}")
        diff = torch.diff(video, dim=2, prepend=video[:, :, :1])  # (B, 3, T, H, W), 0 at t = 0
        fast = self.fast(torch.cat([video, diff], dim=1))  # (B, 6, T, H, W) in
        picks = slice(self.slow_stride // 2, None, self.slow_stride)  # frames 2, 6, 10, 14
        frames = video[:, :, picks]  # (B, 3, T / slow_stride, H, W)
        brightness = frames.amax(dim=1, keepdim=True)  # (B, 1, ...): the silhouette in any colour
        slow = self.slow(torch.cat([frames, brightness], dim=1))  # (B, 4, T / slow_stride, H, W) in
        appearance = self.project_slow(_pool(slow))  # (B, D/2)
        motion = self.project_fast(_pool(fast))  # (B, D/2)
        return torch.cat([appearance, motion], dim=1)  # (B, D)

    def head_logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) features -> {head name: (B, outputs)} logits."""
        half = self.feature_dim // 2
        parts = {"world": features, "count": features, "motion": features[:, half:]}
        return {
            head: layer(F.relu(parts.get(head, features[:, :half])))
            for head, layer in self.heads.items()
        }


# ----------------------------------------------------------------------------- targets


def clip_targets(clips: list[WorldClip]) -> dict[str, torch.Tensor]:
    """Per head a target tensor (class index (B,) or multi-hot (B, K)) and a mask ``<head>_on``."""
    out: dict[str, torch.Tensor] = {}
    out["world"] = torch.tensor([int(c.world == "shapes") for c in clips])
    out["count"] = torch.tensor([len(c.objects) - 1 for c in clips])
    for head, (size, kind, world) in HEADS.items():
        if kind != "set":
            continue
        hot = torch.zeros(len(clips), size)
        for i, clip in enumerate(clips):
            if world is None or clip.world == world:
                for obj in clip.objects:
                    hot[i, _VOCAB[head].index(obj[head])] = 1.0
        out[head] = hot
        out[f"{head}_on"] = torch.tensor([world is None or c.world == world for c in clips])
    return out


def multitask_loss(
    logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Weighted sum of the head cross-entropies, each on the clips the head applies to."""
    total = logits["world"].new_zeros(())
    for head, (_, kind, _) in HEADS.items():
        weight = LOSS_WEIGHTS.get(head, 1.0)
        if kind == "class":
            total = total + weight * F.cross_entropy(logits[head], targets[head])
            continue
        on = targets[f"{head}_on"]
        if on.any():
            hot = targets[head][on]  # (B', K) multi-hot -> a distribution over the values shown
            loss = F.cross_entropy(logits[head][on], hot / hot.sum(1, keepdim=True))
            total = total + weight * loss
    return total


def clips_to_tensor(clips: list[WorldClip]) -> torch.Tensor:
    """Rendered clips -> (B, 3, T, H, W) in [-1, 1] (through ``Video``, the one conversion)."""
    from kinetoscope.video import videos_to_tensor

    return videos_to_tensor([clip.to_video() for clip in clips])


def _augment(video: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild gain (black stays black) and gaussian noise on a random half of (B, 3, T, H, W)."""
    b = video.shape[0]
    pick = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1, 1)
    gain = (0.75 + 0.35 * torch.rand(b, generator=gen)).view(b, 1, 1, 1, 1)
    sigma = (0.08 * torch.rand(b, generator=gen)).view(b, 1, 1, 1, 1)
    noisy = (video + 1) * gain - 1 + sigma * torch.randn(video.shape, generator=gen)
    return torch.where(pick, noisy.clamp(-1, 1), video)


# ----------------------------------------------------------------------------- training


def _batch(step: int, *, per_world: int, datasets: dict[str, WorldDataset]) -> list[WorldClip]:
    """Clips ``step * per_world ...`` of every world's train stream (never repeated)."""
    return [ds[step * per_world + j] for ds in datasets.values() for j in range(per_world)]


def train_world_features(
    *, seed: int = 0, steps: int = 360, per_world: int = 8, lr: float = 3e-3
) -> tuple[WorldFeatureNet, dict]:
    """Train on fresh train-split clips of all four worlds; returns the net and a report."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    datasets = {
        name: WorldDataset(name, split="train", size=steps * per_world, seed=seed)
        for name in WORLD_NAMES
    }
    model = WorldFeatureNet()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    start, start_cpu = time.time(), time.process_time()
    model.train()
    running = 0.0
    for step in range(steps):
        clips = _batch(step, per_world=per_world, datasets=datasets)
        video = _augment(clips_to_tensor(clips), gen)  # (4 * per_world, 3, T, H, W)
        loss = multitask_loss(model.head_logits(model(video)), clip_targets(clips))
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
        if (step + 1) % 20 == 0:
            logger.info(
                "step %d/%d loss %.4f (%.0fs)", step + 1, steps, running, time.time() - start
            )
    train_seconds = time.time() - start
    report = {
        "seed": seed,
        "steps": steps,
        "clips_per_step": per_world * len(WORLD_NAMES),
        "lr": lr,
        "feature_dim": model.feature_dim,
        "resolution": RESOLUTION,
        "num_frames": NUM_FRAMES,
        "train_split": "train (all four worlds, fresh clips every step)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(time.process_time() - start_cpu, 1),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "command": f"{MAKE_COMMAND} --seed {seed} --steps {steps} --per-world {per_world} --lr {lr}",
    }
    # Test split: held-out compositions (and test writers); train split: unseen clips of the
    # training compositions (seed + 1 draws clips the training stream never showed).
    report["test_accuracy"] = evaluate(model, split="test", count=256, seed=seed)
    report["train_split_accuracy"] = evaluate(model, split="train", count=256, seed=seed + 1)
    report["total_seconds"] = round(time.time() - start, 1)
    report["total_cpu_seconds"] = round(time.process_time() - start_cpu, 1)
    return model.eval(), report


@torch.no_grad()
def evaluate(
    model: WorldFeatureNet, *, split: str = "test", count: int = 256, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per world, per head accuracy (class: argmax; set: the values with p > 1/4, exactly)."""
    model.eval()
    result: dict[str, dict[str, float]] = {}
    for name in WORLD_NAMES:
        ds = WorldDataset(name, split=split, size=count, seed=seed)
        correct: dict[str, list[torch.Tensor]] = {}
        for begin in range(0, count, 64):
            clips = [ds[i] for i in range(begin, min(begin + 64, count))]
            logits = model.head_logits(model(clips_to_tensor(clips)))
            targets = clip_targets(clips)
            for head, (_, kind, world) in HEADS.items():
                if world is not None and world != clips[0].world:
                    continue
                if kind == "class":
                    hit = logits[head].argmax(1) == targets[head]
                else:
                    shown = logits[head].softmax(dim=1) > SET_THRESHOLD
                    hit = (shown == (targets[head] > 0.5)).all(1)
                correct.setdefault(head, []).append(hit)
        result[name] = {h: round(float(torch.cat(v).float().mean()), 4) for h, v in correct.items()}
    return result


# ----------------------------------------------------------------------------- files


def save_world_features(model: WorldFeatureNet, path: str | Path, report: dict) -> Path:
    """Write weights (safetensors) and ``<path>.json`` atomically (temp file, then rename)."""
    return save_weights(model, path, report, metadata={"feature_dim": str(model.feature_dim)})


def load_world_features(path: str | Path | None = None) -> WorldFeatureNet:
    """The shipped world feature network (package assets) or the one at ``path``, in eval mode."""
    from safetensors.torch import load_file

    path = weights_path(
        path, asset_name=ASSET_NAME, what="world feature", make_command=MAKE_COMMAND
    )
    model = WorldFeatureNet()
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as err:
        raise ValueError(
            f"{path} is not a valid world feature network ({err}). Re-make it with "
            f"`{MAKE_COMMAND}`."
        ) from err
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the world feature network used by the worlds' Fréchet distance."
    )
    parser.add_argument("--out", required=True, help="output .safetensors path (+ .json report)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=360)
    parser.add_argument("--per-world", type=int, default=8, help="clips of each world per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.per_world < 1 or not math.isfinite(args.lr) or args.lr <= 0:
        parser.error("--steps and --per-world must be >= 1 and --lr positive")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    model, report = train_world_features(
        seed=args.seed, steps=args.steps, per_world=args.per_world, lr=args.lr
    )
    save_world_features(model, args.out, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
