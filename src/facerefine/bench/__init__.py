"""Latency benchmark: dev vs schnell vs schnell + head across resolutions (paper §5.3, Fig. 6).

One module per concern:

* ``timing``: the harness, :func:`time_callable` -> :class:`Timing` (pure statistics);
* ``derived``: images/s, s/image, :func:`saving`, :func:`overhead`, TFLOP/s, the compute
  bound, :func:`derive` (the saving table) and :func:`latency_headline` (the metrics file);
* ``environment``: peak memory (CUDA max allocated, or the process's peak RSS on a CPU)
  and the record of what produced the numbers;
* ``settings``: the validated params with CLI overrides (:func:`with_overrides`) and
  the run-time :class:`RunOptions`;
* ``workloads``: the timed calls and :func:`run_benchmark`, which returns one JSON-ready dict;
* ``outputs``: ``metrics/latency.json`` (headline), ``reports/latency.json`` (full table),
  ``reports/latency.md`` (with the paper's figures alongside) and ``reports/latency.png``;
* arch mode builds its networks with :mod:`facerefine.weights.flux` (published configs, random weights).

Three modes say where the networks come from (the report states which one ran):

* ``smoke``: the project's tiny random stand-ins (:mod:`facerefine.weights`). Runs anywhere; the
  numbers mean nothing about real latency.
* ``weights``: the real checkpoints of the active profile (``profiles.<p>.models``).
* ``arch``: full-size FLUX.1 networks with random weights from the published configs,
  and paper-size heads: real-scale latency with no download. GPU only in practice.
"""

from facerefine.bench.derived import (PAPER, achieved_tflops, compute_bound_images_per_second, derive, derive_all,
                                      dev_key, latency_headline, images_per_second, overhead, peak_tflops_for, saving,
                                      seconds_per_image)
from facerefine.bench.environment import PeakMemory, environment
from facerefine.bench.outputs import (ARCH_NOTE, CPU_BANNER, SMOKE_BANNER, Outputs, mlflow_metrics, plot_latency,
                                      render_markdown, summary_text, write_outputs)
from facerefine.bench.settings import RunOptions, check_mode, effective_mode, with_overrides
from facerefine.bench.timing import Timing, percentile, time_callable
from facerefine.bench.workloads import REFERENCE_CONFIG, count_flops, paper_head_gflop, run_benchmark

__all__ = [
    "Timing", "time_callable", "percentile", "images_per_second", "seconds_per_image", "saving", "overhead",
    "achieved_tflops", "compute_bound_images_per_second", "derive", "derive_all", "dev_key", "latency_headline",
    "peak_tflops_for", "PAPER", "PeakMemory", "environment", "RunOptions", "with_overrides", "effective_mode",
    "check_mode", "run_benchmark", "count_flops", "paper_head_gflop", "REFERENCE_CONFIG", "Outputs",
    "write_outputs", "render_markdown", "plot_latency", "summary_text", "mlflow_metrics", "SMOKE_BANNER",
    "CPU_BANNER", "ARCH_NOTE",
]
