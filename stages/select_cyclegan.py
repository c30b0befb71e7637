"""Stage `select_cyclegan`: Tables 2–3 and the chosen CycleGAN / ESA-CycleGAN heads (paper §5.2)."""

import json
import logging
import shutil

import pandas as pd

from facerefine import paths
from facerefine.banners import REPORT_NETWORKS, standin_networks
from facerefine.card import write_model_card
from facerefine.config import load_params, loggable
from facerefine.head_folder import write_head_folder
from facerefine.heads import read_head_folder
from facerefine.io import write_json, write_text
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.viz import line_plot
from facerefine.train.cells import grid_cells
from facerefine.train.selection import GridConfig, failed, pick_best, render_report

log = logging.getLogger("select_cyclegan")
METRICS_DIR = paths.METRICS / "cyclegan"
REPORT_DIR = paths.REPORTS / "cyclegan"


def remove_stale(current: set[str]) -> None:
    """Cells dropped from the grid must not linger in metrics diffs or reports."""
    for path in METRICS_DIR.glob("*.json"):
        if path.stem not in current:
            log.info("removing stale %s", path)
            path.unlink()
    for path in REPORT_DIR.iterdir() if REPORT_DIR.is_dir() else []:
        if path.is_dir() and path.name not in current:
            shutil.rmtree(path)


def plot_curves(names: list[str], path) -> None:
    series = {}
    for name in names:
        history = pd.read_csv(REPORT_DIR / name / "history.csv")
        series[name] = (history["epoch"].tolist(), history["loss_G_eq3"].tolist())
    line_plot(series, path, xlabel="epoch", ylabel="CycleGAN loss L (Eq. 3)",
              title="CycleGAN grid: generator loss per epoch")


def grid_config(params) -> GridConfig:
    """The configuration the grid ran under, from the same params the cells' stages read."""
    scale = params.scale.cyclegan
    return GridConfig(profile=params.profile, image_size=scale.image_size, data_fraction=scale.data_fraction,
                      epochs=scale.epochs + scale.epochs_decay, lambda_identity=params.cyclegan.lambda_identity,
                      esa_placement=params.cyclegan.esa_placement, data_models=params.scale.models.schnell)


def main() -> None:
    params = load_params()
    cells = grid_cells(params.cyclegan.grid)
    names = [c.name for c in cells]
    remove_stale(set(names))
    results = []
    for name in names:
        path = METRICS_DIR / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: grid cell '{name}' has no results; run `dvc repro train_cyclegan`")
        results.append(json.loads(path.read_text(encoding="utf-8")))
    ssim_fail = params.cyclegan.ssim_fail
    chosen = pick_best(results, ssim_fail)

    with stage_run("select_cyclegan", params=loggable(params), profile=params.profile) as run:
        for variant, cell in chosen.items():
            head = read_head_folder(paths.CYCLEGAN_RUNS / cell["cell"])
            write_head_folder(paths.HEADS / variant, head.model, name=variant,
                              training={**head.config["training"], "selected_cell": cell["cell"]}, data=head.config["data"])
            write_model_card(paths.HEADS / variant, params)  # after write_head_folder (it replaces the folder)
        standins = standin_networks(params, REPORT_NETWORKS["select_cyclegan"])
        write_text(paths.REPORTS / "cyclegan.md", render_report(results, chosen, ssim_fail, standins,
                                                                     grid_config(params)))
        plot_curves(names, REPORT_DIR / "curves.png")
        summary = {
            "cells": len(results),
            "failed_cells": sum(failed(c, ssim_fail) for c in results),
            "chosen": {v: {"cell": c["cell"], "best_loss_G": c["best_loss_G"], "ssim_cycle": c["ssim_cycle"],
                           "all_failed": c["all_failed"]} for v, c in chosen.items()},
        }
        write_json(paths.METRICS / "cyclegan.json", summary)
        run.log_metrics({f"{v}.best_loss_G": c["best_loss_G"] for v, c in chosen.items()})
        run.log_artifact(paths.REPORTS / "cyclegan.md")
        run.log_artifact(REPORT_DIR / "curves.png")


if __name__ == "__main__":
    run_stage(main)
