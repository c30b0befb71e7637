"""Stage `summary`: the headline numbers in one flat metrics/summary.json (what PR reviews lead with)."""

import json
import logging
import sys

from facerefine import paths
from facerefine.config import load_params, loggable
from facerefine.io import write_text
from facerefine.stagekit import run_stage
from facerefine.summary import SummaryInputError, build_summary, load_metrics
from facerefine.tracking import stage_run

log = logging.getLogger("summary")
INPUTS = ("quality", "latency", "cyclegan", "unet")


def main() -> None:
    params = load_params()
    try:
        loaded = {name: load_metrics(paths.METRICS / f"{name}.json") for name in INPUTS}
    except SummaryInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for name, data in loaded.items():
        if data is None:
            log.warning("%s: not found; its headline numbers are null", paths.METRICS / f"{name}.json")
    with stage_run("summary", params=loggable(params), profile=params.profile) as run:
        # Written whole every time, so keys of heads that are gone never linger.
        summary = build_summary(**loaded, variants=params.cyclegan.grid.variant)
        # Not sorted: the file's order (by metric, then head) is the review's row order.
        write_text(paths.METRICS / "summary.json", json.dumps(summary, indent=2) + "\n")
        run.log_metrics(summary)
        log.info("%d headline numbers (%d null)", len(summary), sum(v is None for v in summary.values()))


if __name__ == "__main__":
    run_stage(main)
