#!/usr/bin/env bash
# The whole test suite: library tests in ./.venv, then the QGIS plugin tests in a real headless QGIS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
if [ -f scripts/run_qgis_tests.sh ]; then
  bash scripts/run_qgis_tests.sh
fi
