#!/usr/bin/env bash
# The SAE lab's science run (issue F) at the scale one 2-core session allows, on the real
# DINOv2-small at layer 10 over cifar10 (docs/BENCHMARKS.md, "The SAE lab: the benchmark"):
#   data      links: train = the first 200 files of each cifar10/train class (2,000 images,
#             514 k tokens); fit = the first 50 of those per class (the probes are fit here);
#             select = train files 201–250 of each class (500 images no SAE sees), where the
#             selection rule reads its scores; test = the first 100 files of each cifar10/test
#             class (1,000 images), scored once, after the choice.
#   extract   three workspaces at layer 10: lab (train), select, test (the last two only feed
#             their stored activations to eval through --reuse).
#   sweep     16 SAEs in one pass: topk, batchtopk, matryoshka, jumprelu × d_sae 1,536 and 3,072
#             × k (L0 target for jumprelu) 16 and 48, one pass over the 514 k tokens each; then
#             topk and matryoshka at 3,072 / k 32 on three passes (1.54 M tokens).
#   bench     saescope eval over every SAE without the spliced probe, then with it for six
#             (the four architectures at 3,072 / k 16, and the two three-pass SAEs); probes
#             fit on `fit`, scored on `select`.
#   choose    the committed selection rule (below), reading only bench's select scores.
#   test      the chosen SAE scored on `test` (probes fit on `fit`).
# Usage: scripts/sae-lab.sh STAGE… (default: all), OUT=/tmp/lab by default.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SAESCOPE_SHARED:-../shared}"
out="${OUT:-/tmp/lab}"
bin="${SAESCOPE:-target/release/saescope}"
mkdir -p "$out"
classes=$(ls "$shared/data/cifar10/train")

# links SPLIT FIRST LAST DST: files FIRST..LAST (1-based, sorted by name) of each class.
links() {
  for c in $classes; do
    mkdir -p "$4/$c"
    ls "$shared/data/cifar10/$1/$c" | sort | sed -n "$2,$3p" | while read -r f; do
      ln -sf "$(realpath "$shared/data/cifar10/$1/$c/$f")" "$4/$c/$f"
    done
  done
}

stage_data() {
  links train 1 200 "$out/train"
  links train 1 50 "$out/fit"
  links train 201 250 "$out/select"
  links test 1 100 "$out/test"
}

stage_extract() {
  for split in train select test; do
    ws="$out/ws-$split"
    "$bin" extract --model "$shared/models/dinov2-small" --layer 10 --images "$out/$split" \
      --workspace "$ws" --batch 32 --json | tail -1 | cut -c1-300
  done
}

stage_sweep() {
  "$bin" sweep --workspace "$out/ws-train" --name lab --arch topk,batchtopk,matryoshka,jumprelu \
    --d-sae 1536,3072 --k 16,48 --tokens 514000 --json | tail -1 | cut -c1-400
  "$bin" sweep --workspace "$out/ws-train" --name lab3 --arch topk,matryoshka --d-sae 3072 \
    --k 32 --tokens 1542000 --json | tail -1 | cut -c1-400
}

stage_bench() {
  # Every SAE with its controls on every metric but the spliced probe (the slow one: the model's
  # last block once per SAE and control)...
  "$bin" eval --workspace "$out/ws-train" --fit "$out/fit" --images "$out/select" \
    --reuse "$out/ws-select" --no-spliced --json >"$out/bench.out"
  tail -1 "$out/bench.out" >"$out/bench-all.json"
  cp "$out/ws-train/benchmark.csv" "$out/bench-all.csv"
  # ...then the spliced probe for the four architectures at one width and sparsity (3,072, k 16)
  # and the two three-pass SAEs, with their controls.
  "$bin" eval --workspace "$out/ws-train" --fit "$out/fit" --images "$out/select" \
    --reuse "$out/ws-select" --sae lab-topk-3072-k16 --sae lab-batchtopk-3072-k16 \
    --sae lab-matryoshka-3072-k16 --sae lab-jumprelu-3072-k16 --sae lab3-topk-3072-k32 \
    --sae lab3-matryoshka-3072-k32 --json >"$out/bench-spliced.out"
  tail -1 "$out/bench-spliced.out" >"$out/bench.json"
  cp "$out/ws-train/benchmark.csv" "$out/bench-spliced.csv"
}

# The selection rule, fixed before any score was seen: among SAEs whose trained FVE separates
# from both controls, with L0 ≤ 64 and dead latents ≤ 5% on the select images, the smallest
# spliced-probe drop on the select images; drops within 0.5 points of the best count as tied,
# and a tie goes to the smaller L0, then the smaller d_sae. (The spliced probe ran for the six
# SAEs of bench's second part only, so the rule chooses among those; changed, for time, before
# any score was seen.)
stage_choose() {
  python3 - "$out/bench.json" >"$out/chosen.txt" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
ok = []
for s in r["saes"]:
    t = s["trained"]
    fve_sep = next(v["separates"] for v in s["verdicts"] if v["metric"] == "fve")
    rec = t["reconstruction"]
    if fve_sep and rec["l0"]["value"] <= 64 and rec["dead_fraction"] <= 0.05:
        ok.append((t["spliced_drop"], rec["l0"]["value"], s["d_sae"], s["name"]))
best = min(d for d, *_ in ok)
tied = sorted((l0, d_sae, name) for d, l0, d_sae, name in ok if d <= best + 0.005)
print(tied[0][2])
EOF
  cat "$out/chosen.txt"
}

stage_test() {
  chosen=$(cat "$out/chosen.txt")
  "$bin" eval --workspace "$out/ws-train" --sae "$chosen" --fit "$out/fit" \
    --images "$out/test" --reuse "$out/ws-test" --json >"$out/test.out"
  tail -1 "$out/test.out" >"$out/test.json"
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(data extract sweep bench choose test)
for s in "${stages[@]}"; do
  echo "== $s ($(date +%T))"
  t0=$SECONDS
  "stage_$s"
  echo "   $s: $((SECONDS - t0)) s wall"
done
