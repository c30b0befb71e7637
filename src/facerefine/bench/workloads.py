"""The workloads: FLUX text-to-image (dev at each timed step count, schnell), schnell + each
head end to end, and each head alone at every batch size; :func:`run_benchmark` returns
one JSON-ready dict (the full table, ``reports/latency.json``).

GPU rules (DESIGN.md, "Performance rules"): the heads run as `facerefine enhance` runs them
(``compile.HeadRunner``: bf16 weights, channels_last, batched, compiled on CUDA); FLUX as the
stages run it (``profiles.<p>.compile``). When compiled, text-to-image and each head alone are
timed eager too, in the same run, with the compile time apart from the steady state; schnell +
head is timed as it runs. The device is synchronised only to stop the clock.
"""

from __future__ import annotations

import copy
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from facerefine.bench.derived import (PAPER, achieved_tflops, compute_bound_images_per_second, derive_all,
                                      dev_key, images_per_second, paper_reference, peak_tflops_for,
                                      seconds_per_image)
from facerefine.bench.environment import PeakMemory, device_name, environment
from facerefine.bench.outputs import fmt_seconds as _fmt_s
from facerefine.bench.settings import (RunOptions, check_mode, effective_mode, resolve_device,
                                       settings_record)
from facerefine.bench.timing import time_callable
from facerefine.compile import HeadRunner, wants_compile
from facerefine.config import SMOKE, Params

log = logging.getLogger("facerefine.bench")


@dataclass
class BenchHead:
    """A head to time: a trained architecture (random weights), a paper-size one (arch), or the reference."""

    name: str
    model: nn.Module
    source: str
    end_to_end: bool = True  # timed after schnell too (the reference is timed alone)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def unfit_reason(self, size: int) -> str | None:
        """Why this head cannot run at ``size``² (e.g. ESA needs >= 60 px), or None."""
        try:
            self.model.check_size(size, size)
        except ValueError as err:
            return str(err)
        return None


# The plain CycleGAN ResNet generator at paper size (ngf 64, 9 blocks, ~396 GFLOP per 512²
# image): the yardstick every head is measured against in the same run.
REFERENCE = "reference"
PAPER_PROFILE = "paper"  # arch mode and the paper comparison build the heads at this profile's sizes
REFERENCE_CONFIG = {"in_channels": 3, "out_channels": 3, "ngf": 64, "n_blocks": 9, "esa": None}


def collect_heads(mode: str, params: Params) -> list[BenchHead]:
    """The heads the params train, with random weights (latency does not depend on the weights'
    values; arch mode: at the paper profile's sizes whatever the active profile) + the reference."""
    from facerefine.models.cyclegan import ResnetGenerator
    from facerefine.models.factory import build_heads

    if mode == "arch":
        source = "random weights, paper size (arch mode)"
        models = build_heads(params, PAPER_PROFILE)
    else:
        source = "random weights, the trained architecture (params)"
        models = build_heads(params)
    heads = [BenchHead(name, model, source) for name, model in models.items()]
    if not any(isinstance(h.model, ResnetGenerator) and h.model.config() == REFERENCE_CONFIG for h in heads):
        torch.manual_seed(0)
        heads.append(BenchHead(REFERENCE, ResnetGenerator(**REFERENCE_CONFIG).eval(),
                               "plain ResNet generator, ngf 64, 9 blocks, random weights", end_to_end=False))
    return heads


def count_flops(model: nn.Module, size: int, batch: int = 1) -> int:
    """Exact FLOPs (2 x multiply-adds of convs and matmuls) of one forward at ``size``²,
    counted on the meta device: nothing is computed or allocated."""
    from torch.utils.flop_counter import FlopCounterMode

    ghost = copy.deepcopy(model).to("meta")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        ghost(torch.empty(batch, 3, size, size, device="meta"))
    return int(counter.get_total_flops())


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError,) if hasattr(torch.cuda, "OutOfMemoryError") else ()


class Bench:
    """Runs the measurements of one benchmark on one device and keeps the shared context."""

    def __init__(self, params: Params, mode: str, options: RunOptions, device: torch.device) -> None:
        self.mode, self.options, self.device = mode, options, device
        self.scale, self.shared = params.scale.bench, params.bench
        self.cuda = device.type == "cuda"
        self.compiled = wants_compile(self.shared.compile, device)  # auto: on CUDA, as every head runs
        self.flux_compile = params.scale.compile  # FLUX as the stages run it: none | blocks | full
        # The heads as `facerefine enhance` runs them: bf16 weights on a GPU (no autocast), float32
        # on a CPU (bf16 convolutions are slow there).
        self.head_dtype = "bfloat16" if self.cuda else "float32"
        self.memory = PeakMemory(device)
        # Synchronise only to stop the clock (see time_callable).
        self.sync = (lambda: torch.cuda.synchronize(device)) if self.cuda else None

    def head_runner(self, model: nn.Module, *, compiled: bool, batch: int) -> HeadRunner:
        """The head placed (and compiled) by the code `facerefine enhance` uses; compiled code goes
        to the project's compile cache, so a rerun skips the compile."""
        return HeadRunner(model, self.device, dtype=self.head_dtype, compile=compiled, batch_size=batch,
                          channels_last=self.shared.channels_last)

    def measure(self, fn: Callable[[], object], *, images: int, warmup: int, repeats: int,
                compiled: bool = False) -> dict[str, Any]:
        """One measurement as a JSON record; a GPU out-of-memory becomes a recorded skip.
        ``compiled``: the first call may compile, so there is at least one warm-up call and its
        excess over the steady-state median is reported apart, as ``compile_seconds``: the compile
        this call paid in this process (small when an earlier record compiled the same graph, or
        the on-disk compile cache held it)."""
        warmup = max(warmup, int(compiled))
        try:
            with torch.inference_mode():
                self.memory.reset()
                timing = time_callable(fn, warmup=warmup, repeats=repeats, sync=self.sync)
                peak = self.memory.read()
        except _oom_types() as err:
            _free(self.device)
            log.warning("out of memory: %s", str(err).splitlines()[0])
            return {"skipped": "out of memory"}
        s = timing.median
        rec = {"seconds_per_call": round(s, 6), "images_per_call": images,
               "seconds_per_image": round(seconds_per_image(s, images), 6),
               "images_per_second": round(images_per_second(s, images), 4),
               "peak_memory_bytes": peak, "timing": timing.to_dict()}
        if compiled:
            rec["compile_seconds"] = round(max(timing.warmup[0] - s, 0.0), 6)
        return rec


def side_by_side(run: Mapping[str, Any], eager: Mapping[str, Any] | None, variant: str) -> dict[str, Any]:
    """The record of what the pipeline runs (``variant``), with the eager record of the same
    work beside it when ``run`` is compiled, and the speed-up of one over the other."""
    rec = {**run, "variant": variant}
    if eager is not None:
        rec["eager"] = dict(eager)
        fast, slow = run.get("seconds_per_image"), eager.get("seconds_per_image")
        rec["speedup_vs_eager"] = round(slow / fast, 4) if fast and slow else None
    return rec


def load_pipeline(role: str, mode: str, params: Params, device: torch.device, dtype: str):
    """FLUX text-to-image pipeline for ``role`` as the mode says (stand-in, real weights, or arch),
    eager: the benchmark times it so first, then compiles it in place (``_time_pipeline``)."""
    from facerefine.weights import flux

    if mode == "arch":
        from facerefine.precision import torch_dtype

        return flux.build_pipeline(role, device=device, dtype=torch_dtype(dtype))
    if mode == "smoke":
        return flux.load_flux(SMOKE, role, dtype=dtype, device=device)
    return flux.load_flux_for(params.scale, role, dtype=dtype, device=device, compile="none")


def text_to_image(pipe, *, prompt: str, size: int, steps: int, guidance: float,
                  max_sequence_length: int) -> Callable[[], torch.Tensor]:
    """One text-to-image call, text encoding included; same seed every call, so same work.
    ``output_type="pt"`` keeps the image on the device (no PIL round trip in the timing)."""
    def run() -> torch.Tensor:
        return pipe(prompt=prompt, height=size, width=size, num_inference_steps=steps,
                    guidance_scale=guidance, max_sequence_length=max_sequence_length,
                    generator=torch.Generator("cpu").manual_seed(0), output_type="pt").images
    return run


# FLUX.1 transformer + T5-XXL + CLIP-L + VAE parameters x 2 bytes (bf16), before activations.
ARCH_PIPELINE_BYTES = int((11.9e9 + 4.76e9 + 0.123e9 + 0.084e9) * 2)


def _pipeline_dtype(mode: str, params: Params) -> str:
    # arch mode always runs in bf16: what the checkpoints ship in, and float32 would not fit.
    return "bfloat16" if mode == "arch" else params.scale.dtype


def run_benchmark(params: Params, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Time dev (at every ``bench.dev_steps``) and schnell text-to-image, schnell + each head,
    and each head alone, at every resolution; return the JSON-ready result (``write_outputs``)."""
    device = resolve_device(options.device)
    mode = effective_mode(params)
    check_mode(mode, device, options.force)
    threads = torch.get_num_threads()
    try:
        if params.scale.bench.threads is not None:
            torch.set_num_threads(params.scale.bench.threads)
        return _run(params, mode, options, device)
    finally:
        torch.set_num_threads(threads)  # callers (tests, the CLI) keep their setting


def _run(params: Params, mode: str, options: RunOptions, device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # conv algorithms picked during the warm-up
        total = torch.cuda.get_device_properties(device).total_memory
        if mode == "arch" and total < ARCH_PIPELINE_BYTES * 1.15:
            log.warning("arch mode holds one full-size pipeline at a time, ~%.0f GB in bf16; this GPU has %.0f GB",
                        ARCH_PIPELINE_BYTES / 1e9, total / 1e9)
    elif mode != "smoke":
        log.warning("mode %s on a CPU: absolute times are not GPU latency", mode)
    bench = Bench(params, mode, options, device)
    pipe_dtype = _pipeline_dtype(mode, params)
    prompt = params.prompts.baseline_prompt  # content is irrelevant: prompts are padded
    heads = collect_heads(mode, params)
    sizes = params.scale.bench.resolutions
    t_start = time.perf_counter()

    result: dict[str, Any] = {
        "mode": mode,
        "profile": params.profile,
        "meaningful": mode != "smoke" and device.type == "cuda",
        "headline_dev_steps": params.bench.headline_dev_steps,
        "environment": environment(device, mode=mode, pipeline_dtype=pipe_dtype,
                                   head_precision=f"{bench.head_dtype} weights", compile=bench.compiled,
                                   flux_compile=bench.flux_compile, channels_last=params.bench.channels_last,
                                   memory_kind=bench.memory.kind),
        "settings": settings_record(params, mode, options),
        "text_encoding": {}, "pipelines": {}, "schnell_plus_head": {}, "heads": {},
    }
    # Exact FLOPs per head and size, counted on the meta device before the heads move.
    gflops = {h.name: {s: count_flops(h.model, s) / 1e9 for s in sizes if not h.unfit_reason(s)}
              for h in heads}

    # dev first, then schnell alone and with every head. Each pipeline lives only inside
    # _time_pipeline (closures included), so at most one is ever in (GPU) memory.
    for role in ("dev", "schnell"):
        _time_pipeline(bench, role, params, pipe_dtype, prompt, heads if role == "schnell" else [], result)
        _free(device)
    _time_heads_alone(bench, heads, gflops, result)

    result["derived"] = derive_all(result)
    result["paper"] = paper_reference(result, paper_head_gflop(params))
    result["seconds_total"] = round(time.perf_counter() - t_start, 2)
    return result


def _time_pipeline(bench: Bench, role: str, params: Params, pipe_dtype: str, prompt: str,
                   heads: Sequence[BenchHead], result: dict[str, Any]) -> None:
    """Text encoding alone; text-to-image at every size (dev: at every step count), eager and,
    when the profile compiles FLUX, compiled in place after it; then (schnell) schnell + each
    head as the pipeline runs them."""
    from facerefine.weights.flux import compile_flux

    scale, device = bench.scale, bench.device
    knobs = params.dev_run if role == "dev" else params.schnell_run  # the profile's step cap applied
    cap = params.scale.max_steps or max(params.bench.dev_steps)
    lines = ([(dev_key(s), min(s, cap)) for s in params.bench.dev_steps] if role == "dev"
             else [("schnell", knobs.steps)])
    log.info("loading FLUX.1-%s (%s mode, %s, %s)", role, bench.mode, pipe_dtype, device)
    pipe = load_pipeline(role, bench.mode, params, device, pipe_dtype)
    result["text_encoding"][role] = bench.measure(
        lambda: pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                   max_sequence_length=knobs.max_sequence_length),
        images=1, warmup=scale.warmup, repeats=scale.repeats)

    def t2i(size: int, steps: int) -> Callable[[], torch.Tensor]:
        return text_to_image(pipe, prompt=prompt, size=size, steps=steps, guidance=knobs.guidance,
                             max_sequence_length=knobs.max_sequence_length)

    def time_all(compiled: bool) -> dict[tuple[str, int], dict[str, Any]]:
        records = {}
        for size in scale.resolutions:
            for key, steps in lines:
                records[key, size] = bench.measure(t2i(size, steps), images=1, warmup=scale.warmup,
                                                   repeats=scale.repeats, compiled=compiled)
                log.info("%s %d²%s: %s", key, size, " compiled" if compiled else "",
                         _fmt_s(records[key, size].get("seconds_per_image")))
        return records

    eager = time_all(compiled=False)
    runs, variant = eager, "eager"
    if bench.flux_compile != "none":
        compile_flux(pipe, bench.flux_compile)  # in place; the first timed call of each size compiles
        runs, variant = time_all(compiled=True), bench.flux_compile
    for key, steps in lines:
        result["pipelines"][key] = {
            str(size): {**side_by_side(runs[key, size], None if runs is eager else eager[key, size], variant),
                        "steps": steps, "guidance": knobs.guidance}
            for size in scale.resolutions}

    for size in scale.resolutions:
        for head in (h for h in heads if h.end_to_end):  # schnell only: its one line's t2i
            cell = result["schnell_plus_head"].setdefault(head.name, {})
            reason = head.unfit_reason(size)
            if reason:
                cell[str(size)] = {"skipped": reason}
                continue
            runner = bench.head_runner(head.model, compiled=bench.compiled, batch=1)

            def end_to_end(generate=t2i(size, lines[0][1]), runner=runner):
                return runner(generate().float() * 2 - 1)  # the pipeline's [0, 1] -> the heads' [-1, 1]

            cell[str(size)] = bench.measure(end_to_end, images=1, warmup=scale.warmup, repeats=scale.repeats,
                                            compiled=bench.compiled)
            log.info("%s + %s %d²: %s", role, head.name, size, _fmt_s(cell[str(size)].get("seconds_per_image")))


def _time_heads_alone(bench: Bench, heads: Sequence[BenchHead], gflops: Mapping[str, Mapping[int, float]],
                      result: dict[str, Any]) -> None:
    """Every head at every size and batch, eager and (when heads compile) compiled side by side,
    with achieved TFLOP/s from the exact FLOPs."""
    scale, device = bench.scale, bench.device
    peak = bench.options.peak_tflops or (peak_tflops_for(device_name(device)) if bench.cuda else None)
    result["environment"]["peak_bf16_tflops"] = peak
    gen = torch.Generator("cpu").manual_seed(0)
    for head in heads:
        entry: dict[str, Any] = {"source": head.source, "kind": type(head.model).__name__,
                                 "parameters": head.parameters, "end_to_end": head.end_to_end, "resolutions": {}}
        result["heads"][head.name] = entry
        for size in scale.resolutions:
            reason = head.unfit_reason(size)
            if reason:
                entry["resolutions"][str(size)] = {"skipped": reason}
                continue
            gflop = gflops[head.name][size]
            bound = None if peak is None else round(compute_bound_images_per_second(gflop, peak), 2)
            cell: dict[str, Any] = {"gflop_per_image": round(gflop, 4), "compute_bound_images_per_second": bound,
                                    "batches": {}}
            entry["resolutions"][str(size)] = cell
            for batch in scale.head_batch_sizes:
                x = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)

                def timed(compiled: bool, x=x, batch=batch) -> dict[str, Any]:
                    runner = bench.head_runner(head.model, compiled=compiled, batch=batch)
                    return bench.measure(lambda: runner(x), images=batch, warmup=scale.head_warmup,
                                         repeats=scale.head_repeats, compiled=compiled)

                eager = timed(False)
                rec = (side_by_side(timed(True), eager, "compiled") if bench.compiled
                       else side_by_side(eager, None, "eager"))
                if "images_per_second" in rec:
                    tf = achieved_tflops(gflop, rec["images_per_second"])
                    rec["achieved_tflops"] = round(tf, 4)
                    rec["fraction_of_peak"] = None if peak is None else round(tf / peak, 5)
                cell["batches"][str(batch)] = rec
                del x
            log.info("%s %d²: %s", head.name, size,
                     ", ".join(f"b{b}: {r.get('images_per_second', 'skipped')} img/s"
                               for b, r in cell["batches"].items()))
        _free(device)


def paper_head_gflop(params: Params) -> float:
    """GFLOP per 512² image of the paper's head as built here: the ESA generator at the paper
    profile's size (ngf 64, 9 blocks) with the params' ESA placement."""
    from facerefine.models.factory import build, head_architectures

    kind, arch = head_architectures(params, PAPER_PROFILE)["esa"]
    return count_flops(build(kind, **arch), PAPER["resolution"]) / 1e9
