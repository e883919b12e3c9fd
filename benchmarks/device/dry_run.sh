#!/usr/bin/env bash
# benchmarks/device/run.sh here, on the CPU box, after prepare.sh: the same steps on the carried wheels, except that
# pydantic-core (the one binary wheel, cp312 for the GPU machine) is swapped for this Python's. Without a GPU the
# CUDA tests skip and features_cuda prints `skipped`. Output in ${OUT:-/tmp/gpuout}.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
python=${PYTHON:-python3}
dry=$(mktemp -d /tmp/gpucarry-dry.XXXXXX)
trap 'rm -rf "$dry"' EXIT
cp -r .gpucarry/. "$dry"
version=$("$python" -c "import importlib.metadata as m; print(m.version('pydantic-core'))")
rm "$dry"/whl/pydantic_core-*.whl
"$python" -m pip download -q --no-deps --only-binary=:all: -d "$dry/whl" "pydantic-core==$version"
OUT=${OUT:-/tmp/gpuout} LLMVEM_CARRY=$dry LLMVEM_DEVICE_SITE=$dry/site bash benchmarks/device/run.sh
