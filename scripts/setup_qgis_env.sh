#!/usr/bin/env bash
# Prepare a headless QGIS test environment for the CARL QGIS plugin (idempotent).
#
# 1. Installs Debian's QGIS (qgis + python3-qgis + python3-gdal) with apt when
#    `/usr/bin/python3 -c "import qgis.core"` fails (needs root; CI runs as root), and what the
#    rest needs when missing: python3-venv, python3-dev, gcc, libproj-dev + proj-bin (pyproj
#    build), xvfb + xauth (the QGIS desktop test).
# 2. Creates ./.venv-qgis from /usr/bin/python3 with --system-site-packages, so QGIS's
#    Python bindings (qgis, PyQt5, osgeo) stay visible, and installs torch 2.14.1,
#    torchvision 0.29.1, carl_geo (editable), torchgeo 0.8.x and pytest into it.
#    numpy is pinned below 2: Debian's osgeo.gdal_array is compiled against numpy 1.24 and
#    fails to import under numpy 2.
# 3. Builds pyproj from source against Debian's PROJ (the one QGIS links). The pyproj wheel
#    bundles its own libproj.so.25; inside the QGIS executables (qgis, qgis_process) its symbols
#    clash with QGIS's PROJ and the process aborts at exit ("free(): invalid size").
#    Debian 12 has PROJ 9.1, so pyproj 3.6.x (3.7 needs PROJ 9.2), built with Cython < 3.1.
# A second run only re-installs when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${CARL_QGIS_VENV:-$ROOT/.venv-qgis}
SYS_PY=/usr/bin/python3
t0=$(date +%s)

log() { echo "[setup-qgis] $*"; }

need_apt=()
if ! "$SYS_PY" -c "import qgis.core" >/dev/null 2>&1; then
  need_apt+=(qgis python3-qgis python3-gdal)
fi
if ! "$SYS_PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if ! "$SYS_PY" -c "import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then
  need_apt+=(python3-dev)
fi
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
[ -f /usr/include/proj.h ] || need_apt+=(libproj-dev)
command -v projinfo >/dev/null 2>&1 || need_apt+=(proj-bin)
command -v xvfb-run >/dev/null 2>&1 || need_apt+=(xvfb xauth)  # the QGIS desktop test
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "[setup-qgis] error: missing Debian packages; run as root or: apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  log "installing Debian packages: ${need_apt[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
"$SYS_PY" -c "import qgis.core; from osgeo import gdal_array" \
  || { echo "[setup-qgis] error: QGIS's Python bindings do not import with $SYS_PY" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$SYS_PY" --version 2>&1) (--system-site-packages)"
  "$SYS_PY" -m venv --system-site-packages "$VENV"
fi

SYSTEM_PROJ=$( (projinfo 2>&1 || true) | sed -n 's/^Rel\. \([0-9.]*\),.*/\1/p' | head -1)
[ -n "$SYSTEM_PROJ" ] || { echo "[setup-qgis] error: cannot read the PROJ version from projinfo" >&2; exit 1; }
constraints="$VENV/carl-qgis-constraints.txt"
stamp="$VENV/.carl_qgis_installed"
want=$(cat pyproject.toml "$0" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  printf '%s\n' "numpy<2" "torchgeo>=0.8,<0.9" "pyproj>=3.6,<3.7" > "$constraints"
  pip_install() {  # pip's "Location ... is ignored" warnings about this machine's local indexes are noise
    "$VENV/bin/python" -m pip install -q -c "$constraints" "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  }
  if ! "$VENV/bin/python" -c "import pyproj, sys; v = tuple(map(int, pyproj.__version__.split('.')[:2]))
sys.exit(not (v >= (3, 6) and pyproj.proj_version_str == '$SYSTEM_PROJ'))" 2>/dev/null; then
    log "building pyproj 3.6 against Debian's PROJ $SYSTEM_PROJ (about 2 min)"
    printf '%s\n' "cython>=3,<3.1" > "$VENV/carl-qgis-build-constraints.txt"
    PIP_CONSTRAINT="$VENV/carl-qgis-build-constraints.txt" pip_install --no-cache-dir --no-binary pyproj --force-reinstall \
      --no-deps "pyproj>=3.6,<3.7" certifi
  fi
  log "installing torch 2.14.1 + torchvision 0.29.1 (about 5 GB)"
  pip_install torch==2.14.1 torchvision==0.29.1
  log "installing carl_geo (editable), torchgeo 0.8.x, requests, pytest"
  # attrs: Debian's 22.2 satisfies affine 3's declared attrs>=21.3 but breaks it (rasterio transforms).
  pip_install -e "$ROOT[int8]" "torchgeo>=0.8,<0.9" "attrs>=23.2" requests pytest
  echo "$want" > "$stamp"
fi

# Debian's python3-matplotlib registers its own mpl_toolkits at start-up (matplotlib-*-nspkg.pth),
# which hides the venv's newer mplot3d ("Unable to import Axes3D"). Import the venv's copy first.
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -d "$site/mpl_toolkits" ]; then
  [ -f "$site/mpl_toolkits/__init__.py" ] || : > "$site/mpl_toolkits/__init__.py"
  echo "import mpl_toolkits" > "$site/carl_qgis_mpl_toolkits.pth"
fi

# The check that matters: QGIS, GDAL's numpy bridge, Processing and carl_geo in one interpreter.
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" - <<'EOF'
import sys
sys.path.append("/usr/share/qgis/python/plugins")
import numpy
from osgeo import gdal_array  # noqa: F401  (fails when numpy 2 shadows Debian's numpy 1.x)
import qgis.analysis  # noqa: F401
import processing  # noqa: F401
import warnings
warnings.simplefilter("error", UserWarning)  # e.g. matplotlib's "Unable to import Axes3D"
from qgis.core import Qgis
import torch, torchgeo, rasterio, carl_geo, pyproj  # noqa: E401
from qgis.core import QgsProjUtils
qgis_proj = f"{QgsProjUtils.projVersionMajor()}.{QgsProjUtils.projVersionMinor()}"
assert pyproj.proj_version_str.startswith(qgis_proj + "."), \
    f"pyproj uses PROJ {pyproj.proj_version_str}, QGIS uses PROJ {qgis_proj}: they clash inside QGIS"
print(f"[setup-qgis] ready: QGIS {Qgis.QGIS_VERSION}, Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
      f"torch {torch.__version__}, torchgeo {torchgeo.__version__}, rasterio {rasterio.__version__}, "
      f"carl_geo {carl_geo.__version__}, pyproj {pyproj.__version__} (PROJ {pyproj.proj_version_str})")
EOF
log "done in $(( $(date +%s) - t0 )) s"
