"""Stage `benchmark`: latency of dev vs schnell vs schnell + head across resolutions (paper §5.3, Fig. 6).

Writes metrics/latency.json (the headline: the saving averaged over resolutions and per
resolution, the heads' images/s), reports/latency.json (the full timing table),
reports/latency.md and reports/latency.png, and logs one MLflow run. The mode (smoke
stand-ins, real weights, or full-size random "arch" networks) comes from the profile;
`facerefine bench` runs the same benchmark with command-line overrides.
"""

from collections.abc import Mapping
from typing import Any

from facerefine.bench import Outputs, mlflow_metrics, run_benchmark, with_overrides, write_outputs
from facerefine.config import load_params, loggable
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run

OUTPUTS = Outputs()  # metrics/latency.json, reports/latency.{json,png,md}


def main(overrides: Mapping[str, Any] | None = None) -> None:
    """``overrides``: bench params to replace (tests use a tiny run), validated like params.yaml."""
    params = with_overrides(load_params(), **dict(overrides or {}))
    with stage_run("benchmark", params=loggable(params), profile=params.profile) as run:
        result = run_benchmark(params)
        write_outputs(result, OUTPUTS)
        run.set_tags({"bench_mode": result["mode"], "bench_device": result["environment"]["device_name"]})
        run.log_metrics(mlflow_metrics(result))
        for artifact in OUTPUTS.all():
            run.log_artifact(artifact)


if __name__ == "__main__":
    run_stage(main)
