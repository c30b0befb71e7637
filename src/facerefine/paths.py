"""Where each stage reads and writes (mirrored by dvc.yaml's deps/outs)."""

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
