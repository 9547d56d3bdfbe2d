#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks (it has torch, timm, numpy, lightning, but no
# rasterio and no package registry) into benchmarks/gpu/wheels/ (git-ignored). Run here, once,
# before carrying that folder to the GPU machine (see benchmarks/gpu/README.md).
#
# Binary wheels for CPython 3.12, manylinux x86_64, one `pip download --no-deps` per package, pinned:
#   rasterio 1.4.3 (GDAL 3.9, manylinux2014 = glibc >= 2.17) and its runtime dependencies (from its
#   METADATA: affine, attrs, certifi, click, cligj, click-plugins, numpy, pyparsing; numpy is there),
#   tqdm (carl_geo.inference.cli's progress bar).
# Why rasterio 1.4.3 and not the 1.5.2 of .venv: 1.5 needs numpy >= 2 (the GPU machine's numpy is
# not known here) and glibc >= 2.28, and its wheel is 37 MiB; 1.4.3 works with numpy 1.24 to 2.x
# and is 21 MiB. pyproject asks rasterio >= 1.3.9. RASTERIO=1.5.2 bash ... picks another release.
# The pure-Python pins are the versions in .venv, except click (8.1.8: rasterio 1.4.3's `rio` CLI
# predates click 8.2) and cligj / click-plugins (not in .venv: rasterio 1.5 dropped them).
#
# CARL_UPSTREAM_REPO=/path/to/IMSY-DKFZ/CARL also copies upstream's `carl` package to
# benchmarks/gpu/upstream/ (git-ignored) for bench_vs_upstream.py.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../../.venv/bin/python}
RASTERIO=${RASTERIO:-1.4.3}
rm -rf wheels && mkdir -p wheels
common=(--quiet --only-binary=:all: --no-deps --dest wheels --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
        --platform any)
for pkg in "rasterio==$RASTERIO" affine==3.0.1 attrs==26.1.0 certifi==2026.10.19.post1 click==8.1.8 cligj==0.7.2 \
           click-plugins==1.1.1.2 pyparsing==3.3.3 tqdm==4.70.1; do
    "$PY" -m pip download "${common[@]}" "$pkg" 2>&1 | grep -v "^WARNING: Location" || true
    compgen -G "wheels/$(echo "${pkg%%==*}" | tr - _)-*.whl" >/dev/null || { echo "missing wheel: $pkg" >&2; exit 1; }
done
ls -l wheels
kib=$(du -sk wheels | cut -f1)
echo "total: $((kib / 1024)) MiB in $(ls wheels | wc -l) wheels"
((kib <= 40 * 1024)) || { echo "wheels exceed 40 MiB" >&2; exit 1; }

# upstream CARL's `carl` package for bench_vs_upstream.py (git-ignored; from a local checkout)
if [ -n "${CARL_UPSTREAM_REPO:-}" ]; then
    rm -rf upstream && mkdir -p upstream
    git -C "$CARL_UPSTREAM_REPO" archive HEAD carl | tar x -C upstream
    du -sh upstream
fi
