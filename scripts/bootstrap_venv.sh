#!/usr/bin/env bash
# Create (or reuse) the project's Python 3.10 virtual environment in .venv and install the pinned
# requirements plus the project itself (editable). Re-running is a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MLLA_RTDETR_VENV:-.venv}

find_python310() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys' >/dev/null 2>&1; then
    command -v python3.10; return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/3.10.*/bin/python; do
      [ -x "$p" ] && { echo "$p"; return; }
    done
  fi
  echo "error: Python 3.10 not found (sal-detectron2 is built for 3.10 only). Set PYTHON=/path/to/python3.10." >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python310)
  echo "[bootstrap] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.requirements.sha256"
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing pinned requirements into $VENV (first run takes ~2 minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
