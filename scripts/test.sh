#!/usr/bin/env bash
# The whole test suite: library tests in ./.venv, then the QGIS plugin tests in a real headless QGIS (Debian 12's
# QGIS 3.22), then the QGIS 3.40 LTR lane (a Debian 13 root with its own QGIS; needs root, skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
if [ -f scripts/run_qgis_tests.sh ]; then
  bash scripts/run_qgis_tests.sh
fi
if [ "$(id -u)" = "0" ] && [ -z "${CARL_SKIP_QGIS_LANES:-}" ]; then
  bash scripts/qgis_lane.sh trixie
else
  echo "[test] QGIS 3.40 lane skipped (it needs root, and CARL_SKIP_QGIS_LANES must be unset)"
fi
