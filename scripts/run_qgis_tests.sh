#!/usr/bin/env bash
# The CARL QGIS plugin tests in a real headless QGIS (Debian's QGIS + ./.venv-qgis).
# Extra arguments go to pytest, e.g. `bash scripts/run_qgis_tests.sh -k segment`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_qgis_env.sh
export QT_QPA_PLATFORM=offscreen MPLBACKEND=Agg
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then  # Qt wants one; a private temporary folder keeps it quiet
  XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR
fi
.venv-qgis/bin/python -m pytest tests/qgis -q -p no:cacheprovider "$@"
