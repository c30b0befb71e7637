"""metrics/quality.json and metrics/diversity.json hold headlines only (DESIGN.md, "Reproducibility
rules": metrics files hold headline numbers so `dvc exp show` stays readable); the full content
goes to reports/quality.json and reports/diversity.json."""

from collections.abc import Mapping

from facerefine.analysis import report as diversity_report
from facerefine.analysis.attributes import from_deepface, summarise
from facerefine.evaluation import HEADLINE_COLUMNS, LABELS, quality_headline

MAX_KEYS = 25


def flatten(data, prefix: str = "") -> dict:
    """Nested keys joined with dots, as `dvc metrics show` / `dvc exp show` name them."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def quality_rows() -> dict:
    """Every Table 4 row (LABELS) with every column evaluate writes to reports/quality.json."""
    def row(i, ref):
        vs_dev = None if ref == "dev" else 1.0 + i
        return {"clip_iqa": 0.5, "face_fail": 0, "fid_dev": vs_dev, "fid_diff": vs_dev, "fid_schnell": 7.2 + i,
                "identity_cos_dev": vs_dev, "identity_cos_schnell": 0.93, "images": 12, "kid_dev_mean": vs_dev,
                "kid_dev_std": vs_dev, "kid_schnell_mean": 0.016, "kid_schnell_std": 4e-16, "kid_subset_size": 12,
                "low_confidence": True, "psnr_dev": vs_dev, "ssim_dev": vs_dev}
    return {name: row(i, name) for i, name in enumerate(LABELS)}


def diversity_metrics() -> dict:
    """reports/diversity.json as stages/diversity.py writes it."""
    races = ["asian", "indian", "black", "white", "middle eastern", "latino hispanic"]
    faces = [from_deepface({"age": 20 + 9 * i, "dominant_gender": ["Man", "Woman"][i % 2],
                            "gender": {"Woman": 0.3, "Man": 0.7}, "dominant_race": races[i % 6],
                            "race": {r: 0.02 for r in races} | {races[i % 6]: 0.9}}) for i in range(6)]
    return {"profile": "smoke", "deepface": "smoke", "detector": "skip",
            "sets": {"baseline": summarise(faces[:3] + [None]), "enriched": summarise(faces)},
            "tsne": {"points": 9, "faces": 9, "max_points": 10_000, "perplexity_requested": 30.0,
                     "perplexity": 8.0, "note": "clamped"}}


def test_quality_headline_is_the_compared_table4_numbers_per_row():
    rows = quality_rows()
    assert len(flatten(rows)) > 90  # what metrics/quality.json held before the split
    head = quality_headline(rows)
    flat = flatten(head)
    assert len(flat) <= MAX_KEYS and len(flat) == 3 * len(LABELS)
    assert set(head) == set(rows) and all(tuple(r) == HEADLINE_COLUMNS for r in head.values())
    assert flat["unet.fid_diff"] == rows["unet"]["fid_diff"] and flat["dev.fid_diff"] is None
    assert quality_headline({"unet": {"fid_diff": 0.1}}) == {"unet": {"fid_diff": 0.1, "clip_iqa": None,
                                                              "identity_cos_schnell": None}}


def test_diversity_headline_keeps_faces_and_indices_under_the_full_key_paths():
    metrics = diversity_metrics()
    assert len(flatten(metrics)) > 60
    flat = flatten(diversity_report.diversity_headline(metrics))
    assert len(flat) <= MAX_KEYS
    full = flatten(metrics)
    assert sorted(flat) == sorted(
        [f"sets.{s}.{k}" for s in ("baseline", "enriched")
         for k in ("faces", "gender.diversity_index", "age.diversity_index", "race.diversity_index")]
        + ["tsne.points", "tsne.faces"])
    assert all(flat[k] == full[k] for k in flat)
    assert flat["sets.baseline.faces"] == 3
