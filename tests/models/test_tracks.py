"""Given-trajectory anchor attention, the trajectory planner, and tracks in training and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from helpers import TRACKED_UNET as TINY_UNET
from helpers import copy_by_position_only, spy_start, tracked_pipeline
from kinetoscope.diffusion.planner import TrajectoryPlanner
from kinetoscope.diffusion.trajectories import AnchorAttention
from kinetoscope.diffusion.unet import VideoUNet


def text(batch: int, length: int = 6, dim: int = 16):
    emb = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1))
    return emb, torch.ones(batch, length, dtype=torch.bool)


def test_given_tracks_equal_a_fixed_velocity_bank_moving_at_those_velocities():
    """A track that moves v per frame is what a fixed-bank head of velocity v follows."""
    torch.manual_seed(0)
    frames, size, channels = 4, 6, 16
    bank = [[1 / size, 0.0], [0.0, -2 / size]]
    fixed = AnchorAttention(
        channels, num_heads=2, context_dim=16, read_out="fixed", velocities=bank
    )
    given = AnchorAttention(channels, num_heads=2, context_dim=16, read_out="given")
    torch.nn.init.normal_(fixed.proj_out.weight)
    state = {k: v for k, v in fixed.state_dict().items() if "motion_bias" not in k}
    given.load_state_dict({**state, "log_spread": fixed.motion_bias.log_spread}, strict=True)
    emb, mask = text(2)
    x = torch.randn(2 * frames, channels, size, size)
    steps = torch.arange(frames, dtype=torch.float)[:, None]
    tracks = torch.stack([torch.tensor(v) * steps for v in bank])[None].expand(2, -1, -1, -1)
    with torch.no_grad():
        expected = fixed(x, emb, mask, num_frames=frames)
        got = given(x, emb, mask, num_frames=frames, trajectory=tracks)
        torch.testing.assert_close(got, expected)
        # Without tracks a given-trajectory anchor is the identity; a wrong shape is refused.
        torch.testing.assert_close(given(x, emb, mask, num_frames=frames), x)
        with pytest.raises(ValueError, match="trajectory must be"):
            given(x, emb, mask, num_frames=frames, trajectory=tracks[:, :1])
        with pytest.raises(ValueError, match="reads its trajectories from the prompt"):
            fixed(x, emb, mask, num_frames=frames, trajectory=tracks)
    with pytest.raises(ValueError, match="no velocities"):
        AnchorAttention(channels, num_heads=2, context_dim=16, read_out="given", velocities=bank)


def test_a_given_track_that_turns_back_is_followed_frame_by_frame():
    """The bias centre is frame 0's place moved back along the track: a bounce works too."""
    torch.manual_seed(0)
    frames, size, channels = 4, 8, 16
    layer = AnchorAttention(channels, num_heads=2, context_dim=16, read_out="given")
    copy_by_position_only(layer)
    with torch.no_grad():
        layer.log_spread.fill_(math.log(0.05))  # the bias alone decides
    x = torch.zeros(frames, channels, size, size)
    x[0, :, 3, 2] = 1.0  # frame 0 shows one feature at row 3, column 2
    columns = [0, 2, 1, -1]  # cells moved right by frame: out, back, and past the start
    track = torch.tensor([[c / size, 0.0] for c in columns])[None, None].expand(1, 2, -1, -1)
    emb, mask = text(1)
    with torch.no_grad():
        out = layer(x, emb, mask, num_frames=frames, trajectory=track) - x
    for frame, column in enumerate(columns):
        peak = out[frame].sum(0).flatten().argmax().item()
        assert divmod(peak, size) == (3, 2 + column)


def test_unet_tracks_change_the_output_only_through_the_anchors():
    torch.manual_seed(0)
    model = VideoUNet(**TINY_UNET)
    assert (
        model.takes_trajectory
        and not VideoUNet(**{**TINY_UNET, "anchor_levels": ()}).takes_trajectory
    )
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    latents, (emb, mask) = torch.randn(2, 4, 3, 8, 8), text(2)
    tracks = torch.randn(2, 2, 3, 2) * 0.1
    with torch.no_grad():  # zero-initialised anchor output: tracks change nothing yet
        torch.testing.assert_close(
            model(latents, 500, emb, mask, tracks), model(latents, 500, emb, mask)
        )
        torch.nn.init.normal_(model.down_blocks[0].temporal_anchor.proj_out.weight)
        moved = model(latents, 500, emb, mask, tracks)
        assert not torch.allclose(moved, model(latents, 500, emb, mask), atol=1e-4)
        still = model(latents, 500, emb, mask, 0 * tracks)
        assert not torch.allclose(moved, still, atol=1e-4)
        # the image model (no temporal layers) ignores them
        torch.testing.assert_close(
            model(latents, 500, emb, mask, tracks, use_temporal=False),
            model(latents, 500, emb, mask, use_temporal=False),
        )


def test_planner_learns_a_word_given_track_and_splits_an_open_start_direction():
    """Token 0 says right (+1 cell per frame) or 'either way' (half the clips each way). The
    planner fits the first exactly and keeps both directions of the second as modes."""
    torch.manual_seed(0)
    frames = 4
    planner = TrajectoryPlanner(latent_channels=2, text_dim=8, num_frames=frames, slots=1,
                                modes=2, width=32, layers=1, heads=2)  # fmt: skip
    right, either = torch.zeros(8), torch.zeros(8)
    right[0], either[1] = 1.0, 1.0
    step = torch.arange(frames, dtype=torch.float)[:, None] * torch.tensor([0.1, 0.0])
    optimizer = torch.optim.Adam(planner.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        kind = torch.rand(32, generator=gen) < 0.5
        sign = torch.where(torch.rand(32, generator=gen) < 0.5, 1.0, -1.0)
        sign = torch.where(kind, 1.0, sign)
        emb = torch.where(kind[:, None, None], right, either).expand(32, 3, 8)
        tracks = (sign[:, None, None] * step)[:, None]  # (B, 1, T, 2)
        first = torch.zeros(32, 2, 4, 4)
        loss, logs = planner.loss(first, emb, torch.ones(32, 3, dtype=torch.bool), tracks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logs["track_px"] < 1.0  # in pixels of a 64-pixel frame
    mask = torch.ones(2, 3, dtype=torch.bool)
    emb = torch.stack([right.expand(3, 8), either.expand(3, 8)])
    with torch.no_grad():
        proposals, logits = planner(torch.zeros(2, 2, 4, 4), emb, mask)
    probs = logits.softmax(-1)
    ends = proposals[..., -1, 0]  # (B, S, M) final x displacement
    best = ends[0, 0, probs[0, 0].argmax()]
    assert abs(best - 0.3) < 0.03
    assert sorted(round(float(e), 1) for e in ends[1, 0]) == [-0.3, 0.3]
    assert 0.3 < probs[1, 0, 0] < 0.7
    # sampling is reproducible per generator and draws both directions across seeds
    drawn = {
        round(float(planner.sample(torch.zeros(1, 2, 4, 4), emb[1:], mask[1:],
                                   [torch.Generator().manual_seed(s)])[0, 0, -1, 0]), 1)
        for s in range(12)
    }  # fmt: skip
    assert drawn == {-0.3, 0.3}
    again = [planner.sample(torch.zeros(1, 2, 4, 4), emb[1:], mask[1:],
                            [torch.Generator().manual_seed(3)]) for _ in range(2)]  # fmt: skip
    torch.testing.assert_close(*again)


def test_planner_matches_slots_to_objects_in_either_order():
    torch.manual_seed(0)
    planner = TrajectoryPlanner(latent_channels=2, text_dim=8, num_frames=3, slots=2, modes=1,
                                width=16, layers=1, heads=2)  # fmt: skip
    first, emb, mask = (
        torch.randn(1, 2, 4, 4),
        torch.randn(1, 3, 8),
        torch.ones(1, 3, dtype=torch.bool),
    )
    with torch.no_grad():
        proposals, _ = planner(first, emb, mask)
    tracks = proposals[:, :, 0]  # (1, 2, T, 2): exactly the proposals
    loss, _ = planner.loss(first, emb, mask, tracks)
    swapped, _ = planner.loss(first, emb, mask, tracks.flip(1))
    torch.testing.assert_close(loss, swapped)
    assert loss < 0.1  # only the mode-choice term of a single mode is left: 0.1 * 0
    with pytest.raises(ValueError, match="tracks per clip"):
        planner.loss(first, emb, mask, tracks[:, :1])


def test_clip_tracks_follow_the_world_positions():
    from kinetoscope.data.worlds import WorldDataset
    from kinetoscope.train.tracks import clip_tracks

    one = WorldDataset("mnist-1", split="train", size=20, seed=0)
    clip = next(one[i] for i in range(20) if one[i].objects[0]["motion"] == "left")
    tracks = clip_tracks(clip.objects, slots=2, resolution=64)
    assert tracks.shape == (2, 16, 2)
    expected = -2.0 * torch.arange(16) / 64  # 2 px per frame to the left
    torch.testing.assert_close(torch.from_numpy(tracks[0, :, 0]), expected)
    assert (tracks[:, :, 1] == 0).all() and (tracks[0] == tracks[1]).all()
    two = WorldDataset("mnist-2", split="train", size=4, seed=0)[0]
    tracks = clip_tracks(two.objects, slots=2, resolution=64)
    for slot, obj in enumerate(two.objects):
        pos = torch.tensor(obj["positions"], dtype=torch.float)
        torch.testing.assert_close(torch.from_numpy(tracks[slot]), (pos - pos[0]) / 64)
    with pytest.raises(ValueError, match="positions"):
        clip_tracks([{"digit": 3}], slots=2, resolution=64)


def test_tracks_reach_the_denoising_loss_and_are_dropped_for_interpolation_windows():
    from kinetoscope.train.ldm import denoising_loss

    torch.manual_seed(0)
    model = VideoUNet(**TINY_UNET)
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    torch.nn.init.normal_(model.down_blocks[0].temporal_anchor.proj_out.weight)
    sched = DDPMScheduler(num_train_timesteps=100)
    latents, (emb, mask) = torch.randn(2, 4, 3, 8, 8), text(2)
    tracks = torch.randn(2, 2, 3, 2) * 0.1
    losses = []
    for trajectory in (None, tracks):
        torch.manual_seed(1)
        losses.append(denoising_loss(model, sched, latents, emb, mask, use_temporal=True,
                                     context_frames=torch.tensor([1, 0]), trajectory=trajectory))  # fmt: skip
    assert not torch.allclose(*losses)


def test_the_pipeline_plans_tracks_after_frame_0_and_saves_its_planner(tmp_path, fake_text_encoder):
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

    pipe = tracked_pipeline(fake_text_encoder)
    plain = tracked_pipeline(fake_text_encoder, planner=False)
    prompt = ["the digit 3 is moving left", "a red square is moving up"]
    run = dict(seed=5, progress=False)
    out = pipe(prompt, **run).frames
    again = pipe(prompt, **run).frames
    untracked = plain(prompt, **run).frames
    for a, b, c in zip(out, again, untracked, strict=True):
        assert (a.frames == b.frames).all()  # reproducible: the planner draws from the seed
        assert (a.frames[0] == c.frames[0]).all()  # frame 0 comes before the tracks
        assert not (a.frames == c.frames).all()  # the clip follows them
    loaded = TextToVideoPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "m"))
    loaded._text_encoder = fake_text_encoder
    assert loaded.planner is not None
    for a, b in zip(out, loaded(prompt, **run).frames, strict=True):
        assert (a.frames == b.frames).all()
    # A clip length the planner was not trained for: no tracks, as without a planner.
    longer = pipe(prompt[:1], num_frames=6, **run).frames[0]
    assert (longer.frames == plain(prompt[:1], num_frames=6, **run).frames[0].frames).all()


def test_continuation_windows_run_without_tracks_and_plans_can_be_cut(fake_text_encoder):
    pipe = tracked_pipeline(fake_text_encoder)
    plain = tracked_pipeline(fake_text_encoder, planner=False)
    clip = plain(["the digit 3 is moving left"], seed=0, progress=False).frames[0]
    run = dict(num_frames=2, context_frames=2, seed=1, progress=False)
    tracked = pipe.continue_video(clip, "the digit 3 is moving up", **run)
    untracked = plain.continue_video(clip, "the digit 3 is moving up", **run)
    assert (tracked.frames == untracked.frames).all()
    first = pipe.vae.encode(clip.to_tensor()[None][:, :, -2:])[:, :, 0]
    denoise = {"emb": torch.zeros(1, 3, 16), "mask": torch.ones(1, 3, dtype=torch.bool)}
    gen = [torch.Generator().manual_seed(0)]
    assert pipe._plan(first, 3, gen, denoise).shape == (1, 2, 3, 2)  # the start of 4 planned
    assert pipe._plan(first, 5, gen, denoise) is None
    radii = []
    sample = pipe.planner.sample
    pipe.planner.sample = lambda *a, agree_px, **kw: (
        radii.append(agree_px) or sample(*a, agree_px=agree_px, **kw)
    )
    pipe._plan(first, 3, gen, denoise)
    pipe.defaults["agree_px"] = 8.0  # the sampling defaults set how close slots must agree
    pipe._plan(first, 3, gen, denoise)
    assert radii == [2.0, 8.0]


def test_nan_tracks_leave_their_clips_untracked_and_track_guidance_uses_them(fake_text_encoder):
    torch.manual_seed(0)
    layer = AnchorAttention(16, num_heads=2, context_dim=16, read_out="given")
    torch.nn.init.normal_(layer.proj_out.weight)
    emb, mask = text(2)
    x = torch.randn(2 * 3, 16, 4, 4)
    tracks = torch.randn(2, 2, 3, 2) * 0.1
    mixed = tracks.clone()
    mixed[1] = float("nan")
    with torch.no_grad():
        both = layer(x, emb, mask, num_frames=3, trajectory=tracks)
        got = layer(x, emb, mask, num_frames=3, trajectory=mixed)
    torch.testing.assert_close(got[:3], both[:3])  # clip 0 tracked as before
    torch.testing.assert_close(got[3:], x[3:])  # clip 1 untracked
    pipe = tracked_pipeline(fake_text_encoder)
    run = dict(seed=5, progress=False, guidance_scale=3.0)
    plain = pipe(["the digit 3 is moving left"], **run).frames[0]
    pipe.defaults["track_guidance"] = True
    guided = pipe(["the digit 3 is moving left"], **run).frames[0]
    assert (plain.frames[0] == guided.frames[0]).all()  # frame 0 has no tracks
    assert not (plain.frames == guided.frames).all()


def test_a_track_sketch_moves_frame_0_along_the_track_over_its_background():
    from kinetoscope.diffusion.planner import track_sketch

    first = torch.full((1, 2, 8, 8), -0.5)
    first[:, :, 2:4, 1:3] = torch.tensor([1.0, 2.0])[:, None, None]  # a 2x2 object
    # Frame widths: 1/8 is one cell. Still, two cells right, one cell up and three cells left.
    track = torch.tensor([[[0.0, 0.0], [2 / 8, 0.0], [0.0, -1 / 8], [-3 / 8, 0.0]]])
    sketch = track_sketch(first, track)
    assert sketch.shape == (1, 2, 4, 8, 8)
    torch.testing.assert_close(sketch[:, :, 0], first)
    torch.testing.assert_close(sketch[:, :, 1], first.roll(2, dims=-1))
    torch.testing.assert_close(sketch[:, :, 2], first.roll(-1, dims=-2))
    # Moved out on the left: what comes in from the right is the background, not a wrap.
    assert (sketch[:, :, 3] == -0.5).all()


def test_sampling_from_a_noised_sketch_runs_the_last_steps_from_it():
    from diffusers import DPMSolverMultistepScheduler

    from kinetoscope.diffusion.sampling import denoise_latents

    seen = []

    def unet(sample, timestep, emb, mask, use_temporal=True):
        seen.append((sample.clone(), int(timestep)))
        return torch.zeros_like(sample)

    def make():
        return DPMSolverMultistepScheduler(num_train_timesteps=100, prediction_type="v_prediction")

    noise, init = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    options = dict(steps=10, guidance=1.0, interval=(0.0, 1.0), emb=torch.zeros(1, 2, 4),
                   mask=torch.ones(1, 2, dtype=torch.bool), autocast=torch.autocast("cpu", enabled=False),
                   progress=False)  # fmt: skip
    full = denoise_latents(unet, make(), noise, **options)
    seen.clear()
    same = denoise_latents(unet, make(), noise, init=init, strength=1.0, **options)
    torch.testing.assert_close(full, same)  # strength 1: pure noise, the sketch unused
    seen.clear()
    sched = make()
    out = denoise_latents(unet, sched, noise, init=init, strength=0.4, **options)
    timesteps = sched.timesteps
    assert [t for _, t in seen] == [int(t) for t in timesteps[6:]]  # the last 4 of 10 steps
    fresh = make()
    fresh.set_timesteps(10)
    torch.testing.assert_close(seen[0][0], fresh.add_noise(init, noise, timesteps[6:7]))
    # A model that predicts v = 0 says the clean clip is the noised input rescaled: closer to
    # the sketch than to the noise the more of the sketch it started from.
    assert (out - init).norm() < (out - noise).norm()
    with pytest.raises(ValueError, match="strength"):
        denoise_latents(unet, make(), noise, init=init, strength=0.0, **options)


def test_track_start_begins_the_clip_from_frame_0_moved_along_its_first_track(fake_text_encoder):
    from kinetoscope.diffusion.planner import track_sketch

    pipe = tracked_pipeline(fake_text_encoder)
    calls = []
    denoise = pipe._denoise

    def spy(noise, **options):
        calls.append(options)
        return denoise(noise, **options)

    pipe._denoise = spy
    run = dict(seed=5, progress=False)
    plain = pipe(["the digit 3 is moving left"], **run).frames[0]
    assert "init" not in calls[-1]  # default 1.0: from pure noise
    pipe.defaults["track_start"] = 0.5
    started = pipe(["the digit 3 is moving left"], **run).frames[0]
    options = calls[-1]
    assert options["strength"] == 0.5
    sketch = track_sketch(options["context"][:, :, 0], options["trajectory"][:, 0])
    torch.testing.assert_close(options["init"], sketch)
    assert (plain.frames[0] == started.frames[0]).all()  # frame 0 is drawn before the tracks
    assert not (plain.frames == started.frames).all()


def test_slots_that_propose_the_same_tracks_take_the_same_one():
    class Fixed(TrajectoryPlanner):
        def forward(self, first, text_emb, text_mask):
            left = torch.linspace(0, -0.2, 4)[:, None] * torch.tensor([1.0, 0.0])
            up = torch.linspace(0, -0.2, 4)[:, None] * torch.tensor([0.0, 1.0])
            # Sample 0: one object, both slots (left first, right first) at even odds.
            # Sample 1: two objects, slot 1's modes (up, down) far from slot 0's.
            tracks = torch.stack([
                torch.stack([torch.stack([left, -left]), torch.stack([-left, left])]),
                torch.stack([torch.stack([left, -left]), torch.stack([up, -up])]),
            ])  # fmt: skip
            return tracks, torch.zeros(2, 2, 2)

    planner = Fixed(latent_channels=4, text_dim=16, num_frames=4)
    agree, picks = 0, set()
    for seed in range(40):
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(100 + seed)]
        out = planner.sample(torch.zeros(2, 4, 2, 2), torch.zeros(2, 3, 16),
                             torch.ones(2, 3, dtype=torch.bool), gens)  # fmt: skip
        agree += bool((out[0, 0] == out[0, 1]).all())
        picks.add((round(float(out[0, 0, -1, 0]), 3), round(float(out[1, 1, -1, 1]), 3)))
        again = planner.sample(torch.zeros(2, 4, 2, 2), torch.zeros(2, 3, 16),
                               torch.ones(2, 3, dtype=torch.bool),
                               [torch.Generator().manual_seed(seed),
                                torch.Generator().manual_seed(100 + seed)])  # fmt: skip
        assert torch.equal(out, again)
    assert agree == 40  # the one object goes one way in both slots, every time
    # Both start directions still occur, and the second object's slot is drawn on its own.
    assert {x for x, _ in picks} == {-0.2, 0.2} and {y for _, y in picks} == {-0.2, 0.2}
    # Drawn independently (agree_px=0), the two slots of the one object part ways.
    parted = 0
    for seed in range(40):
        free = planner.sample(torch.zeros(2, 4, 2, 2), torch.zeros(2, 3, 16),
                              torch.ones(2, 3, dtype=torch.bool),
                              [torch.Generator().manual_seed(seed + k) for k in (0, 100)],
                              agree_px=0.0)  # fmt: skip
        parted += not bool((free[0, 0] == free[0, 1]).all())
    assert parted > 5


def _object_at(row: int, col: int, size: int = 12) -> torch.Tensor:
    first = torch.full((1, 2, size, size), -0.5)
    first[:, :, row : row + 2, col : col + 2] = torch.tensor([1.0, 2.0])[:, None, None]
    return first


def test_fit_start_moves_frame_0_as_little_as_keeps_the_object_in_along_its_track():
    from kinetoscope.diffusion.planner import fit_start

    # A 2x2 object at rows 6-7 moving down 5 cells (of 12) would end at rows 11-12: row 12 out.
    down = torch.stack([torch.zeros(6), torch.linspace(0, 5 / 12, 6)], dim=-1)  # (T, 2) x, y
    tracks = down[None, None].expand(1, 2, 6, 2)
    moved, shift = fit_start(_object_at(6, 4), tracks)
    assert shift.tolist() == [[0, -1]]  # up 1: it ends at rows 10-11, the last row of the frame
    torch.testing.assert_close(moved, _object_at(5, 4))  # the row left behind: background
    # Already fitting, or no move that could fit it (a track over more than the frame), or no
    # content at all: frame 0 stays as it is.
    same, none = fit_start(_object_at(2, 4), tracks)
    assert none.tolist() == [[0, 0]] and torch.equal(same, _object_at(2, 4))
    too_far = torch.stack([torch.zeros(6), torch.linspace(0, 11 / 12, 6)], dim=-1)
    same, none = fit_start(_object_at(6, 4), too_far[None, None])
    assert none.tolist() == [[0, 0]] and torch.equal(same, _object_at(6, 4))
    blank = torch.zeros(1, 2, 12, 12)
    assert fit_start(blank, tracks)[1].tolist() == [[0, 0]]
    # Every slot's track counts: a second slot moving left pushes the object right as well.
    left = torch.stack([torch.linspace(0, -5 / 12, 6), torch.zeros(6)], dim=-1)
    _, shift = fit_start(_object_at(6, 2), torch.stack([down, left])[None])
    assert shift.tolist() == [[3, -1]]


def test_fit_start_in_the_pipeline_moves_frame_0_before_the_generator_and_replans(
    fake_text_encoder,
):
    from kinetoscope.diffusion.planner import centre_content, fit_start

    pipe = tracked_pipeline(fake_text_encoder)
    size = 16 // pipe.vae.downscale
    drawn = torch.full((1, 4, 1, size, size), -0.5)
    drawn[:, :, :, size - 2 :, 1:2] = 1.0  # an object in the bottom row inside the ring
    calls, plans = [], []
    spy_start(pipe, [drawn[0]], plans, calls, down=0.25)
    run = dict(seed=5, progress=False)
    pipe(["the digit 3 is moving down"], **run)
    assert len(plans) == 1 and torch.equal(calls[-1]["context"], drawn)  # off by default
    noise = calls[-1]["noise"]
    pipe.defaults["fit_start"] = True
    clip = pipe(["the digit 3 is moving down"], **run).frames[0]
    expected, shift = fit_start(drawn[:, :, 0], calls[-1]["trajectory"])
    assert shift[0, 1] < 0  # moved up
    torch.testing.assert_close(calls[-1]["context"][:, :, 0], expected)
    # planned from the content centred, then again from the moved frame 0
    assert len(plans) == 3 and torch.equal(plans[1], centre_content(drawn[:, :, 0]))
    assert torch.equal(plans[2], expected)
    # the clip's noise moved with frame 0 (its frames share a component with frame 0's)
    rolled = noise.roll((int(shift[0, 1]), int(shift[0, 0])), dims=(-2, -1))
    assert torch.equal(calls[-1]["noise"], rolled)
    again = pipe(["the digit 3 is moving down"], **run).frames[0]
    assert (again.frames == clip.frames).all()  # reproducible


def test_centre_content_moves_the_content_box_to_the_middle_over_the_background():
    from kinetoscope.diffusion.planner import centre_content, content_boxes

    moved = centre_content(_object_at(1, 8))  # rows 1-2, cols 8-9 of 12
    low, high = content_boxes(moved)[1][0]
    assert low.tolist() == [5.0, 5.0] and high.tolist() == [6.0, 6.0]  # (5.5, 5.5): the middle
    torch.testing.assert_close(moved, _object_at(5, 5))
    blank = torch.zeros(1, 2, 12, 12)
    assert torch.equal(centre_content(blank), blank)  # no content: as it is


def test_fit_start_keeps_the_frames_edge_cells_where_they_are():
    from kinetoscope.diffusion.planner import fit_start

    first = _object_at(6, 4)
    first[:, :, 0, :] = 3.0  # an encoder's padding marks the top row
    down = torch.stack([torch.zeros(6), torch.linspace(0, 5 / 12, 6)], dim=-1)
    moved, shift = fit_start(first, down[None, None])
    assert shift.tolist() == [[0, -1]]
    assert (moved[:, :, 0, :] == 3.0).all()  # the ring as it was
    assert not (moved[:, :, 1:, :] == 3.0).any()  # and not moved inside
    torch.testing.assert_close(moved[:, :, 5:7, 4:6], first[:, :, 6:8, 4:6])
