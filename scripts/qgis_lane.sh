#!/usr/bin/env bash
# The CARL plugin in another Debian release's QGIS, as a new user there gets it:
#   bash scripts/qgis_lane.sh trixie     # QGIS 3.40 LTR on Python 3.13 (Debian 13)
#   bash scripts/qgis_lane.sh sid        # QGIS 3.44 on Python 3.14 (Debian unstable)
# Builds (once) a minimal Debian root with `debootstrap --variant=minbase SUITE` and `apt-get install qgis
# python3-qgis` in a cache folder outside the checkout (${CARL_QGIS_ROOTS:-~/.cache/carl_geo/qgis-roots}/SUITE),
# then runs tests/qgis_lane with this checkout's .venv: they build the plugin ZIP, install it into a fresh
# profile of that QGIS and run its algorithms through the root's own `qgis_process` (QGIS's libraries load
# first, as in the desktop), the heavy work in the plugin's worker process (this checkout's .venv Python, bind
# mounted at the same path). Every mount is undone on exit, error or Ctrl-C. Needs root (CI runs as root).
# Extra arguments go to pytest. The last result is written to benchmarks/results/qgis_lanes/SUITE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SUITE=${1:?usage: qgis_lane.sh trixie|sid [pytest args]}
shift
BASE=${CARL_QGIS_ROOTS:-${XDG_CACHE_HOME:-$HOME/.cache}/carl_geo/qgis-roots}
DIR="$BASE/$SUITE"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "[qgis-lane $SUITE] $*"; }

[ "$(id -u)" = "0" ] || { echo "[qgis-lane] error: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || {
  log "installing debootstrap"; apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }

mounted=()
cleanup() {
  local i
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bind() {  # bind-mount $1 at the same path inside the root (read-only with "ro")
  local src=$1 dst="$DIR$1"
  mkdir -p "$dst"
  mount --bind "$src" "$dst"
  mounted+=("$dst")
  if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$dst"; fi
}

if [ ! -x "$DIR/usr/bin/qgis_process" ] && [ ! -x "$DIR/usr/bin/qgis_process.bin" ]; then
  rm -rf "$DIR.partial"
  mkdir -p "$BASE"
  t=$(date +%s)
  log "debootstrap --variant=minbase $SUITE $DIR.partial ($MIRROR)"
  debootstrap --variant=minbase "$SUITE" "$DIR.partial" "$MIRROR" >/dev/null
  mount --bind /proc "$DIR.partial/proc"; mounted+=("$DIR.partial/proc")
  # a mirror snapshot older than the clock (sid's Release files expire within days): do not refuse it
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' > "$DIR.partial/etc/apt/apt.conf.d/99carl-lane"
  log "apt-get install qgis python3-qgis in the root"
  chroot "$DIR.partial" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -q && apt-get install -y -q --no-install-recommends qgis python3-qgis >/dev/null"
  cleanup; mounted=()
  mv "$DIR.partial" "$DIR"
  log "root ready in $(( $(date +%s) - t )) s"
fi

bind /proc
bind /dev
bind "$ROOT"
# the .venv's interpreter lives under pyenv (its symlinks must resolve inside the root)
PY_REAL=$(readlink -f "$ROOT/.venv/bin/python")
PY_HOME=$(dirname "$(dirname "$PY_REAL")")
bind "$PY_HOME" ro
cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true

# qgis_process --version: "QGIS 3.40.6-Bratislava 'Bratislava' (exported)" ... "Python version 3.13.3"
version=$(chroot "$DIR" /usr/bin/env QT_QPA_PLATFORM=offscreen sh -c \
  "(qgis_process.bin --version 2>/dev/null || qgis_process --version 2>/dev/null) | sed -n \
   -e 's/^QGIS version: //p' -e 's/^QGIS \([0-9][^ ]*\).*/\1/p' -e 's/^Python version \(.*\)/(Python \1)/p' \
   | head -2 | tr '\n' ' ' | sed 's/ *$//'")
log "QGIS ${version:-?} in $DIR"
export CARL_QGIS_LANE_ROOT="$DIR" CARL_QGIS_LANE_SUITE="$SUITE" CARL_QGIS_LANE_VERSION="${version:-unknown}"
export QT_QPA_PLATFORM=offscreen MPLBACKEND=Agg
"$ROOT/.venv/bin/python" -m pytest tests/qgis_lane -q -p no:cacheprovider "$@"
