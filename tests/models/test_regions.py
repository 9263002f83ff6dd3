"""Region anchors: each anchor head reads frame 0 only inside its object's frame-0 box; the
layouts that carry the boxes, from the data in training and from the planner at sampling."""

from __future__ import annotations

import pytest
import torch

from helpers import TRACKED_UNET, tracked_pipeline
from kinetoscope.diffusion.planner import TrajectoryPlanner
from kinetoscope.diffusion.trajectories import (
    AnchorAttention,
    pack_layout,
    unpack_layout,
    with_regions,
)
from kinetoscope.diffusion.unet import VideoUNet


def test_a_head_attends_only_to_frame_0_places_inside_its_box():
    torch.manual_seed(0)
    height = width = 4
    q, k = torch.randn(1, 2, 5, 6), torch.randn(1, 2, height * width, 6)
    # head 0: the left half; head 1: the single cell at row 2, column 3
    boxes = torch.tensor([[[[0.0, 0.0], [0.5, 1.0]], [[0.75, 0.5], [1.0, 0.75]]]])
    q2, k2 = with_regions(q, k, boxes, height, width)
    weights = (q2 @ k2.transpose(-1, -2)).softmax(-1).view(1, 2, 5, height, width)
    inside = torch.zeros(2, height, width, dtype=torch.bool)
    inside[0, :, :2], inside[1, 2, 3] = True, True
    for head in range(2):
        outside = weights[0, head][:, ~inside[head]]
        assert outside.max() < 1e-9
        # inside the box, the weights are the unrestricted attention renormalised
        plain = (q[0, head] @ k[0, head].T).view(5, height, width)[:, inside[head]].softmax(-1)
        torch.testing.assert_close(weights[0, head][:, inside[head]], plain)


def test_whole_frame_boxes_read_as_an_anchor_without_regions():
    torch.manual_seed(0)
    frames, size, channels = 3, 6, 16
    plain = AnchorAttention(channels, num_heads=2, context_dim=16, read_out="given", sink=True)
    torch.nn.init.normal_(plain.proj_out.weight)
    regional = AnchorAttention(channels, num_heads=2, context_dim=16, read_out="given",
                               sink=True, regions=True)  # fmt: skip
    regional.load_state_dict(plain.state_dict())
    x, emb, mask = torch.randn(frames, channels, size, size), torch.randn(1, 4, 16), None
    mask = torch.ones(1, 4, dtype=torch.bool)
    tracks = torch.randn(1, 2, frames, 2) * 0.1
    whole = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).expand(1, 2, 2, 2)
    small = torch.tensor([[0.0, 0.0], [0.3, 0.3]]).expand(1, 2, 2, 2)
    with torch.no_grad():
        expected = plain(x, emb, mask, num_frames=frames, trajectory=tracks)
        got = regional(x, emb, mask, num_frames=frames, trajectory=pack_layout(tracks, whole))
        torch.testing.assert_close(got, expected)
        narrowed = regional(x, emb, mask, num_frames=frames, trajectory=pack_layout(tracks, small))
        assert not torch.allclose(narrowed, expected)
    with pytest.raises(ValueError, match="given trajectories"):
        AnchorAttention(channels, num_heads=2, context_dim=16, regions=True)
    with pytest.raises(ValueError, match="boxes must be"):
        pack_layout(tracks, whole[:, :1])
    moved, boxes = unpack_layout(pack_layout(tracks, whole))
    assert torch.equal(moved, tracks) and torch.equal(boxes, whole)


def test_clip_boxes_and_the_layouts_a_region_generator_trains_on():
    from kinetoscope.data.worlds import WorldDataset
    from kinetoscope.train.tracks import clip_boxes, clip_tracks, given_tracks

    clip = WorldDataset("mnist-2", split="train", size=2, seed=0)[0]
    boxes = clip_boxes(clip.objects, slots=2, resolution=64)
    for slot, obj in enumerate(clip.objects):
        x, y = obj["positions"][0]
        assert boxes[slot].tolist() == [[x / 64, y / 64], [(x + 28) / 64, (y + 28) / 64]]
    one = WorldDataset("shapes-1", split="train", size=2, seed=0)[0]
    boxes_one = clip_boxes(one.objects, slots=2, resolution=64)
    assert (boxes_one[0] == boxes_one[1]).all()  # one object fills every slot
    assert boxes_one[0, 1, 0] - boxes_one[0, 0, 0] == one.objects[0]["box"] / 64
    tracks = torch.from_numpy(clip_tracks(clip.objects, slots=2, resolution=64))[None]
    cache = {"tracks": tracks, "boxes": torch.from_numpy(boxes)[None]}
    regional, plain = VideoUNet(**TRACKED_UNET, anchor_regions=True), VideoUNet(**TRACKED_UNET)
    assert given_tracks(cache, plain) is cache["tracks"]
    assert given_tracks(cache, regional).shape == (1, 2, 18, 2)
    with pytest.raises(ValueError, match="boxes"):
        given_tracks({"tracks": tracks}, regional)
    with pytest.raises(ValueError, match="box size"):
        clip_boxes([{"digit": 3, "positions": [[0, 0]]}], slots=2, resolution=64)


def test_the_planner_learns_where_each_object_starts():
    """A bright cell marks the object in frame 0; the planner's box follows it."""
    torch.manual_seed(0)
    planner = TrajectoryPlanner(latent_channels=1, text_dim=8, num_frames=3, slots=1, modes=1,
                                width=32, layers=1, heads=2, boxes=True)  # fmt: skip
    optimizer = torch.optim.Adam(planner.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    emb, mask = torch.zeros(32, 2, 8), torch.ones(32, 2, dtype=torch.bool)
    tracks = torch.zeros(32, 1, 3, 2)

    def batch(n):
        cell = torch.randint(0, 8, (n, 2), generator=gen)  # (x, y) of the marked cell
        first = torch.zeros(n, 1, 8, 8)
        first[torch.arange(n), 0, cell[:, 1], cell[:, 0]] = 1.0
        corner = cell.float() / 8
        return first, torch.stack([corner, corner + 1 / 8], dim=1)[:, None]  # (n, 1, 2, 2)

    for _ in range(400):
        first, boxes = batch(32)
        loss, logs = planner.loss(first, emb, mask, tracks, boxes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    first, boxes = batch(8)
    with torch.no_grad():
        layout = planner.sample(first, emb[:8], mask[:8], boxes=True)
    assert layout.shape == (8, 1, 5, 2)
    assert (unpack_layout(layout)[1] - boxes).abs().max() * 64 < 4  # within 4 px
    assert logs["box_px"] < 4
    assert planner.sample(first, emb[:8], mask[:8], num_frames=2).shape == (8, 1, 2, 2)
    with pytest.raises(ValueError, match="boxes"):
        planner.loss(first, emb[:8], mask[:8], tracks[:8])
    with pytest.raises(ValueError, match="no boxes"):
        TrajectoryPlanner(latent_channels=1, text_dim=8, num_frames=3).sample(
            first, emb[:8], mask[:8], boxes=True
        )


def test_a_region_pipeline_samples_with_planned_boxes_and_reloads(tmp_path, fake_text_encoder):
    from kinetoscope.pipelines.text_to_video import TextToVideoPipeline

    pipe = tracked_pipeline(fake_text_encoder, regions=True)
    plain = tracked_pipeline(fake_text_encoder)
    prompt = ["the digit 3 is moving left and the digit 5 is moving up"]
    run = dict(seed=2, progress=False)
    out = pipe(prompt, **run).frames[0]
    assert (out.frames == pipe(prompt, **run).frames[0].frames).all()
    assert not (out.frames == plain(prompt, **run).frames[0].frames).all()
    loaded = TextToVideoPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "m"))
    loaded._text_encoder = fake_text_encoder
    assert loaded.unet.config.anchor_regions and loaded.planner.config.boxes
    assert (loaded(prompt, **run).frames[0].frames == out.frames).all()
