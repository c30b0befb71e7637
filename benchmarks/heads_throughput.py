"""Throughput of the heads (images/s) next to a plain reference ResNet generator.

    python benchmarks/heads_throughput.py                       # CPU, 256² and 512², batch 1
    python benchmarks/heads_throughput.py --device cuda --dtype bfloat16 --batch-sizes 1 8 --repeats 10
    python benchmarks/heads_throughput.py --unet paper ...     # paper-size U-Net, random weights

The heads run exactly as ``facerefine enhance`` runs them (``Enhancer.forward``:
inference mode, channels_last and autocast on GPU). The reference is CycleGAN's
ResNet generator (ngf 64, 9 blocks) written straightforwardly below as one
``nn.Sequential``, run on the same input with the same device, dtype and memory
format, so the ratio head/reference measures the head's code and architecture.

Measurements are interleaved (each repeat times every model once, in a rotating
order) so that load from other processes hits all models alike; warm-up calls
are not timed; the figure is the median over repeats, and the fastest repeat is
reported too (on a shared CPU it is the least disturbed one). Ratios are what to
read on a CPU or a shared machine; absolute numbers mean something only on a
quiet GPU.
Results go to ``benchmarks/results/heads_throughput_<device>.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from facerefine.config import load_params
from facerefine.enhance import Enhancer
from facerefine.heads import HeadFolder, read_head_folder
from facerefine.io import write_json
from facerefine.models.factory import build, head_architectures

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "reference"


# ----------------------------------------------------------- the reference


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def reference_generator(ngf: int = 64, n_blocks: int = 9) -> nn.Sequential:
    """CycleGAN's resnet_9blocks generator (instance norm, no dropout), nothing else."""
    def block(c_in: int, c_out: int, **conv) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, **conv), nn.InstanceNorm2d(c_out), nn.ReLU(inplace=True)]

    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(c_out), nn.ReLU(inplace=True)]

    w = ngf * 4
    resblock = lambda: Residual(nn.Sequential(  # noqa: E731
        nn.ReflectionPad2d(1), *block(w, w, kernel_size=3),
        nn.ReflectionPad2d(1), nn.Conv2d(w, w, 3), nn.InstanceNorm2d(w)))
    return nn.Sequential(
        nn.ReflectionPad2d(3), *block(3, ngf, kernel_size=7),
        *block(ngf, ngf * 2, kernel_size=3, stride=2, padding=1),
        *block(ngf * 2, w, kernel_size=3, stride=2, padding=1),
        *[resblock() for _ in range(n_blocks)],
        *up(w, ngf * 2), *up(ngf * 2, ngf),
        nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())


# --------------------------------------------------------------- the models


def paper_architectures() -> dict[str, tuple[str, dict]]:
    """``name -> (kind, arch)`` of the heads at the paper profile's sizes (params.yaml), with
    its ESA placement: the head factory's params adapter, as the trainers and the benchmark use."""
    try:
        return head_architectures(load_params(), "paper")
    except Exception as err:  # noqa: BLE001 - one clear message instead of a traceback
        raise SystemExit(f"params.yaml (the paper profile's head sizes) is not usable: {err}; "
                         "run from the repository root") from None


@dataclass(frozen=True)
class Model:
    forward: Callable[[torch.Tensor], torch.Tensor]
    params: int
    size_multiple: int
    min_size: int


def build_models(args: argparse.Namespace) -> dict[str, Model]:
    """The reference and every head (run through an Enhancer), by name."""
    torch.manual_seed(0)  # random weights: timing does not depend on them
    archs = paper_architectures()
    device = torch.device(args.device)

    def random_head(name: str) -> HeadFolder:
        kind, arch = archs[name]
        return HeadFolder(build(kind, **arch).eval(), {"name": name, "architecture": arch}, Path(name))

    gen = archs["esa"][1]
    heads = {"cyclegan": random_head("cyclegan"), f"esa-cyclegan ({gen['esa']})": random_head("esa")}
    if args.unet == "paper":  # the paper profile's size, random weights: timing does not depend on them
        unet = random_head("unet")
    elif Path(args.unet).is_dir():
        unet = read_head_folder(args.unet)
    else:
        unet = None
        print(f"note: no U-Net head at {args.unet} (dvc repro train_unet); skipping it")
    if unet is not None:
        arch = unet.config["architecture"]
        heads[f"unet (base {arch['base_channels']}, depth {arch['depth']})"] = unet

    reference = reference_generator(gen["ngf"], gen["n_blocks"]).to(device).eval()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    reference = reference.to(memory_format=memory_format)
    autocast = args.dtype != "float32" and device.type == "cuda"

    @torch.inference_mode()
    def run_reference(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=getattr(torch, args.dtype), enabled=autocast):
            return reference(x.contiguous(memory_format=memory_format)).float()

    models = {REFERENCE: Model(run_reference, sum(p.numel() for p in reference.parameters()), 4, 8)}
    for name, head in heads.items():
        enhancer = Enhancer(head, device=device, dtype=args.dtype, compile=args.compile)
        models[name] = Model(enhancer.forward, sum(p.numel() for p in head.model.parameters()),
                             head.size_multiple, head.min_size)
    return models


def check_sizes(models: dict[str, Model], sizes: list[int]) -> None:
    """Time only sizes every model takes as they are (no padding in the timed call)."""
    for name, model in models.items():
        for size in sizes:
            if size % model.size_multiple or size < model.min_size:
                raise SystemExit(f"--sizes: {name} needs a multiple of {model.size_multiple} "
                                 f"of at least {model.min_size}, got {size}")


# ---------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn(x)
    sync(device)  # only to stop the clock
    return time.perf_counter() - start


def measure(models: dict[str, Model], size: int, batch: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per call for every model, interleaved: repeat r times all models once,
    starting from a different model each time."""
    device = torch.device(args.device)
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    names = list(models)
    for name in names:
        for _ in range(args.warmup):
            models[name].forward(x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(time_once(models[name].forward, x, device))
    return times


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    p.add_argument("--repeats", type=int, default=3, help="timed calls per model and setting (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per model and setting")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="autocast dtype on GPU; CPU always runs float32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the heads (not the reference)")
    p.add_argument("--unet", default="models/heads/unet",
                   help="U-Net head directory, if trained, or 'paper' for the paper profile's size with random weights")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: benchmarks/results/heads_throughput_<device type>.json)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = args.dtype if device.type == "cuda" else "float32"
    models = build_models(args)
    check_sizes(models, args.sizes)
    rows = []
    started = time.perf_counter()
    for size in args.sizes:
        for batch in args.batch_sizes:
            times = measure(models, size, batch, args)
            ref, ref_best = statistics.median(times[REFERENCE]), min(times[REFERENCE])
            for name, seconds in times.items():
                median, best = statistics.median(seconds), min(seconds)
                rows.append({"model": name, "size": size, "batch": batch, "params": models[name].params,
                             "median_s": median, "images_per_s": batch / median,
                             "ratio_vs_reference": ref / median,
                             "best_images_per_s": batch / best, "best_ratio_vs_reference": ref_best / best,
                             "times_s": seconds})

    header = f"{'model':<28} {'size':>5} {'batch':>5} {'img/s':>9} {'vs ref':>7} {'best img/s':>11} {'vs ref':>7}"
    print(f"\n{device_name(device)} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
          f"{dtype} | median of {args.repeats} after {args.warmup} warm-up\n{header}\n{'-' * len(header)}")
    for row in rows:
        print(f"{row['model']:<28} {row['size']:>5} {row['batch']:>5} {row['images_per_s']:>9.3f} "
              f"{row['ratio_vs_reference']:>6.2f}x {row['best_images_per_s']:>11.3f} "
              f"{row['best_ratio_vs_reference']:>6.2f}x")
    out = args.out or RESULTS / f"heads_throughput_{device.type}.json"
    write_json(out, {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "dtype": dtype, "compile": args.compile,
        "repeats": args.repeats, "warmup": args.warmup,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "wall_s": round(time.perf_counter() - started, 1),
        "note": ("ratio_vs_reference = head images/s / reference images/s from the medians, measured "
                 "interleaved in one run; best_* use the fastest repeat (least disturbed by other load)"),
        "results": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
