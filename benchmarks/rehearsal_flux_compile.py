"""The rehearsal profile's schnell batch (full-width random FLUX, bfloat16, 512², batch 2) on the
CPU, eager then with ``compile`` variants: load, first and second batch seconds, and how far the
compiled images are from eager (largest 8-bit level difference, PSNR).

    python benchmarks/rehearsal_flux_compile.py none blocks     # about 30 min on 2 cores

Writes the JSON as its last line. README, "Speed on a GPU", quotes the image difference.
"""
import json
import sys
import time

import numpy as np
import yaml

import facerefine  # noqa: F401  numeric pins, before torch loads
from facerefine.config import parse_params
from facerefine.generation.flux import SchnellTextToImage
from facerefine.weights.flux import load_flux_for

raw = yaml.safe_load(open("params.yaml"))
raw["profile"] = "rehearsal"
params = parse_params(raw)
scale = params.scale
rows = [{"prompt": f"A professional portrait of Person {i}", "seed": i} for i in range(scale.batch_size)]
out = {}
images = {}
for how in sys.argv[1:]:
    t = time.perf_counter()
    pipe = load_flux_for(scale, "schnell", device="cpu", dtype=scale.dtype, compile=how)
    load = time.perf_counter() - t
    gen = SchnellTextToImage(pipe, params.schnell_run, scale.image_size)
    t = time.perf_counter(); first = gen(rows, 0); t1 = time.perf_counter() - t
    t = time.perf_counter(); gen(rows, 0); t2 = time.perf_counter() - t
    images[how] = [np.asarray(im).astype(int) for im in first]
    out[how] = {"load_s": round(load, 1), "first_batch_s": round(t1, 1), "second_batch_s": round(t2, 1)}
    print(how, out[how], flush=True)
    del pipe, gen
if len(images) == 2:
    a, b = images.values()
    out["max_level_diff"] = int(max(np.abs(x - y).max() for x, y in zip(a, b)))
    mse = np.mean([np.mean((x - y) ** 2) for x, y in zip(a, b)])
    out["psnr_db"] = None if mse == 0 else round(float(10 * np.log10(255 ** 2 / mse)), 1)
print(json.dumps(out))
