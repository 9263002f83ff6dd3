"""CLIPSIM with a tiny randomly initialised CLIP saved locally (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kinetoscope.eval.clipsim import SKIP_MESSAGE, ClipSimResult, clipsim, load_clip
from kinetoscope.video import Video

WORDS = ("a", "the", "digit", "is", "moving", "left", "right", "up", "and", "red", "circle")


def _tiny_tokenizer_files(directory: Path) -> tuple[Path, Path]:
    """A made-up byte-pair vocabulary: every character (plus its end-of-word form) and one
    merge chain per word, so each word above becomes a single token."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(set("".join(WORDS))):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges: list[str] = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps(vocab))
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_path, merges_path


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    directory = tmp_path_factory.mktemp("tiny-clip")
    vocab_path, merges_path = _tiny_tokenizer_files(directory)
    tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path))
    common = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **common,
            "num_hidden_layers": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**common, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(directory)
    return directory


def _videos(seed: int, count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, size=(count, 4, 24, 24, 3), dtype=np.uint8))


def test_no_model_is_a_clear_skip():
    result = clipsim(_videos(0), ["a red circle"] * 3)
    assert result.score is None and result.skipped == SKIP_MESSAGE
    assert str(result) == (
        "CLIPSIM skipped: pass --clip-model DIR (a local CLIP in transformers or open_clip format)"
    )


def test_clipsim_matches_a_direct_computation(tiny_clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    videos = _videos(1)
    prompts = ["the digit is moving left", "a red circle", "the digit is moving up and right"]
    result = clipsim([Video(videos[0]), *videos[1:]], prompts, clip_model=tiny_clip_dir)
    assert isinstance(result, ClipSimResult) and result.backend == "transformers"
    assert len(result.per_video) == 3 and all(-100 <= s <= 100 for s in result.per_video)
    assert result.score == pytest.approx(np.mean(result.per_video))

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir)
    processor = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        out = model(
            **tokenizer([prompts[2]], return_tensors="pt", padding=True),
            pixel_values=processor(images=list(videos[2]), return_tensors="pt")["pixel_values"],
        )
    cosines = out.image_embeds @ out.text_embeds[0]  # both unit vectors; (T,)
    assert result.per_video[2] == pytest.approx(100 * float(cosines.mean()), abs=1e-3)

    again = clipsim(videos, prompts, clip_model=load_clip(tiny_clip_dir), batch_size=5)
    assert again.per_video == pytest.approx(result.per_video, abs=1e-4)
    other = clipsim(videos, ["a red circle"] * 3, clip_model=tiny_clip_dir)
    assert other.per_video[0] != pytest.approx(result.per_video[0], abs=1e-6)


def test_bad_inputs_and_directories(tiny_clip_dir, tmp_path):
    with pytest.raises(ValueError, match="one prompt per video"):
        clipsim(_videos(0), ["a"], clip_model=tiny_clip_dir)
    with pytest.raises(ValueError, match="uint8"):
        clipsim([np.zeros((2, 8, 8, 3), np.float32)], ["a"], clip_model=tiny_clip_dir)
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither a transformers CLIP"):
        load_clip(tmp_path)
    open_clip_dir = tmp_path / "oc"
    open_clip_dir.mkdir()
    (open_clip_dir / "open_clip_config.json").write_text("{}")
    try:
        import open_clip  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="open_clip package is not installed"):
            load_clip(open_clip_dir)
    else:  # open_clip present: the empty config must fail with a clear message
        with pytest.raises(ValueError, match="open_clip"):
            load_clip(open_clip_dir)
