"""metrics/summary.json: the headline numbers as pure functions of the metric files."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facerefine.summary import SummaryInputError, build_summary, label, latency_numbers, load_metrics

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["cyclegan", "esa"]


def _quality_row(fid_diff, identity):
    """A row of metrics/quality.json: the headline only (evaluation.HEADLINE_COLUMNS)."""
    return {"fid_diff": fid_diff, "identity_cos_schnell": identity, "clip_iqa": 0.35}


def _latency(per_res: dict[int, dict[str, float | None]], mean: dict[str, float | None], dev_steps: int = 50) -> dict:
    """metrics/latency.json as the benchmark writes it (bench.derived.latency_headline)."""
    return {"mode": "weights", "meaningful": True, "dev_steps": dev_steps,
            "saving_vs_dev": {"mean": mean, **{str(r): heads for r, heads in per_res.items()}},
            "head_images_per_second": {"resolution": max(per_res), **{h: 100.0 for h in mean if h != "schnell"}}}


QUALITY = {"schnell": _quality_row(None, None), "dev": _quality_row(None, None),
           "unet": _quality_row(0.01, 0.97), "cyclegan": _quality_row(0.41, 0.91),
           "esa": _quality_row(0.30, 0.93), "lora": _quality_row(-0.27, 0.88)}
LATENCY = _latency({256: {"unet": 0.80, "cyclegan": 0.79, "esa": 0.78},
                    512: {"unet": 0.84, "cyclegan": 0.83, "esa": 0.82}},
                   mean={"unet": 0.82, "cyclegan": 0.81, "esa": 0.80, "schnell": 0.9})
CYCLEGAN = {"cells": 9, "chosen": {"cyclegan": {"cell": "cyclegan-l2-lr0.0001", "best_loss_G": 0.72},
                                   "esa": {"cell": "esa-l2-lr0.0001", "best_loss_G": 0.61}}}
UNET = {"best_epoch": 4, "val_loss": 0.12, "val_ssim": 0.9}


def test_all_inputs_give_every_headline_number():
    s = build_summary(quality=QUALITY, latency=LATENCY, cyclegan=CYCLEGAN, unet=UNET, variants=VARIANTS)
    assert s == {
        "fid_diff.unet": 0.01, "fid_diff.cyclegan": 0.41, "fid_diff.esa": 0.30, "fid_diff.lora": -0.27,
        "identity_cos_schnell.unet": 0.97, "identity_cos_schnell.cyclegan": 0.91,
        "identity_cos_schnell.esa": 0.93, "identity_cos_schnell.lora": 0.88,
        "latency_dev_steps": 50,  # the averaged savings, not the largest resolution's
        "saving_vs_dev.unet": 0.82, "saving_vs_dev.cyclegan": 0.81, "saving_vs_dev.esa": 0.80,
        "saving_vs_dev.schnell": 0.9,
        "cycle_best_loss_G.cyclegan": 0.72, "cycle_best_loss_G.esa": 0.61,
        "unet_best_val_loss": 0.12,
    }
    # Flat: one level, numbers or null, so `dvc metrics diff` shows one row per number.
    assert all(v is None or isinstance(v, (int, float)) for v in s.values())


def test_missing_inputs_give_nulls_with_the_same_keys():
    full = build_summary(quality=QUALITY, latency=LATENCY, cyclegan=CYCLEGAN, unet=UNET, variants=VARIANTS)
    empty = build_summary(quality=None, latency=None, cyclegan=None, unet=None, variants=VARIANTS)
    assert list(empty) == list(full)
    assert all(v is None for v in empty.values())


def test_missing_rows_and_partial_files_give_nulls():
    quality = {"unet": _quality_row(0.02, float("nan")), "lora": "not a row", "esa": {"fid_diff": True}}
    latency = _latency({64: {"unet": None}}, mean={"unet": None, "schnell": None})  # ran, nothing measured
    s = build_summary(quality=quality, latency=latency, cyclegan={"chosen": {"esa": {}}}, unet={},
                      variants=VARIANTS)
    assert s["fid_diff.unet"] == 0.02
    assert s["identity_cos_schnell.unet"] is None        # NaN is not a headline number
    assert s["fid_diff.esa"] is None                     # nor is a bool
    assert s["fid_diff.lora"] is None and s["fid_diff.cyclegan"] is None
    assert s["latency_dev_steps"] == 50 and s["saving_vs_dev.unet"] is None
    assert s["cycle_best_loss_G.esa"] is None and s["unet_best_val_loss"] is None


def test_heads_that_no_longer_exist_get_no_keys():
    """The grid dropped ESA: its old quality row, latency cell and chosen cell must not leak."""
    s = build_summary(quality=QUALITY, latency=LATENCY, cyclegan=CYCLEGAN, unet=UNET, variants=["cyclegan"])
    assert not [k for k in s if "esa" in k]
    assert s["fid_diff.cyclegan"] == 0.41 and s["cycle_best_loss_G.cyclegan"] == 0.72
    # Rows that are not heads (the schnell/dev references) never become keys either.
    assert {k.partition(".")[2] for k in s} <= {"", "unet", "cyclegan", "lora", "schnell"}
    assert "fid_diff.schnell" not in s and "saving_vs_dev.lora" not in s


def test_the_saving_is_the_mean_over_resolutions_against_the_headline_dev_steps():
    latency = _latency({256: {"unet": 0.7, "esa": 0.6}, 512: {"unet": 0.8, "esa": None}},
                       mean={"unet": 0.75, "esa": 0.6, "schnell": 0.9}, dev_steps=28)
    assert latency_numbers(latency, ["unet", "esa"]) == {
        "latency_dev_steps": 28, "saving_vs_dev.unet": 0.75, "saving_vs_dev.esa": 0.6, "saving_vs_dev.schnell": 0.9}


def test_an_old_full_table_latency_file_gives_nulls_not_a_crash():
    old = {"derived": {"512": {"heads": {"unet": {"saving_vs_dev": 0.8}}}}}
    assert set(latency_numbers(old, ["unet"]).values()) == {None}


def test_the_committed_latency_file_is_read_as_bench_writes_it():
    """Guards the structure summary.py assumes against the committed metrics/latency.json."""
    latency = load_metrics(REPO / "metrics" / "latency.json")
    if latency is None or "saving_vs_dev" not in latency:
        pytest.skip("metrics/latency.json not produced yet by the headline-format benchmark")
    nums = latency_numbers(latency, ["unet"])
    assert nums["latency_dev_steps"] == latency["dev_steps"]
    assert nums["saving_vs_dev.unet"] == latency["saving_vs_dev"]["mean"]["unet"]


def test_load_metrics(tmp_path):
    assert load_metrics(tmp_path / "missing.json") is None
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert load_metrics(tmp_path / "ok.json") == {"a": 1}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SummaryInputError, match="bad.json"):
        load_metrics(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SummaryInputError, match="JSON object"):
        load_metrics(tmp_path / "list.json")


def test_labels_name_the_head():
    assert label("saving_vs_dev.esa").endswith("schnell + esa")
    assert label("saving_vs_dev.schnell").endswith("schnell alone")
    assert label("fid_diff.lora").startswith("FID_diff") and label("fid_diff.lora").endswith("lora")
    assert label("unknown_key") == "unknown_key"


def test_dvc_stage_reads_the_metric_files_and_writes_an_uncached_metric():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stage = stages["summary"]
    assert stage["cmd"] == "python stages/summary.py"
    for name in ("quality", "latency", "cyclegan", "unet"):
        assert f"metrics/{name}.json" in stage["deps"]
    assert stage["metrics"] == [{"metrics/summary.json": {"cache": False}}]
    assert "cyclegan.grid.variant" in stage["params"]


@pytest.mark.slow
def test_stage_rewrites_the_file_whole(tmp_path):
    """A stale key from an earlier run (a head since removed) is gone after the stage runs,
    and a missing input gives nulls, not a crash."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["cyclegan"]["grid"]["variant"] = ["cyclegan"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "quality.json").write_text(json.dumps(QUALITY))
    (metrics / "cyclegan.json").write_text(json.dumps(CYCLEGAN))
    (metrics / "unet.json").write_text(json.dumps(UNET))  # no latency.json
    (metrics / "summary.json").write_text(json.dumps({"fid_diff.esa": 0.3, "fid_diff.unet": 0.5}))
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "summary.py")], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "FACEREFINE_TRACKING": "0"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((metrics / "summary.json").read_text())
    assert "fid_diff.esa" not in summary and summary["fid_diff.unet"] == 0.01
    assert list(summary)[0] == "fid_diff.unet"  # logical order kept for the review's table
    assert summary["saving_vs_dev.unet"] is None and summary["latency_dev_steps"] is None
    assert summary["cycle_best_loss_G.cyclegan"] == 0.72
    assert "latency.json: not found" in proc.stderr
    assert not any(isinstance(v, float) and math.isnan(v) for v in summary.values())


def test_summary_needs_only_the_quality_headline():
    """summary reads metrics/quality.json, which holds only evaluation.quality_headline(rows): the
    columns it reads must be in that headline (the full rows are in reports/quality.json)."""
    from facerefine.evaluation import quality_headline

    full = {name: {**row, "fid_dev": 1.0, "fid_schnell": 2.0, "kid_dev_mean": 0.1, "images": 12}
            for name, row in QUALITY.items()}
    args = dict(latency=LATENCY, cyclegan=CYCLEGAN, unet=UNET, variants=VARIANTS)
    assert build_summary(quality=quality_headline(full), **args) == build_summary(quality=full, **args)
