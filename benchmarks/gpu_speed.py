#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=$PWD/src:/tmp/site HF_HUB_OFFLINE=1 FACEREFINE_TRACKING=0 PYTHONUNBUFFERED=1
"""Issue #19's GPU targets in one run (the two lines above prepare the offline GPU machine; the
wheels come from ../shared/offline-gpu/fetch-wheels.sh, run beforehand with network).

    python benchmarks/gpu_speed.py --out $OUT/gpu_speed.json            # on the GPU (H100/H200)
    python benchmarks/gpu_speed.py --tiny --out /tmp/gpu_speed.json     # CPU check of this script

Sections (``--sections``, each row is written to the JSON as soon as it is measured, so a run
that hits its time limit still returns what it measured):

- ``heads``: each paper-size head (ResUNet-CBAM base 64 depth 6; CycleGAN and ESA ngf 64, 9
  blocks) at 512², batch 16, bf16 weights, channels_last: eager vs compiled per ``--modes``
  (facerefine.compile.HeadRunner, what `facerefine enhance` runs). ``setup_s`` is the first
  call (the compile), apart from the steady-state median. Target: >= 1,250 img/s.
- ``flux``: one FLUX.1 transformer step at 512² (1024 image + 256 text tokens; full size,
  random weights, bf16): eager vs ``blocks`` (diffusers' ``compile_repeated_blocks``: one graph
  for the 19 double and one for the 38 single blocks) vs ``full``, compiled by
  facerefine.weights.flux.compile_flux (what the stages run). Target: <= 37 ms.
- ``schnell``: one full FLUX.1-schnell text-to-image at 512² (4 steps), eager vs ``blocks``.
  Target: <= 0.19 s (eager 0.271 s in ../shared/results-h200/latency.json).
- ``start``: cold vs warm start: a fresh process compiles the CycleGAN head (512², batch 16)
  into an empty project-local cache, a second process reuses it.
- ``enhance``: `facerefine enhance` over 62 images of 14 sizes (benchmarks/enhance_compile.py),
  paper-size CycleGAN, eager vs compiled cold vs warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """(first call's seconds: the compile when compiled, median seconds of ``repeats`` calls)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def head_models(tiny: bool) -> dict[str, torch.nn.Module]:
    from facerefine.models.cyclegan import ResnetGenerator
    from facerefine.models.resunet_cbam import ResUNetCBAM

    base, depth, ngf, blocks = (4, 3, 4, 1) if tiny else (64, 6, 64, 9)
    torch.manual_seed(0)
    return {"unet": ResUNetCBAM(base_channels=base, depth=depth).eval(),
            "cyclegan": ResnetGenerator(ngf=ngf, n_blocks=blocks).eval(),
            "esa": ResnetGenerator(ngf=ngf, n_blocks=blocks, esa="blocks").eval()}


def bench_heads(args: argparse.Namespace, device: torch.device, record: Callable[[dict], None]) -> None:
    from facerefine.compile import HeadRunner

    size, batch = (64, 2) if args.tiny else (args.size, args.batch)
    for name, model in head_models(args.tiny).items():
        x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        for mode in ["eager", *args.modes]:
            runner = HeadRunner(model, device, dtype=args.dtype, compile=mode != "eager",
                                mode=None if mode == "eager" else mode, backend=args.backend, batch_size=batch,
                                cap=max(size, 64))
            first, median = timed(lambda: runner(x), device, args.warmup, args.repeats)
            record({"section": "heads", "head": name, "variant": mode, "size": size, "batch": batch,
                    "dtype": str(runner.dtype).removeprefix("torch."), "setup_s": round(first, 3),
                    "s_per_batch": median, "img_per_s": batch / median})


def flux_transformer(tiny: bool, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    from diffusers import FluxTransformer2DModel

    from facerefine.weights.flux import FLUX_TRANSFORMER
    config = dict(FLUX_TRANSFORMER)
    if tiny:
        config.update(num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                      joint_attention_dim=32, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
    dtype = torch.float32 if tiny else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = FluxTransformer2DModel(**config, guidance_embeds=False).to(dtype).eval().requires_grad_(False)
    side, text = (4, 8) if tiny else (32, 256)  # 512² -> 64² latents -> 32² packed tokens; T5 256 tokens
    inputs = dict(hidden_states=torch.randn(1, side * side, config["in_channels"], device=device, dtype=dtype),
                  encoder_hidden_states=torch.randn(1, text, config["joint_attention_dim"], device=device, dtype=dtype),
                  pooled_projections=torch.randn(1, config["pooled_projection_dim"], device=device, dtype=dtype),
                  timestep=torch.tensor([1.0], device=device, dtype=dtype),
                  img_ids=torch.zeros(side * side, 3, device=device), txt_ids=torch.zeros(text, 3, device=device),
                  return_dict=False)
    return model, inputs


def bench_flux(args: argparse.Namespace, device: torch.device, record: Callable[[dict], None]) -> None:
    from facerefine.weights.flux import compile_flux

    for variant in ("eager", "blocks", "full"):
        model, inputs = flux_transformer(args.tiny, device)
        if variant != "eager":  # the stages' own call (profiles.<p>.compile)
            compile_flux(SimpleNamespace(transformer=model), variant, backend=args.backend)
        with torch.inference_mode():
            first, median = timed(lambda: model(**inputs), device, args.warmup, args.repeats)
        record({"section": "flux", "variant": variant, "tokens_img": inputs["hidden_states"].shape[1],
                "tokens_txt": inputs["encoder_hidden_states"].shape[1], "setup_s": round(first, 3),
                "s_per_step": median})
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bench_schnell(args: argparse.Namespace, device: torch.device, record: Callable[[dict], None]) -> None:
    """One FLUX.1-schnell text-to-image at ``--size``² (4 steps, T5 256 tokens, text encoding and
    VAE decode included): full-size with random weights, eager and then with its blocks compiled
    in place, as generate_schnell runs with ``compile: blocks``. Target: <= 0.19 s."""
    from facerefine.bench.workloads import text_to_image
    from facerefine.weights import flux

    pipe = (flux.load_flux("smoke", "schnell", device=device) if args.tiny
            else flux.build_pipeline("schnell", device=device, dtype=torch.bfloat16))
    size = 32 if args.tiny else args.size
    run = text_to_image(pipe, prompt="A professional business portrait", size=size, steps=4, guidance=0.0,
                        max_sequence_length=16 if args.tiny else 256)
    for variant in ("eager", "blocks"):
        if variant == "blocks":
            flux.compile_flux(pipe, "blocks", backend=args.backend)
        with torch.inference_mode():
            first, median = timed(run, device, 1, max(3, args.repeats // 4))
        record({"section": "schnell", "variant": variant, "size": size, "steps": 4, "setup_s": round(first, 3),
                "s_per_image": median})
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()


_START = """
import sys, time, torch
start = time.perf_counter()
from facerefine.compile import HeadRunner
from facerefine.models.cyclegan import ResnetGenerator
ngf, blocks, size, batch, device, dtype, mode, backend = sys.argv[1:]
torch.manual_seed(0)
runner = HeadRunner(ResnetGenerator(ngf=int(ngf), n_blocks=int(blocks)).eval(), device, dtype=dtype, compile="on",
                    mode=mode, backend=backend, batch_size=int(batch), cap=max(int(size), 64))
runner(torch.zeros(int(batch), 3, int(size), int(size), device=device))
torch.cuda.synchronize() if device.startswith("cuda") else None
print(time.perf_counter() - start)
"""


def bench_start(args: argparse.Namespace, device: torch.device, record: Callable[[dict], None]) -> None:
    ngf, blocks, size, batch = (4, 1, 64, 2) if args.tiny else (64, 9, args.size, args.batch)
    mode = args.modes[-1] if args.modes else "default"
    with tempfile.TemporaryDirectory(prefix="facerefine-compile-start-") as cache:
        env = {**os.environ, "FACEREFINE_COMPILE_CACHE": cache}
        for start in ("cold", "warm"):
            wall = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _START, str(ngf), str(blocks), str(size), str(batch),
                                   str(device), args.dtype, mode, args.backend], env=env, capture_output=True,
                                  text=True, check=True)
            record({"section": "start", "start": start, "mode": mode, "size": size, "batch": batch,
                    "process_s": round(time.perf_counter() - wall, 2),
                    "to_first_output_s": round(float(done.stdout.strip().splitlines()[-1]), 2)})


def bench_enhance(args: argparse.Namespace, device: torch.device, record: Callable[[dict], None]) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from enhance_compile import main as enhance_main

    options = (["--images", "6", "--sizes", "3", "--max-side", "96", "--ngf", "4", "--n-blocks", "1"] if args.tiny
               else ["--images", "62", "--sizes", "14", "--max-side", "1024", "--ngf", "64", "--n-blocks", "9",
                     "--kind", "cyclegan", "--batch-size", "8"])
    result = enhance_main(["--device", str(device), *options])
    record({"section": "enhance", **result})


# schnell last: building a full-size pipeline is the slowest set-up, and a run cut by its time
# limit keeps every row measured before.
SECTIONS = {"heads": bench_heads, "flux": bench_flux, "start": bench_start, "enhance": bench_enhance,
            "schnell": bench_schnell}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--modes", default="default,max-autotune-no-cudagraphs",
                        help="torch.compile modes of the heads (eager always runs first)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: a quick CPU check)")
    parser.add_argument("--tiny", action="store_true", help="tiny networks on the CPU: checks this script")
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    device = torch.device("cpu" if args.tiny else "cuda")
    result: dict[str, Any] = {
        "device": "cpu (tiny check)" if args.tiny else torch.cuda.get_device_name(device),
        "torch": torch.__version__, "command": " ".join(["python", "benchmarks/gpu_speed.py", *(argv or sys.argv[1:])]),
        "rows": []}
    import diffusers

    result["diffusers"] = diffusers.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    for section in args.sections.split(","):
        if section not in SECTIONS:
            raise SystemExit(f"--sections: unknown section {section!r}; known: {', '.join(SECTIONS)}")
        try:
            SECTIONS[section](args, device, record)
        except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
            record({"section": section, "error": f"{type(err).__name__}: {err}"})
    return result


if __name__ == "__main__":
    main()
