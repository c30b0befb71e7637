"""onnxruntime vs PyTorch on the CPU for the CycleGAN head at the paper's size, side by side.

    python benchmarks/onnx_vs_torch_cpu.py                         # ngf 64, 9 blocks, 256² and 512², 1 thread
    python benchmarks/onnx_vs_torch_cpu.py --threads 4 --repeats 7 --esa blocks

The head (random weights: speed does not depend on them) is exported with
``facerefine.onnx_backend.export_onnx`` and run exactly as ``facerefine enhance`` runs
it: ``Enhancer.forward`` (inference mode, float32) for PyTorch, ``OnnxEnhancer.forward``
(``--backend onnxruntime``) for onnxruntime, both with the same number of intra-op
threads. Repeats are interleaved (each repeat times both backends, in alternating
order) so that load from other processes hits both alike; warm-up calls are not
timed; the figure is the median, with the fastest repeat beside it. The ratio
torch/onnxruntime (> 1: onnxruntime faster) is what to read on a shared CPU.
Results go to ``benchmarks/results/onnx_vs_torch_cpu.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from facerefine.enhance import Enhancer
from facerefine.head_folder import write_head_folder
from facerefine.heads import read_head_folder
from facerefine.io import write_json
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.factory import count_parameters
from facerefine.onnx_backend import OnnxHead, export_onnx

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--esa", choices=("blocks", "trunk"), default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_vs_torch_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        model = ResnetGenerator(ngf=args.ngf, n_blocks=args.blocks, esa=args.esa)
        head = read_head_folder(write_head_folder(Path(tmp) / "head", model, name="cyclegan"))
        diffs = export_onnx(head, Path(tmp) / "head.onnx", check_sizes=[(64, 64)])
        runners = {"torch": Enhancer(head, device="cpu"),
                   "onnxruntime": OnnxHead.load(Path(tmp) / "head.onnx", threads=args.threads).enhancer()}
        results = {}
        for size in args.sizes:
            x = torch.rand(1, 3, size, size) * 2 - 1
            outputs = {}
            for name, runner in runners.items():
                for _ in range(args.warmup):
                    outputs[name] = runner.forward(x)
            max_diff = float((outputs["torch"] - outputs["onnxruntime"]).abs().max())
            times: dict[str, list[float]] = {name: [] for name in runners}
            for r in range(args.repeats):
                order = list(runners) if r % 2 == 0 else list(reversed(list(runners)))
                for name in order:
                    start = time.perf_counter()
                    runners[name].forward(x)
                    times[name].append(time.perf_counter() - start)
            row = {name: {"median_s": statistics.median(t), "min_s": min(t), "samples_s": [round(v, 4) for v in t],
                          "images_per_second": 1 / statistics.median(t)} for name, t in times.items()}
            row["torch_over_onnxruntime_median"] = row["torch"]["median_s"] / row["onnxruntime"]["median_s"]
            row["torch_over_onnxruntime_min"] = row["torch"]["min_s"] / row["onnxruntime"]["min_s"]
            # each repeat times both back to back: their ratio cancels slow changes in the machine's load
            pairs = [a / b for a, b in zip(times["torch"], times["onnxruntime"])]
            row["torch_over_onnxruntime_per_repeat"] = [round(v, 3) for v in pairs]
            row["torch_over_onnxruntime_per_repeat_median"] = statistics.median(pairs)
            row["onnxruntime_faster_in_repeats"] = f"{sum(v > 1 for v in pairs)}/{len(pairs)}"
            row["max_abs_diff"] = max_diff
            results[str(size)] = row
            print(f"{size}²: torch {row['torch']['median_s']:.3f} s, "
                  f"onnxruntime {row['onnxruntime']['median_s']:.3f} s (median); "
                  f"torch/onnxruntime {row['torch_over_onnxruntime_median']:.3f} "
                  f"(fastest repeats: {row['torch_over_onnxruntime_min']:.3f}, median per repeat: "
                  f"{row['torch_over_onnxruntime_per_repeat_median']:.3f}, onnxruntime faster in "
                  f"{row['onnxruntime_faster_in_repeats']} repeats); max abs diff {max_diff:.1e}")

    import onnxruntime

    write_json(args.out, {
        "head": {"kind": "ResnetGenerator", "ngf": args.ngf, "n_blocks": args.blocks, "esa": args.esa,
                 "parameters": count_parameters(model), "weights": "random"},
        "settings": {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "batch": 1,
                     "dtype": "float32", "interleaved": True},
        "environment": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "export_check_max_abs_diff": diffs,
        "results": results,
        "reading": "torch_over_onnxruntime > 1 means onnxruntime is faster; measured side by side in one run",
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
