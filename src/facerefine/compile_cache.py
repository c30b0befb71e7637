"""The persistent compile cache and dynamo's graph limits, shared by compiled heads
(:mod:`facerefine.compile`) and compiled FLUX (:func:`facerefine.weights.flux.compile_flux`).

Inductor's FX-graph and autograd caches (and Triton's kernels) go to ``$FACEREFINE_COMPILE_CACHE``,
default ``$FACEREFINE_HOME/compile`` (``./.facerefine/compile``), never the global
``/tmp/torchinductor_$USER``: a second process that compiles the same graph loads the compiled
code instead of compiling it again.
"""

from __future__ import annotations

import os
from pathlib import Path

from facerefine.paths import facerefine_home


def cache_dir() -> Path:
    """Where compiled artifacts persist: ``$FACEREFINE_COMPILE_CACHE``, else
    ``$FACEREFINE_HOME/compile`` (default ``./.facerefine/compile``)."""
    if os.environ.get("FACEREFINE_COMPILE_CACHE"):
        return Path(os.environ["FACEREFINE_COMPILE_CACHE"]).resolve()
    return facerefine_home() / "compile"


def use_cache(directory: str | Path | bool | None = None) -> Path | None:
    """Point inductor's (and Triton's) on-disk caches at ``directory`` (None or True:
    :func:`cache_dir`; False: leave torch's own settings alone and return None) and turn the
    local FX-graph and autograd caches on. Call before the first compile of the process:
    inductor fixes its cache folder when it first needs it."""
    if directory is False:
        return None
    path = Path(directory) if directory not in (None, True) else cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ["TRITON_CACHE_DIR"] = str(path / "triton")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return path


def cache_counters() -> dict[str, int]:
    """Inductor's FX-graph cache hits and misses in this process (a warm start hits)."""
    from torch._dynamo.utils import counters

    return {k: int(v) for k, v in counters["inductor"].items() if k.startswith("fxgraph_cache")}


def allow_graphs(count: int) -> None:
    """Raise dynamo's recompile limits to ``count`` graphs per compiled function, so that no
    legitimate shape (a bucket, a batch size, a resolution) silently falls back to eager."""
    from torch._dynamo import config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, count + 1)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 4 * (count + 1))
