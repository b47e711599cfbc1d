#!/usr/bin/env python3
"""Writes the SHA-256 of Pillow's decoded RGB pixels for every image folder class under the given
roots: the reference for saescope's Pillow-exact decoding test (tests/decode.rs).
For each class folder: sha256 over the files in sorted path order, each file's pixels as
`Image.open(f).convert("RGB")` bytes (row-major RGB8), which is how transformers, timm,
open_clip and saev read images.
Usage: pillow_rgb_digests.py SHARED_DIR OUT_JSON   (needs: pip install pillow)"""
import hashlib, json, os, sys
from PIL import Image, features

shared, out = sys.argv[1], sys.argv[2]
roots = ["data/cifar10/train", "data/cifar10/test", "data/mnist/test"]
result = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"), "classes": {}}
for root in roots:
    base = os.path.join(shared, root)
    for cls in sorted(os.listdir(base)):
        files = sorted(os.listdir(os.path.join(base, cls)))
        h = hashlib.sha256()
        for f in files:
            with Image.open(os.path.join(base, cls, f)) as im:
                h.update(im.convert("RGB").tobytes())
        result["classes"][f"{root}/{cls}"] = {"images": len(files), "sha256": h.hexdigest()}
json.dump(result, open(out, "w"), indent=1, sort_keys=True)
print(f"{len(result['classes'])} classes, Pillow {result['pillow']}, libjpeg-turbo {result['libjpeg_turbo']}")
