"""Does a Video LDM use the motion direction of its prompt? Four probes.

    python benchmarks/direction_probe.py motion REPORT.json [REPORT.json ...]
    python benchmarks/direction_probe.py failures REPORT.json [REPORT.json ...]
    python benchmarks/direction_probe.py pairs REPORT.json [REPORT.json ...]
    python benchmarks/direction_probe.py loss UNET_DIR LATENT_CACHE SCHEDULER_CONFIG
    python benchmarks/direction_probe.py sensitivity UNET_DIR
    python benchmarks/direction_probe.py anchors UNET_DIR [--resolution 64]

``motion``: from `kinetoscope eval` reports, the net displacement of single objects asked to
move left/right/up/down, projected on the asked direction (positive = the right way).
``failures``: why the judge rejected the motion of single-object clips, one cause per clip
(the first that applies): the object split or got lost, it went the wrong way, it drifted on
the other axis, it moved too little, it turned back when asked to go one way, or it did not
turn when asked to bounce.
``pairs``: the objects of two-object clips, each counted once: right, found but misread (its
motion right), moved wrongly, or lost; and of the one-way objects moved wrongly whose partner
was asked to go one way on the other axis, how many went the partner's way instead (at least
the judge's minimum displacement along it, more than along their own): motion bound to the
wrong object.
``loss``: the stage-2 denoising loss on cached training clips moving one way, with the true
caption and with the direction word flipped (equal losses: the direction is ignored).
``sensitivity``: relative change of the UNet output when only the direction word changes,
against the colour or the shape word, with the temporal layers on and off.
``anchors``: the trajectory each anchor-attention head reads from prompts that differ only in
their motion: velocity in pixels per frame (x, y) and spread in cells. A head that uses the
prompt gives each motion its own velocity.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import torch

FLIP = {"left": "right", "right": "left", "up": "down", "down": "up"}
NET = re.compile(r"net_y (-?[\d.]+), net_x (-?[\d.]+)")
MEASURES = re.compile(
    r"range_y (?P<range_y>[\d.]+), range_x (?P<range_x>[\d.]+), net_y (?P<net_y>-?[\d.]+), "
    r"net_x (?P<net_x>-?[\d.]+), reversals_y (?P<reversals_y>\d+), reversals_x (?P<reversals_x>\d+)"
)
CAUSES = ("split or lost", "wrong way", "off axis", "too short", "turned back", "no turn", "other")


def failure_cause(motion: str, reason: str) -> str:
    """The first cause in CAUSES that explains a rejected ``motion`` from the judge's ``reason``."""
    from kinetoscope.eval import tracking

    found = MEASURES.search(reason)
    if "persistent object" in reason or "seen in only" in reason or not found:
        return "split or lost"
    m = {k: float(v) for k, v in found.groupdict().items()}
    axis = "x" if motion in ("left", "right", "left and right") else "y"
    other = "y" if axis == "x" else "x"
    limit = max(tracking.OFF_AXIS_LIMIT, tracking.OFF_AXIS_RATIO * m[f"range_{axis}"])
    if motion in FLIP:
        sign = -1.0 if motion in ("left", "up") else 1.0
        along = sign * m[f"net_{axis}"]
        if along <= -tracking.MIN_DISPLACEMENT:
            return "wrong way"
        if m[f"range_{other}"] > limit:
            return "off axis"
        if along < tracking.MIN_DISPLACEMENT:
            return "too short"
        if m[f"reversals_{axis}"] >= 1:
            return "turned back"
        return "other"
    if m[f"range_{other}"] > limit:
        return "off axis"
    if m[f"range_{axis}"] < tracking.MIN_BOUNCE_TRAVEL:
        return "too short"
    if m[f"reversals_{axis}"] == 0:
        return "no turn"
    return "other"


def failures(paths: list[str]) -> None:
    for path in paths:
        samples = json.loads(Path(path).read_text())["samples"]
        single = [s for s in samples if len(s["expected"]) == 1]
        rejected = [s for s in single if s["attributes"].get("motion") is False]
        for kind, motions in (
            ("one way", tuple(FLIP)),
            ("bounce", ("left and right", "up and down")),
        ):
            group = [s for s in single if s["expected"][0]["motion"] in motions]
            causes = Counter(
                failure_cause(s["expected"][0]["motion"], s.get("reason") or "")
                for s in rejected
                if s["expected"][0]["motion"] in motions
            )
            listed = ", ".join(f"{c} {causes[c]}" for c in CAUSES if causes[c])
            wrong = sum(causes.values())
            print(f"{path}: {kind}: {len(group) - wrong}/{len(group)} moved right; {listed}")


UNIT = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}  # x, y
OUTCOMES = ("right", "misread, motion right", "motion wrong", "lost")


def object_problems(sample: dict, world: str) -> list[str]:
    """Each expected object's part of the judge's reason ("" when it was judged right)."""
    from kinetoscope.eval.judge import _describe_expected

    reason = sample.get("reason") or ""
    heads = [f"{_describe_expected(obj, world)}: " for obj in sample["expected"]]
    starts = [reason.find(head) for head in heads]
    ends = [i for i in (*starts, reason.find("persistent object(s) seen")) if i >= 0]
    parts = []
    for start in starts:
        if start < 0:
            parts.append("")
            continue
        after = [i for i in ends if i > start]
        parts.append(reason[start : min(after) if after else len(reason)])
    return parts


def object_outcome(problems: str) -> str:
    """One of OUTCOMES for an object's part of the reason."""
    if not problems:
        return "right"
    if "seen in only" in problems or "not found" in problems:
        return "lost"
    return "motion wrong" if "moves " in problems else "misread, motion right"


def partner_way(asked: str, partner: str, problems: str) -> bool | None:
    """For a one-way object moved wrongly whose partner goes one way on the other axis:
    did it go the partner's way (None when the question does not apply)?"""
    from kinetoscope.eval import tracking

    found = NET.search(problems)
    if asked not in UNIT or partner not in UNIT or not found:
        return None
    own, other = UNIT[asked], UNIT[partner]
    if own[0] * other[0] + own[1] * other[1] != 0:  # same axis: not separable
        return None
    net_y, net_x = float(found.group(1)), float(found.group(2))
    along_own = own[0] * net_x + own[1] * net_y
    along_other = other[0] * net_x + other[1] * net_y
    return along_other >= tracking.MIN_DISPLACEMENT and along_other > abs(along_own)


def pairs(paths: list[str]) -> None:
    for path in paths:
        report = json.loads(Path(path).read_text())
        world = report["protocol"]["world"].split("-")[0]
        outcomes: Counter[str] = Counter()
        swapped = separable = 0
        for sample in report["samples"]:
            if len(sample["expected"]) != 2:
                continue
            parts = object_problems(sample, world)
            for i, (obj, problems) in enumerate(zip(sample["expected"], parts, strict=True)):
                outcome = object_outcome(problems)
                outcomes[outcome] += 1
                if outcome != "motion wrong":
                    continue
                took = partner_way(obj["motion"], sample["expected"][1 - i]["motion"], problems)
                if took is not None:
                    separable += 1
                    swapped += took
        listed = ", ".join(f"{o} {outcomes[o]}" for o in OUTCOMES)
        print(
            f"{path}: {sum(outcomes.values())} objects: {listed}; one-way objects moved wrongly "
            f"with a perpendicular partner: {swapped}/{separable} went the partner's way"
        )


def motion(paths: list[str]) -> None:
    for path in paths:
        samples = json.loads(Path(path).read_text())["samples"]
        projections = []
        for sample in samples:
            expected = sample["expected"]
            found = NET.search(sample.get("reason") or "")
            if len(expected) != 1 or expected[0].get("motion") not in FLIP or not found:
                continue
            net_y, net_x = float(found.group(1)), float(found.group(2))  # image y points down
            asked = expected[0]["motion"]
            projections.append({"left": -net_x, "right": net_x, "up": -net_y, "down": net_y}[asked])
        n = max(len(projections), 1)
        right = sum(p > 5 for p in projections)
        wrong = sum(p < -5 for p in projections)
        print(
            f"{path}: {len(projections)} judged single-direction clips, mean projection "
            f"{sum(projections) / n:+.1f} px, >5 px the asked way {right}, the other way {wrong}"
        )


def _unet_and_encoder(unet_dir: str):
    from kinetoscope.diffusion.unet import VideoUNet
    from kinetoscope.text import load_text_encoder

    unet = VideoUNet.from_pretrained(unet_dir).eval()
    return unet, load_text_encoder("all-MiniLM-L6-v2", max_length=32)


def loss(unet_dir: str, cache_path: str, scheduler_config: str, count: int = 48) -> None:
    from diffusers import DDPMScheduler

    unet, encoder = _unet_and_encoder(unet_dir)
    sched = DDPMScheduler(**json.loads(Path(scheduler_config).read_text()))
    cache = torch.load(cache_path, weights_only=False)
    single = re.compile(r"is moving (left|right|up|down)$")
    idx = [i for i, w in enumerate(cache["wordings"]) if single.search(w[0])][:count]
    torch.manual_seed(0)
    for level in (300, 600, 900):
        true_losses, flipped_losses = [], []
        for start in range(0, len(idx), 8):
            chunk = idx[start : start + 8]
            latents = cache["latents"][chunk].float()
            captions = [cache["wordings"][i][0] for i in chunk]
            flipped = [single.sub(lambda m: "is moving " + FLIP[m.group(1)], c) for c in captions]
            noise = torch.randn_like(latents)
            t = torch.full((len(chunk),), level)
            noisy = sched.add_noise(latents, noise, t)
            target = sched.get_velocity(latents, noise, t)
            with torch.inference_mode():
                for texts, out in ((captions, true_losses), (flipped, flipped_losses)):
                    emb, mask = encoder.encode(texts)
                    out.append(((unet(noisy, t, emb, mask) - target) ** 2).mean().item())
        print(
            f"t={level}: loss with the true direction {sum(true_losses) / len(true_losses):.4f}, "
            f"flipped {sum(flipped_losses) / len(flipped_losses):.4f}"
        )


def sensitivity(unet_dir: str) -> None:
    unet, encoder = _unet_and_encoder(unet_dir)
    captions = [
        "a small white triangle is moving left",
        "a small white triangle is moving right",
        "a small red triangle is moving left",
        "a large white circle is moving left",
    ]
    emb, mask = encoder.encode(captions)
    torch.manual_seed(0)
    size = 64 // 4
    x = torch.randn(1, unet.config.latent_channels, 16, size, size).expand(4, -1, -1, -1, -1)

    def change(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / a.norm()).item()

    for level in (900, 500):
        t = torch.full((4,), level)
        with torch.inference_mode():
            video = unet(x, t, emb, mask)
            image = unet(x, t, emb, mask, use_temporal=False)
        print(
            f"t={level}: video model: direction {change(video[0], video[1]):.3f}, colour "
            f"{change(video[0], video[2]):.3f}, size+shape {change(video[0], video[3]):.3f}; "
            f"image model: direction {change(image[0], image[1]):.3f}, colour "
            f"{change(image[0], image[2]):.3f}"
        )


MOTIONS = ("left", "right", "up", "down", "left and right", "up and down")


def anchor_velocities(unet, emb, mask, resolution: int) -> dict[str, tuple]:
    """{block name: (velocity (P, H, 2) in px per frame, spread (P, H, 2) in cells)}."""
    found = {}
    for name, module in unet.named_modules():
        if name.endswith("temporal_anchor") and module is not None and not module.given:
            with torch.no_grad():
                velocity, spread = module.motion_bias.motion(emb, mask)
            found[name.removesuffix(".temporal_anchor")] = (velocity * resolution, spread)
    return found


def anchors(unet_dir: str, resolution: int) -> None:
    unet, encoder = _unet_and_encoder(unet_dir)
    prompts = [f"the digit 3 is moving {m}" for m in MOTIONS]
    emb, mask = encoder.encode(prompts)
    found = anchor_velocities(unet, emb, mask, resolution)
    if not found:
        print(f"{unet_dir}: no anchor attention")
    for block, (velocity, spread) in found.items():
        print(f"{block}: velocity (x, y) px/frame per head; spread (x, y) cells")
        for motion, v, s in zip(MOTIONS, velocity.tolist(), spread.tolist(), strict=True):
            heads = "   ".join(
                f"({vx:+5.2f}, {vy:+5.2f}) / ({sx:.2f}, {sy:.2f})"
                for (vx, vy), (sx, sy) in zip(v, s, strict=True)
            )
            print(f"  {motion:15s} {heads}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    sub.add_parser("motion").add_argument("reports", nargs="+")
    sub.add_parser("failures").add_argument("reports", nargs="+")
    sub.add_parser("pairs").add_argument("reports", nargs="+")
    p = sub.add_parser("loss")
    p.add_argument("unet_dir")
    p.add_argument("cache")
    p.add_argument("scheduler_config")
    sub.add_parser("sensitivity").add_argument("unet_dir")
    p = sub.add_parser("anchors")
    p.add_argument("unet_dir")
    p.add_argument("--resolution", type=int, default=64, help="frame size in pixels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.probe == "motion":
        motion(args.reports)
    elif args.probe == "failures":
        failures(args.reports)
    elif args.probe == "pairs":
        pairs(args.reports)
    elif args.probe == "loss":
        loss(args.unet_dir, args.cache, args.scheduler_config)
    elif args.probe == "anchors":
        anchors(args.unet_dir, args.resolution)
    else:
        sensitivity(args.unet_dir)


if __name__ == "__main__":
    main()
