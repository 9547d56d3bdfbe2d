#!/usr/bin/env bash
# One command on the GPU machine (device tool): installs the carried wheels (rasterio & co.) into a
# throw-away folder, then runs the speed benchmarks and writes everything to $OUT.
#
#   bash benchmarks/gpu/run.sh [all|model|predictor|upstream|sweep]      (default: all)
#
# all: (1) bench_model.py: published config, 13 and 202 bands, batch 32, fp32 / bf16 / bf16+compile;
#      (2) a generated 8192^2 13-band uint16 GeoTIFF; (3) bench_predictor.py on it, published config,
#      bf16, then bf16 + torch.compile: (a) model only vs (b) predict_raster end to end;
#      (4) bench_vs_upstream.py when benchmarks/gpu/upstream/carl was carried.
# sweep (only on its own): polygon_sweep.py run $SWEEP_PLAN (default polygon_sweep_plan.json), $SWEEP_JOBS
#      runs at once; carry benchmarks/gpu/sweep_data (made here by `polygon_sweep.py prep`) as well.
# The whole run stays within CARL_BENCH_BUDGET seconds (default 540, the device tool allows 600 per
# command): every step runs under `timeout` with its own cap, cut to the time left; a step that
# fails or times out is recorded and the run goes on; later steps are skipped when time is out.
#
# Carry benchmarks/gpu/wheels (made by benchmarks/gpu/prepare_wheels.sh) and, for step (4),
# benchmarks/gpu/upstream. Needs python3 with torch, timm, numpy (+ einops for upstream,
# matplotlib for the PNGs, optional); not torchgeo, not rasterio, no network.
#
# Rehearsal on a CPU machine (tiny config, 512^2 raster, fp32):
#   CARL_BENCH_DEVICE=cpu CARL_BENCH_SMALL=1 OUT=/tmp/rehearsal bash benchmarks/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$SECONDS
WHAT=${1:-all}
OUT=${OUT:-benchmarks/results/gpu}
DEVICE=${CARL_BENCH_DEVICE:-cuda}
BUDGET=${CARL_BENCH_BUDGET:-540}
PY=${PYTHON:-$(command -v python3 || command -v python)}
TMP=${TMPDIR:-/tmp}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- rasterio & co. from the carried wheels, into a throw-away site folder -----------------------
SITE=$TMP/carl-site
if ! "$PY" -c "import rasterio" 2>/dev/null; then
    if compgen -G "benchmarks/gpu/wheels/*.whl" >/dev/null; then
        rm -rf "$SITE"
        if "$PY" -m pip --version >/dev/null 2>&1; then
            "$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target "$SITE" \
                benchmarks/gpu/wheels/*.whl || echo "pip install of the wheels failed" >&2
        else  # no pip: a wheel is a zip of the site-packages layout
            mkdir -p "$SITE"
            for w in benchmarks/gpu/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$SITE"; done
        fi
    else
        echo "no benchmarks/gpu/wheels/*.whl carried (bash benchmarks/gpu/prepare_wheels.sh): no predictor step" >&2
    fi
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CARL_GEO_NO_TORCHGEO=1          # carl_geo skips torchgeo's model registry (absent there anyway)
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}

if [ -n "${CARL_BENCH_SMALL:-}" ]; then
    CONFIGS=tiny; BANDS=13; BATCH=2; MIN_S=1; MODES=fp32,bf16; SIZE=512; PCONFIG=tiny; PBATCH=4
    PMODES="fp32"; PMIN_S=1
else
    CONFIGS=published; BANDS=13,202; BATCH=32; MIN_S=2; MODES=fp32,bf16,bf16-compile; SIZE=8192
    PCONFIG=published; PBATCH=32; PMODES="bf16 bf16-compile"; PMIN_S=3
fi
[[ $DEVICE == cpu ]] && PMODES=${CARL_BENCH_PMODES:-fp32} || PMODES=${CARL_BENCH_PMODES:-$PMODES}
RASTER=$TMP/carl_bench_data

{
    echo "date: $(date -u +%FT%TZ)  what: $WHAT  device: $DEVICE  budget: ${BUDGET}s  out: $OUT"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    "$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")'
    "$PY" - <<'PYEOF'
import sys
import numpy, timm, torch
print("python", sys.version.split()[0], "numpy", numpy.__version__, "timm", timm.__version__,
      "torch threads", torch.get_num_threads())
checks = {
    "rasterio": "import rasterio; print('rasterio', rasterio.__version__, 'GDAL', rasterio.__gdal_version__, rasterio.__file__)",
    "carl_geo": "import carl_geo, carl_geo.inference; print('carl_geo', carl_geo.__version__, carl_geo.__file__)",
    "matplotlib": "import matplotlib; print('matplotlib', matplotlib.__version__)",
    "einops": "import einops; print('einops', einops.__version__)",
}
for name, code in checks.items():
    try:
        exec(code)
    except Exception as exc:
        print(name, "FAILED:", type(exc).__name__, exc)
PYEOF
    echo "cores: $(nproc --all)   C compiler (torch.compile/triton): $(command -v cc gcc | head -1)"
} 2>&1 | tee "$OUT/env.txt"

status=()
step() {  # name cap_seconds command...: run under timeout (cap cut to the budget left), log to $OUT/name.log
    local name=$1 cap=${STEP_TIMEOUT:-$2}; shift 2
    local left=$((BUDGET - (SECONDS - T0) - 10))
    local t=$((cap < left ? cap : left))
    if ((left < 20)); then
        status+=("$(printf '%-26s skipped (budget spent)' "$name")")
        echo "=== $name: skipped, ${left}s left" | tee -a "$OUT/steps.log"
        return
    fi
    echo "=== $name (timeout ${t}s): $*" | tee -a "$OUT/steps.log"
    local t1=$SECONDS
    timeout --kill-after=10 "$t" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    local what=ok; ((rc == 124 || rc == 137)) && what="TIMED OUT" || { ((rc != 0)) && what=FAILED; }
    status+=("$(printf '%-26s %-9s rc=%-3s %4ss' "$name" "$what" "$rc" "$((SECONDS - t1))")")
    echo "=== $name: $what rc=$rc $((SECONDS - t1))s" | tee -a "$OUT/steps.log"
}
single=$([[ $WHAT == all ]] && echo 0 || echo 1)
cap() { ((single)) && echo "$BUDGET" || echo "$1"; }  # a single step gets the whole budget

if [[ $WHAT == all || $WHAT == model ]]; then
    step model "$(cap 200)" "$PY" benchmarks/bench_model.py --device "$DEVICE" --configs "$CONFIGS" \
        --bands "$BANDS" --batch "$BATCH" --modes "$MODES" --min-seconds "$MIN_S" --out "$OUT"
fi
if [[ $WHAT == all || $WHAT == predictor ]]; then
    mkdir -p "$RASTER"
    step raster "$(cap 150)" "$PY" -c "import sys, time; sys.path.insert(0, 'benchmarks')
from pathlib import Path
from bench_predictor import generate_raster
t = time.perf_counter(); p = generate_raster(Path('$RASTER') / 'bench_$SIZE.tif', $SIZE)
print(p, p.stat().st_size // 2**20, 'MiB', round(time.perf_counter() - t), 's')"
    for mode in $PMODES; do
        prec=${mode%%-*}
        extra=(); [[ $mode == *compile ]] && extra=(--compile)
        step "predictor_$mode" "$(cap 140)" "$PY" benchmarks/bench_predictor.py --device "$DEVICE" \
            --config "$PCONFIG" --precision "$prec" "${extra[@]}" --size "$SIZE" --batch-size "$PBATCH" \
            --mem-sizes '' --min-seconds "$PMIN_S" --data "$RASTER" --out "$OUT/predictor_$mode"
        rm -f "$OUT/predictor_$mode"/_bench_*.tif  # left behind by a run cut short
    done
fi
if [[ $WHAT == sweep ]]; then  # polygon-recipe sweep (not part of "all"): see benchmarks/gpu/polygon_sweep.py
    if [ -f benchmarks/gpu/sweep_data/scenes.pkl.gz ]; then
        step sweep "$BUDGET" "$PY" benchmarks/gpu/polygon_sweep.py run "${SWEEP_PLAN:-benchmarks/gpu/polygon_sweep_plan.json}" \
            "$OUT/sweep" --jobs "${SWEEP_JOBS:-16}" --budget "$((BUDGET - 60))"
    else
        status+=("$(printf '%-26s skipped (benchmarks/gpu/sweep_data not carried: polygon_sweep.py prep)' sweep)")
    fi
fi
if [[ $WHAT == all || $WHAT == upstream ]]; then
    if [ -d benchmarks/gpu/upstream/carl ]; then
        step upstream "$(cap 150)" "$PY" benchmarks/bench_vs_upstream.py --upstream benchmarks/gpu/upstream \
            --device "$DEVICE" --configs "$CONFIGS" --bands "$BANDS" --batch "$BATCH" --modes "$MODES" \
            --min-seconds "$MIN_S" --out "$OUT"
    else
        status+=("$(printf '%-26s skipped (benchmarks/gpu/upstream/carl not carried)' upstream)")
    fi
fi

{
    echo
    echo "=============================== summary ($((SECONDS - T0)) s in all) ==============================="
    grep -E '^(torch|python|rasterio|carl_geo) ' "$OUT/env.txt"
    printf '%s\n' "${status[@]}"
    for f in "$OUT"/bench_model.md "$OUT"/bench_vs_upstream.md "$OUT"/predictor_*/bench_predictor.md; do
        [ -f "$f" ] && { echo; echo "--- ${f#"$OUT"/}"; grep -v '^$' "$f"; }
    done
    echo
    echo "files under \$OUT:"; (cd "$OUT" && find . -type f | sort | sed 's/^/  /')
} 2>&1 | tee "$OUT/summary.txt"
