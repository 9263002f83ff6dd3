"""Contract tests for the masked video-token transformer, its loss and MaskGIT sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kinetoscope.autoencoders.cvivit import CViViT
from kinetoscope.masked import (
    MaskedVideoTransformer,
    continue_tokens,
    guided_logits,
    masked_token_loss,
    maskgit_sample,
)

NUM_CODES, TEXT_DIM, TEXT_LEN = 32, 8, 5
TINY = {
    "num_codes": NUM_CODES,
    "max_time_tokens": 3,
    "height_tokens": 2,
    "width_tokens": 2,
    "text_dim": TEXT_DIM,
    "dim": 32,
    "depth": 2,
    "num_heads": 2,
}

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_transformer(seed: int = 0) -> MaskedVideoTransformer:
    torch.manual_seed(seed)
    return MaskedVideoTransformer(**TINY).eval()


def text(batch: int = 2, *, seed: int = 1, length: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random text condition with ``length`` real tokens then padding."""
    generator = torch.Generator().manual_seed(seed)
    emb = torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=generator)
    mask = torch.zeros(batch, TEXT_LEN, dtype=torch.bool)
    mask[:, :length] = True
    return emb, mask


def null_text() -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional (null prompt) condition: one sample with one real token."""
    return text(1, seed=9, length=1)


def random_tokens(shape, *, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, NUM_CODES, shape, generator=torch.Generator().manual_seed(seed))


class RecordingStub(nn.Module):
    """Stand-in model: uniform logits at masked positions, confidently wrong logits elsewhere,
    and it records its inputs."""

    mask_id = NUM_CODES
    num_codes = NUM_CODES

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, tokens, text_emb, text_mask):
        self.calls.append((tokens.clone(), text_emb.clone(), text_mask.clone()))
        logits = torch.zeros(*tokens.shape, NUM_CODES)
        known = tokens != self.mask_id
        wrong = (tokens.clamp(max=NUM_CODES - 1) + 1) % NUM_CODES
        logits[known] = 100.0 * nn.functional.one_hot(wrong[known], NUM_CODES).float()
        return logits


# --- transformer -----------------------------------------------------------------------------


@pytest.mark.parametrize(("num_frames", "time_tokens"), [(1, 1), (3, 2), (5, 3)])
def test_shapes(num_frames, time_tokens):
    model = tiny_transformer()
    emb, mask = text()
    tokens = random_tokens((2, time_tokens * 4))
    tokens[:, ::3] = model.mask_id
    logits = model(tokens, emb, mask)
    assert logits.shape == (2, time_tokens * 4, NUM_CODES)
    assert (
        model.mask_id == NUM_CODES and model.num_codes == NUM_CODES and model.max_time_tokens == 3
    )


def test_rejects_bad_inputs():
    model = tiny_transformer()
    emb, mask = text()
    with pytest.raises(ValueError, match="max_time_tokens"):
        model(random_tokens((2, 16)), emb, mask)  # T' = 4 > 3
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((2, 4), NUM_CODES + 1), emb, mask)
    with pytest.raises(ValueError, match="empty prompt"):
        model(random_tokens((2, 4)), emb, torch.zeros_like(mask))


def test_padding_text_tokens_are_ignored():
    model = tiny_transformer()
    emb, mask = text()
    tokens = random_tokens((2, 8))
    other = emb.clone()
    other[:, 3:] = 7.0  # only padded positions change
    assert torch.allclose(model(tokens, emb, mask), model(tokens, other, mask), atol=1e-6)
    changed_real = emb.clone()
    changed_real[:, :3] = text(seed=8)[0][:, :3]  # real tokens change -> output changes
    assert not torch.allclose(
        model(tokens, emb, mask), model(tokens, changed_real, mask), atol=1e-3
    )


def test_save_load_equal(tmp_path):
    model = tiny_transformer()
    model.save_pretrained(tmp_path)
    loaded = MaskedVideoTransformer.from_pretrained(tmp_path).eval()
    emb, mask = text()
    tokens = random_tokens((2, 12))
    assert torch.equal(model(tokens, emb, mask), loaded(tokens, emb, mask))


@pytest.mark.parametrize(
    "options", [{}, {"local_mixing": True}, {"local_mixing": True, "code_levels": (2, 4, 4)}]
)
def test_gradients_reach_every_parameter(options):
    torch.manual_seed(0)
    model = MaskedVideoTransformer(**{**TINY, **options}).train()
    emb, mask = text()
    null_emb, null_mask = null_text()
    loss, logs = masked_token_loss(
        model,
        random_tokens((2, 3, 2, 2)),
        emb,
        mask,
        null_text_emb=null_emb,
        null_text_mask=null_mask,
        generator=torch.Generator().manual_seed(0),
    )
    loss.backward()
    assert set(logs) == {"loss", "mask_ratio", "masked_accuracy"}
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_local_mixing_reaches_exactly_the_neighbouring_tokens_and_round_trips(tmp_path):
    from kinetoscope.masked.transformer import LocalMixing

    torch.manual_seed(0)
    layer = LocalMixing(8)
    grid = (3, 4, 4)
    x = torch.randn(1, 48, 8)
    changed = x.clone()
    # Perturb token (t=0, row 0, col 0), not by a constant (LayerNorm would remove it).
    changed[0, 0] += torch.randn(8)
    with torch.no_grad():
        moved = (layer(changed, grid) - layer(x, grid)).abs().amax(-1)  # (1, N)
    moved = moved.reshape(grid)
    reach = torch.zeros(grid, dtype=torch.bool)
    reach[:2, :2, :2] = True  # itself and its 3x3x3 neighbours inside the grid
    assert (moved[reach] > 0).all() and (moved[~reach] == 0).all()

    torch.manual_seed(0)
    model = MaskedVideoTransformer(**{**TINY, "local_mixing": True}).eval()
    assert model.local is not None and len(model.local) == TINY["depth"]
    emb, mask = text()
    tokens = random_tokens((2, 12))
    model.save_pretrained(tmp_path)
    loaded = MaskedVideoTransformer.from_pretrained(tmp_path).eval()
    assert torch.equal(model(tokens, emb, mask), loaded(tokens, emb, mask))
    assert model(random_tokens((2, 4)), emb, mask).shape == (2, 4, NUM_CODES)  # T' = 1


def test_factorised_codes_score_each_code_by_its_fsq_digits(tmp_path):
    from kinetoscope.autoencoders.quantizers import FSQ

    levels = (2, 4, 4)  # 32 codes, as NUM_CODES
    torch.manual_seed(0)
    model = MaskedVideoTransformer(**{**TINY, "code_levels": levels}).eval()
    fsq = FSQ(levels)
    codes = torch.arange(NUM_CODES)
    digits = (codes[:, None] // fsq.basis) % fsq.levels
    assert torch.equal(model.code_digits[:NUM_CODES], digits)  # the tokenizer's mixed radix
    emb, mask = text()
    tokens = random_tokens((2, 12))
    with torch.no_grad():
        logits = model(tokens, emb, mask)
        # Zero the joint head: what is left is the sum of per-channel scores, so two codes
        # that differ only in channel 0 differ by exactly that channel's score difference.
        model.to_logits.weight.zero_()
        model.to_logits.bias.zero_()
        factor = model(tokens, emb, mask)
    assert logits.shape == (2, 12, NUM_CODES)
    # Additive: flipping channel 0 from 0 to 1 adds the same score whatever the other digits.
    index = {tuple(d.tolist()): k for k, d in enumerate(digits)}
    step_a = factor[..., index[(1, 0, 0)]] - factor[..., index[(0, 0, 0)]]
    step_b = factor[..., index[(1, 3, 2)]] - factor[..., index[(0, 3, 2)]]
    assert step_a.abs().max() > 1e-4
    assert torch.allclose(step_a, step_b, atol=1e-5)
    # With the joint head on, the full codebook is free again.
    joint = logits[..., index[(1, 3, 2)]] - logits[..., index[(0, 3, 2)]]
    assert not torch.allclose(logits[..., index[(1, 0, 0)]] - logits[..., index[(0, 0, 0)]], joint)
    model.save_pretrained(tmp_path)
    loaded = MaskedVideoTransformer.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.code_levels) == levels
    assert torch.equal(loaded(tokens, emb, mask), model(tokens, emb, mask))
    with pytest.raises(ValueError, match="multiply"):
        MaskedVideoTransformer(**{**TINY, "code_levels": (5, 5)})


# --- loss ------------------------------------------------------------------------------------


def test_loss_counts_only_masked_positions():
    stub = RecordingStub()
    emb, mask = text()
    tokens = random_tokens((2, 3, 2, 2))
    for seed in range(20):
        loss, logs = masked_token_loss(
            stub, tokens, emb, mask, generator=torch.Generator().manual_seed(seed), text_dropout=0.0
        )
        # Masked positions have uniform logits (loss log K); any unmasked position would add ~100.
        assert loss.item() == pytest.approx(math.log(NUM_CODES), abs=1e-5)
        inputs = stub.calls[-1][0]
        assert (inputs == stub.mask_id).sum() >= 1
        assert 0 < logs["mask_ratio"] <= 1


def test_frozen_prefix_never_masked_and_cosine_ratio():
    stub = RecordingStub()
    emb, mask = text(batch=8)
    tokens = random_tokens((8, 3, 2, 2))
    generator = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(60):
        masked_token_loss(
            stub, tokens, emb, mask, generator=generator, text_dropout=0.0, frozen_prefix=1
        )
        inputs = stub.calls[-1][0].view(8, 3, 4)
        assert torch.equal(inputs[:, 0], tokens[:, 0].reshape(8, 4))  # prefix untouched
        assert ((inputs[:, 1:] == stub.mask_id).sum(dim=(1, 2)) >= 1).all()
        ratios.append((inputs[:, 1:] == stub.mask_id).float().mean(dim=(1, 2)))
    # E[ceil(cos(pi/2 r) * 8) / 8] for r ~ U(0,1) is about 2/pi + 1/16.
    assert torch.cat(ratios).mean().item() == pytest.approx(2 / math.pi + 1 / 16, abs=0.04)
    with pytest.raises(ValueError, match="frozen_prefix"):
        masked_token_loss(stub, tokens, emb, mask, text_dropout=0.0, frozen_prefix=3)


def test_per_clip_frozen_prefix():
    stub = RecordingStub()
    emb, mask = text(batch=3)
    tokens = random_tokens((3, 3, 2, 2))
    prefix = torch.tensor([0, 1, 2])
    for seed in range(30):
        generator = torch.Generator().manual_seed(seed)
        masked_token_loss(
            stub, tokens, emb, mask, generator=generator, text_dropout=0.0, frozen_prefix=prefix
        )
        is_masked = (stub.calls[-1][0] == stub.mask_id).view(3, 3, 4)
        for row, frozen in enumerate(prefix.tolist()):
            assert not is_masked[row, :frozen].any() and is_masked[row, frozen:].any()
    with pytest.raises(ValueError, match="frozen_prefix"):
        masked_token_loss(
            stub, tokens, emb, mask, text_dropout=0.0, frozen_prefix=torch.tensor([0, 1])
        )


def test_text_dropout_uses_null_condition():
    stub = RecordingStub()
    emb, mask = text()
    null_emb, null_mask = null_text()
    tokens = random_tokens((2, 2, 2, 2))
    options = {"null_text_emb": null_emb, "null_text_mask": null_mask}
    masked_token_loss(stub, tokens, emb, mask, text_dropout=1.0, **options)
    _, seen_emb, seen_mask = stub.calls[-1]
    assert torch.equal(seen_emb, null_emb.expand(2, -1, -1)) and torch.equal(
        seen_mask, null_mask.expand(2, -1)
    )
    masked_token_loss(stub, tokens, emb, mask, text_dropout=0.0, **options)
    assert torch.equal(stub.calls[-1][1], emb)
    with pytest.raises(ValueError, match="null_text_emb"):
        masked_token_loss(stub, tokens, emb, mask, text_dropout=0.1)


# --- sampling --------------------------------------------------------------------------------


def test_cfg_batched_equals_two_forwards():
    model = tiny_transformer()
    emb, mask = text()
    null_emb, null_mask = null_text()
    tokens = random_tokens((2, 8))
    tokens[:, 1::2] = model.mask_id
    guided = guided_logits(
        model,
        tokens,
        text_emb=emb,
        text_mask=mask,
        null_emb=null_emb,
        null_mask=null_mask,
        guidance_scale=3.0,
    )
    cond = model(tokens, emb, mask)
    uncond = model(tokens, null_emb.expand(2, -1, -1), null_mask.expand(2, -1))
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
    plain = guided_logits(
        model,
        tokens,
        text_emb=emb,
        text_mask=mask,
        null_emb=None,
        null_mask=None,
        guidance_scale=1.0,
    )
    assert torch.equal(plain, cond)


def _sample(model, *, seed, **options):
    emb, mask = text()
    null_emb, null_mask = null_text()
    return maskgit_sample(
        model,
        text_emb=emb,
        text_mask=mask,
        null_emb=null_emb,
        null_mask=null_mask,
        token_shape=(3, 2, 2),
        num_steps=options.pop("num_steps", 4),
        generator=torch.Generator().manual_seed(seed),
        **options,
    )


def test_sampling_deterministic_under_seed():
    model = tiny_transformer()
    first = _sample(model, seed=0)
    assert first.shape == (2, 3, 2, 2) and first.dtype == torch.long
    assert torch.equal(first, _sample(model, seed=0))
    assert not torch.equal(first, _sample(model, seed=1))


def test_per_sample_generators_make_samples_independent_of_batch():
    model = tiny_transformer()
    emb, mask = text()
    null_emb, null_mask = null_text()
    options = {
        "null_emb": null_emb,
        "null_mask": null_mask,
        "token_shape": (2, 2, 2),
        "num_steps": 3,
    }
    gens = [torch.Generator().manual_seed(10 + i) for i in range(2)]
    batched = maskgit_sample(model, text_emb=emb, text_mask=mask, generator=gens, **options)
    alone = maskgit_sample(
        model,
        text_emb=emb[1:],
        text_mask=mask[1:],
        generator=[torch.Generator().manual_seed(11)],
        **options,
    )
    assert torch.equal(batched[1:], alone)


def test_prefix_is_kept_and_no_mask_ids_remain():
    model = tiny_transformer()
    prefix = random_tokens((2, 1, 2, 2), seed=5)
    steps = []

    def callback(step, num_steps, tokens):
        steps.append((step, num_steps, int((tokens == model.mask_id).sum())))
        assert torch.equal(tokens[:, :1], prefix)

    out = _sample(model, seed=0, prefix_tokens=prefix, callback=callback, num_steps=5)
    assert torch.equal(out[:, :1], prefix)
    assert (out != model.mask_id).all() and out.max() < NUM_CODES and out.min() >= 0
    assert [s[:2] for s in steps] == [(i, 5) for i in range(5)]
    remaining = [s[2] for s in steps]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    with pytest.raises(ValueError, match="fewer than"):
        _sample(model, seed=0, prefix_tokens=random_tokens((2, 3, 2, 2)))


def test_decode_until_decodes_only_the_leading_time_steps():
    model = tiny_transformer()
    prefix = random_tokens((2, 1, 2, 2), seed=5)
    out = _sample(model, seed=0, prefix_tokens=prefix, decode_until=2, num_steps=3)
    assert torch.equal(out[:, :1], prefix)
    assert (out[:, 1] != model.mask_id).all() and (out[:, 2] == model.mask_id).all()
    # Up to the last time step is the default: everything decoded.
    whole = _sample(model, seed=0, prefix_tokens=prefix, decode_until=3, num_steps=3)
    assert torch.equal(whole, _sample(model, seed=0, prefix_tokens=prefix, num_steps=3))
    for bad in (1, 4):
        with pytest.raises(ValueError, match="decode_until"):
            _sample(model, seed=0, prefix_tokens=prefix, decode_until=bad)


def test_more_steps_than_tokens_still_completes():
    out = _sample(tiny_transformer(), seed=0, num_steps=30, temperature=0.0)
    assert (out != NUM_CODES).all()


def test_continue_tokens_freezes_reencoded_context():
    torch.manual_seed(0)
    tokenizer = CViViT(
        image_size=8, patch_size=4, dim=16, num_heads=2, spatial_depth=1, temporal_depth=1
    )
    tokenizer.eval()
    model = MaskedVideoTransformer(**{**TINY, "num_codes": tokenizer.num_codes}).eval()
    previous = torch.rand(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    emb, mask = text()
    null_emb, null_mask = null_text()
    options = {
        "previous_video": previous,
        "text_emb": emb,
        "text_mask": mask,
        "null_emb": null_emb,
        "null_mask": null_mask,
        "token_shape": (3, 2, 2),
    }
    out = continue_tokens(
        model,
        tokenizer,
        context_frames=3,
        num_steps=3,
        generator=torch.Generator().manual_seed(0),
        **options,
    )
    assert out.shape == (2, 3, 2, 2)
    assert torch.equal(out[:, :2], tokenizer.encode(previous[:, :, -3:]))
    with pytest.raises(ValueError, match="1 \\+ 2m"):
        continue_tokens(model, tokenizer, context_frames=2, **options)


def test_memorises_one_sequence_for_one_prompt():
    torch.manual_seed(0)
    model = MaskedVideoTransformer(**TINY).train()
    emb, mask = text(1)
    target = random_tokens((1, 3, 2, 2), seed=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "tokens": target.expand(8, -1, -1, -1),
        "emb": emb.expand(8, -1, -1),
        "mask": mask.expand(8, -1),
    }
    for _ in range(150):
        loss, _ = masked_token_loss(
            model,
            batch["tokens"],
            batch["emb"],
            batch["mask"],
            generator=generator,
            text_dropout=0.0,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    sample = maskgit_sample(
        model,
        text_emb=emb,
        text_mask=mask,
        null_emb=None,
        null_mask=None,
        token_shape=(3, 2, 2),
        num_steps=4,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(sample, target), loss.item()


# ----------------------------------------------------------------------------- object tracks


def test_anchor_slots_grow_a_transformer_that_starts_as_it_was_and_then_follows_tracks():
    from kinetoscope.train.weights import load_grown

    plain = tiny_transformer()
    torch.manual_seed(3)
    grown = MaskedVideoTransformer(**TINY, anchor_slots=2).eval()
    load_grown(grown, plain.state_dict(), new_prefixes=("anchors.",))
    assert grown.takes_trajectory and not plain.takes_trajectory
    tokens = torch.randint(0, NUM_CODES + 1, (2, 12))
    emb, mask = text()
    tracks = torch.randn(2, 2, 3, 2) * 0.3
    with torch.no_grad():
        before = plain(tokens, emb, mask)
        assert torch.allclose(grown(tokens, emb, mask, tracks), before, atol=1e-6)
        for anchor in grown.anchors:  # as after training: the anchors now write something
            anchor.proj_out.weight.normal_(0, 0.5)
        followed = grown(tokens, emb, mask, tracks)
        moved = grown(tokens, emb, mask, tracks + 0.5)
        absent = grown(tokens, emb, mask, torch.full_like(tracks, math.nan))
        half = grown(tokens, emb, mask, torch.cat([tracks[:1], tracks[1:] * math.nan]))
    assert (followed - before).abs().max() > 1e-3  # the tracks change the logits
    assert (moved - followed).abs().max() > 1e-3  # and where they go matters
    assert torch.allclose(absent, grown(tokens, emb, mask), atol=1e-6)  # NaN rows: no tracks
    assert torch.allclose(half[0], followed[0], atol=1e-6)
    assert torch.allclose(half[1], absent[1], atol=1e-6)
    with pytest.raises(ValueError, match="anchor_slots"):
        plain(tokens, emb, mask, tracks)
    with pytest.raises(ValueError, match="trajectory must be"):
        grown(tokens, emb, mask, tracks[:, :1])


def test_growing_accepts_only_missing_weights_of_the_new_layers():
    from kinetoscope.train.weights import load_grown

    grown = MaskedVideoTransformer(**TINY, anchor_slots=2)
    state = tiny_transformer().state_dict()
    with pytest.raises(ValueError, match="missing"):
        load_grown(
            grown, {k: v for k, v in state.items() if k != "row_emb"}, new_prefixes=("anchors.",)
        )
    with pytest.raises(ValueError, match="unexpected"):
        load_grown(grown, {**state, "extra.weight": torch.zeros(1)}, new_prefixes=("anchors.",))


def test_token_step_tracks_put_each_tubelet_at_the_mean_of_its_two_frames():
    from kinetoscope.masked.transformer import token_step_tracks

    frames = torch.tensor([0.0, 1.0, 3.0, 4.0, 8.0])  # displacement per frame
    tracks = torch.stack([frames, -frames], dim=-1)[None, None]  # (1, 1, 5, 2)
    steps = token_step_tracks(tracks)
    assert torch.equal(steps[0, 0, :, 0], torch.tensor([0.0, 2.0, 6.0]))
    assert torch.equal(steps[0, 0, :, 1], -steps[0, 0, :, 0])
    with pytest.raises(ValueError, match="1 \\+ 2k"):
        token_step_tracks(tracks[:, :, :4])


class _TrackRecorder(nn.Module):
    """Uniform logits; remembers the tracks each forward got."""

    mask_id = NUM_CODES

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor | None] = []

    def forward(self, tokens, text_emb, text_mask, trajectory=None):
        self.seen.append(trajectory)
        return torch.zeros(*tokens.shape, NUM_CODES)


def test_guidance_gives_the_tracks_to_the_conditional_branch_only():
    model, (emb, mask) = _TrackRecorder(), text()
    tracks = torch.randn(2, 2, 3, 2)
    tokens = torch.full((2, 12), NUM_CODES)
    guided_logits(
        model, tokens, text_emb=emb, text_mask=mask, null_emb=emb[:1], null_mask=mask[:1],
        guidance_scale=3.0, trajectory=tracks,
    )  # fmt: skip
    seen = model.seen[-1]
    assert seen.shape == (4, 2, 3, 2)
    assert torch.equal(seen[:2], tracks) and seen[2:].isnan().all()
    guided_logits(
        model, tokens, text_emb=emb, text_mask=mask, null_emb=None, null_mask=None,
        guidance_scale=1.0, trajectory=tracks,
    )  # fmt: skip
    assert torch.equal(model.seen[-1], tracks)
    maskgit_sample(
        model, text_emb=emb, text_mask=mask, null_emb=emb[:1], null_mask=mask[:1],
        token_shape=(3, 2, 2), num_steps=2, trajectory=tracks,
    )  # fmt: skip
    assert all(torch.equal(s[:2], tracks) for s in model.seen[-2:])


def test_the_loss_drops_a_clips_tracks_with_its_text():
    model, (emb, mask) = _TrackRecorder(), text(4)
    tokens = torch.randint(0, NUM_CODES, (4, 3, 2, 2))
    tracks = torch.randn(4, 2, 3, 2)
    null = text(1, seed=5)
    masked_token_loss(model, tokens, emb, mask, text_dropout=0.0, trajectory=tracks)
    assert torch.equal(model.seen[-1], tracks)
    masked_token_loss(
        model, tokens, emb, mask, null_text_emb=null[0], null_text_mask=null[1],
        text_dropout=1.0, trajectory=tracks,
    )  # fmt: skip
    assert model.seen[-1].isnan().all()
    masked_token_loss(model, tokens, emb, mask, text_dropout=0.0)
    assert model.seen[-1] is None
