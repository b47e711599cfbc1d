#!/usr/bin/env bash
# Compiles saescope's CUDA build on a machine without a GPU (issue: CUDA actually builds).
# The toolchain is NVIDIA's official CUDA 13 wheels from PyPI, installed into a local venv
# (target/cuda-venv): nvcc, crt, runtime headers, cccl and nvvm under site-packages/nvidia/cu13.
# candle builds its kernels with nvcc through cudaforge, which reads NVCC/PATH, CUDA_HOME and
# CUDA_COMPUTE_CAP (nothing can query a GPU here); cudarc reads CUDARC_CUDA_VERSION.
# Without libcuda (no driver) the binary may not link, so the bar is `cargo check` plus
# `cargo build --lib`; a link of the binary is tried last and reported either way.
# Not part of .ci/run: it downloads the toolchain and compiles every kernel (see the note for
# its time). Usage: scripts/check-cuda.sh [compute capability, default 90 = H100/H200]
set -uo pipefail
cd "$(dirname "$0")/.."
cap="${1:-90}"
venv=target/cuda-venv
start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || exit 1
fi
"$venv/bin/pip" install -q --upgrade pip >/dev/null
"$venv/bin/pip" install -q "nvidia-cuda-nvcc==13.*" "nvidia-cuda-crt==13.*" \
  "nvidia-cuda-runtime==13.*" "nvidia-cuda-cccl==13.*" "nvidia-nvvm==13.*" || exit 1
site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
cuda_home="$site/nvidia/cu13"
if [ ! -x "$cuda_home/bin/nvcc" ]; then
  echo "error: no nvcc under $cuda_home (the wheels' layout changed?)" >&2
  ls "$site/nvidia" >&2
  exit 1
fi
export CUDA_HOME="$cuda_home" CUDA_PATH="$cuda_home" NVCC="$cuda_home/bin/nvcc"
export PATH="$cuda_home/bin:$PATH" CUDA_COMPUTE_CAP="$cap"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
# nvcc finds its own include/ and nvvm/ beside bin/; the cccl headers live in include/ too.
export CPATH="$cuda_home/include${CPATH:+:$CPATH}"
"$NVCC" --version | tail -2
status=0
step() {
  local t0=$(date +%s)
  echo "== $*"
  if "$@"; then echo "   ok ($(( $(date +%s) - t0 )) s)"; else status=1; echo "   FAILED ($(( $(date +%s) - t0 )) s)"; fi
}
# Its own target folder: the CUDA build never replaces the CPU build's binaries.
export CARGO_TARGET_DIR=target/cuda
step cargo check --locked --no-default-features --features cuda --lib --bins
step cargo build --locked --release --no-default-features --features cuda --lib
# The binary needs libcuda.so from a driver to link; say plainly when it is missing.
if cargo build --locked --release --no-default-features --features cuda --bin saescope \
  2>target/cuda-link.log; then
  echo "== binary linked: target/cuda/release/saescope"
else
  echo "== binary did not link (expected without an NVIDIA driver): $(grep -m1 -E 'cannot find|undefined' target/cuda-link.log || tail -1 target/cuda-link.log)"
fi
echo "check-cuda: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
