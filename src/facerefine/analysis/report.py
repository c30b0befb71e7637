"""Markdown for reports/diversity.md (paper Table 1 layout), flat metric names for MLflow and the
headline of metrics/diversity.json."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from facerefine.analysis.attributes import AGE_BUCKETS, ATTRIBUTES, GENDERS, RACES, diversity_index
from facerefine.analysis.tsne import Perplexity, TsneSample

# Table 1 of the paper (arXiv 2505.02255 §3.2), as printed there, columns as in ATTRIBUTES.
PAPER_TABLE1: dict[str, dict[str, str]] = {
    "Baseline": {"gender": "0.73 : 0.27", "age": "0.61 : 0.39 : 0.0",
                 "race": "0.12 : 0.01 : 0.01 : 0.26 : 0.02 : 0.59"},
    "Enhanced": {"gender": "0.60 : 0.40", "age": "0.40 : 0.58 : 0.02",
                 "race": "0.10 : 0.05 : 0.04 : 0.08 : 0.02 : 0.7"},
}


def paper_fractions(row: str, attr: str) -> dict[str, float]:
    """A paper's Table 1 cell as {column: fraction}."""
    values = [float(v) for v in PAPER_TABLE1[row][attr].split(":")]
    return dict(zip(ATTRIBUTES[attr], values, strict=True))


SET_ROWS = {"baseline": "Baseline", "enriched": "Enriched"}
HEADERS = {
    "gender": "Perceived Gender " + " : ".join(GENDERS),
    "age": "P. Age " + " : ".join(AGE_BUCKETS),
    "race": "P. Dominant Ethnicity " + " : ".join(RACES),
}
def _ratio(fractions: Mapping[str, float] | None, labels: tuple[str, ...]) -> str:
    if fractions is None:
        return "n/a (no face)"
    return " : ".join(f"{fractions[label]:.2f}" for label in labels)


def _index(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_diversity_report(summary: Mapping[str, Mapping], *, profile: str, standins: Sequence[str], deepface_spec: str,
           detector: str, perplexity: Perplexity, figure: str, sample: TsneSample | None = None) -> str:
    """The report: Table 1 (this run next to the paper's rows), counts, diversity index, t-SNE.
    ``standins`` (``banners.standin_networks``): non-empty puts the stand-in banner on top."""
    from facerefine.banners import standin_banner

    lines = ["# Diversity of the schnell image sets (paper §3.2, Table 1 and Fig. 3)", ""]
    if standins:
        lines += [standin_banner(standins), ""]
    lines += [f"Profile `{profile}`, DeepFace models `{deepface_spec}`, face detector `{detector}`.", ""]

    lines += ["## Table 1: perceived gender, age and dominant ethnicity", "",
              f"| Prompt | {HEADERS['gender']} | {HEADERS['age']} | {HEADERS['race']} |",
              "|---|---|---|---|"]
    for key, row in SET_ROWS.items():
        cells = [_ratio(summary[key][attr]["fractions"], labels) for attr, labels in ATTRIBUTES.items()]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for row, values in PAPER_TABLE1.items():
        cells = [values[attr] for attr in ATTRIBUTES]
        lines.append(f"| {row} (paper) | " + " | ".join(cells) + " |")
    lines += ["", "Fractions of the images with a detected face; the paper's rows are copied from "
              "its Table 1 (its \"Enhanced\" is our enriched set).", ""]

    lines += ["## Counts", "", "| Set | images | faces | no face found | under 18 (counted in 18-30) |",
              "|---|---|---|---|---|"]
    for key, row in SET_ROWS.items():
        s = summary[key]
        lines.append(f"| {row} | {s['images']} | {s['faces']} | {s['no_face']} | {s['under_18']} |")
    lines.append("")

    lines += ["## Diversity index", "",
              "Normalised Shannon entropy of each distribution over the paper's columns: "
              "1 = all columns equally frequent, 0 = a single column.", "",
              "| Set | gender | age | ethnicity |", "|---|---|---|---|"]
    for key, row in SET_ROWS.items():
        lines.append(f"| {row} | " + " | ".join(_index(summary[key][a]["diversity_index"]) for a in ATTRIBUTES)
                     + " |")
    for row in PAPER_TABLE1:
        idx = [diversity_index(paper_fractions(row, a), len(labels)) for a, labels in ATTRIBUTES.items()]
        lines.append(f"| {row} (computed by us from the paper's Table 1) | " + " | ".join(_index(v) for v in idx)
                     + " |")
    lines += ["", "The paper reports no diversity index: its rows here are our computation on the fractions "
              "printed in its Table 1 (rounded to two decimals there).", ""]

    lines += ["## t-SNE of ArcFace embeddings (Fig. 3)", ""]
    if perplexity.used is None:
        lines += [f"{perplexity.note}.", ""]
    else:
        lines += [f"![t-SNE of ArcFace face embeddings]({figure})", "",
                  f"Perplexity {perplexity.used:g}" + (f" ({perplexity.note})." if perplexity.note else "."), ""]
        if sample is not None:  # t-SNE time and memory grow with N, so a large run maps a sample
            lines += [f"{sample.note}.", ""]

    lines += ["## How the numbers are made", "",
              "- DeepFace (pytorch backend) predicts age, gender and race of the main face of each image; "
              "images where the detector finds no face are counted, not guessed.",
              "- Age buckets: 18-30 and 31-50 are inclusive, \"50+\" holds ages above 50; ages under 18 "
              "are counted in 18-30 (the paper's table has no younger column).",
              "- DeepFace's race labels map onto the paper's columns: asian → Asian, black → Black, "
              "indian → Indian, latino hispanic → Latino, middle eastern → Middle Eastern, white → White.",
              "- Per-image attributes: `data/diversity/attributes.parquet` (join on `id` with the "
              "prompt manifests to filter or rebalance).", ""]
    return "\n".join(lines)


def _metric_name(*parts: str) -> str:
    # MLflow allows only alphanumerics, _ - . / and spaces in metric names ("50+" is refused).
    return ".".join(re.sub(r"[^\w\-]", "_", p.replace("+", "plus")) for p in parts)


def mlflow_metrics(summary: Mapping[str, Mapping]) -> dict[str, float]:
    """Counts, fractions and diversity indices as flat, MLflow-safe metric names,
    e.g. ``enriched.age.50plus`` or ``baseline.race.Middle_Eastern``."""
    out: dict[str, float] = {}
    for key, s in summary.items():
        for count in ("images", "faces", "no_face", "under_18"):
            out[_metric_name(key, count)] = float(s[count])
        for attr in ATTRIBUTES:
            fractions = s[attr]["fractions"] or {}
            for label, value in fractions.items():
                out[_metric_name(key, attr, label)] = float(value)
            if s[attr]["diversity_index"] is not None:
                out[_metric_name(key, attr, "diversity_index")] = float(s[attr]["diversity_index"])
    return out


def diversity_headline(metrics: Mapping) -> dict:
    """``metrics/diversity.json`` from the full ``reports/diversity.json``: per set the face count
    and each attribute's diversity index, and the t-SNE's point and face counts, under the same
    key paths as in the full file (``sets.enriched.race.diversity_index``)."""
    sets = {name: {"faces": s["faces"], **{attr: {"diversity_index": s[attr]["diversity_index"]}
                                            for attr in ATTRIBUTES}}
            for name, s in metrics["sets"].items()}
    tsne = metrics["tsne"]
    return {"sets": sets, "tsne": {"points": tsne["points"], "faces": tsne["faces"]}}
