#!/usr/bin/env bash
# The desktop journey, on demand: the real QGIS desktop (`qgis`, QGIS's own libraries loaded first) on a virtual
# X display, a fresh profile with the plugin installed from its ZIP (unzipped into the profile and enabled, as
# "Install from ZIP" does), then scripts/qgis_desktop_journey.py inside it: on the first start the plugin's
# installer opens by itself and installs the dependencies offline from a local folder of wheels; then load the NC
# scene and its polygons, "CARL train from polygons" (the work in the plugin's worker process, with the Python of
# the environment just installed), "CARL segment raster", quit.
#   bash scripts/qgis_desktop_journey.sh [OUT_DIR]      # default docs/; needs qgis (and xvfb: installed as root)
# The folder of wheels is CARL_JOURNEY_WHEELHOUSE (default: a cache folder outside the checkout,
# ${XDG_CACHE_HOME:-~/.cache}/carl_geo/journey_wheelhouse, filled once by `pip download` for QGIS's Python: about
# 3.1 GB with PyPI's torch build). CARL_JOURNEY_INSTALL=0 skips the installer and runs the worker with
# CARL_QGIS_PYTHON (default ./.venv-qgis/bin/python). CARL_JOURNEY_STEPS=N trains N steps instead of the time budget.
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
export CARL_JOURNEY_FIELD="$FIELD" CARL_QGIS_ENV_DIR="$WORK/env" CARL_JOURNEY_WORK="$WORK" QT_XCB_GL_INTEGRATION=none
if [ "${CARL_JOURNEY_INSTALL:-1}" = 0 ]; then
  export CARL_QGIS_PYTHON="${CARL_QGIS_PYTHON:-$ROOT/.venv-qgis/bin/python}"
  unset CARL_JOURNEY_WHEELHOUSE
else
  unset CARL_QGIS_PYTHON  # the worker runs with the environment the installer builds
  HOUSE=$(realpath -m "${CARL_JOURNEY_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/carl_geo/journey_wheelhouse}")
  if [ ! -f "$HOUSE/.complete" ]; then  # once: every wheel carl_geo needs, for QGIS's Python, as a user would fetch
    echo "[journey] filling the wheel folder $HOUSE (once; about 3 GB)"
    mkdir -p "$HOUSE"
    PYV=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    # the versions the installer keeps from QGIS's Python (numpy==1.24.2 on Debian 12) ...
    /usr/bin/python3 -c "import sys; sys.path.insert(0, 'qgis_plugin'); from carl_qgis.installer import qgis_pins; \
print(chr(10).join(qgis_pins()))" > "$WORK/pins.txt"
    WHEEL=$(ls "$PROFILE"/python/plugins/carl_qgis/wheels/carl_geo-*.whl)
    printf 'carl-geo @ file://%s\nattrs>=23.2\n' "$WHEEL" > "$WORK/wanted.in"
    # ... resolved by uv in seconds (pip download was still backtracking against numpy 1.24.2 after 10 min)
    UVENV="$(dirname "$HOUSE")/uv-venv"
    [ -x "$UVENV/bin/uv" ] || { python3 -m venv "$UVENV" && "$UVENV/bin/pip" install --quiet uv; }
    # (no pre-releases: pip skips them; hydra-core's antlr4-python3-runtime 4.9.3 exists only as a source archive,
    # which pip builds from the folder with the setuptools wheel torch brings along)
    "$UVENV/bin/uv" pip compile --quiet --prerelease disallow --python-version "$PYV" \
      --python-platform x86_64-manylinux_2_28 -c "$WORK/pins.txt" "$WORK/wanted.in" -o "$WORK/lock.txt"
    grep -E '^[A-Za-z0-9_.-]+==' "$WORK/lock.txt" | grep -v -i '^carl-geo==' > "$WORK/lock_pins.txt"
    .venv-qgis/bin/python -m pip download --quiet --no-deps --dest "$HOUSE" -r "$WORK/lock_pins.txt"
    touch "$HOUSE/.complete"
  fi
  export CARL_JOURNEY_WHEELHOUSE="$HOUSE"
fi
rm -f "$OUT/journey.json"
t=$(date +%s)
set +e
HOME="$WORK/home" timeout 2700 xvfb-run -a -s "-screen 0 1600x1000x24" qgis --nologo --noversioncheck \
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
