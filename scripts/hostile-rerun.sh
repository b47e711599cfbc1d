#!/usr/bin/env bash
# Reruns the commands of the hostile run's defects (issue H: D1–D21 and the faults found with
# them) on the built-in example, each in a fresh copy of it, and checks the answer: an exit of 0
# or 1 (2: a usage error clap refused), never 101 (a panic) or a signal, one JSON object as the
# last stdout line, and where a defect lost or corrupted data, that the data is intact now.
# D16 (a full disk) and D17 (a read-only workspace) need a small tmpfs and a non-root user: they
# run when `sudo -n mount` works and the script is not root, and say so otherwise. D20–D21 are
# SAELens's view of our files: scripts/saelens-check.py. Usage: scripts/hostile-rerun.sh
# (SAESCOPE=binary, default target/release/saescope, else target/debug/saescope).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${SAESCOPE:-target/release/saescope}"
[ -x "$bin" ] || bin=target/debug/saescope
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" example --out "$tmp/base" --json >/dev/null || { echo "the example could not be made"; exit 1; }
fails=0
n=0

fresh() { rm -rf "$tmp/ex"; cp -r "$tmp/base" "$tmp/ex"; }
W() { echo "$tmp/ex/workspace"; }
H() { echo "$tmp/ex/workspace/saes/topk-256-k8"; }

# case NAME WANT CMD…: WANT is ok (exit 0), err (exit 1 or 2) or any (0, 1 or 2).
case_() {
  local name=$1 want=$2
  shift 2
  n=$((n + 1))
  local out rc last
  out=$("$@" 2>/dev/null)
  rc=$?
  last=$(printf '%s\n' "$out" | tail -1)
  local verdict=ok
  if [ $rc -ge 100 ] || [ $rc -gt 2 ]; then
    verdict="FAIL (exit $rc)"
  elif ! printf '%s' "$last" | python3 -c 'import json,sys; v=json.loads(sys.stdin.read()); assert isinstance(v, dict)' 2>/dev/null; then
    verdict="FAIL (no JSON object last)"
  elif [ "$want" = ok ] && [ $rc -ne 0 ]; then
    verdict="FAIL (exit $rc, expected 0)"
  elif [ "$want" = err ] && [ $rc -eq 0 ]; then
    verdict="FAIL (exit 0, expected an error)"
  fi
  [ "$verdict" = ok ] || fails=$((fails + 1))
  printf '%-4s %-58s exit %-3s %s\n' "$verdict" "$name" "$rc" "$(printf '%s' "$last" | cut -c1-110)"
}

# check NAME CONDITION…: a plain assertion about files.
check() {
  local name=$1
  shift
  n=$((n + 1))
  if "$@"; then printf 'ok   %s\n' "$name"; else printf 'FAIL %s\n' "$name"; fails=$((fails + 1)); fi
}

image=$(ls "$tmp/base/images/discs/"* | head -1)

fresh
case_ "D1 label --set with non-UTF-8 text" err "$bin" label --workspace "$(W)" --set $'9=\xff\xfe' --json
case_ "D1 --workspace with a non-UTF-8 name" err "$bin" saes --workspace $'ws\xff' --json

fresh
python3 - "$(W)/dataset.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["images"][0]["class"] = 999; json.dump(d, open(p, "w"))
EOF
case_ "D2 class id 999 in dataset.json: index --rebuild" err "$bin" index --workspace "$(W)" --rebuild --json
case_ "D2 class id 999: label --from-classes" err "$bin" label --workspace "$(W)" --from-classes --json
case_ "D2 class id 999: export" err "$bin" export --workspace "$(W)" --out "$tmp/x2" --json

fresh
python3 - "$(W)/dataset.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["images"] = d["images"][:10]; json.dump(d, open(p, "w"))
EOF
case_ "D3 dataset.json cut to 10 images: index --rebuild" err "$bin" index --workspace "$(W)" --rebuild --json
case_ "D3 dataset.json cut: export" err "$bin" export --workspace "$(W)" --out "$tmp/x3" --json

fresh
case_ "D4 heatmap --features 0-4294967295" err "$bin" heatmap --workspace "$(W)" --image "$image" --features 0-4294967295 --json
case_ "D4 intervene --features 0-4294967295" err "$bin" intervene --workspace "$(W)" --image "$image" --features 0-4294967295 --json
case_ "D4 export --features 0-4294967295" err "$bin" export --workspace "$(W)" --out "$tmp/x4" --features 0-4294967295 --json
case_ "D4 intervene --tokens 0-4294967295" err "$bin" intervene --workspace "$(W)" --image "$image" --features 1 --tokens 0-4294967295 --json
case_ "D4 intervene --class discs --features 0-4294967295" err "$bin" intervene --workspace "$(W)" --class discs --features 0-4294967295 --json

"$bin" steer make-tiny --turbo --out "$tmp/pipe" --json >/dev/null
case_ "D5 steer generate --size 100000" err "$bin" steer generate --pipeline "$tmp/pipe" --prompt x --size 100000 --json

fresh
"$bin" label --workspace "$(W)" --set "5=exported by hand" --json >/dev/null
"$bin" export --workspace "$(W)" --labelled --no-png --out "$tmp/x6" --json >/dev/null
"$bin" label --workspace "$(W)" --set "5=changed by hand since" --json >/dev/null
case_ "D6 import-labels over a manual label" ok "$bin" import-labels --workspace "$(W)" --from "$tmp/x6" --json
check "D6 the workspace's manual label is kept" grep -q "changed by hand since" "$(H)/labels.json"

fresh
for cfg in '[1,2,3]' 'null' '{}' '"topk"'; do
  printf '%s' "$cfg" >"$(H)/cfg.json"
  case_ "D7 cfg.json = $cfg" err "$bin" nearest --workspace "$(W)" --feature 1 --json
done
fresh
python3 - "$(H)/cfg.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["metadata"]["hook_name"] = "blocks.5.hook_resid_post"; json.dump(d, open(p, "w"))
EOF
case_ "D7 an SAE of block 5 on a layer-2 workspace" err "$bin" nearest --workspace "$(W)" --feature 1 --json

fresh
mkdir -p "$tmp/outside" && cp "$(H)/cfg.json" "$(H)/sae_weights.safetensors" "$tmp/outside/"
case_ "D8 heatmap --sae DIR from elsewhere" ok "$bin" heatmap --workspace "$(W)" --sae "$tmp/outside" --image "$image" --features 1 --json
check "D8 nothing imported into saes/" test ! -e "$(W)/saes/outside"

fresh
SAESCOPE_CRASH_MID_WRITE=train.json "$bin" train --workspace "$(W)" --name d9 --d-sae 64 --k 4 --tokens 20000 --json >/dev/null 2>&1
case_ "D9 re-run after a crash writing train.json" ok "$bin" train --workspace "$(W)" --name d9 --d-sae 64 --k 4 --tokens 20000 --json

fresh
case_ "D10 train --arch relu --l1 nan" err "$bin" train --workspace "$(W)" --arch relu --l1 nan --d-sae 64 --json
case_ "D10 train --arch relu --l1 inf" err "$bin" train --workspace "$(W)" --arch relu --l1 inf --d-sae 64 --json
case_ "D10 steer generate --guidance nan" err "$bin" steer generate --pipeline "$tmp/pipe" --prompt x --size 64 --steps 2 --guidance nan --json
"$bin" export --workspace "$(W)" --labelled --no-png --out "$tmp/x10" --json >/dev/null
python3 - "$tmp/x10/features.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p))
next(f for f in d["features"] if f.get("label"))["label"]["confidence"] = 1e308
json.dump(d, open(p, "w"))
EOF
case_ "D10 import-labels with confidence 1e308" err "$bin" import-labels --workspace "$(W)" --from "$tmp/x10" --json

fresh
case_ "D11 train --batch 1 (diverges)" err "$bin" train --workspace "$(W)" --name d11a --batch 1 --d-sae 64 --k 4 --tokens 20000 --json
case_ "D11 train --lr 10 (diverges)" err "$bin" train --workspace "$(W)" --name d11b --lr 10 --d-sae 64 --k 4 --tokens 20000 --json
check "D11 no diverged SAE saved" test ! -e "$(W)/saes/d11a/cfg.json" -a ! -e "$(W)/saes/d11b/cfg.json"

case_ "D12 train --tokens 99999999999999999" err "$bin" train --workspace "$(W)" --name d12 --d-sae 64 --k 4 --tokens 99999999999999999 --json
case_ "D12 steer train-sae --tokens 99999999999999" err "$bin" steer train-sae --pipeline "$tmp/pipe" --out "$tmp/d12" --tokens 99999999999999 --json

case_ "D13 label --set 256=x on 256 features" err "$bin" label --workspace "$(W)" --set 256=x --json
case_ "D13 label --set 4000000000=x" err "$bin" label --workspace "$(W)" --set 4000000000=x --json

fresh
python3 - "$(W)/activations/shard-00000.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
s, e = h["activations"]["data_offsets"]; b[8 + n + s:8 + n + e] = b"\xff" * (e - s)
open(p, "wb").write(b)
EOF
d14=$("$bin" extract --model "$tmp/base/model" --layer 2 --images "$tmp/base/images" \
  --workspace "$(W)" --json 2>/dev/null | tail -1)
check "D14 the extract re-run names the damaged shard and extracts it again" \
  grep -q '"repaired":\["shard-00000' <<<"$d14"
case_ "D14 index --rebuild after the repair" ok "$bin" index --workspace "$(W)" --rebuild --json

fresh
mkdir -p "$tmp/x15/png" && : >"$tmp/x15/png/.feature-3.png.tmp-4194000-$(hostname)"
case_ "D15 export beside a killed export's temp file" ok "$bin" export --workspace "$(W)" --out "$tmp/x15" --json
check "D15 the stale temp file is gone" test ! -e "$tmp/x15/png/.feature-3.png.tmp-4194000-$(hostname)"

if [ "$(id -u)" -ne 0 ] && sudo -n true 2>/dev/null; then
  # A tmpfs that holds the workspace without its index and little more: the copy is whole
  # (checked), and the index build is what fills the disk.
  need=$(du -sk --exclude=index "$(W)" | cut -f1)
  mkdir -p "$tmp/full" && sudo -n mount -t tmpfs -o "size=$((need + 256))k" tmpfs "$tmp/full"
  tar -C "$(dirname "$(W)")" --exclude=index -cf - "$(basename "$(W)")" | tar -C "$tmp/full" -xf -
  mv "$tmp/full/$(basename "$(W)")" "$tmp/full/ws"
  check "D16 the workspace was copied whole" "$bin" saes --workspace "$tmp/full/ws" --json
  case_ "D16 index on a full disk" err "$bin" index --workspace "$tmp/full/ws" --json
  check "D16 no temp file left" bash -c "! find '$tmp/full/ws' -name '.*.tmp-*' | grep -q ."
  sudo -n umount "$tmp/full"
  fresh
  chmod -R a-w "$(W)"
  case_ "D17 export from a read-only workspace" ok "$bin" export --workspace "$(W)" --out "$tmp/x17" --json
  chmod -R u+w "$(W)"
else
  echo "skip D16, D17: they need a non-root user with passwordless sudo (a tmpfs, file permissions)"
fi

fresh
python3 - "$(W)/dataset.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["images"][0]["path"] = "../../../../etc/passwd"; json.dump(d, open(p, "w"))
EOF
case_ "D18 a dataset path outside the image root" err "$bin" export --workspace "$(W)" --out "$tmp/x18" --json

mkdir -p "$tmp/odd/a" && cp "$image" "$tmp/odd/a/one.png" && cp "$image" "$tmp/odd/a/"$'bad\xffname.png'
ln -s /nonexistent/x.png "$tmp/odd/a/broken.png"
case_ "D19 + dangling link: extract skips both, named" ok "$bin" extract --model "$tmp/base/model" --layer 1 --images "$tmp/odd" --workspace "$tmp/odd-ws" --json

fresh
"$bin" label --workspace "$(W)" --set "4==HYPERLINK(\"http://x\")" --json >/dev/null
"$bin" export --workspace "$(W)" --labelled --no-png --out "$tmp/csv" --json >/dev/null
check "label text starting with = is not a formula in features.csv" grep -q "'=HYPERLINK" "$tmp/csv/features.csv"

fresh
"$bin" train --workspace "$(W)" --name sig --d-sae 512 --k 8 --tokens 20000000 --json >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$(W)/saes/sig/metrics.jsonl" ] && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
n=$((n + 1))
if [ $rc -eq 1 ] && [ -n "$(ls "$(W)/saes/sig/checkpoint" 2>/dev/null)" ]; then
  echo "ok   SIGINT during train: exit 1 with a checkpoint"
else
  echo "FAIL SIGINT during train: exit $rc, checkpoint: $(ls "$(W)/saes/sig/checkpoint" 2>/dev/null | head -1)"
  fails=$((fails + 1))
fi

echo "hostile-rerun: $((n - fails)) of $n cases as they should be"
[ $fails -eq 0 ]
