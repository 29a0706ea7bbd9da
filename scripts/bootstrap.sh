#!/usr/bin/env bash
# Set up (or update) the project's virtual environment in .venv: idempotent, offline-safe after the
# first run. torch 2.13.0 goes first: pip takes its CPU build from local disk (asking for plain `torch`
# would download a multi-GB CUDA build). safety-gymnasium's declared pins do not install on Python 3.11,
# so it is installed without its dependencies (its real needs come with the `safety-gymnasium` extra).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
stamp="$VENV/.saferl-bootstrap"
want="$(cat pyproject.toml setup.py scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import saferl" 2>/dev/null; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
pip install -q --upgrade pip setuptools wheel
pip install -q torch==2.13.0
pip install -q -e ".[dev,bullet,safety-gymnasium,minari,diffusion]"
pip install -q --no-deps safety-gymnasium==0.4.0
echo "$want" > "$stamp"
echo "saferl environment ready in $VENV"
