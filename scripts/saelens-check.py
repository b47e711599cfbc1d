#!/usr/bin/env python3
"""Loads saescope-trained SAEs with the real SAELens and compares its `encode` with saescope's
on the same stored rows (issues D20/D21 and F). Not part of the test command; it needs SAELens:

    python3 -m venv /tmp/venv-saelens && /tmp/venv-saelens/bin/pip install sae-lens
    /tmp/venv-saelens/bin/python scripts/saelens-check.py WORKSPACE [SAE_NAME ...]

For each SAE (default: every one under WORKSPACE/saes/) it runs
`saescope encode --workspace WORKSPACE --sae NAME --rows 512 --out F`, then
`SAE.load_from_disk(WORKSPACE/saes/NAME)` and `encode(x)`, and prints the largest absolute
difference of the codes and how many rows' active sets differ. Exit 1 if any SAE fails to load
or differs by more than 1e-4. Set SAESCOPE to the binary (default target/debug/saescope).
"""
import json, os, pathlib, subprocess, sys, tempfile

import torch
from safetensors.torch import load_file
from sae_lens import SAE
import sae_lens

ws = pathlib.Path(sys.argv[1])
names = sys.argv[2:] or sorted(p.name for p in (ws / "saes").iterdir() if (p / "cfg.json").is_file())
binary = os.environ.get("SAESCOPE", str(pathlib.Path(__file__).resolve().parent.parent / "target/debug/saescope"))
print(f"SAELens {sae_lens.__version__}, torch {torch.__version__}")
failed = False
for name in names:
    home = ws / "saes" / name
    cfg = json.loads((home / "cfg.json").read_text())
    trained = cfg.get("metadata", {}).get("saescope_architecture") or cfg["architecture"]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "codes.safetensors"
        subprocess.run([binary, "encode", "--workspace", str(ws), "--sae", name, "--rows", "512",
                        "--out", str(out), "--json"], check=True, capture_output=True)
        t = load_file(str(out))
    try:
        sae = SAE.load_from_disk(str(home), device="cpu")
        with torch.no_grad():
            got = sae.encode(t["x"])
    except Exception as e:  # report every SAE, then fail
        print(f"{name:28} trained {trained:10} saved {cfg['architecture']:9} SAELens FAILED: {e!r}")
        failed = True
        continue
    want = t["codes"]
    diff = (got - want).abs().max().item()
    sets = ((got != 0) != (want != 0)).any(dim=1).sum().item()
    l0 = (want != 0).float().sum(1).mean().item()
    ok = diff <= 1e-4
    failed |= not ok
    print(f"{name:28} trained {trained:10} saved {cfg['architecture']:9} {type(sae).__name__:16} "
          f"max |SAELens - saescope| {diff:.2e}  rows with other active sets {sets}/512  "
          f"L0 {l0:.1f}  {'ok' if ok else 'DIFFERS'}")
sys.exit(1 if failed else 0)
