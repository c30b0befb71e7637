"""`facerefine enhance` over a folder of mixed sizes: eager vs compiled, cold and warm cache.

Each run is its own `facerefine enhance` process (imports and head loading included), timed
from outside, as a user would see it:

- eager:           --compile off --backend torch
- compiled cold:   --compile on, an empty compile cache (FACEREFINE_COMPILE_CACHE)
- compiled warm:   --compile on again, the cache the cold run filled

    python benchmarks/enhance_compile.py --out benchmarks/results/enhance_compile_cpu.json
    python benchmarks/enhance_compile.py --device cuda --images 62 --sizes 14 --ngf 64 --n-blocks 9 \\
        --out benchmarks/results/enhance_compile_cuda.json      # paper-size CycleGAN on a GPU

The images are random noise (sizes are what matter) in sides from 48 to --max-side; the head is
a random ResNet/ESA generator (--kind cyclegan|esa) of the given width.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(folder: Path, images: int, sizes: int, max_side: int, seed: int = 0) -> list[tuple[int, int]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(48, max_side + 1)), int(rng.integers(48, max_side + 1))) for _ in range(sizes)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        w, h = shapes[i % sizes]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return shapes


def make_head(path: Path, kind: str, ngf: int, n_blocks: int) -> Path:
    import torch

    from facerefine.head_folder import write_head_folder
    from facerefine.models.cyclegan import ResnetGenerator

    torch.manual_seed(0)
    model = ResnetGenerator(ngf=ngf, n_blocks=n_blocks, esa="blocks" if kind == "esa" else None)
    return write_head_folder(path, model, name=kind)


def enhance_run(folder: Path, out: Path, head: Path, compile_: str, device: str, cache: Path,
                batch_size: int) -> dict:
    env = {**os.environ, "FACEREFINE_COMPILE_CACHE": str(cache), "FACEREFINE_TRACKING": "0"}
    cmd = [sys.executable, "-m", "facerefine.cli", "enhance", str(folder), str(out), "--head", str(head),
           "--compile", compile_, "--backend", "torch", "--device", device, "--quiet", "--overwrite",
           "--batch-size", str(batch_size)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    graphs = re.search(r"compiled (\d+) graph\(s\)[^\n]*", done.stderr)
    return {"wall_s": round(wall, 2), "compiled": graphs.group(0) if graphs else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=62)
    parser.add_argument("--sizes", type=int, default=14)
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--kind", choices=("cyclegan", "esa"), default="esa")
    parser.add_argument("--ngf", type=int, default=8, help="smoke profile: 8; paper: 64")
    parser.add_argument("--n-blocks", type=int, default=2, help="smoke profile: 2; paper: 9")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="facerefine-enhance-bench-") as tmp:
        root = Path(tmp)
        shapes = make_folder(root / "in", args.images, args.sizes, args.max_side)
        head = make_head(root / "head", args.kind, args.ngf, args.n_blocks)
        cache = root / "compile"
        runs = {}
        for name, choice in (("eager", "off"), ("compiled_cold", "on"), ("compiled_warm", "on")):
            runs[name] = enhance_run(root / "in", root / f"out-{name}", head, choice, args.device, cache,
                                     args.batch_size)
            print(name, runs[name], flush=True)
    result = {
        "what": "facerefine enhance over a folder of mixed sizes, one process per run (imports included)",
        "command": " ".join(["python", "benchmarks/enhance_compile.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "images": args.images, "sizes": sorted(shapes),
        "head": {"kind": args.kind, "ngf": args.ngf, "n_blocks": args.n_blocks}, "batch_size": args.batch_size,
        "runs": runs,
        "compiled_cold_vs_eager": round(runs["compiled_cold"]["wall_s"] / runs["eager"]["wall_s"], 2),
        "compiled_warm_vs_eager": round(runs["compiled_warm"]["wall_s"] / runs["eager"]["wall_s"], 2),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
