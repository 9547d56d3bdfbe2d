#!/usr/bin/env bash
# The desktop journey, on demand: the real QGIS desktop (`qgis`, QGIS's own libraries loaded first) on a virtual
# X display, a fresh profile with the plugin installed from its ZIP (unzipped into the profile and enabled, as
# "Install from ZIP" does), then scripts/qgis_desktop_journey.py inside it: load the NC scene and its polygons,
# "CARL train from polygons" (the work in the plugin's worker process), "CARL segment raster", quit.
#   bash scripts/qgis_desktop_journey.sh [OUT_DIR]      # default docs/; needs qgis (and xvfb: installed as root)
# The worker's Python is CARL_QGIS_PYTHON (default ./.venv-qgis/bin/python: QGIS's Python 3.11 with carl_geo's
# packages, what the plugin's installer builds). CARL_JOURNEY_STEPS=N trains N steps instead of the time budget.
# Passes when QGIS exits with 0 and every step ran; the screenshots show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${1:-docs}")
mkdir -p "$OUT"
command -v qgis >/dev/null || { echo "[journey] error: qgis is not installed (bash scripts/setup_qgis_env.sh)" >&2; exit 1; }
if ! command -v xvfb-run >/dev/null; then
  [ "$(id -u)" = "0" ] || { echo "[journey] error: needs xvfb-run (apt-get install xvfb)" >&2; exit 1; }
  apt-get install -y -q xvfb xauth >/dev/null
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/carl_journey.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python qgis_plugin/build_zip.py --out-dir "$WORK/dist" >/dev/null
PROFILE="$WORK/home/.local/share/QGIS/QGIS3/profiles/default"  # a new user's default profile
mkdir -p "$PROFILE/python/plugins" "$PROFILE/QGIS"
unzip -q "$WORK"/dist/*.zip -d "$PROFILE/python/plugins"
# no modal prompts a script cannot answer: datum transformation choice, unknown CRS, tips
printf '[PythonPlugins]\ncarl_qgis=true\n[qgis]\nshowTips=false\ncheckVersion=false\n[Projections]\npromptWhenMultipleTransformsExist=false\nshowDatumTransformDialog=false\nunknownCrsBehavior=UseProjectCrs\n' > "$PROFILE/QGIS/QGIS3.ini"
eval "$(.venv/bin/python - <<'PY'
from carl_geo.sample_data import nc_landsat7
s = nc_landsat7()
print(f"SCENE={s.image}; POLYGONS={s.polygons}; FIELD={s.label_field}")
PY
)"
cp "$POLYGONS" "$WORK/polygons.gpkg"
export CARL_JOURNEY_OUT="$OUT" CARL_JOURNEY_SCENE="$SCENE" CARL_JOURNEY_POLYGONS="$WORK/polygons.gpkg"
export CARL_JOURNEY_FIELD="$FIELD" CARL_QGIS_PYTHON="${CARL_QGIS_PYTHON:-$ROOT/.venv-qgis/bin/python}"
export CARL_QGIS_ENV_DIR="$WORK/env" CARL_JOURNEY_WORK="$WORK" QT_XCB_GL_INTEGRATION=none
rm -f "$OUT/journey.json"
t=$(date +%s)
set +e
HOME="$WORK/home" timeout 900 xvfb-run -a -s "-screen 0 1600x1000x24" qgis --nologo --noversioncheck \
  --code "$ROOT/scripts/qgis_desktop_journey.py" > "$WORK/qgis.log" 2>&1
rc=$?
set -e
echo "[journey] QGIS exited with $rc after $(( $(date +%s) - t )) s; steps: $OUT/journey.json"
if [ "$rc" != 0 ] || ! grep -q '"ok": true' "$OUT/journey.json" 2>/dev/null; then
  cp "$WORK/qgis.log" "$OUT/journey_qgis.log" 2>/dev/null || true
  tail -30 "$WORK/qgis.log" >&2
  cat "$OUT/journey.json" >&2 2>/dev/null || true
  exit 1
fi
