"""The README's examples are run as written: its Python blocks and its command lines.

Commands that need more than a test's budget are listed in SKIPPED with the test that covers
them instead; anything else the README shows must run and succeed here.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kinetoscope.cli import main
from kinetoscope.hub import list_models

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
# README commands not run here, and what covers them instead: whole training recipes (up to
# 90 minutes; tests/models/test_ldm.py and test_phenaki_training.py train tiny recipes), the
# set-up and test commands (what CI itself runs on a clean clone: .ci/run), the judge's full
# validation table (minutes; tests/unit/test_judge.py validates it on fewer clips), the
# autoencoder ceiling on 100 clips per world (tests/unit/test_round_trip_ceiling.py runs it on
# a few clips and a tiny saved model of each family), the web demo (serves until stopped;
# tests/cli/test_demo.py serves its page and calls it as a client).
SKIPPED = (
    "kinetoscope train",
    "OMP_NUM_THREADS=2 kinetoscope train",
    "bash scripts/setup.sh",
    "python -m kinetoscope.eval.judge --validate",
    "python -m kinetoscope.eval.autoencoder",
    "kinetoscope demo",
)


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(README.read_text()) if lang == language]


def command_lines() -> list[str]:
    """Every shell command of the README (continuations joined, comments dropped)."""
    lines = []
    for code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def models_used(code: str) -> set[str]:
    return set(re.findall(r"(?:load\(|--model )[\"']?([a-z]+-[a-z0-9]+)", code))


def require_models(code: str) -> None:
    missing = models_used(code) - set(list_models())
    if missing:
        pytest.skip(f"model(s) {sorted(missing)} not installed")


@contextlib.contextmanager
def demo_served_for(code: str):
    """The README's web-demo client example talks to a demo on the default port: serve one."""
    if "gradio_client" not in code:
        yield
        return
    pytest.importorskip("gradio")
    from kinetoscope.demo import build_demo

    page = build_demo().queue()
    try:
        page.launch(prevent_thread_lock=True, server_port=7860, quiet=True)
    except OSError:
        pytest.skip("port 7860 is busy (a demo already running?)")
    try:
        yield
    finally:
        page.close()


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_example_runs(index, tmp_path, monkeypatch):
    code = blocks("python")[index]
    require_models(code)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with demo_served_for(code):
        exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    written = [p for p in tmp_path.iterdir() if p.suffix in {".mp4", ".gif", ".webm"}]
    for path in written:  # every video the example saves is a real, readable file
        from kinetoscope.video import Video

        assert len(Video.read(path).frames) > 0


RUNNABLE = [c for c in command_lines() if not c.startswith(SKIPPED)]


def test_readme_shows_commands():
    assert any(c.startswith("kinetoscope generate") for c in RUNNABLE)
    assert len(RUNNABLE) >= 8


@pytest.mark.parametrize("command", RUNNABLE)
def test_command_line_example_runs(command, tmp_path, monkeypatch, capsys):
    require_models(command)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.txt").write_text("the digit 7 is moving up\nthe digit 2 is moving left\n")
    argv = shlex.split(command)
    if argv[:3] == ["python", "-m", "kinetoscope"]:
        done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return
    assert argv[0] == "kinetoscope", f"unexpected README command {command!r}"
    try:
        code = main(argv[1:])
    except SystemExit as stop:  # --help exits
        code = stop.code
    assert code in (0, None), capsys.readouterr()
    for flag in ("-o", "--out-dir"):
        if flag in argv:
            target = tmp_path / argv[argv.index(flag) + 1]
            assert target.exists(), f"{command!r} did not write {target}"
