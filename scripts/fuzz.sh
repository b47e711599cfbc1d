#!/usr/bin/env bash
# Coverage-guided fuzzing of every loader of untrusted input (issue H): cargo-fuzz's libFuzzer,
# on the stable toolchain with `--sanitizer none`, one target per loader (fuzz/fuzz_targets/):
# activation shards, SAE folders (cfg.json + weights, and lone weight files), PyTorch .pth,
# workspace.json + dataset.json, labels.json + imported label sets, taxonomies and class-id
# files, images. Seeds come from ../shared, the test fixtures and a fresh built-in example.
# Crashes land in fuzz/artifacts/<target>/; each found becomes a regression test.
# Not part of the test command. Usage: scripts/fuzz.sh [seconds per target, default 60]
# (needs `cargo install cargo-fuzz`).
set -uo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shared="${SAESCOPE_SHARED:-../shared}"
bin="${SAESCOPE:-target/debug/saescope}"
corpus=fuzz/corpus
mkdir -p "$corpus"
seed() { mkdir -p "$corpus/$1"; cat >"$corpus/$1/$2"; }
joined() { cat "$1"; printf '\0'; cat "$2"; }

ex=$(mktemp -d)
trap 'rm -rf "$ex"' EXIT
"$bin" example --out "$ex/ex" --json >/dev/null
"$bin" export --workspace "$ex/ex/workspace" --labelled --no-png --out "$ex/export" --json >/dev/null
ws="$ex/ex/workspace"
home=$(ls -d "$ws"/saes/*/ | head -1)
seed shard example <"$ws/activations/shard-00000.safetensors"
joined tests/fixtures/sae/saelens_jumprelu/cfg.json \
  tests/fixtures/sae/saelens_jumprelu/sae_weights.safetensors | seed sae_folder saelens
joined "$home/cfg.json" "$home/sae_weights.safetensors" | seed sae_folder example
seed sae_folder sparsify <tests/fixtures/sae/sparsify/sae.safetensors
seed pth vit_cifar10 <"$shared/models/vit-cifar10/vit_cifar10.pth"
seed pth saev <tests/fixtures/sae/saev_sae.pt
joined "$ws/workspace.json" "$ws/dataset.json" | seed workspace_json example
joined "$home/labels.json" "$ex/export/features.json" | seed labels example
seed taxonomy wordnet <"$shared/data/wordnet/cifar10-graph-wordnet.json"
seed taxonomy hierarchy <"$shared/data/wordnet/class_hierarchy.txt"
seed taxonomy wnids <"$shared/data/wordnet/cifar10-wnids.txt"
for f in $(ls "$shared"/data/cifar10/test/bird/* | head -4); do seed image "$(basename "$f")" <"$f"; done

cargo fuzz build --sanitizer none -O || exit 1
status=0
total=0
for t in shard sae_folder pth workspace_json labels taxonomy image; do
  log="fuzz/artifacts/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  cargo fuzz run --sanitizer none -O "$t" -- -max_total_time="$secs" -max_len=65536 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1)
  crashes=$(ls "fuzz/artifacts/$t" | grep -c . || true)
  total=$((total + ${runs:-0}))
  echo "$t: ${runs:-?} executions, ${cov:-cov: ?} edges, ${crashes} crash file(s), exit $rc"
  [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || status=1
done
echo "fuzz: $total executions in all"
exit $status
