"""Peak memory of a measurement and the record of what produced the numbers."""

from __future__ import annotations

import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from facerefine import numerics


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
                compile: bool, flux_compile: str, channels_last: bool, memory_kind: str) -> dict[str, Any]:
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
        "flux_compile": flux_compile,  # none | blocks | full (profiles.<p>.compile)
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "peak_memory": memory_kind,
        "numerics": numerics.settings(),  # the CPU numeric pins in effect (facerefine.numerics)
    }
