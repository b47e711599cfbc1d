#!/usr/bin/env bash
# Packs what scripts/gpu-bench.sh needs into .dev/ (git-ignored through .git/info/exclude) for a
# GPU machine that has CUDA and PyTorch but no Rust toolchain and no network, and whose transfer
# limit (64 MiB) is smaller than DINOv2-small's weights:
#   .dev/bin/       the CUDA build made here: saescope, core-tests, parity (SAESCOPE_PREBUILT)
#   .dev/shared/    the parity test's models (vit-cifar10, tiny-random) and the first 2,000
#                   cifar10/test images (bench extract reads 1,024)
#   .dev/dinov2/    DINOv2-small's config and preprocessor; .dev/gpu-run.sh makes random weights
#                   of that shape there (same FLOPs as the real model, for speed only)
# Build first (a machine without a GPU has no libcuda to link against; the link is told to leave
# the driver's symbols unresolved, and the run preloads the driver's libcuda.so.1):
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=<cc wrapper adding -L<stubs>
#   -Wl,--unresolved-symbols=ignore-all> cargo build --release --no-default-features
#   --features cuda --bin saescope (and cargo test … --lib --no-run, --test parity --no-run)
# with scripts/check-cuda.sh's toolchain. Usage: scripts/gpu-bundle.sh TARGET_DIR [SOURCE_DIR]
# (SOURCE_DIR: the checkout the build was made from, default this one; the test binaries read
# project files through the path they were built at, so the run links it to the checkout.)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/gpu-bundle.sh TARGET_DIR [SOURCE_DIR]}"
source_dir="$(realpath "${2:-.}")"
shared="${SAESCOPE_SHARED:-../shared}"
rm -rf .dev
mkdir -p .dev/bin .dev/shared/models .dev/shared/data/cifar10/test .dev/dinov2
cp "$target/release/saescope" .dev/bin/saescope
newest() { ls -t "$target"/release/deps/$1-* 2>/dev/null | grep -v '\.d$' | head -1; }
cp "$(newest saescope_core)" .dev/bin/core-tests
cp "$(newest parity)" .dev/bin/parity
strip .dev/bin/* 2>/dev/null || true
# The three binaries are about 190 MB stripped and 14 MB as one xz archive.
tar cf - -C .dev bin | xz -T0 -9 >.dev/bin.tar.xz && rm -r .dev/bin
cp -r "$shared/models/vit-cifar10" "$shared/models/tiny-random" .dev/shared/models/
# bench extract reads the first 1,024 images by path: airplane's 1,000 and 24 automobiles.
cp -r "$shared/data/cifar10/test/airplane" .dev/shared/data/cifar10/test/
mkdir -p .dev/shared/data/cifar10/test/automobile
ls "$shared/data/cifar10/test/automobile" | sort | head -24 | while read -r f; do
  cp "$shared/data/cifar10/test/automobile/$f" .dev/shared/data/cifar10/test/automobile/
done
cp "$shared/models/dinov2-small/config.json" "$shared/models/dinov2-small/preprocessor_config.json" \
  .dev/dinov2/
echo "$source_dir" >.dev/build-root
cat >.dev/gpu-run.sh <<'EOF'
#!/usr/bin/env bash
# On the GPU machine, from the repository root: random DINOv2-small weights, the CUDA libraries
# of the machine's PyTorch on the loader's path, the driver preloaded, then gpu-bench.sh.
set -x
python3 -c "import tarfile; tarfile.open('.dev/bin.tar.xz').extractall('.dev')"
root=$(cat .dev/build-root)
[ -e "$root" ] || { mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"; }
python3 - <<'PY'
import shutil, torch
from transformers import Dinov2Config, Dinov2Model
torch.manual_seed(0)
m = Dinov2Model(Dinov2Config.from_pretrained(".dev/dinov2")).eval()
m.save_pretrained(".dev/shared/models/dinov2-small", safe_serialization=True)
shutil.copy(".dev/dinov2/preprocessor_config.json", ".dev/shared/models/dinov2-small/")
PY
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
export LD_LIBRARY_PATH=$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')
export LD_PRELOAD=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
[ -n "$LD_PRELOAD" ] || export LD_PRELOAD=$(ls /usr/local/nvidia/lib64/libcuda.so.1 \
  /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)
chmod +x .dev/bin/*
SAESCOPE_SHARED="$PWD/.dev/shared" SAESCOPE_PREBUILT="$PWD/.dev/bin" scripts/gpu-bench.sh "${1:-cuda:0}"
EOF
chmod +x .dev/gpu-run.sh
du -sh .dev .dev/*
