"""Floating-point precision: the dtype names params and the CLI accept, their torch dtypes,
and the one rule for reduced precision on a CPU.

No torch import at module level: ``config`` and ``facerefine --help`` use the names.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

Dtype = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(Dtype)


def torch_dtype(name: str) -> "torch.dtype":
    """The torch dtype of a dtype name."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    import torch

    return getattr(torch, name)


def effective_dtype(requested: str, device: "str | torch.device") -> str:
    """The dtype to run in on ``device``: float16 only on an accelerator (CPU kernels for it are
    slow or missing: float32 instead, with a warning); bfloat16 runs on a CPU as asked, about
    twice float32's speed where the CPU has bf16 units (AMX, AVX512-BF16), slower where it has
    none. The same rule for FLUX pipelines and for the heads' autocast."""
    import torch

    torch_dtype(requested)  # a bad name fails here, naming the choices
    if torch.device(device).type == "cpu" and requested == "float16":
        warnings.warn("dtype float16 requested but running on CPU: using float32", stacklevel=2)
        return "float32"
    return requested
