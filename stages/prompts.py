"""Stage `prompts`: IMDb names -> enriched and baseline prompt manifests (paper §3.1)."""

import logging

from facerefine import paths
from facerefine.config import load_params, loggable
from facerefine.io import write_json, write_parquet
from facerefine.names import read_actors
from facerefine.prompts import baseline_manifest, enriched_manifest
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run

log = logging.getLogger("prompts")


def main() -> None:
    params = load_params()
    with stage_run("prompts", params=loggable(params), profile=params.profile) as run:
        people, stats = read_actors(params.names_file, params.prompts.professions,
                                    params.prompts.max_name_chars)
        if stats.malformed_total:
            log.warning("%s: skipped %d malformed rows %s", params.names_file,
                        stats.malformed_total, dict(stats.malformed))
        enriched = enriched_manifest(people, params)
        baseline = baseline_manifest(params)
        write_parquet(paths.ENRICHED_PROMPTS, enriched)
        write_parquet(paths.BASELINE_PROMPTS, baseline)
        metrics = {
            "names_file": stats.as_dict(),
            "enriched": {"total": len(enriched), **enriched["split"].value_counts().sort_index().to_dict()},
            "baseline": {"total": len(baseline)},
        }
        write_json(paths.METRICS / "prompts.json", metrics)
        run.log_metrics(metrics)
        log.info("%d enriched prompts (%s), %d baseline prompts", len(enriched),
                 metrics["enriched"], len(baseline))


if __name__ == "__main__":
    run_stage(main)
