#!/usr/bin/env python3
"""PyTorch peer for a Hugging Face DINOv2 folder, on the CPU or a GPU: forward-only images/s
(fp32, eager attention, batch 32, images preprocessed beforehand).

A copy of ../shared/bench/peer_dinov2.py with a --device option (issue: models and SAEs on the
local GPU); on CUDA the inputs are on the device before the clock starts and it stops after a
synchronise. Usage: peer_dinov2.py [IMAGE_DIR] [--model DIR] [--n 256] [--batch 32]
[--layer L] [--threads 2] [--device cpu|cuda|cuda:N]
Needs: pip install torch transformers pillow numpy"""
import argparse, os, time, torch
from PIL import Image
from transformers import Dinov2Model, BitImageProcessor
here = os.path.dirname(os.path.abspath(__file__))
shared = os.path.join(here, "..", "..", "shared")
ap = argparse.ArgumentParser()
ap.add_argument("images", nargs="?", default=os.path.join(shared, "data", "cifar10", "test"))
ap.add_argument("--model", default=os.path.join(shared, "models", "dinov2-small"))
ap.add_argument("--n", type=int, default=256)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--layer", type=int, default=None)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--device", default="cpu")
a = ap.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)
m = Dinov2Model.from_pretrained(a.model, attn_implementation="eager").eval().to(dev)
if a.layer is not None:
    m.encoder.layer = m.encoder.layer[: a.layer + 1]
proc = BitImageProcessor.from_pretrained(a.model)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs)[: a.n]
px = proc(images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt")["pixel_values"].to(dev)
with torch.inference_mode():
    m(pixel_values=px[: a.batch])  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(px), a.batch):
        m(pixel_values=px[i : i + a.batch])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
print(f"dinov2 {len(px)} images on {a.device}, forward{'' if a.layer is None else f' to layer {a.layer}'}: {len(px) / dt:.1f} img/s")
