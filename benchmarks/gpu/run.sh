#!/usr/bin/env bash
# One command on the GPU machine (device tool): installs the carried wheels (rasterio & co.) into a
# throw-away folder, then runs the speed benchmarks of issue #9 and writes everything to $OUT.
#
#   bash benchmarks/gpu/run.sh [model|upstream|predictor|all]      (default: all)
#
# Carry benchmarks/gpu/wheels (bash benchmarks/gpu/prepare_wheels.sh) and, for the comparison with
# the reference implementation, benchmarks/gpu/upstream (a copy of upstream's `carl` package).
# Every step is time-boxed (STEP_TIMEOUT seconds) and the run goes on when one fails.
# CARL_BENCH_DEVICE=cpu CARL_BENCH_SMALL=1 rehearses the whole script on a CPU machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
OUT=${OUT:-benchmarks/results/gpu}
DEVICE=${CARL_BENCH_DEVICE:-cuda}
STEP_TIMEOUT=${STEP_TIMEOUT:-280}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SITE=${TMPDIR:-/tmp}/carl-site
if [ -d benchmarks/gpu/wheels ] && ! "$PY" -c "import rasterio" 2>/dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" benchmarks/gpu/wheels/*.whl \
        || echo "wheel install failed"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CARL_GEO_NO_TORCHGEO=1

if [ -n "${CARL_BENCH_SMALL:-}" ]; then
    CONFIGS=tiny; BANDS=13; BATCH=2; SIZE=512; MIN_S=1; MODES=fp32,bf16; PBATCH=4; PSTEP=tiny
else
    CONFIGS=published; BANDS=13,202; BATCH=32; SIZE=8192; MIN_S=3; MODES=fp32,bf16,bf16-compile
    PBATCH=32; PSTEP=published
fi

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch, timm, numpy; print('torch', torch.__version__, 'timm', timm.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
    "$PY" -c "import rasterio; print('rasterio', rasterio.__version__, 'GDAL', rasterio.__gdal_version__)"
    nproc
} 2>&1 | tee "$OUT/env.txt"

status=()
step() {  # name, command...
    local name=$1; shift
    echo "=== $name: $*" | tee -a "$OUT/steps.log"
    local t0=$SECONDS
    timeout "$STEP_TIMEOUT" "$@" 2>&1 | grep -v -E "Warning|warnings.warn" | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    status+=("$name rc=$rc $((SECONDS - t0))s")
}

if [[ $WHAT == all || $WHAT == model ]]; then
    step model "$PY" benchmarks/bench_model.py --device "$DEVICE" --configs "$CONFIGS" --bands "$BANDS" \
        --batch "$BATCH" --modes "$MODES" --min-seconds "$MIN_S" --out "$OUT"
fi
if [[ $WHAT == all || $WHAT == upstream ]] && [ -d benchmarks/gpu/upstream/carl ]; then
    step upstream "$PY" benchmarks/bench_vs_upstream.py --upstream benchmarks/gpu/upstream --device "$DEVICE" \
        --configs "$CONFIGS" --bands "$BANDS" --batch "$BATCH" --modes "${MODES}" --min-seconds "$MIN_S" --out "$OUT"
fi
if [[ $WHAT == all || $WHAT == predictor ]]; then
    for mode in bf16 bf16-compile; do
        [[ $DEVICE == cpu && $mode == bf16* ]] && prec=fp32 || prec=bf16
        extra=(); [[ $mode == *compile ]] && extra=(--compile)
        step "predictor_$mode" "$PY" benchmarks/bench_predictor.py --device "$DEVICE" --config "$PSTEP" \
            --precision "$prec" "${extra[@]}" --size "$SIZE" --batch-size "$PBATCH" --mem-sizes '' \
            --min-seconds "$MIN_S" --data "${TMPDIR:-/tmp}" --out "$OUT/predictor_$mode"
        [[ $DEVICE == cpu ]] && break
    done
fi

echo "=== summary" | tee -a "$OUT/steps.log"
printf '%s\n' "${status[@]}" | tee -a "$OUT/steps.log"
for f in "$OUT"/*.md "$OUT"/predictor_*/*.md; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
