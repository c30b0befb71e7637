"""Pinned CPU numerics: the same bits from every x86-64 CPU with AVX2 (Intel Haswell 2013,
AMD Excavator 2015 and later), whatever the machine's newest instructions.

Why: MKL's matmul and oneDNN's convolution pick their kernels, and so their rounding, by the
CPU (an AVX-512 machine gets other bits than an AVX2 one; MKL also by vendor), PyTorch's own
vectorised kernels by the instruction set, and reductions (``loss.mean()``) take another path on
one thread than on several. :data:`PINS` fixes all of it (benchmarks/numerics_pins.py measures
which pin moves which bits):

* ``MKL_CBWR=COMPATIBLE,STRICT``: MKL's conditional numerical reproducibility on its SSE2 branch,
  the only branch MKL honours on non-Intel CPUs too (a named branch such as AVX2 falls back to
  AUTO there, per MKL's documentation), so Intel and AMD get the same float32 matmuls;
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (convolutions, bfloat16 matmuls) uses AVX2 kernels at most;
* ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (element-wise, reductions,
  norms, attention) use their AVX2 build;
* ``OPENBLAS_CORETYPE=Haswell``: numpy's and scipy's OpenBLAS (PCA and t-SNE in the diversity
  stage) use their AVX2 kernels (measured here: an AVX-512 CPU picks SkylakeX kernels, whose
  matmul bits differ from the Haswell/Zen ones an AVX2 CPU gets; OpenBLAS also reads
  ``OMP_NUM_THREADS``, and 1 thread differs from 2+ there too);
* ``OMP_NUM_THREADS`` (:data:`THREADS`): a fixed intra-op thread count (1 thread rounds
  reductions differently from 2 or more; 2, 3, 4, 8 and 16 measured alike);
* ``CUBLAS_WORKSPACE_CONFIG``: what deterministic cuBLAS needs (GPU runs; their bits still
  depend on the GPU model, see :func:`pin_torch`).

They must be in the environment before torch is imported (MKL, oneDNN and ATen read them once),
so :func:`apply` runs from ``facerefine/__init__.py`` and every stage script imports ``facerefine``
before torch; child processes (accelerate, DataLoader workers, the MLflow flusher) inherit them.
This module imports nothing heavy.

Your environment wins: a variable you set is kept as is (``setdefault``). ``FACEREFINE_NUMERICS=native``
skips every pin (the machine's fastest code paths; outputs then match the committed ones only
within the tolerances of ``.ci/check_clean.py``). On a CPU without AVX2, or not x86-64 (Arm),
the AVX2 pins are skipped (``ATEN_CPU_CAPABILITY=avx2`` would crash there) and the
others kept: runs are still repeatable on that machine, but not bit-equal to an x86 one.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from pathlib import Path

SWITCH = "FACEREFINE_NUMERICS"  # "pinned" (default) or "native" (no pins)
NATIVE = "native"
THREADS = "2"
# Pins that need AVX2 (and FMA): ATen trusts ATEN_CPU_CAPABILITY without checking the CPU, so
# on an older CPU it would crash with an illegal instruction.
ISA_PINS: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
}
# Pins that are harmless on any machine (MKL runs on x86-64 only; its SSE2 branch exists on all).
ANY_CPU_PINS: dict[str, str] = {
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "OMP_NUM_THREADS": THREADS,
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
}
PINS: dict[str, str] = {**ANY_CPU_PINS, **ISA_PINS}

_state: dict[str, str] = {}  # what apply() decided: variable -> "pinned" | "yours"; "mode" -> summary
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (lower case, Linux /proc/cpuinfo or macOS sysctl); None if unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].lower().split())
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, check=False, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return set(out.lower().replace(".", "_").split()) or None
    return None


def has_avx2() -> bool:
    """An x86-64 CPU known to have AVX2 and FMA; False when unknown (pinning would risk a crash)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    flags = cpu_flags()
    return bool(flags) and "avx2" in flags and ("fma" in flags or "fma3" in flags)


def apply() -> dict[str, str]:
    """Set the pins that the environment does not set already (once per process); returns
    :func:`settings`. Warns once if torch was imported before with other settings."""
    if _state:
        return settings()
    environ = os.environ
    if environ.get(SWITCH, "pinned").strip().lower() == NATIVE:
        _state["mode"] = "native (opted out: FACEREFINE_NUMERICS=native)"
        return settings()
    if environ.get(SWITCH, "pinned").strip().lower() not in {"", "pinned"}:
        _warn_once("switch", f"{SWITCH}={environ[SWITCH]!r} is neither 'pinned' nor 'native'; pinning")
    wanted = dict(PINS) if has_avx2() else dict(ANY_CPU_PINS)
    _state["mode"] = "pinned" if len(wanted) == len(PINS) else (
        f"pinned without the instruction-set pins: no AVX2 known on this {platform.machine()} CPU")
    late = [k for k in wanted if "torch" in sys.modules and k not in environ]
    for key, value in wanted.items():
        _state[key] = "yours" if key in environ else "pinned"
        environ.setdefault(key, value)
    if late:
        _state["late"] = ",".join(late)
        _warn_once("late", "torch was imported before facerefine, so these numeric pins may not reach it: "
                   f"{', '.join(late)}. Import facerefine before torch, or set them in the environment "
                   f"(facerefine.numerics.PINS); {SWITCH}=native silences this.")
    return settings()


def settings() -> dict[str, str]:
    """What is in effect, for MLflow and the benchmark's environment block: the mode and each
    variable's value (``unset``), marked ``(yours)`` where the environment set it, not facerefine."""
    out = {"mode": _state.get("mode", "not applied")}
    if "late" in _state:
        out["mode"] += f"; torch was imported first, so {_state['late']} may not apply"
    for key in PINS:
        value = os.environ.get(key)
        out[key] = "unset" if value is None else value + (" (yours)" if _state.get(key) == "yours" else "")
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = str(torch.get_num_threads())
        out["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        out["deterministic_algorithms"] = str(torch.are_deterministic_algorithms_enabled())
    return out


def pin_torch() -> None:
    """Deterministic algorithms in torch (imports it; call where torch is used anyway). Warn-only:
    an op without a deterministic CUDA kernel warns instead of failing. Only under the pins."""
    if not _state.get("mode", "").startswith("pinned"):
        return
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    # Filling every torch.empty with NaN (a debugging aid of the flag) changes no correct
    # result and costs a write per allocation.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
