"""Where each stage reads and writes (mirrored by dvc.yaml's deps/outs), and the project's
own folder for everything that is not an output."""

import os
from pathlib import Path

PROMPTS = Path("data/prompts")
ENRICHED_PROMPTS = PROMPTS / "enriched.parquet"
BASELINE_PROMPTS = PROMPTS / "baseline.parquet"

SCHNELL = Path("data/schnell")
SCHNELL_ENRICHED = SCHNELL / "enriched"
SCHNELL_BASELINE = SCHNELL / "baseline"
DEV = Path("data/dev")

METRICS = Path("metrics")
REPORTS = Path("reports")

HEADS = Path("models/heads")          # one loadable head directory per name
UNET_HEAD = HEADS / "unet"
CYCLEGAN_RUNS = Path("models/cyclegan")  # one checkpoint folder per grid cell


def facerefine_home() -> Path:
    """``$FACEREFINE_HOME``, default ``./.facerefine``: stand-in networks, resumable training runs
    and cached ONNX exports. The one place that reads the variable; never a user-global cache."""
    return Path(os.environ.get("FACEREFINE_HOME", ".facerefine")).resolve()
