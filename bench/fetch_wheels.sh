#!/usr/bin/env bash
# Prepare what `bench/gpu.py --suite` needs on a GPU machine that has no package index (bench/README.md):
#   .whl/      wheels of the Python packages that machine lacks: diffusers (the reference UNet and the VAE) and
#              its one missing dependency, sageattention (optional attention backend), torchsde + trampoline
#              (ComfyUI's only imports that image lacks)
#   .comfyui/  with --comfyui PATH: a copy of a ComfyUI checkout's code (no models, no .git) for the ComfyUI-path
#              ratio; never committed
# Both folders are git-ignored (.gitignore), so they travel only when a device run names them in `carry`.
# Run from anywhere inside the repository.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

PY=${PYTHON:-python3}
# the GPU machine's python3 is CPython 3.12 on x86-64 (KINDS.md); all wheels below are pure Python anyway
$PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    diffusers==0.42.1 importlib_metadata==8.7.0 sageattention==1.0.6 torchsde==0.2.6 trampoline==0.1.2

if [[ "${1:-}" == "--comfyui" ]]; then
    src="${2:?usage: bench/fetch_wheels.sh [--comfyui PATH_TO_COMFYUI]}"
    rm -rf .comfyui && mkdir -p .comfyui
    tar -C "$src" --exclude=.git --exclude=.venv --exclude=models --exclude=output --exclude=input \
        --exclude=user --exclude=custom_nodes --exclude=__pycache__ --exclude=tests --exclude=tests-unit -cf - . \
        | tar -C .comfyui -xf -
    mkdir -p .comfyui/custom_nodes .comfyui/models
fi
du -sh .whl ${1:+.comfyui} 2>/dev/null || true
