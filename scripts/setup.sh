#!/usr/bin/env bash
# Creates .venv (once) and installs eocube into it. torch==2.13.0 goes in first, pinned, so that
# the loose `torch>=2.4` of the extras is already satisfied and pip never resolves the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
# The report test opens the HTML report in a real browser: Debian's chromium, installed when
# missing (as root, as on CI); otherwise say how, since that test fails without it.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null
  else
    echo "setup: please install Debian's chromium (sudo apt-get install chromium)" >&2
  fi
fi
stamp=$VENV/.eocube-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev,notebook]"
touch "$stamp"
