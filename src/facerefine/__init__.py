"""facerefine: FLUX.1-schnell + a fast head, close to FLUX.1-dev.

``from facerefine import load_head`` (or ``Head``, ``refine``) is the Python API; these
are imported lazily, so ``import facerefine`` (and ``facerefine --help``) stay light.
"""

from __future__ import annotations

from typing import Any

from facerefine import numerics

# Before any facerefine module imports torch: the numeric pins (facerefine.numerics) must be in
# the environment when torch loads. FACEREFINE_NUMERICS=native opts out.
numerics.apply()

_LAZY = {"load_head": "facerefine.api", "Head": "facerefine.api", "refine": "facerefine.api",
         "load_onnx": "facerefine.onnx_backend"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facerefine' has no attribute {name!r}")
