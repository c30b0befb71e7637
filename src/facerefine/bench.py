"""Latency benchmark: dev vs schnell vs schnell + head across resolutions (paper §5.3, Fig. 6).

Read top to bottom, it is:

1. the timing harness: :func:`time_callable` -> :class:`Timing` (pure statistics);
2. derived numbers as pure functions: images/s, s/image, :func:`saving`, :func:`overhead`,
   achieved TFLOP/s, the compute bound; :func:`derive` builds the saving table;
3. peak memory (CUDA max allocated, or the process's peak RSS on a CPU) and the
   environment record;
4. :class:`BenchParams` and :func:`bench_params` (params.yaml + defaults + CLI overrides);
5. the workloads and :func:`run_benchmark`, which returns one JSON-ready dict;
6. the outputs: ``latency.json``, ``latency.md`` (with the paper's figures alongside)
   and ``latency.png`` (Fig. 6).

Three modes say where the networks come from (the report states which one ran):

* ``smoke``: the project's tiny random stand-ins (``weights.py``). Runs anywhere; the
  numbers mean nothing about real latency.
* ``weights``: the real checkpoints of the active profile (``profiles.<p>.models``).
* ``arch``: full-size FLUX.1 networks with random weights from the published configs
  (``bench_arch.py``), and paper-size heads: real-scale latency with no download.
  GPU only in practice.

GPU rules (DESIGN.md, "Performance rules"): the heads run under bf16 autocast, in
channels_last, batched, optionally ``torch.compile``d; the device is synchronised only
to stop the clock. Timing assertions never go in unit tests.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerefine import paths
from facerefine.config import SMOKE, Params, ParamsError
from facerefine.io import save_figure

log = logging.getLogger("facerefine.bench")

# ============================================================================ 1. timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed repeats; warm-up calls are kept apart, never in the stats."""

    samples: tuple[float, ...]
    warmup: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("Timing needs at least one sample")

    @property
    def repeats(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.samples))

    @property
    def min(self) -> float:
        return float(min(self.samples))

    @property
    def max(self) -> float:
        return float(max(self.samples))

    @property
    def p10(self) -> float:
        return percentile(self.samples, 10)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)

    def to_dict(self, ndigits: int = 6) -> dict[str, Any]:
        r = lambda v: round(v, ndigits)  # noqa: E731 - microseconds are plenty
        return {"median_s": r(self.median), "p10_s": r(self.p10), "p90_s": r(self.p90),
                "min_s": r(self.min), "max_s": r(self.max), "mean_s": r(self.mean),
                "repeats": self.repeats, "samples_s": [r(s) for s in self.samples],
                "warmup_s": [r(s) for s in self.warmup]}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics
    (numpy's default), so p10/p90 of a few samples are still defined."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def time_callable(fn: Callable[[], object], *, warmup: int, repeats: int,
                  sync: Callable[[], None] | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn`` ``warmup`` times, then ``repeats`` timed times; return the :class:`Timing`.

    Every call is bracketed by two clock reads and ``sync`` (e.g. ``torch.cuda.synchronize``)
    runs only right before the second one: GPU kernels are asynchronous, so the clock may
    stop only once the device is done, and nothing else may stall the device inside the
    measured region. Warm-up calls are timed the same way (so their queued kernels cannot
    leak into the first repeat, and compile time stays visible) but go to
    ``Timing.warmup``, never into the statistics.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def once() -> float:
        start = clock()
        fn()
        if sync is not None:
            sync()
        return clock() - start

    warm = tuple(once() for _ in range(warmup))
    return Timing(samples=tuple(once() for _ in range(repeats)), warmup=warm)


# ===================================================================== 2. derived numbers


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def images_per_second(seconds: float, images: int = 1) -> float:
    """Throughput of one call that produced ``images`` images in ``seconds``."""
    return images / _positive("seconds", seconds)


def seconds_per_image(seconds: float, images: int = 1) -> float:
    return seconds / _positive("images", images)


def saving(cost: float, baseline: float) -> float:
    """Fraction of ``baseline``'s time saved by ``cost``: ``1 - cost / baseline``.

    The paper's headline: schnell + head vs dev, 82%.
    """
    return 1.0 - cost / _positive("baseline", baseline)


def overhead(cost: float, baseline: float) -> float:
    """Relative extra time of ``cost`` over ``baseline``: ``cost / baseline - 1``
    (schnell + head vs schnell alone: what the head adds)."""
    return cost / _positive("baseline", baseline) - 1.0


def achieved_tflops(gflop_per_image: float, images_per_sec: float) -> float:
    return gflop_per_image * images_per_sec / 1e3


def compute_bound_images_per_second(gflop_per_image: float, peak_tflops: float) -> float:
    """Images/s if every FLOP ran at the device's peak: the ceiling no kernel beats."""
    return peak_tflops * 1e3 / _positive("gflop_per_image", gflop_per_image)


def _maybe(fn: Callable[..., float], *args: float | None) -> float | None:
    """``fn(*args)`` or None when an input is missing (a skipped measurement)."""
    if any(a is None for a in args):
        return None
    return round(float(fn(*args)), 6)


def derive(pipelines: Mapping[str, Mapping[int, float | None]],
           end_to_end: Mapping[str, Mapping[int, float | None]],
           heads_alone: Mapping[str, Mapping[int, float | None]],
           resolutions: Iterable[int]) -> dict[str, Any]:
    """Savings and overheads from seconds per image.

    ``pipelines``: {"dev"|"schnell": {resolution: s/image}}; ``end_to_end``: {head:
    {resolution: s/image of schnell + head}}; ``heads_alone``: {head: {resolution:
    s/image}}. Missing values (skipped sizes) give None. ``mean`` averages over the
    resolutions where a value exists (the paper reports an average saving).
    """
    out: dict[str, Any] = {}
    per_head: dict[str, list[float]] = {}
    schnell_savings: list[float] = []
    for res in resolutions:
        dev = pipelines.get("dev", {}).get(res)
        schnell = pipelines.get("schnell", {}).get(res)
        row: dict[str, Any] = {"schnell_saving_vs_dev": _maybe(saving, schnell, dev),
                               "dev_over_schnell": _maybe(lambda a, b: a / b, dev, schnell), "heads": {}}
        if row["schnell_saving_vs_dev"] is not None:
            schnell_savings.append(row["schnell_saving_vs_dev"])
        for head, by_res in end_to_end.items():
            e2e = by_res.get(res)
            alone = heads_alone.get(head, {}).get(res)
            cell = {"saving_vs_dev": _maybe(saving, e2e, dev),
                    "overhead_vs_schnell": _maybe(overhead, e2e, schnell),
                    "head_alone_over_schnell": _maybe(lambda a, b: a / _positive("schnell", b), alone, schnell)}
            if cell["saving_vs_dev"] is not None:
                per_head.setdefault(head, []).append(cell["saving_vs_dev"])
            row["heads"][head] = cell
        out[str(res)] = row
    mean = lambda xs: round(float(statistics.fmean(xs)), 6) if xs else None  # noqa: E731
    out["mean"] = {"schnell_saving_vs_dev": mean(schnell_savings),
                   "heads": {h: {"saving_vs_dev": mean(per_head.get(h, []))} for h in end_to_end}}
    return out


# The paper's numbers (§5.3): ESA-CycleGAN head and FLUX.1-schnell at 512², A100.
PAPER = {"device": "NVIDIA A100", "resolution": 512, "head": "ESA-CycleGAN",
         "head_images_per_second": 11.2, "schnell_images_per_second": 0.25,
         "saving_vs_dev": 0.82, "peak_bf16_tflops": 312.0, "peak_fp32_tflops": 19.5}  # A100 datasheet

# Dense bf16 tensor-core peaks from NVIDIA's datasheets, matched as substrings of the device
# name (first match wins, so the more specific names come first). Unknown devices: no bound.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
)


def peak_tflops_for(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


# ========================================================= 3. memory and environment


class PeakMemory:
    """Peak memory of one measurement.

    GPU: ``torch.cuda.max_memory_allocated`` since the last reset (tensors only).
    CPU: the process's peak resident set (``VmHWM``), reset through ``/proc/self/clear_refs``
    where Linux allows it; otherwise ``ru_maxrss``, the peak since the process started.
    Both include the loaded weights: it is what a run needs, not what a call adds.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.kind = "cuda max_memory_allocated"
        elif self._reset_rss():
            self.kind = "process peak RSS (VmHWM, reset per measurement)"
        else:
            self.kind = "process peak RSS since start (ru_maxrss)"

    @staticmethod
    def _reset_rss() -> bool:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._reset_rss()

    def read(self) -> int | None:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def environment(device: torch.device, *, mode: str, pipeline_dtype: str, head_precision: str,
                compile: bool, channels_last: bool, memory_kind: str) -> dict[str, Any]:
    """What produced the numbers: device, precisions, library versions, threads, mode."""
    cuda = device.type == "cuda"
    return {
        "mode": mode,
        "device": device.type,
        "device_name": device_name(device),
        "pipeline_dtype": pipeline_dtype,
        "head_precision": head_precision,
        "head_channels_last": bool(cuda and channels_last),
        "head_compile": compile,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "peak_memory": memory_kind,
    }


# ============================================================================ 4. params

MODES = ("smoke", "weights", "arch")
# Where each BenchParams field lives: params.yaml top level (how heads are run), the profile
# (scale), or only the command line (run-time choices).
TOP_LEVEL_KEYS = ("compile", "channels_last")
PROFILE_KEYS = ("mode", "resolutions", "head_batch_sizes", "warmup", "repeats", "head_warmup",
                "head_repeats", "threads")
RUNTIME_KEYS = ("device", "force", "peak_tflops")
FLUX_SIZE_MULTIPLE = 16  # VAE 8x down, 2x2 latent packing


class BenchParamError(ParamsError):
    """A bench setting is out of range; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"bench.{field_name}: {message}")
        self.field = field_name
        self.detail = message


@dataclass(frozen=True)
class BenchParams:
    """Benchmark settings. Defaults per profile below; params.yaml and the CLI override them."""

    mode: str = "smoke"                        # smoke | weights | arch
    resolutions: tuple[int, ...] = (32, 64)    # square image sides
    head_batch_sizes: tuple[int, ...] = (1, 4)
    warmup: int = 1                            # untimed-in-stats pipeline calls first
    repeats: int = 3                           # timed pipeline calls (median reported)
    head_warmup: int = 1
    head_repeats: int = 3
    threads: int | None = 1                    # torch CPU threads; None: torch's default
    compile: bool = False                      # torch.compile the heads
    channels_last: bool = True                 # heads on a GPU
    device: str = "auto"                       # auto | cpu | cuda[:N]
    force: bool = False                        # allow arch mode on a CPU
    peak_tflops: float | None = None           # device peak for the compute bound; None: look up

    def __post_init__(self) -> None:
        # Lists from YAML become tuples so the dataclass stays hashable and immutable.
        for name in ("resolutions", "head_batch_sizes"):
            value = getattr(self, name)
            if isinstance(value, (int, str)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                        for v in value):
                raise BenchParamError(name, f"must be a list of integers (got {value!r})")
            object.__setattr__(self, name, tuple(value))
        if self.mode not in MODES:
            raise BenchParamError("mode", f"must be one of {', '.join(MODES)} (got {self.mode!r})")
        if not self.resolutions or any(r <= 0 or r % FLUX_SIZE_MULTIPLE for r in self.resolutions):
            raise BenchParamError("resolutions", f"must be a non-empty list of positive multiples of "
                                                 f"{FLUX_SIZE_MULTIPLE} (got {list(self.resolutions)})")
        if not self.head_batch_sizes or any(b <= 0 for b in self.head_batch_sizes):
            raise BenchParamError("head_batch_sizes", f"must be a non-empty list of positive integers "
                                                      f"(got {list(self.head_batch_sizes)})")
        for name in ("warmup", "head_warmup"):
            if getattr(self, name) < 0:
                raise BenchParamError(name, f"must be >= 0 (got {getattr(self, name)})")
        for name in ("repeats", "head_repeats"):
            if getattr(self, name) < 1:
                raise BenchParamError(name, f"must be >= 1 (got {getattr(self, name)})")
        if self.compile and self.head_warmup < 1:
            raise BenchParamError("head_warmup", "must be >= 1 with compile: the first call compiles "
                                                 "and must not be timed")
        if self.threads is not None and self.threads < 1:
            raise BenchParamError("threads", f"must be >= 1 or null (got {self.threads})")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise BenchParamError("peak_tflops", f"must be > 0 (got {self.peak_tflops})")


# Smoke: two tiny sizes, one thread (OpenMP spin-waits on 2 shared cores make tiny ops
# 10x slower with 2 threads). Paper: Fig. 6's range, real-size batches.
SMOKE_DEFAULTS = BenchParams()
PAPER_DEFAULTS = BenchParams(mode="weights", resolutions=(256, 512, 768, 1024), head_batch_sizes=(1, 8, 32),
                             warmup=1, repeats=3, head_warmup=3, head_repeats=20, threads=None)


def _section(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def param_key(field_name: str, profile: str) -> str:
    """Where a setting lives: ``bench.compile``, ``profiles.smoke.bench.resolutions``, ``--device``."""
    if field_name in PROFILE_KEYS:
        return f"profiles.{profile}.bench.{field_name}"
    if field_name in RUNTIME_KEYS:
        return f"--{field_name.replace('_', '-')}"
    return f"bench.{field_name}"


def bench_params(params: Params, **overrides: Any) -> BenchParams:
    """Defaults for the profile (stand-in models -> smoke defaults, else paper), then
    ``params.bench`` and ``params.scale.bench``, then ``overrides``
    (CLI options; None means "not given")."""
    smoke_models = params.scale.models.schnell == SMOKE and params.scale.models.dev == SMOKE
    values = asdict(SMOKE_DEFAULTS if smoke_models else PAPER_DEFAULTS)
    sections = ((TOP_LEVEL_KEYS, "bench", _section(params.bench)),
                (PROFILE_KEYS, f"profiles.{params.profile}.bench", _section(params.scale.bench)))
    for allowed, where, data in sections:
        if data is None:
            continue
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ParamsError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        values.update(data)
    unknown = sorted(set(overrides) - {f.name for f in fields(BenchParams)})
    if unknown:
        raise ParamsError(f"unknown bench setting(s): {', '.join(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    if values["mode"] == "weights" and smoke_models:
        values["mode"] = "smoke"  # the profile's "weights" are the stand-ins: say so in the report
    try:
        return BenchParams(**values)
    except BenchParamError as err:
        key = f"--{err.field.replace('_', '-')}" if err.field in given else param_key(err.field, params.profile)
        raise ParamsError(f"{key}: {err.detail}") from None


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"--device: '{requested}' requested but no CUDA device is available")
    return device


def check_mode(bp: BenchParams, device: torch.device) -> None:
    """Refuse arch mode off a GPU unless forced: it would run for hours and prove nothing."""
    if bp.mode == "arch" and device.type != "cuda" and not bp.force:
        raise ParamsError(
            "bench.mode: 'arch' builds full-size FLUX.1 with random weights (12B transformer + 4.8B T5, "
            "~34 GB in bfloat16) and is meant for a GPU; there is none here, and on a CPU one 512² dev "
            "image takes hours. Run it on a GPU, or pass --force (facerefine bench --mode arch --force).")


# ========================================================================= 5. workloads


@dataclass
class BenchHead:
    """A head to time: a trained head directory, a paper-size random one (arch), or the reference."""

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
REFERENCE_CONFIG = {"in_channels": 3, "out_channels": 3, "ngf": 64, "n_blocks": 9, "esa": None}


def collect_heads(mode: str, params: Params, heads_dir: Path = paths.HEADS) -> list[BenchHead]:
    """Every head directory in ``heads_dir`` (arch mode: paper-size random heads) + the reference."""
    from facerefine.bench_arch import arch_heads
    from facerefine.heads import load_head
    from facerefine.models.cyclegan import ResnetGenerator

    heads: list[BenchHead] = []
    if mode == "arch":
        for name, model in arch_heads(params.cyclegan.esa_placement).items():
            heads.append(BenchHead(name, model, "random weights, paper size (arch mode)"))
    elif heads_dir.is_dir():
        for directory in sorted(p for p in heads_dir.iterdir() if (p / "config.json").is_file()):
            head = load_head(directory)
            heads.append(BenchHead(directory.name, head.model, directory.as_posix()))
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

    def __init__(self, bp: BenchParams, device: torch.device) -> None:
        self.bp, self.device = bp, device
        self.cuda = device.type == "cuda"
        self.memory = PeakMemory(device)
        # Synchronise only to stop the clock (see time_callable).
        self.sync = (lambda: torch.cuda.synchronize(device)) if self.cuda else None

    def autocast(self):
        """bf16 autocast for the heads on a GPU; float32 on a CPU (bf16 convs are slow there)."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    def place_head(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device).eval().requires_grad_(False)
        if self.cuda and self.bp.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def head_callable(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.bp.compile:
            return model
        # A fresh graph per (size, batch): static shapes compile best, and resetting keeps
        # many sizes from hitting dynamo's recompile limit (which silently falls back to eager).
        torch._dynamo.reset()
        return torch.compile(model, dynamic=False)

    def head_input(self, images: torch.Tensor) -> torch.Tensor:
        """Pipeline output in [0, 1] -> the heads' [-1, 1], float32 (autocast casts on the GPU)."""
        x = images.float() * 2 - 1
        if self.cuda and self.bp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def measure(self, fn: Callable[[], object], *, images: int, warmup: int, repeats: int) -> dict[str, Any]:
        """One measurement as a JSON record; a GPU out-of-memory becomes a recorded skip."""
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
        return {"seconds_per_call": round(s, 6), "images_per_call": images,
                "seconds_per_image": round(seconds_per_image(s, images), 6),
                "images_per_second": round(images_per_second(s, images), 4),
                "peak_memory_bytes": peak, "timing": timing.to_dict()}


def load_pipeline(role: str, mode: str, params: Params, device: torch.device, dtype: str):
    """FLUX text-to-image pipeline for ``role`` as the mode says (stand-in, real weights, or arch)."""
    from facerefine import weights

    if mode == "arch":
        from facerefine.bench_arch import build_pipeline

        return build_pipeline(role, device=device, dtype=weights.torch_dtype(dtype))
    if mode == "smoke":
        return weights.load_flux(SMOKE, role, dtype=dtype, device=device)
    return weights.load_flux_for(params.scale, role, dtype=dtype, device=device)


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


def _pipeline_dtype(bp: BenchParams, params: Params) -> str:
    # arch mode always runs in bf16: what the checkpoints ship in, and float32 would not fit.
    return "bfloat16" if bp.mode == "arch" else params.scale.dtype


def run_benchmark(params: Params, bp: BenchParams, *, heads_dir: Path = paths.HEADS) -> dict[str, Any]:
    """Time dev and schnell text-to-image, schnell + each head, and each head alone, at every
    resolution; return the JSON-ready result (see ``write_outputs``)."""
    device = resolve_device(bp.device)
    check_mode(bp, device)
    threads = torch.get_num_threads()
    try:
        if bp.threads is not None:
            torch.set_num_threads(bp.threads)
        return _run(params, bp, device, heads_dir)
    finally:
        torch.set_num_threads(threads)  # callers (tests, the CLI) keep their setting


def _run(params: Params, bp: BenchParams, device: torch.device, heads_dir: Path) -> dict[str, Any]:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # conv algorithms picked during the warm-up
        total = torch.cuda.get_device_properties(device).total_memory
        if bp.mode == "arch" and total < ARCH_PIPELINE_BYTES * 1.15:
            log.warning("arch mode holds one full-size pipeline at a time, ~%.0f GB in bf16; this GPU has %.0f GB",
                        ARCH_PIPELINE_BYTES / 1e9, total / 1e9)
    elif bp.mode != "smoke":
        log.warning("mode %s on a CPU: absolute times are not GPU latency", bp.mode)
    bench = Bench(bp, device)
    pipe_dtype = _pipeline_dtype(bp, params)
    prompt = params.prompts.baseline_prompt  # content is irrelevant: prompts are padded
    heads = collect_heads(bp.mode, params, heads_dir)
    t_start = time.perf_counter()

    result: dict[str, Any] = {
        "mode": bp.mode,
        "profile": params.profile,
        "meaningful": bp.mode != "smoke" and device.type == "cuda",
        "environment": environment(device, mode=bp.mode, pipeline_dtype=pipe_dtype,
                                   head_precision="bf16 autocast" if bench.cuda else "float32",
                                   compile=bp.compile, channels_last=bp.channels_last,
                                   memory_kind=bench.memory.kind),
        "settings": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(bp).items()},
                     "prompt": prompt,
                     "dev": {"steps": params.dev_run.steps, "guidance": params.dev.guidance,
                             "max_sequence_length": params.dev.max_sequence_length},
                     "schnell": {"steps": params.schnell_run.steps, "guidance": params.schnell.guidance,
                                 "max_sequence_length": params.schnell.max_sequence_length}},
        "text_encoding": {}, "pipelines": {}, "schnell_plus_head": {}, "heads": {},
    }
    # Exact FLOPs per head and size, counted on the meta device before the heads move.
    gflops = {h.name: {s: count_flops(h.model, s) / 1e9 for s in bp.resolutions if not h.unfit_reason(s)}
              for h in heads}
    placed = {h.name: bench.place_head(h.model) for h in heads}

    # dev first, then schnell alone and with every head. Each pipeline lives only inside
    # _time_pipeline (closures included), so at most one is ever in (GPU) memory.
    for role in ("dev", "schnell"):
        _time_pipeline(bench, role, params, pipe_dtype, prompt, heads if role == "schnell" else [], placed, result)
        _free(device)
    _time_heads_alone(bench, heads, placed, gflops, result)

    result["derived"] = derive(*_seconds_tables(result), bp.resolutions)
    result["paper"] = paper_reference(result, paper_head_gflop(params.cyclegan.esa_placement))
    result["seconds_total"] = round(time.perf_counter() - t_start, 2)
    return result


def _time_pipeline(bench: Bench, role: str, params: Params, pipe_dtype: str, prompt: str,
                   heads: Sequence[BenchHead], placed: Mapping[str, nn.Module], result: dict[str, Any]) -> None:
    """Text encoding alone, text-to-image at every size, and (schnell) schnell + each head."""
    bp, device = bench.bp, bench.device
    knobs = params.dev_run if role == "dev" else params.schnell_run  # the profile's step cap applied
    log.info("loading FLUX.1-%s (%s mode, %s, %s)", role, bp.mode, pipe_dtype, device)
    pipe = load_pipeline(role, bp.mode, params, device, pipe_dtype)
    result["text_encoding"][role] = bench.measure(
        lambda: pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                   max_sequence_length=knobs.max_sequence_length),
        images=1, warmup=bp.warmup, repeats=bp.repeats)
    result["pipelines"][role] = {}
    for size in bp.resolutions:
        t2i = text_to_image(pipe, prompt=prompt, size=size, steps=knobs.steps, guidance=knobs.guidance,
                            max_sequence_length=knobs.max_sequence_length)
        rec = bench.measure(t2i, images=1, warmup=bp.warmup, repeats=bp.repeats)
        result["pipelines"][role][str(size)] = {**rec, "steps": knobs.steps, "guidance": knobs.guidance}
        log.info("%s %d²: %s", role, size, _fmt_s(rec.get("seconds_per_image")))
        for head in (h for h in heads if h.end_to_end):
            cell = result["schnell_plus_head"].setdefault(head.name, {})
            reason = head.unfit_reason(size)
            if reason:
                cell[str(size)] = {"skipped": reason}
                continue
            fn = bench.head_callable(placed[head.name])

            def end_to_end(t2i=t2i, fn=fn):
                x = bench.head_input(t2i())
                with bench.autocast():
                    return fn(x)

            # With compile, the first call compiles the head: always warm up at least once.
            cell[str(size)] = bench.measure(end_to_end, images=1, warmup=max(bp.warmup, int(bp.compile)),
                                            repeats=bp.repeats)
            log.info("%s + %s %d²: %s", role, head.name, size, _fmt_s(cell[str(size)].get("seconds_per_image")))


def _time_heads_alone(bench: Bench, heads: Sequence[BenchHead], placed: Mapping[str, nn.Module],
                      gflops: Mapping[str, Mapping[int, float]], result: dict[str, Any]) -> None:
    """Every head at every size and batch, with achieved TFLOP/s from the exact FLOPs."""
    bp, device = bench.bp, bench.device
    peak = bp.peak_tflops or (peak_tflops_for(device_name(device)) if bench.cuda else None)
    result["environment"]["peak_bf16_tflops"] = peak
    gen = torch.Generator("cpu").manual_seed(0)
    for head in heads:
        entry: dict[str, Any] = {"source": head.source, "kind": type(head.model).__name__,
                                 "parameters": head.parameters, "end_to_end": head.end_to_end, "resolutions": {}}
        result["heads"][head.name] = entry
        for size in bp.resolutions:
            reason = head.unfit_reason(size)
            if reason:
                entry["resolutions"][str(size)] = {"skipped": reason}
                continue
            gflop = gflops[head.name][size]
            bound = None if peak is None else round(compute_bound_images_per_second(gflop, peak), 2)
            cell: dict[str, Any] = {"gflop_per_image": round(gflop, 4), "compute_bound_images_per_second": bound,
                                    "batches": {}}
            entry["resolutions"][str(size)] = cell
            for batch in bp.head_batch_sizes:
                x = bench.head_input(torch.rand(batch, 3, size, size, generator=gen).to(device))
                fn = bench.head_callable(placed[head.name])

                def head_alone(x=x, fn=fn):
                    with bench.autocast():
                        return fn(x)

                rec = bench.measure(head_alone, images=batch, warmup=bp.head_warmup, repeats=bp.head_repeats)
                if "images_per_second" in rec:
                    tf = achieved_tflops(gflop, rec["images_per_second"])
                    rec["achieved_tflops"] = round(tf, 4)
                    rec["fraction_of_peak"] = None if peak is None else round(tf / peak, 5)
                cell["batches"][str(batch)] = rec
                del x, fn, head_alone
            log.info("%s %d²: %s", head.name, size,
                     ", ".join(f"b{b}: {r.get('images_per_second', 'skipped')} img/s"
                               for b, r in cell["batches"].items()))
        _free(device)


def _spi(rec: Mapping[str, Any] | None) -> float | None:
    return None if not rec else rec.get("seconds_per_image")


def _head_alone_spi(cell: Mapping[str, Any] | None) -> float | None:
    """Seconds per image of a head at its smallest batch (latency, as in the paper)."""
    if not cell or "batches" not in cell:
        return None
    times = [r.get("seconds_per_image") for b, r in sorted(cell["batches"].items(), key=lambda kv: int(kv[0]))]
    return next((t for t in times if t is not None), None)


def _seconds_tables(result: Mapping[str, Any]):
    pipes = {role: {int(r): _spi(rec) for r, rec in by_res.items()} for role, by_res in result["pipelines"].items()}
    e2e = {h: {int(r): _spi(rec) for r, rec in by_res.items()} for h, by_res in result["schnell_plus_head"].items()}
    alone = {h: {int(r): _head_alone_spi(cell) for r, cell in e["resolutions"].items()}
             for h, e in result["heads"].items()}
    return pipes, e2e, alone


def _best_batch(cell: Mapping[str, Any] | None) -> tuple[int, float] | None:
    if not cell or "batches" not in cell:
        return None
    rates = [(int(b), r["images_per_second"]) for b, r in cell["batches"].items() if "images_per_second" in r]
    return max(rates, key=lambda br: br[1]) if rates else None


def paper_head_gflop(esa_placement: str = "blocks") -> float:
    """GFLOP per 512² image of the paper's head as built here: the ngf-64, 9-block ESA generator."""
    from facerefine.bench_arch import ARCH_GENERATOR
    from facerefine.models.cyclegan import ResnetGenerator

    return count_flops(ResnetGenerator(**ARCH_GENERATOR, esa=esa_placement), PAPER["resolution"]) / 1e9


def paper_reference(result: Mapping[str, Any], head_gflop: float | None = None) -> dict[str, Any]:
    """The paper's 512² numbers next to this run's (when 512² was measured). ``head_gflop``: the
    paper-size ESA head's GFLOP per 512² image, to turn 11.2 images/s into TFLOP/s."""
    res = str(PAPER["resolution"])
    out: dict[str, Any] = {**PAPER}
    # What the paper's own numbers imply (not stated in the paper): dev's time if the 82% held
    # at 512², and the TFLOP/s its head reached if it is our ESA architecture at paper size.
    schnell_s, head_s = 1 / PAPER["schnell_images_per_second"], 1 / PAPER["head_images_per_second"]
    out["implied_dev_seconds_per_image"] = round((schnell_s + head_s) / (1 - PAPER["saving_vs_dev"]), 2)
    this: dict[str, Any] = {"schnell_images_per_second": None, "dev_images_per_second": None, "heads": {}}
    for role in ("schnell", "dev"):
        rec = result["pipelines"].get(role, {}).get(res)
        this[f"{role}_images_per_second"] = rec.get("images_per_second") if rec else None
    for name, entry in result["heads"].items():
        cell = entry["resolutions"].get(res)
        if not cell or "batches" not in cell:
            continue
        smallest = min(cell["batches"], key=int)
        best = _best_batch(cell)
        this["heads"][name] = {
            "images_per_second_smallest_batch": cell["batches"][smallest].get("images_per_second"),
            "smallest_batch": int(smallest),
            "images_per_second_best": best[1] if best else None,
            "best_batch": best[0] if best else None,
            "gflop_per_image": cell["gflop_per_image"],
            "compute_bound_images_per_second": cell["compute_bound_images_per_second"],
            "vs_paper": None if not best else round(best[1] / PAPER["head_images_per_second"], 4),
            "saving_vs_dev": result.get("derived", {}).get(res, {}).get("heads", {}).get(name, {}).get("saving_vs_dev"),
        }
    if head_gflop is not None:
        tf = achieved_tflops(head_gflop, PAPER["head_images_per_second"])
        out["head_gflop_per_image"] = round(head_gflop, 2)
        out["implied_head_tflops"] = round(tf, 3)
        out["implied_fraction_of_a100_bf16_peak"] = round(tf / PAPER["peak_bf16_tflops"], 5)
        out["a100_compute_bound_images_per_second"] = round(
            compute_bound_images_per_second(head_gflop, PAPER["peak_bf16_tflops"]), 1)
    out["this_run_512"] = this
    return out


# =========================================================================== 6. outputs

SMOKE_BANNER = ("**Smoke stand-ins: these numbers mean nothing about real latency.** The pipelines are tiny "
                "random networks with FLUX's architecture and the heads are the smoke profile's; they "
                "exercise the benchmark, not the models. Real numbers: `dvc exp run -S profile=paper` "
                "(real weights) or `facerefine bench --mode arch` (full-size random weights) on a GPU.")
CPU_BANNER = ("**Measured on a CPU: absolute times are not GPU latency.** Only ratios measured side by side "
              "in this run carry over, and only roughly.")
ARCH_NOTE = ("Architecture-only mode: full-size FLUX.1 networks and paper-size heads with random weights. "
             "Latency does not depend on weight values; the images are noise. Tokenizers are stand-ins; "
             "prompts are padded to the same lengths (77 CLIP tokens, max_sequence_length T5 tokens).")
MODE_WORDS = {"smoke": "tiny random stand-ins", "weights": "real weights",
              "arch": "architecture only (full-size, random weights)"}


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _fmt_pct(x: float | None, sign: bool = False) -> str:
    return "—" if x is None else f"{x * 100:+.1f}%" if sign else f"{x * 100:.1f}%"


def _cell(rec: Mapping[str, Any] | None) -> str:
    if not rec:
        return "—"
    if "skipped" in rec:
        return "skipped"
    return f"{_fmt_s(rec['seconds_per_image'])} ({rec['images_per_second']:.3g}/s)"


def caveats(result: Mapping[str, Any]) -> list[str]:
    notes = []
    if result["mode"] == "smoke":
        notes.append(SMOKE_BANNER)
    if result["environment"]["device"] != "cuda" and result["mode"] != "smoke":
        notes.append(CPU_BANNER)
    if result["mode"] == "arch":
        notes.append(ARCH_NOTE)
    return notes


def render_markdown(result: Mapping[str, Any], figure: str = "latency.png") -> str:
    env, st = result["environment"], result["settings"]
    sizes = [str(r) for r in st["resolutions"]]
    head_hdr = " | ".join(f"{s}²" for s in sizes)
    sep = "|---" * (len(sizes) + 1) + "|"
    lines = ["# Latency: dev vs schnell vs schnell + head (paper §5.3, Fig. 6)", ""]
    lines += [f"> {note}\n" for note in caveats(result)]
    lines += [f"Mode: **{result['mode']}** ({MODE_WORDS[result['mode']]}) · profile `{result['profile']}` · "
              f"{env['device']} ({env['device_name']}) · pipelines {env['pipeline_dtype']} · heads "
              f"{env['head_precision']}{', channels_last' if env['head_channels_last'] else ''}"
              f"{', torch.compile' if env['head_compile'] else ''} · {env['threads']} thread(s) · median of "
              f"{st['repeats']} pipeline / {st['head_repeats']} head calls after {st['warmup']} / "
              f"{st['head_warmup']} warm-up.", "", f"![Seconds per image vs resolution]({figure})", "",
              "## Seconds per image (images per second)", "", f"| pipeline | {head_hdr} |", sep]
    dev, sch = st["dev"], st["schnell"]
    lines.append(f"| FLUX.1-dev text-to-image ({dev['steps']} steps, guidance {dev['guidance']:g}) | "
                 + " | ".join(_cell(result["pipelines"]["dev"].get(s)) for s in sizes) + " |")
    lines.append(f"| FLUX.1-schnell text-to-image ({sch['steps']} steps) | "
                 + " | ".join(_cell(result["pipelines"]["schnell"].get(s)) for s in sizes) + " |")
    for head, by_res in result["schnell_plus_head"].items():
        lines.append(f"| schnell + {head} | " + " | ".join(_cell(by_res.get(s)) for s in sizes) + " |")
    lines += ["", "Pipeline times include text encoding; alone it takes "
              + ", ".join(f"{_fmt_s(result['text_encoding'][r].get('seconds_per_call'))} for {r} "
                          f"({st[r]['max_sequence_length']} T5 tokens)" for r in ("dev", "schnell")
                          if r in result["text_encoding"]) + " (any resolution).", ""]

    der = result["derived"]
    lines += ["## Saving vs dev and the head's overhead", "", f"| | {head_hdr} | mean |", sep + "---|"]
    lines.append("| schnell alone: saving vs dev | " + " | ".join(
        _fmt_pct(der[s]["schnell_saving_vs_dev"]) for s in sizes) + f" | {_fmt_pct(der['mean']['schnell_saving_vs_dev'])} |")
    for head in result["schnell_plus_head"]:
        lines.append(f"| schnell + {head}: saving vs dev | " + " | ".join(
            _fmt_pct(der[s]["heads"][head]["saving_vs_dev"]) for s in sizes)
            + f" | {_fmt_pct(der['mean']['heads'][head]['saving_vs_dev'])} |")
        lines.append(f"| schnell + {head}: overhead vs schnell | " + " | ".join(
            _fmt_pct(der[s]["heads"][head]["overhead_vs_schnell"], sign=True) for s in sizes) + " | |")
    lines += ["", "saving = 1 − t(schnell + head) / t(dev); overhead = t(schnell + head) / t(schnell) − 1, "
              "both from end-to-end runs measured side by side in this run.", ""]

    lines += ["## Heads alone", "", "| head | parameters | size | GFLOP/image | batch | s/batch | images/s | "
              "TFLOP/s | % of peak |", "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["heads"].items():
        for s, cell in sorted(entry["resolutions"].items(), key=lambda kv: int(kv[0])):  # JSON sorts as text
            if "skipped" in cell:
                lines.append(f"| {name} | {entry['parameters']:,} | {s}² | — | — | skipped: {cell['skipped']} | | | |")
                continue
            for b, rec in sorted(cell["batches"].items(), key=lambda kv: int(kv[0])):
                if "skipped" in rec:
                    lines.append(f"| {name} | {entry['parameters']:,} | {s}² | {cell['gflop_per_image']:.3g} | {b} "
                                 f"| {rec['skipped']} | | | |")
                    continue
                lines.append(f"| {name} | {entry['parameters']:,} | {s}² | {cell['gflop_per_image']:.3g} | {b} | "
                             f"{_fmt_s(rec['seconds_per_call'])} | {rec['images_per_second']:.3g} | "
                             f"{rec['achieved_tflops']:.3g} | {_fmt_pct(rec['fraction_of_peak'])} |")
    lines += ["", "Sources: " + "; ".join(f"`{n}`: {e['source']}" for n, e in result["heads"].items())
              + ". FLOPs are exact (2 × multiply-adds of convolutions, counted on the meta device). "
              + (f"Peak: {env['peak_bf16_tflops']:g} dense bf16 TFLOP/s (datasheet, or --peak-tflops)."
                 if env["peak_bf16_tflops"] else
                 "No peak known for this device (CPU or unlisted GPU; --peak-tflops sets one), so no % of peak."),
              ""]

    p, this = result["paper"], result["paper"]["this_run_512"]
    num = lambda v: "not measured" if v is None else f"{v:.3g}"  # noqa: E731
    lines += [f"## Against the paper ({p['device']}, {p['resolution']}²)", "",
              f"| | paper | this run, {p['resolution']}² |", "|---|---|---|",
              f"| FLUX.1-schnell images/s | {p['schnell_images_per_second']} | {num(this['schnell_images_per_second'])} |",
              f"| FLUX.1-dev images/s | ≈{1 / p['implied_dev_seconds_per_image']:.3g} (implied, see below) | "
              f"{num(this['dev_images_per_second'])} |"]
    if this["heads"]:
        for name, h in this["heads"].items():
            bound = h["compute_bound_images_per_second"]
            lines.append(f"| head images/s: {name} | {p['head_images_per_second']} ({p['head']}) | "
                         f"{num(h['images_per_second_smallest_batch'])} at batch {h['smallest_batch']}, "
                         f"{num(h['images_per_second_best'])} at batch {h['best_batch']} "
                         f"({h['gflop_per_image']:.4g} GFLOP/image; compute bound "
                         f"{'n/a, no peak known' if bound is None else f'{bound:.4g}'}) |")
        for name, h in this["heads"].items():
            if h["saving_vs_dev"] is not None:
                lines.append(f"| saving of schnell + {name} vs dev | {p['saving_vs_dev']:.0%} (average) | "
                             f"{_fmt_pct(h['saving_vs_dev'])} |")
    else:
        lines.append(f"| head images/s | {p['head_images_per_second']} ({p['head']}) | not measured |")
    lines += ["", f"From the paper's numbers: schnell {1 / p['schnell_images_per_second']:.1f} s and the head "
              f"{1 / p['head_images_per_second'] * 1e3:.0f} ms per image; an 82% saving at "
              f"{p['resolution']}² would put dev at ≈{p['implied_dev_seconds_per_image']} s per image."]
    if "implied_head_tflops" in p:
        lines.append(f"The paper-size ESA generator built here costs {p['head_gflop_per_image']} GFLOP per "
                     f"{p['resolution']}² image, so 11.2 images/s is {p['implied_head_tflops']} TFLOP/s, "
                     f"{_fmt_pct(p['implied_fraction_of_a100_bf16_peak'])} of an A100's "
                     f"{p['peak_bf16_tflops']:g} dense bf16 TFLOP/s (compute bound ≈"
                     f"{p['a100_compute_bound_images_per_second']:g} images/s), or "
                     f"{_fmt_pct(p['implied_head_tflops'] / p['peak_fp32_tflops'])} of its {p['peak_fp32_tflops']:g} "
                     "plain-float32 TFLOP/s; the paper states neither its precision nor its batch size.")
    lines += ["", "## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines.append("")
    return "\n".join(lines)


def plot_latency(result: Mapping[str, Any], path: str | Path) -> None:
    """Fig. 6: seconds per image vs resolution, one line per pipeline, log-scale y."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    sizes = [int(r) for r in result["settings"]["resolutions"]]
    fig = Figure(figsize=(7.2, 5.0))
    ax = fig.add_subplot()
    seconds_by_line: list[tuple[str, list[float | None], dict[str, Any]]] = [
        ("FLUX.1-dev", [_spi(result["pipelines"]["dev"].get(str(s))) for s in sizes], {"marker": "o"}),
        ("FLUX.1-schnell", [_spi(result["pipelines"]["schnell"].get(str(s))) for s in sizes], {"marker": "o"}),
    ]
    for head, by_res in result["schnell_plus_head"].items():
        seconds_by_line.append((f"schnell + {head}", [_spi(by_res.get(str(s))) for s in sizes], {"marker": "s"}))
    for head, entry in result["heads"].items():
        seconds_by_line.append((f"{head} alone (batch {min(result['settings']['head_batch_sizes'])})",
                                [_head_alone_spi(entry["resolutions"].get(str(s))) for s in sizes],
                                {"marker": "^", "linestyle": "--"}))
    for label, ys, style in seconds_by_line:
        pts = [(x, y) for x, y in zip(sizes, ys) if y is not None and y > 0]
        if pts:
            ax.plot(*zip(*pts), label=label, **style)
    p = PAPER
    if min(sizes) <= p["resolution"] <= max(sizes):  # only where it does not stretch the axis
        ax.plot([p["resolution"]] * 2, [1 / p["schnell_images_per_second"], 1 / p["head_images_per_second"]],
                linestyle="none", marker="*", markersize=12, color="black", label="paper, A100: schnell / ESA head")
    ax.set_yscale("log")
    # plain seconds at 1-2-5 steps rather than 6x10^-1 labels
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xscale("log", base=2)  # resolutions double: even spacing
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("resolution (pixels per side)")
    ax.set_ylabel("seconds per image (median)")
    env = result["environment"]
    title = f"Seconds per image vs resolution (paper Fig. 6)\n{result['mode']} mode on {env['device_name']}"
    if result["mode"] == "smoke":
        title += "\nsmoke stand-ins: these numbers mean nothing about real latency"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def summary_text(result: Mapping[str, Any]) -> str:
    """A terminal-sized table: seconds per image per pipeline and resolution, and the savings."""
    sizes = [str(r) for r in result["settings"]["resolutions"]]
    rows: list[tuple[str, list[str]]] = [
        (f"FLUX.1-{role}", [_fmt_s(_spi(result["pipelines"][role].get(s))) for s in sizes]) for role in ("dev", "schnell")]
    rows += [(f"schnell + {h}", [_fmt_s(_spi(by.get(s))) for s in sizes]) for h, by in result["schnell_plus_head"].items()]
    rows += [(f"{h} alone", [_fmt_s(_head_alone_spi(e["resolutions"].get(s))) for s in sizes])
             for h, e in result["heads"].items()]
    rows += [(f"saving, schnell + {h} vs dev", [_fmt_pct(result["derived"][s]["heads"][h]["saving_vs_dev"])
                                               for s in sizes]) for h in result["schnell_plus_head"]]
    width = max(len(name) for name, _ in rows)
    env = result["environment"]
    lines = [f"mode {result['mode']} on {env['device']} ({env['device_name']}); seconds per image, median"]
    if result["mode"] == "smoke":
        lines.append("smoke stand-ins: these numbers mean nothing about real latency")
    lines.append(" " * width + "".join(f"{s + '²':>12}" for s in sizes))
    lines += [name.ljust(width) + "".join(f"{v:>12}" for v in values) for name, values in rows]
    return "\n".join(lines)


def mlflow_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers worth a metric: everything numeric except raw samples and settings."""
    keep = ("pipelines", "schnell_plus_head", "heads", "text_encoding", "derived")

    def strip(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: strip(v) for k, v in node.items() if k not in ("timing", "parameters")}
        return node

    out = {k: strip(result[k]) for k in keep if k in result}
    out["seconds_total"] = result.get("seconds_total")
    return out


@dataclass(frozen=True)
class Outputs:
    metrics: Path = paths.METRICS / "latency.json"
    figure: Path = paths.REPORTS / "latency.png"
    report: Path = paths.REPORTS / "latency.md"

    @classmethod
    def in_dir(cls, directory: str | Path) -> "Outputs":
        d = Path(directory)
        return cls(d / "latency.json", d / "latency.png", d / "latency.md")

    def all(self) -> tuple[Path, ...]:
        return (self.metrics, self.figure, self.report)


def write_outputs(result: Mapping[str, Any], out: Outputs = Outputs()) -> None:
    from facerefine.io import write_json, write_text

    write_json(out.metrics, result)
    plot_latency(result, out.figure)
    figure = os.path.relpath(out.figure, out.report.parent)
    write_text(out.report, render_markdown(result, figure=Path(figure).as_posix()))


__all__ = [
    "Timing", "time_callable", "percentile", "images_per_second", "seconds_per_image", "saving", "overhead",
    "achieved_tflops", "compute_bound_images_per_second", "derive", "PeakMemory", "environment",
    "BenchParams", "bench_params", "run_benchmark", "write_outputs", "Outputs", "count_flops", "PAPER",
    "summary_text", "render_markdown", "plot_latency", "mlflow_metrics",
]
