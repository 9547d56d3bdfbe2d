#!/usr/bin/env bash
# Create ./.venv (Python >= 3.12 when available, else 3.11) with torch and carl_geo installed.
# Idempotent: a second run only re-installs when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for cand in python3.13 python3.12; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "" 2>/dev/null; then command -v "$cand"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in 3.12.1 3.12 3.13.0; do
      p="$(pyenv root)/versions/$v/bin/python"
      if [ -x "$p" ]; then echo "$p"; return; fi
    done
  fi
  command -v python3
}

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(pick_python)
  echo "[setup] creating $VENV with $($PY --version 2>&1) ($PY)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

stamp="$VENV/.carl_geo_installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1 (large download on first run)"
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  echo "[setup] installing carl_geo and its dependencies"
  "$VENV/bin/python" -m pip install -q -e ".[test,int8]"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $VENV ($("$VENV/bin/python" --version 2>&1), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
