#!/usr/bin/env bash
# Runs saescope's whole test suite on a fresh Debian machine: installs the system packages the
# tests need when they are missing (Mesa's software Vulkan driver for the headless UI tests, Slurm
# for the cluster test, which it starts as a single-node cluster),
# then checks formatting (`cargo fmt --check`) and lints (`cargo clippy -- -D warnings`) and runs
# `cargo test` over the workspace (saescope and its UI tests in crates/ui-tests). Needs ../shared
# beside the project (or SAESCOPE_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."

# cmake, nasm and a C compiler build the vendored libjpeg-turbo (Pillow-exact JPEG decoding).
packages=(mesa-vulkan-drivers libvulkan1 libegl1 libgl1-mesa-dri cmake nasm gcc g++ make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing build and test dependencies: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

shared="${SAESCOPE_SHARED:-../shared}"
if [ ! -d "$shared/models" ]; then
  echo "error: test data not found at $shared; put shared/ beside the project or set SAESCOPE_SHARED" >&2
  exit 1
fi

# Lints and formatting are part of the suite (rustup adds the components if they are missing).
# A toolchain where they cannot be had says so loudly and goes on to the tests.
if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" || true
  done
fi
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "WARNING: rustfmt is not available for this toolchain; formatting NOT checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --workspace --all-targets -- -D warnings
else
  echo "WARNING: clippy is not available for this toolchain; lints NOT checked" >&2
fi
# The headless build (library + CLI, no windowing dependencies) keeps compiling.
cargo check --locked --no-default-features --all-targets

# A real single-node Slurm cluster for tests/slurm.rs (installs slurmctld, slurmd, munge and
# slurm-client when missing; needs root or sudo). With SAESCOPE_SLURM_TESTS=1 that test fails
# when no cluster answers instead of saying it did not run.
scripts/slurm-cluster.sh start
export SAESCOPE_SLURM_TESTS=1

# The workspace: saescope and crates/ui-tests (the app driven headless).
cargo test --locked --workspace "$@"
