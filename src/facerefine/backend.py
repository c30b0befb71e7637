"""A head name, folder, Hub id or ``.onnx`` file -> a ready :class:`~facerefine.enhance.Enhancer`,
on the backend that suits it (torch, or onnxruntime on a CPU): the one loader behind
``facerefine enhance``, ``facerefine generate`` and ``facerefine demo``.

Errors are plain exceptions so that each front end words them its own way: :class:`HeadError`
for a head that cannot be found or read (the CLI's ``--head``), ``ValueError`` for settings that
do not fit the head (an overlap as large as the tile, say). Notes (a fallback taken, a dtype
changed) go to ``note``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from facerefine import numerics

if TYPE_CHECKING:
    from facerefine.enhance import Enhancer

BACKENDS = ("auto", "torch", "onnxruntime")


class HeadError(ValueError):
    """The head itself cannot be found, read or run on the asked backend."""


def load_enhancer(head: str, device: str | None, dtype: str, batch_size: int = 1, tile: int | None = None,
                  overlap: int = 32, compile_: str = "auto", backend: str = "torch",
                  compile_mode: str | None = None, note: Callable[[str], None] = print) -> Enhancer:
    """``backend``: ``torch``, ``onnxruntime`` or ``auto`` (onnxruntime on a CPU where the head
    exports, else torch; an export that fails falls back to torch with a note)."""
    from facerefine.enhance import Enhancer, default_device

    numerics.pin_torch()  # deterministic algorithms, as in the stages
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    auto = backend == "auto"
    if auto:
        from facerefine.compile import wants_compile
        from facerefine.onnx_backend import default_backend

        backend = default_backend(head, device, dtype, wants_compile(compile_, device or default_device()))
    if backend == "onnxruntime":
        from facerefine.onnx_backend import OnnxHead

        try:
            onnx_head = OnnxHead.load(head)
        except (OSError, ValueError, ImportError, RuntimeError) as err:  # OSError: e.g. a read-only cache
            if not auto or str(head).endswith(".onnx"):
                raise HeadError(str(err)) from None
            note(f"onnxruntime unavailable for this head ({err}); running it on torch")
            return load_enhancer(head, device, dtype, batch_size, tile, overlap, compile_, "torch",
                                 compile_mode, note)
        return onnx_head.enhancer(device=device, dtype=dtype, batch_size=batch_size, tile=tile, overlap=overlap)
    from facerefine.heads import read_head_folder

    try:
        loaded = read_head_folder(head)
    except (FileNotFoundError, ValueError) as err:
        raise HeadError(str(err)) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enhancer = Enhancer(loaded, device=device or default_device(), dtype=dtype, batch_size=batch_size,
                            tile=tile, overlap=overlap, compile=compile_, compile_mode=compile_mode)
    for w in caught:
        note(str(w.message))
    return enhancer
