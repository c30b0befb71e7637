"""Per-stage wall time and peak memory of a pipeline run, read back from MLflow.

Every stage logs ``resources.wall_s``, ``resources.peak_rss_mb`` (and
``resources.peak_gpu_mb`` when it used a GPU) when its MLflow run ends
(``tracking.resource_usage``). After a rehearsal,

    dvc exp run -n rehearsal-cpu -S profile=rehearsal
    python benchmarks/rehearsal_report.py --exp rehearsal-cpu

prints the table and writes ``benchmarks/results/rehearsal_<device>.json``.
For each stage the newest finished run of that profile (and experiment name, if
given) is taken. ``wall_s`` is the stage body: it leaves out the interpreter's
start-up and imports (a few seconds per stage).
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("wall_s", "peak_rss_mb", "children_peak_rss_mb", "peak_gpu_mb")
# dvc.yaml order, so the table reads like the pipeline.
ORDER = ("prompts", "generate_schnell", "refine_dev", "diversity", "train_unet", "train_cyclegan",
         "select_cyclegan", "benchmark", "evaluate", "report", "model_cards", "summary")


def stage_rank(stage: str) -> tuple[int, str]:
    base = stage.split("@", 1)[0]
    return (ORDER.index(base) if base in ORDER else len(ORDER), stage)


def collect(runs) -> list[dict]:
    """One row per stage from MLflow run records (newest first), pure for the tests:
    each record has ``tags`` (dict), ``metrics`` (dict) and ``status``."""
    rows: dict[str, dict] = {}
    for run in runs:
        stage = run["tags"].get("stage")
        if not stage or stage in rows or run["status"] != "FINISHED":
            continue
        metrics = run["metrics"]
        if "resources.wall_s" not in metrics:
            continue  # logged before resources were recorded
        rows[stage] = {"stage": stage, **{k: metrics.get(f"resources.{k}") for k in KEYS}}
    return sorted(rows.values(), key=lambda r: stage_rank(r["stage"]))


def totals(rows: list[dict]) -> dict:
    peak = lambda key: max((r[key] for r in rows if r[key] is not None), default=None)  # noqa: E731
    return {"wall_s": round(sum(r["wall_s"] for r in rows), 1), "peak_rss_mb": peak("peak_rss_mb"),
            "peak_gpu_mb": peak("peak_gpu_mb")}


def markdown(rows: list[dict]) -> str:
    fmt = lambda v, d=0: "–" if v is None else f"{v:,.{d}f}"  # noqa: E731
    lines = ["| stage | wall (s) | peak RSS (MB) | peak GPU (MB) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['stage']} | {fmt(r['wall_s'], 1)} | {fmt(r['peak_rss_mb'])} | {fmt(r['peak_gpu_mb'])} |"
              for r in rows]
    t = totals(rows)
    lines.append(f"| **total** | **{fmt(t['wall_s'], 1)}** | **{fmt(t['peak_rss_mb'])}** (max) | "
                 f"{fmt(t['peak_gpu_mb'])} |")
    return "\n".join(lines)


def device_label() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="rehearsal")
    p.add_argument("--exp", default=None, help="DVC experiment name (dvc exp run -n NAME)")
    p.add_argument("--device", default=None, help="label for the file name (default: cpu or cuda)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--note", default="", help="free text stored with the figures (machine load, grid, ...)")
    args = p.parse_args()

    import mlflow
    import torch

    from facerefine.config import load_params
    from facerefine.io import write_json
    from facerefine.tracking import EXPERIMENT, flush, tracking_uri

    flush()  # stages spool their runs; write any still waiting before reading them back
    mlflow.set_tracking_uri(tracking_uri())
    query = f"tags.profile = '{args.profile}'"
    if args.exp:
        query += f" and tags.dvc_exp_name = '{args.exp}'"
    found = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string=query,
                               order_by=["attributes.start_time DESC"], output_format="list")
    runs = [{"tags": r.data.tags, "metrics": r.data.metrics, "status": r.info.status} for r in found]
    rows = collect(runs)
    if not rows:
        sys.exit(f"no finished runs of profile {args.profile!r}{' in ' + args.exp if args.exp else ''} "
                 f"with resource metrics in {tracking_uri()}")
    params = load_params()
    scale = params.profiles[args.profile]
    kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = args.out or RESULTS / f"rehearsal_{re.sub(r'[^A-Za-z0-9_.-]', '_', kind)}.json"
    write_json(out, {
        "profile": args.profile, "experiment": args.exp, "device": device_label(), "torch": torch.__version__,
        "image_size": scale.image_size, "num_names": scale.num_names, "num_baseline": scale.num_baseline,
        "max_steps": scale.max_steps, "random_depth": scale.random_depth.model_dump(),
        "cyclegan_grid": params.cyclegan.grid.model_dump(),
        "note": args.note, "stages": rows, "total": totals(rows)})
    print(markdown(rows))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
