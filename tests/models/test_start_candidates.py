"""Frame 0 drawn several times, a draw from which the planned motion stays in the frame kept
(``start_candidates``), and the moves it measures (``start_shifts``)."""

from __future__ import annotations

import pytest
import torch

from helpers import spy_start, tracked_pipeline
from kinetoscope.diffusion.planner import centre_content, pixel_boxes, start_shifts


def _object_at(row: int, col: int, size: int = 12) -> torch.Tensor:
    first = torch.full((1, 2, size, size), -0.5)
    first[:, :, row : row + 2, col : col + 2] = torch.tensor([1.0, 2.0])[:, None, None]
    return first


def _down(cells: float, frames: int = 6, size: int = 12) -> torch.Tensor:
    """(1, 1, frames, 2) one slot's track moving down ``cells`` cells of ``size``."""
    track = torch.stack([torch.zeros(frames), torch.linspace(0, cells / size, frames)], dim=-1)
    return track[None, None]


def test_start_shifts_measure_the_least_move_and_whether_any_move_fits():
    first = torch.cat([_object_at(2, 4), _object_at(6, 4), _object_at(6, 4)])
    tracks = torch.cat([_down(5), _down(5), _down(11)])
    shifts, feasible = start_shifts(first, tracks)
    # rows 2-3 end at rows 7-8: inside; rows 6-7 end at 11-12: one row up fits; a track over
    # more than the frame fits nowhere
    assert shifts.tolist() == [[0, 0], [0, -1], [0, 0]]
    assert feasible.tolist() == [True, True, False]
    blank = torch.zeros(1, 2, 12, 12)  # no content: nothing to keep inside
    assert start_shifts(blank, _down(11))[1].tolist() == [True]


def test_pixel_boxes_are_the_content_pixels_in_fractional_cells():
    frames = torch.full((3, 3, 16, 16), -1.0)
    frames[0, 2, 5:9, 2:4] = 0.8  # a blue object in rows 5-8, columns 2-3
    frames[1, :, :, :] = 0.2  # a grey frame: its median is its background
    frames[1, 0, 0:2, 12:16] = -0.6  # a dark red-less corner, 0.8 below it
    frames[2, 1, 3, 3] = -0.6  # 0.4 off the background: under the threshold
    boxes = pixel_boxes(frames, 4)
    low, high = boxes[0]
    # pixels 2..3 and 5..8 of cells of 4: [0.5, 1.0) wide and [1.25, 2.25) high
    assert low.tolist() == [0.5, 1.25] and high.tolist() == [0.0, 1.25]
    low, high = boxes[1]
    assert low.tolist() == [3.0, 0.0] and high.tolist() == [3.0, -0.5]
    assert boxes[2] is None
    # a box inside the frame's last cell ends at w - 1, one pixel further does not fit
    edge = torch.full((1, 3, 16, 16), -1.0)
    edge[0, :, 0, 12:16] = 1.0
    assert pixel_boxes(edge, 4)[0][1].tolist() == [3.0, -0.75]


def test_the_pipeline_reads_content_boxes_from_frame_0_decoded(fake_text_encoder):
    pipe = tracked_pipeline(fake_text_encoder)
    first = torch.randn(2, 4, 8, 8)
    frames = pipe.vae.decode(first[:, :, None], temporal=False)[:, :, 0].clamp(-1, 1)
    expected = pixel_boxes(frames, pipe.vae.downscale)
    found = pipe._content_boxes(first)
    assert len(found) == 2
    for got, want in zip(found, expected, strict=True):
        assert (got is None and want is None) or all(
            torch.equal(a, b) for a, b in zip(got, want, strict=True)
        )


def test_start_candidates_keep_the_first_draw_the_planned_motion_fits(fake_text_encoder):
    pipe = tracked_pipeline(fake_text_encoder)
    size = 16 // pipe.vae.downscale
    bottom = torch.full((4, 1, size, size), -0.5)
    bottom[:, :, size - 2 :, 1:2] = 1.0  # moving down, it leaves the frame
    top = torch.full((4, 1, size, size), -0.5)
    top[:, :, 1:2, 1:2] = 1.0  # moving down, it stays inside
    plans, calls = [], []
    spy_start(pipe, [bottom, top, top.roll(1, dims=-1)], plans, calls)
    run = dict(seed=3, progress=False)
    prompt = ["the digit 3 is moving down"]
    pipe(prompt, **run)
    assert len(calls) == 2 and calls[0]["noise"].shape[0] == 1  # one draw by default
    default_noise = calls[1]["noise"]
    calls.clear(), plans.clear()
    pipe.defaults["start_candidates"] = 3
    clip = pipe(prompt, **run).frames[0]
    image, generator = calls
    # the three draws in one batch of the image model: the sample's own noise first, each draw
    # with the prompt, then (guided) the negative prompt
    assert image["noise"].shape[0] == 3
    assert torch.equal(image["noise"][0], default_noise[0, :, :1])
    emb, mask = pipe.text_encoder.encode(prompt + [""])
    torch.testing.assert_close(image["emb"], torch.cat([emb[:1]] * 3 + [emb[1:]] * 3))
    assert torch.equal(image["mask"], torch.cat([mask[:1]] * 3 + [mask[1:]] * 3))
    # planned from the first draw's content centred, then from the kept draw: the second
    assert torch.equal(plans[0], centre_content(bottom[None, :, 0]))
    assert torch.equal(generator["context"][0], top) and torch.equal(plans[1][0], top[:, 0])
    # the clip goes on from the kept draw's own noise
    assert torch.equal(generator["noise"][0, :, :1], image["noise"][1])
    again = pipe(prompt, **run).frames[0]
    assert (again.frames == clip.frames).all()  # reproducible


def test_start_candidates_take_the_least_move_when_no_draw_fits(fake_text_encoder):
    pipe = tracked_pipeline(fake_text_encoder)
    size = 16 // pipe.vae.downscale
    far, near = (torch.full((4, 1, size, size), -0.5) for _ in range(2))
    far[:, :, size - 2, 1:2] = 1.0  # two cells too low for the planned move (of 2.4 cells)
    near[:, :, size - 3, 1:2] = 1.0  # one cell too low
    plans, calls = [], []
    spy_start(pipe, [far, near], plans, calls)
    pipe.defaults["start_candidates"] = 2
    pipe(["the digit 3 is moving down"], seed=0, progress=False)
    assert torch.equal(calls[-1]["context"][0], near)
    pipe.defaults["start_candidates"] = 0
    with pytest.raises(ValueError, match="start_candidates"):
        pipe(["the digit 3 is moving down"], seed=0, progress=False)


def test_start_candidates_draw_once_without_a_planner(fake_text_encoder):
    pipe = tracked_pipeline(fake_text_encoder, planner=False)
    calls = []
    denoise = pipe._denoise

    def spy(noise, **options):
        calls.append(noise.shape[0])
        return denoise(noise, **options)

    pipe._denoise = spy
    pipe.defaults["start_candidates"] = 4
    pipe(["the digit 3 is moving down", "the digit 1 is moving up"], seed=0, progress=False)
    assert calls == [2, 2]  # frame 0 once per sample, then the clips


def test_keep_clear_keeps_the_fitting_draw_whose_motion_meets_the_least_content(
    fake_text_encoder,
):
    """Object-wise composition: of the draws the planned motion fits, the one whose moving box
    stays off the cells another clip fills (grown by one cell) is kept."""
    import numpy as np

    from kinetoscope.video import Video

    pipe = tracked_pipeline(fake_text_encoder)
    size = 16 // pipe.vae.downscale
    left = torch.full((4, 1, size, size), -0.5)
    left[:, :, 1:2, 1:2] = 1.0  # near the top, column 1: moving down, it fits
    right = left.roll(4, dims=-1)  # the same, in column 5
    plans, calls = [], []
    spy_start(pipe, [left, right], plans, calls)
    pipe.defaults["start_candidates"] = 2
    prompt = ["the digit 3 is moving down"]
    pipe(prompt, seed=0, progress=False)
    assert torch.equal(calls[-1]["context"][0], left)  # both fit: the first draw
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    cell = pipe.vae.downscale
    frames[:, :, cell : 2 * cell] = 200  # another object all down column 1
    calls.clear()
    clip = pipe(prompt, seed=0, progress=False, keep_clear=[Video(frames)]).frames[0]
    assert torch.equal(calls[-1]["context"][0], right)
    assert clip.num_frames == 4
    with pytest.raises(ValueError, match="keep_clear videos need 4 frames"):
        pipe(prompt, seed=0, progress=False, keep_clear=[Video(frames[:2])])


def test_track_overlap_counts_the_occupied_cells_the_moving_box_meets():
    from kinetoscope.diffusion.planner import track_overlap

    occupied = torch.zeros(2, 6, 6, dtype=torch.bool)
    occupied[1, 3, 1] = True  # frame 1, row 3, column 1
    box = (torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]))
    down = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])  # one slot: still, then two rows down
    assert track_overlap(box, down, occupied) == 1
    assert track_overlap(box, torch.zeros(1, 2, 2), occupied) == 0  # it stays at row 1
    assert track_overlap(box, down.repeat(2, 1, 1), occupied) == 2  # counted per slot
    occupied[0, 1, 1] = True
    assert track_overlap(box, down, occupied) == 2


def test_keep_clear_never_takes_a_draw_the_motion_does_not_fit(fake_text_encoder):
    """A draw clear of the other object whose motion would leave the frame loses to a draw
    that fits and meets the other object: fitting comes first."""
    import numpy as np

    from kinetoscope.video import Video

    pipe = tracked_pipeline(fake_text_encoder)
    size = 16 // pipe.vae.downscale
    fits = torch.full((4, 1, size, size), -0.5)
    fits[:, :, 1:2, 1:2] = 1.0  # near the top, column 1: moving down, it fits
    low = torch.full((4, 1, size, size), -0.5)
    low[:, :, size - 2 :, 5:6] = 1.0  # at the bottom, column 5: moving down, it leaves
    plans, calls = [], []
    spy_start(pipe, [low, fits], plans, calls)
    pipe.defaults["start_candidates"] = 2
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    frames[:, :, pipe.vae.downscale : 2 * pipe.vae.downscale] = 200  # all down column 1
    pipe(["the digit 3 is moving down"], seed=0, progress=False, keep_clear=[Video(frames)])
    assert torch.equal(calls[-1]["context"][0], fits)
