#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks (it has torch, timm, numpy, lightning, but no
# rasterio and no package registry) into benchmarks/gpu/wheels/ (git-ignored). Run here, once,
# before carrying that folder to the GPU machine (see benchmarks/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../../.venv/bin/python}
mkdir -p wheels
common=(--only-binary=:all: --no-deps --dest wheels --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform any)
# rasterio 1.4.x: works with numpy 1.24+ and 2.x (1.5 needs numpy >= 2)
"$PY" -m pip download "${common[@]}" rasterio==1.4.3 affine==3.0.1 attrs certifi "click>=8,<8.2" \
    cligj click-plugins pyparsing tqdm
du -sh wheels
ls wheels
# upstream CARL's `carl` package for bench_vs_upstream.py (git-ignored; from a local checkout)
if [ -n "${CARL_UPSTREAM_REPO:-}" ]; then
    rm -rf upstream && mkdir -p upstream
    git -C "$CARL_UPSTREAM_REPO" archive HEAD carl | tar x -C upstream
    du -sh upstream
fi
