#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtual environment in .venv with torch (the local
# CPU wheel torch==2.13.0, installed first and only when no torch is present, so that no
# multi-GB CUDA build is pulled in) and kinetoscope itself.
#   bash scripts/setup.sh        # runtime install
#   bash scripts/setup.sh dev    # + training, evaluation and test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
py=.venv/bin/python
if ! "$py" -c "import torch" >/dev/null 2>&1; then
    "$py" -m pip install --quiet torch==2.13.0
fi
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp=".venv/.kinetoscope-${extra:-runtime}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$py" -m pip install --quiet -e "$spec"
    touch "$stamp"
fi
