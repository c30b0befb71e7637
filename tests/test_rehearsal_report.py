"""The per-stage resource table read back from MLflow (benchmarks/rehearsal_report.py)."""

import importlib.util
from pathlib import Path

import pytest

from facerefine.tracking import resource_usage

spec = importlib.util.spec_from_file_location(
    "rehearsal_report", Path(__file__).resolve().parents[1] / "benchmarks" / "rehearsal_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def run(stage, wall, rss, status="FINISHED", gpu=None):
    metrics = {"resources.wall_s": wall, "resources.peak_rss_mb": rss}
    if gpu is not None:
        metrics["resources.peak_gpu_mb"] = gpu
    return {"tags": {"stage": stage}, "metrics": metrics, "status": status}


def test_newest_finished_run_per_stage_in_pipeline_order():
    runs = [  # newest first, as MLflow returns them
        run("evaluate", 30.0, 900.0),
        run("generate_schnell", 50.0, 7000.0, status="FAILED"),
        run("train_cyclegan@esa-l2-lr0.0001", 20.0, 1500.0),
        run("generate_schnell", 40.0, 6500.0, gpu=12000.0),
        run("prompts", 1.0, 200.0),
        run("prompts", 9.0, 999.0),  # older: ignored
        {"tags": {"stage": "diversity"}, "metrics": {"x": 1.0}, "status": "FINISHED"},  # no resources logged
    ]
    rows = report.collect(runs)
    assert [r["stage"] for r in rows] == ["prompts", "generate_schnell", "train_cyclegan@esa-l2-lr0.0001",
                                          "evaluate"]
    assert rows[0]["wall_s"] == 1.0 and rows[1]["peak_rss_mb"] == 6500.0 and rows[1]["peak_gpu_mb"] == 12000.0
    assert report.totals(rows) == {"wall_s": 91.0, "peak_rss_mb": 6500.0, "peak_gpu_mb": 12000.0}
    table = report.markdown(rows)
    assert "| generate_schnell | 40.0 | 6,500 | 12,000 |" in table and "| evaluate | 30.0 | 900 | – |" in table


def test_resource_usage_reports_this_process():
    import time

    usage = resource_usage(time.perf_counter() - 1.5)
    assert usage["resources.wall_s"] == pytest.approx(1.5, abs=0.5)
    assert usage["resources.peak_rss_mb"] > 50  # python + torch are loaded in the test process
