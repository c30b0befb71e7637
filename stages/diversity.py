"""Stage `diversity`: DeepFace age/gender/race of both schnell sets and a t-SNE of their
ArcFace embeddings (paper §3.2: Table 1 and Fig. 3)."""

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facerefine import paths
from facerefine.analysis.attributes import summarise
from facerefine.analysis.diversity import analyse_set
from facerefine.analysis.report import diversity_headline, mlflow_metrics, render_diversity_report
from facerefine.analysis.tsne import plot_tsne, tsne_map
from facerefine.banners import REPORT_NETWORKS, standin_networks
from facerefine.config import load_params, loggable
from facerefine.io import write_json, write_parquet, write_text
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.weights.deepface import deepface_detector

log = logging.getLogger("diversity")

SETS = {"baseline": paths.SCHNELL_BASELINE, "enriched": paths.SCHNELL_ENRICHED}
TABLE = Path("data/diversity/attributes.parquet")
METRICS = paths.METRICS / "diversity.json"  # the headline (analysis.report.diversity_headline)
FULL = paths.REPORTS / "diversity.json"      # everything: counts, fractions, t-SNE details
REPORT = paths.REPORTS / "diversity.md"
FIGURE = paths.REPORTS / "diversity_tsne.png"


def main() -> None:
    params = load_params()
    spec = params.scale.models.deepface
    standins = standin_networks(params, REPORT_NETWORKS["diversity"])
    # Fails before any work if the detector would need weights the spec cannot provide.
    detector = deepface_detector(spec, params.scale.face_detector)
    with stage_run("diversity", params=loggable(params), profile=params.profile) as run:
        t0 = time.perf_counter()
        sets = {name: analyse_set(name, directory, spec=spec, detector=detector,
                                  batch_size=params.diversity.batch_size)
                for name, directory in SETS.items()}
        summary = {name: summarise(s.faces) for name, s in sets.items()}
        for name, s in summary.items():
            if s["no_face"]:
                log.warning("%s: no face found in %d of %d images", name, s["no_face"], s["images"])

        embeddings = np.concatenate([s.embeddings for s in sets.values()])
        groups = np.concatenate([[name.capitalize()] * len(s.keys) for name, s in sets.items()])
        tsne = tsne_map(embeddings, groups, perplexity=params.diversity.tsne_perplexity,
                        max_points=params.diversity.tsne_max_points, seed=params.seed)
        perplexity = tsne.perplexity
        if perplexity.note:
            log.warning("%s", perplexity.note)
        log.info("t-SNE: %s", tsne.sample.note)
        title = "t-SNE of ArcFace face embeddings (paper Fig. 3)"
        if standins:
            title += "\nrandom stand-in networks: the map means nothing"
        plot_tsne(tsne.points, tsne.groups, FIGURE, title=title,
                  note=tsne.note if tsne.points is not None else perplexity.note)

        write_parquet(TABLE, pd.concat([s.table() for s in sets.values()], ignore_index=True))
        metrics = {"profile": params.profile, "deepface": spec, "detector": detector, "sets": summary,
                   "tsne": {"points": tsne.sample.shown, "faces": tsne.sample.total,
                            "max_points": params.diversity.tsne_max_points,
                            "perplexity_requested": perplexity.requested, "perplexity": perplexity.used,
                            "note": perplexity.note}}
        write_json(FULL, metrics)
        write_json(METRICS, diversity_headline(metrics))
        write_text(REPORT, render_diversity_report(summary, profile=params.profile, standins=standins, deepface_spec=spec,
                                  detector=detector, perplexity=perplexity, sample=tsne.sample,
                                  figure=FIGURE.relative_to(REPORT.parent).as_posix()))
        run.log_metrics({**mlflow_metrics(summary), "tsne.points": tsne.sample.shown,
                         "tsne.faces": tsne.sample.total,
                         "tsne.perplexity": perplexity.used, "seconds": round(time.perf_counter() - t0, 2)})
        for artifact in (FIGURE, TABLE, REPORT, FULL, METRICS):
            run.log_artifact(artifact)
        log.info("diversity: %s in %.1f s", {k: (s["images"], s["faces"]) for k, s in summary.items()},
                 time.perf_counter() - t0)


if __name__ == "__main__":
    run_stage(main)
