#!/usr/bin/env bash
# The GPU run of the issue "Models and SAEs on the local GPU": on a machine with an NVIDIA GPU and
# its driver, a CUDA toolkit (nvcc on PATH or under CUDA_HOME; else NVIDIA's wheels as
# scripts/check-cuda.sh installs them, which needs the network), a Rust toolchain, and PyTorch
# with CUDA for the peers (SAESCOPE_PYTHON, default python3). It
#   1. builds saescope with --features cuda (kernels for this GPU's compute capability);
#   2. runs the device-generic tests with their candle path on CUDA against the CPU references
#      (SAESCOPE_TEST_DEVICE=cuda): backbone hidden states, SAE encode/decode, chunked top-k,
#      one training step's loss and gradients and three Adam steps;
#   3. bench extract on DINOv2-small (forward to layer 10, batch 32) beside the PyTorch peer on
#      the same GPU (bench/peer_dinov2.py --device cuda);
#   4. bench sae-train at the default shapes (d_in 768, d_sae 16384, k 32, batch 4096) with the
#      sparse and the dense decoder, beside the PyTorch peer on the same GPU
#      (bench/peer_sae_train.py --device cuda);
#   5. bench steer with SD-Turbo-sized random weights at 512 px.
# Each figure is one JSON line in $OUT/ (default target/gpu-bench/); the log says which steps
# failed. Usage: scripts/gpu-bench.sh [cuda device, default cuda:0]
# On a GPU machine without a Rust toolchain, SAESCOPE_PREBUILT=DIR names a folder holding the
# CUDA build made elsewhere (scripts/check-cuda.sh's toolchain): `saescope`, `core-tests` (the
# core crate's unit-test binary) and `parity` (tests/parity.rs's binary); nvcc is then not
# needed, and the tests' binaries run directly with the same filters.
set -uo pipefail
cd "$(dirname "$0")/.."
dev="${1:-cuda:0}"
out="${OUT:-target/gpu-bench}"
shared="${SAESCOPE_SHARED:-../shared}"
export SAESCOPE_PYTHON="${SAESCOPE_PYTHON:-python3}"
mkdir -p "$out"
start=$(date +%s)
status=0
step() {
  local name=$1
  shift
  local t0=$(date +%s)
  echo "== $name: $*"
  if "$@" >"$out/$name.out" 2>"$out/$name.err"; then
    echo "   ok ($(($(date +%s) - t0)) s): $(tail -1 "$out/$name.out" | cut -c1-400)"
  else
    status=1
    echo "   FAILED ($(($(date +%s) - t0)) s): $(tail -3 "$out/$name.err")"
  fi
}

nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader ||
  { echo "error: nvidia-smi found no GPU; this script needs an NVIDIA GPU and its driver" >&2; exit 1; }
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
  CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
fi
export CUDA_COMPUTE_CAP
prebuilt="${SAESCOPE_PREBUILT:-}"
if [ -z "$prebuilt" ] && ! command -v nvcc >/dev/null; then
  if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    export PATH="$CUDA_HOME/bin:$PATH"
  elif [ -x target/cuda-venv/bin/python ]; then
    site=$(target/cuda-venv/bin/python -c 'import site; print(site.getsitepackages()[0])')
    export CUDA_HOME="$site/nvidia/cu13" PATH="$site/nvidia/cu13/bin:$PATH"
    export CPATH="$CUDA_HOME/include${CPATH:+:$CPATH}"
  else
    echo "error: no nvcc: put the CUDA toolkit on PATH, set CUDA_HOME, or run scripts/check-cuda.sh once" >&2
    exit 1
  fi
fi
export NVCC="${NVCC:-$(command -v nvcc || true)}"
[ -n "$NVCC" ] && "$NVCC" --version | tail -1
# cudarc is told the toolkit's version (13.0 → 13000) instead of probing a library path.
if [ -z "${CUDARC_CUDA_VERSION:-}" ]; then
  v=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  CUDARC_CUDA_VERSION=$(printf '%d%03d' $v 2>/dev/null || echo 13000)
fi
export CUDARC_CUDA_VERSION
export CARGO_TARGET_DIR=target/cuda
feat=(--release --no-default-features --features cuda)

if [ -n "$prebuilt" ]; then
  B="$prebuilt/saescope"
  step devices "$B" info --devices --json
  step device-tests env SAESCOPE_TEST_DEVICE="$dev" "$prebuilt/core-tests" device
  step device-backbone env SAESCOPE_TEST_DEVICE="$dev" "$prebuilt/parity" \
    cpu_fast_path_matches_the_candle_path
else
  step build cargo build "${feat[@]}" --bin saescope
  B=target/cuda/release/saescope
  step devices "$B" info --devices --json
  step device-tests env SAESCOPE_TEST_DEVICE="$dev" cargo test "${feat[@]}" --lib device
  step device-backbone env SAESCOPE_TEST_DEVICE="$dev" cargo test "${feat[@]}" --test parity \
    cpu_fast_path_matches_the_candle_path
fi
step bench-extract "$B" bench extract --device "$dev" --model "$shared/models/dinov2-small" \
  --images "$shared/data/cifar10/test" --layer 10 --batch 32 --limit 1024 --rounds 3 \
  --peer bench/peer_dinov2.py --peer-arg=--model --peer-arg="$shared/models/dinov2-small" \
  --peer-arg=--device --peer-arg=cuda --peer-arg=--layer \
  --peer-arg=10 --peer-arg=--n --peer-arg=1024 --peer-arg=--threads --peer-arg=16 --json
for decoder in sparse dense; do
  step "bench-sae-train-$decoder" "$B" bench sae-train --device "$dev" --decoder "$decoder" \
    --steps 50 --peer bench/peer_sae_train.py --peer-arg=--device --peer-arg=cuda \
    --peer-arg=--steps --peer-arg=50 --peer-arg=--threads --peer-arg=16 --json
done
step bench-steer "$B" bench steer --device "$dev" --tiny-size 512 --unet-size 512 --json
echo "gpu-bench: $([ $status -eq 0 ] && echo passed || echo 'FAILED (see above)') in $(($(date +%s) - start)) s; figures in $out/"
exit $status
