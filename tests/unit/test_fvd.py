"""Fréchet distance, the world-feature FVD and the I3D backbone (random weights, tiny inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinetoscope.eval import i3d as i3d_module
from kinetoscope.eval.fvd import (
    FrechetResult,
    clip_features,
    frechet_distance,
    load_backbone,
    real_floor,
    video_frechet_distance,
    world_clips,
)
from kinetoscope.eval.i3d import I3D, I3D_PROTOCOL, i3d_features, load_i3d
from kinetoscope.eval.world_features import MAKE_COMMAND, load_world_features
from kinetoscope.video import Video

# ----------------------------------------------------------------------------- the distance


def test_identical_sets_are_at_zero_and_distance_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(200, 8)) * 1.5 + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 0.5


def test_shift_gives_squared_mean_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))  # correlated features
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    # Same covariance exactly, so only ||Δμ||² remains.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Independent gaussian samples: N(0, I) vs N(m, I) -> ||m||²; N(0, I) vs N(0, 4 I) -> D.
    big_a, big_b = rng.normal(size=(20_000, 4)), rng.normal(size=(20_000, 4))
    m = np.array([1.0, 0.0, -1.0, 2.0])
    assert frechet_distance(big_a, big_b + m) == pytest.approx(6.0, abs=0.1)
    assert frechet_distance(big_a, 2.0 * big_b) == pytest.approx(4.0, abs=0.1)


def test_fewer_samples_than_dims_stays_finite_and_torch_inputs_work():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32))  # singular covariances
    value = frechet_distance(torch.from_numpy(a).float(), b)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros((5, 3)), np.zeros((5, 4))),  # dims differ
        (np.zeros(5), np.zeros((5, 1))),  # not 2-D
        (np.zeros((1, 3)), np.zeros((5, 3))),  # one sample
        (np.full((5, 3), np.nan), np.zeros((5, 3))),
    ],
)
def test_bad_feature_arrays_raise(a, b):
    with pytest.raises(ValueError):
        frechet_distance(a, b)


# ----------------------------------------------------------------------------- world features


def _noise_clips(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, size=(count, 16, 64, 64, 3), dtype=np.uint8))


def test_world_fvd_ranks_real_below_broken_clips():
    net = load_world_features()
    count = 64
    first = world_clips("shapes-1", split="test", count=count, seed=0)
    second = world_clips("shapes-1", split="test", count=count, seed=0, start=count)
    rng = np.random.default_rng(0)
    shuffled = [clip[rng.permutation(len(clip))] for clip in second]  # same frames, no motion

    def feats(clips):
        return clip_features(clips, backbone="world", model=net)[0]

    f_first, f_second = feats(first), feats(second)
    floor = frechet_distance(f_first, f_second)
    to_shuffled = frechet_distance(f_first, feats(shuffled))
    to_noise = frechet_distance(f_first, feats(_noise_clips(count, 1)))
    assert f_first.shape == (count, 128)
    assert 3 * floor < to_shuffled < to_noise


def test_video_frechet_distance_result_and_inputs():
    real = world_clips("shapes-2", split="test", count=8, seed=0)  # (mnist loads slowly)
    fake = [Video(clip) for clip in world_clips("shapes-2", split="test", count=8, seed=1)]
    result = video_frechet_distance(real, fake, backbone="world", batch_size=4)
    assert isinstance(result, FrechetResult)
    assert (result.n_real, result.n_fake, result.backbone) == (8, 8, "world")
    assert result.protocol["backbone"] == "world-features" and result.protocol["num_frames"] == 16
    assert result.score > 0 and "FVD" in str(result)
    # A (N, T, H, W, 3) array and a different resolution (resized to 64) are accepted too.
    small = np.stack([clip[:, ::2, ::2] for clip in real])
    assert video_frechet_distance(real, small).score > 0
    with pytest.raises(ValueError, match="frame count"):
        video_frechet_distance(real, [clip[:8] for clip in real])
    with pytest.raises(ValueError, match="uint8"):
        video_frechet_distance(real, [clip.astype(np.float32) for clip in real])
    with pytest.raises(ValueError, match="backbone"):
        video_frechet_distance(real, real, backbone="inception")
    with pytest.raises(ValueError, match="Kinetics-400"):
        video_frechet_distance(real, real, backbone="i3d")


def test_real_floor_uses_disjoint_samples():
    result = real_floor("shapes-2", split="test", count=8, seed=3)
    assert result.n_real == result.n_fake == 8
    assert "clips 0-7 vs 8-15" in result.protocol["reference"]
    assert result.score > 0  # two different samples are never at distance zero


def test_missing_world_weights_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="kinetoscope.eval.world_features"):
        load_world_features(tmp_path / "nope.safetensors")
    assert "--out" in MAKE_COMMAND


# ----------------------------------------------------------------------------- I3D


@pytest.fixture(scope="module")
def random_i3d() -> I3D:
    torch.manual_seed(0)
    return I3D().eval()


def test_i3d_shapes_and_determinism(random_i3d, monkeypatch):
    video = torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        logits = random_i3d(video)
        again = random_i3d(video)
    assert logits.shape == (2, 400, 1)
    assert torch.equal(logits, again)
    monkeypatch.setattr(i3d_module, "RESIZE", 40)  # the protocol's 224 is too slow for a unit test
    feats = i3d_features(random_i3d, video)
    assert feats.shape == (2, 400) and torch.isfinite(feats).all()
    assert I3D_PROTOCOL == {
        "backbone": "i3d-kinetics400",
        "resize": 224,
        "range": "[-1, 1]",
        "features": "logits",
    }


def test_i3d_weights_round_trip_and_key_errors(random_i3d, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    state = random_i3d.state_dict()
    assert "Conv3d_1a_7x7.conv3d.weight" in state and "Mixed_3b.b1b.bn.running_var" in state
    assert "logits.conv3d.bias" in state
    pt_path = tmp_path / "i3d.pt"
    torch.save({"state_dict": state}, pt_path)
    st_path = tmp_path / "i3d.safetensors"
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, st_path)

    video = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = random_i3d(video)
        for path in (pt_path, st_path):
            assert torch.equal(load_i3d(path)(video), expected)

    broken = dict(state)
    del broken["Mixed_4c.b2b.conv3d.weight"]
    broken["Mixed_4c.extra.weight"] = torch.zeros(1)
    bad_path = tmp_path / "bad.pt"
    torch.save(broken, bad_path)
    with pytest.raises(
        ValueError, match=r"1 missing keys \[Mixed_4c\.b2b\.conv3d\.weight\]"
    ) as err:
        load_i3d(bad_path)
    assert "Mixed_4c.extra.weight" in str(err.value)
    with pytest.raises(ValueError, match="Kinetics-400"):
        load_i3d(None)
    with pytest.raises(FileNotFoundError):
        load_i3d(tmp_path / "missing.pt")

    # The full FVD path with the i3d backbone (resize shrunk for speed).
    monkeypatch.setattr(i3d_module, "RESIZE", 32)
    rng = np.random.default_rng(0)
    real = list(rng.integers(0, 256, size=(3, 8, 16, 16, 3), dtype=np.uint8))
    fake = list(rng.integers(0, 128, size=(3, 8, 16, 16, 3), dtype=np.uint8))
    result = video_frechet_distance(real, fake, backbone="i3d", i3d_weights=st_path)
    assert result.protocol["features"] == "logits" and result.score >= 0
    assert isinstance(load_backbone("i3d", i3d_weights=st_path), I3D)
