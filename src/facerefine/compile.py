"""torch.compile for heads: when to compile, size buckets, and the placed (compiled) head.

- **When.** ``--compile auto`` compiles on CUDA and not on the CPU, where onnxruntime (or
  eager torch) stays the default: a CPU compile costs seconds to minutes per graph and the
  compiled CPU kernels gain little for these nets (benchmarks/README.md).
- **How.** On CUDA the weights are cast to bfloat16/float16 (no autocast: compiled graphs
  fuse better without the casts) and channels_last. The mode is a choice (``COMPILE_MODES``):
  the default ``max-autotune-no-cudagraphs`` autotunes the convolutions; ``reduce-overhead``
  adds CUDA graphs, which paid nothing for the paper-size CycleGAN at 512², batch 16 on an
  H200 (800 vs 789 img/s, ../shared/results-h200/headroom_heads.json) but can for small
  images or batch 1, where kernel launches dominate.
- **Size buckets.** A compiled graph is specialised to its input shape (``dynamic=False``:
  symbolic sizes would cost the convolution autotuning). So that a folder of mixed sizes
  does not compile once per size, each side is padded up to the next rung of a ladder
  (:func:`bucket_ladder`: 64, 128, 192, 256, 320, 384, 448, 512, 640, …, 2048) and the batch to the
  enhancer's batch size; outputs are cropped back to the exact input size. A head compiles
  at most ``len(ladder) ** 2`` graphs, and dynamo's recompile limit is raised to that bound
  so no bucket silently falls back to eager. Sides above the ladder's cap run eager.
  Padding to a bucket is not free of effects: instance norm (CycleGAN, ESA) and CBAM's global
  pooling (U-Net) see the reflected border too, so a compiled output equals an eager one exactly
  (within float tolerance) on sizes that are their own bucket (512², 1024², …) and is close but
  not identical on others; ``--compile off`` is the reference.
- **Cache.** Compiled code persists in the project's compile cache (:mod:`facerefine.compile_cache`):
  a second process with the same head, mode and bucket loads it instead of compiling again.

FLUX is compiled by :func:`facerefine.weights.flux.compile_flux` (``profiles.<p>.compile``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facerefine.compile_cache import allow_graphs, use_cache
from facerefine.precision import effective_dtype, torch_dtype

COMPILE_CHOICES = ("auto", "on", "off")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_MODE = "max-autotune-no-cudagraphs"  # autotuned convs; CUDA graphs did not pay (module doc)
CPU_MODE = "default"                      # max-autotune on a CPU only adds compile time
BUCKET_STEP = 64        # every bucket is a multiple of this (and of the head's size_multiple)
BUCKET_CAP = 2048       # larger sides run eager (or use --tile, whose tiles are one bucket)
_PLACED = "_facerefine_placed"  # attribute of a head's model: {settings: (placed model, its forward)}


def wants_compile(choice: str | bool | None, device: torch.device | str) -> bool:
    """``auto``/None: compile on CUDA only; ``on``/True and ``off``/False as said."""
    if isinstance(choice, bool):
        return choice
    choice = choice or "auto"
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {choice!r}")
    return choice == "on" or (choice == "auto" and torch.device(device).type == "cuda")


def default_mode(device: torch.device | str) -> str:
    return CUDA_MODE if torch.device(device).type == "cuda" else CPU_MODE


def check_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode


# ----------------------------------------------------------------- buckets


def bucket_ladder(multiple: int = 1, minimum: int = 1, cap: int = BUCKET_CAP, step: int = BUCKET_STEP) -> list[int]:
    """Bucket sides: four rungs per octave (1, 1.25, 1.5, 1.75 times a power of two of the unit
    lcm(step, multiple)), rounded up to the unit, from the smallest >= ``minimum`` up to ``cap``.
    Every power of two of the unit is a rung (512² images are never padded), and a side is
    padded by at most 25 % above the first octave.

    >>> bucket_ladder(4, cap=1024)
    [64, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024]
    """
    unit = math.lcm(step, multiple)
    rungs: set[int] = set()
    octave = 1
    while unit * octave <= cap:
        rungs.update(math.ceil(octave * f / 4) * unit for f in (4, 5, 6, 7))
        octave *= 2
    ladder = sorted(r for r in rungs if minimum <= r <= cap)
    if not ladder:
        raise ValueError(f"no bucket of a multiple of {unit} >= {minimum} fits under the cap {cap}")
    return ladder


def bucket_side(length: int, ladder: list[int]) -> int | None:
    """The smallest rung >= ``length``; None above the cap."""
    for side in ladder:
        if side >= length:
            return side
    return None


# ------------------------------------------------------------ head runner


@dataclass
class GraphLog:
    """The input shapes a compiled head has run (one graph each), and eager fallbacks."""

    shapes: set[tuple[int, ...]] = field(default_factory=set)
    eager_calls: int = 0

    def summary(self, bound: int) -> str:
        sizes = ", ".join(f"{s[-2]}x{s[-1]}" for s in sorted(self.shapes))
        text = f"compiled {len(self.shapes)} graph(s) (bound {bound}): {sizes or 'none'}"
        return text + (f"; {self.eager_calls} batch(es) above the bucket cap ran eager" if self.eager_calls else "")


class HeadRunner:
    """A head's forward pass, placed for ``device`` and optionally compiled.

    The weights are cast to ``dtype`` (``precision.effective_dtype``: float16 stays float32 on a
    CPU) and, on CUDA, to channels_last (unless ``channels_last=False``). When compiled, every
    batch is padded to ``batch_size`` images, so each bucket compiles once; inputs must
    already be at a bucket size (the Enhancer pads them) or be larger than the cap.
    ``backend`` is torch.compile's (tests count graphs with a counting backend).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device | str, *, dtype: str = "float32",
                 compile: str | bool | None = "auto", mode: str | None = None, backend: Any = "inductor",
                 batch_size: int = 1, multiple: int = 1, minimum: int = 1, cap: int = BUCKET_CAP,
                 cache: str | Path | None | bool = None, channels_last: bool = True) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        # the weights themselves in reduced precision (no autocast), by the one rule of
        # precision.effective_dtype (float16 becomes float32 on a CPU; a bad name fails there)
        self.dtype = torch_dtype(effective_dtype(dtype, self.device))
        self.memory_format = torch.channels_last if cuda and channels_last else torch.contiguous_format
        self.cache = cache
        self.batch_size = batch_size
        self.compiled = wants_compile(compile, self.device)
        self.mode = check_mode(mode or default_mode(self.device)) if self.compiled else None
        self.ladder = bucket_ladder(multiple, minimum, cap) if self.compiled else []
        self.log = GraphLog()
        # One placed (and compiled) copy per head, device and settings, reused by every runner:
        # the API and the ComfyUI node make an Enhancer per call, and a fresh copy would retrace.
        # The weights' version counters are in the key, so an in-place update makes a new copy.
        backend_key = backend if isinstance(backend, str) else id(backend)
        key = (str(self.device), self.dtype, self.memory_format, self.compiled, self.mode, backend_key,
               tuple(p._version for p in model.parameters()))
        placed = model.__dict__.setdefault(_PLACED, {})  # lives (and dies) with the head's model
        if key not in placed:
            placed[key] = self._place(model, backend)
        self.eager, self._fn = placed[key]

    def _place(self, model: torch.nn.Module, backend: Any) -> tuple[torch.nn.Module, Callable]:
        # A copy: casting in place would round the caller's weights, and two runners that differ
        # in memory format would otherwise share, and re-format, one module.
        if self.dtype != torch.float32 or self.memory_format != torch.contiguous_format:
            model = copy.deepcopy(model, memo={id(model.__dict__[_PLACED]): {}})
        model = model.to(self.device, dtype=self.dtype).eval().to(memory_format=self.memory_format)
        for p in model.parameters():
            p.requires_grad_(False)
        if not self.compiled:
            return model, model
        use_cache(self.cache)
        allow_graphs(self.bound)  # every bucket is one legitimate graph
        options: dict[str, Any] = {"backend": backend, "dynamic": False}
        if backend == "inductor":
            options["mode"] = self.mode
        return model, torch.compile(model, **options)

    @property
    def bound(self) -> int:
        """The most graphs this runner compiles: one per (height, width) bucket pair."""
        return len(self.ladder) ** 2

    def in_buckets(self, height: int, width: int) -> bool:
        return bool(self.ladder) and max(height, width) <= self.ladder[-1]

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W (any device, N <= batch_size when compiled) -> float32 on ``device``."""
        x = batch.to(self.device, non_blocking=True).to(self.dtype)
        x = x.contiguous(memory_format=self.memory_format)
        if not self.compiled or not self.in_buckets(*x.shape[-2:]):
            self.log.eager_calls += int(self.compiled)
            return self.eager(x).float()
        n = x.shape[0]
        if n > self.batch_size:  # one graph per bucket: never a larger batch
            return torch.cat([self(chunk) for chunk in x.split(self.batch_size)])
        if n < self.batch_size:  # a short last batch reuses the full batch's graph
            fill = x[-1:].expand(self.batch_size - n, *x.shape[1:])
            x = torch.cat([x, fill]).contiguous(memory_format=self.memory_format)
        self.log.shapes.add(tuple(x.shape))
        return self._fn(x)[:n].float()

    def summary(self) -> str:
        if not self.compiled:
            return "eager (not compiled)"
        return f"torch.compile mode {self.mode}: " + self.log.summary(self.bound)
