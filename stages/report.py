"""Stage `report`: reports/README.md, one page with every table and figure."""

import pandas as pd

from facerefine import paths
from facerefine.banners import REPORT_NETWORKS, standin_networks
from facerefine.config import load_params
from facerefine.io import write_text
from facerefine.report import load_json, render_pipeline_report
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.viz import line_plot


def unet_curves() -> None:
    history_path = paths.REPORTS / "unet" / "history.csv"
    if history_path.is_file():
        h = pd.read_csv(history_path)
        line_plot({"train": (h["epoch"].tolist(), h["train_loss"].tolist()),
                   "val": (h["epoch"].tolist(), h["val_loss"].tolist())},
                  paths.REPORTS / "unet" / "curves.png", xlabel="epoch", ylabel="GRAD + LPIPS loss",
                  title="U-Net loss per epoch")


def main() -> None:
    params = load_params()
    with stage_run("report", profile=params.profile) as run:
        unet_curves()
        standins = standin_networks(params, REPORT_NETWORKS["report"])
        text = render_pipeline_report(profile=params.profile, standins=standins,
                      prompts_metrics=load_json(paths.METRICS / "prompts.json"))
        write_text(paths.REPORTS / "README.md", text)
        run.log_artifact(paths.REPORTS / "README.md")


if __name__ == "__main__":
    run_stage(main)
