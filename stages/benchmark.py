"""Stage `benchmark`: latency of dev vs schnell vs schnell + head across resolutions (paper §5.3, Fig. 6).

Writes metrics/latency.json, reports/latency.md and reports/latency.png, and logs one MLflow run.
The mode (smoke stand-ins, real weights, or full-size random "arch" networks) comes from the
profile; `facerefine bench` runs the same benchmark with command-line overrides.
"""

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from facerefine.bench import Outputs, bench_params, mlflow_metrics, run_benchmark, write_outputs
from facerefine.config import load_params, loggable
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run

OUTPUTS = Outputs()  # metrics/latency.json, reports/latency.png, reports/latency.md


def main(overrides: Mapping[str, Any] | None = None) -> None:
    """``overrides``: BenchParams fields to replace (tests use a tiny run)."""
    params = load_params()
    bp = bench_params(params, **dict(overrides or {}))
    logged = {**loggable(params), "bench_resolved": asdict(bp)}
    with stage_run("benchmark", params=logged, profile=params.profile) as run:
        result = run_benchmark(params, bp)
        write_outputs(result, OUTPUTS)
        run.set_tags({"bench_mode": result["mode"], "bench_device": result["environment"]["device_name"]})
        run.log_metrics(mlflow_metrics(result))
        for artifact in OUTPUTS.all():
            run.log_artifact(artifact)


if __name__ == "__main__":
    run_stage(main)
