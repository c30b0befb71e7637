"""Pure logic of the diversity analysis: buckets, labels, fractions, entropy, t-SNE, report."""

import math
import re

import numpy as np
import pytest

from facerefine.analysis import attributes as A
from facerefine.analysis.report import PAPER_TABLE1, mlflow_metrics, paper_fractions, render_diversity_report
from facerefine.analysis.tsne import (MIN_POINTS, allocate, clamp_perplexity, plot_tsne, stratified_sample,
                                     tsne_2d, tsne_map)


@pytest.mark.parametrize("age, bucket", [
    (0, "18-30"), (5, "18-30"), (17, "18-30"), (17.9, "18-30"),  # under 18 folds into the youngest bucket
    (18, "18-30"), (30, "18-30"), (30.99, "18-30"),  # DeepFace truncates: 30.99 is 30
    (31, "31-50"), (50, "31-50"), (50.5, "31-50"),
    (51, "50+"), (100, "50+"),
])
def test_age_bucket_boundaries(age, bucket):
    assert A.age_bucket(age) == bucket


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_age_bucket_rejects_impossible_ages(bad):
    with pytest.raises(ValueError, match="age"):
        A.age_bucket(bad)


def test_deepface_race_labels_map_onto_the_papers_six_columns():
    from deepface.models.demography.DemographyUtils import GENDER_LABELS, RACE_LABELS

    assert {A.race_label(label) for label in RACE_LABELS} == set(A.RACES)
    assert A.race_label("latino hispanic") == "Latino"
    assert A.race_label("middle eastern") == "Middle Eastern"
    assert A.RACES == ("Asian", "Black", "Indian", "Latino", "Middle Eastern", "White")  # paper's order
    assert {A.gender_label(label) for label in GENDER_LABELS} == {"M", "F"}
    assert A.gender_label("Man") == "M" and A.gender_label("Woman") == "F"
    with pytest.raises(ValueError, match="hispanic"):
        A.race_label("hispanic")


def test_distribution_fractions_sum_to_one_in_the_papers_order():
    d = A.distribution(["White", "Asian", "White", "Black"], A.RACES)
    assert list(d.counts) == list(A.RACES)
    assert d.counts["White"] == 2 and d.counts["Indian"] == 0 and d.total == 4
    assert math.isclose(sum(d.fractions.values()), 1.0)
    assert d.fractions["White"] == 0.5
    with pytest.raises(ValueError, match="Martian"):
        A.distribution(["Martian"], A.RACES)


def test_diversity_index_uniform_is_one_and_single_class_is_zero():
    assert A.diversity_index({"M": 0.5, "F": 0.5}) == pytest.approx(1.0)
    assert A.diversity_index({r: 1 / 6 for r in A.RACES}) == pytest.approx(1.0)
    assert A.diversity_index({"M": 1.0, "F": 0.0}) == 0.0
    # K is the number of columns, not of the classes seen: one seen class of six is still 0,
    # two equally frequent classes of three are log 2 / log 3.
    assert A.diversity_index({"18-30": 0.5, "31-50": 0.5, "50+": 0.0}) == pytest.approx(math.log(2) / math.log(3))
    assert 0 < A.diversity_index({"M": 0.73, "F": 0.27}) < A.diversity_index({"M": 0.6, "F": 0.4}) < 1


def face(age=25, gender="Man", race="white"):
    return A.from_deepface({"age": age, "dominant_gender": gender, "dominant_race": race,
                            "gender": {"Woman": 0.2, "Man": 0.8},
                            "race": {"asian": 0.1, "indian": 0.1, "black": 0.1, "white": 0.5,
                                     "middle eastern": 0.1, "latino hispanic": 0.1}})


def test_summarise_counts_faces_no_faces_and_under_18s():
    s = A.summarise([face(12, "Woman", "asian"), face(40), None, face(70, race="latino hispanic")])
    assert (s["images"], s["faces"], s["no_face"], s["under_18"]) == (4, 3, 1, 1)
    assert s["gender"]["counts"] == {"M": 2, "F": 1}
    assert s["age"]["counts"] == {"18-30": 1, "31-50": 1, "50+": 1}
    assert s["race"]["counts"]["Latino"] == 1
    for attr in A.ATTRIBUTES:
        assert math.isclose(sum(s[attr]["fractions"].values()), 1.0)
    assert s["age"]["diversity_index"] == pytest.approx(1.0)


def test_summarise_all_no_face_reports_instead_of_dividing_by_zero():
    s = A.summarise([None, None])
    assert (s["images"], s["faces"], s["no_face"]) == (2, 0, 2)
    for attr in A.ATTRIBUTES:
        assert s[attr]["fractions"] is None and s[attr]["diversity_index"] is None
        assert sum(s[attr]["counts"].values()) == 0
    empty = A.summarise([])
    assert empty["images"] == 0 and empty["gender"]["fractions"] is None


def test_from_deepface_maps_probabilities_onto_paper_columns():
    f = face(30.7, "Woman", "middle eastern")
    assert (f.age, f.age_bucket, f.gender, f.race) == (30, "18-30", "F", "Middle Eastern")
    assert f.gender_probs == {"F": 0.2, "M": 0.8}
    assert set(f.race_probs) == set(A.RACES)


@pytest.mark.parametrize("requested, n, used", [(30, 96, 30.0), (30, 30, 29.0), (30, 10, 9.0), (5, 3, 2.0),
                                                (2.5, 3, 2.5)])
def test_perplexity_is_clamped_below_the_sample_count(requested, n, used):
    p = clamp_perplexity(requested, n)
    assert p.used == used and p.used < n
    assert (p.note is None) == (used == requested)
    if p.note:
        assert "clamped" in p.note and str(n) in p.note


@pytest.mark.parametrize("n", [0, 1, MIN_POINTS - 1])
def test_too_few_points_skip_tsne_with_a_note(n):
    p = clamp_perplexity(30, n)
    assert p.used is None and "skipped" in p.note


def test_tsne_map_is_seeded_and_the_figure_is_written(tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 16))
    p = clamp_perplexity(30, len(x))
    a, b = tsne_2d(x, p.used, seed=7), tsne_2d(x, p.used, seed=7)
    assert a.shape == (12, 2) and np.allclose(a, b)
    out = tmp_path / "fig.png"
    plot_tsne(a, ["Baseline"] * 4 + ["Enriched"] * 8, out, title="t", note=p.note)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    skipped = tmp_path / "skipped.png"
    plot_tsne(None, [], skipped, title="t", note=clamp_perplexity(30, 1).note)
    assert skipped.stat().st_size > 0


def summary():
    return {"baseline": A.summarise([face(25), face(45, "Woman", "black"), None]),
            "enriched": A.summarise([None])}


def test_report_has_table1_layout_paper_rows_and_smoke_banner():
    md = render_diversity_report(summary(), profile="smoke", standins=["deepface (smoke)"], deepface_spec="smoke", detector="skip",
                perplexity=clamp_perplexity(30, 2), figure="diversity_tsne.png")
    assert "> **Stand-in networks:** deepface (smoke)" in md
    assert "| Prompt | Perceived Gender M : F | P. Age 18-30 : 31-50 : 50+ | P. Dominant Ethnicity " \
           "Asian : Black : Indian : Latino : Middle Eastern : White |" in md
    assert "| Baseline | 0.50 : 0.50 | 0.50 : 0.50 : 0.00 | 0.00 : 0.50 : 0.00 : 0.00 : 0.00 : 0.50 |" in md
    assert "| Enriched | n/a (no face) |" in md
    assert "| Baseline (paper) | 0.73 : 0.27 | 0.61 : 0.39 : 0.0 | 0.12 : 0.01 : 0.01 : 0.26 : 0.02 : 0.59 |" in md
    assert "| Enhanced (paper) | 0.60 : 0.40 | 0.40 : 0.58 : 0.02 | 0.10 : 0.05 : 0.04 : 0.08 : 0.02 : 0.7 |" in md
    assert "t-SNE skipped" in md and "diversity_tsne.png" not in md
    assert not re.search(r"\bNone\b|\{|\}|\bnan\b", md)  # no placeholders or unformatted values
    assert "| Baseline (computed by us from the paper's Table 1) |" in md  # a derived row says so
    paper = render_diversity_report(summary(), profile="paper", standins=[], deepface_spec="pretrained", detector="retinaface",
                   perplexity=clamp_perplexity(30, 96), figure="diversity_tsne.png")
    assert "Stand-in networks" not in paper and "![t-SNE" in paper


def test_paper_rows_parse_into_the_papers_columns():
    assert paper_fractions("Baseline", "gender") == {"M": 0.73, "F": 0.27}
    assert paper_fractions("Enhanced", "race")["White"] == 0.7
    assert set(PAPER_TABLE1) == {"Baseline", "Enhanced"}


def test_mlflow_metric_names_are_valid():
    metrics = mlflow_metrics(summary())
    assert metrics["baseline.age.50plus"] == 0.0
    assert metrics["baseline.race.Middle_Eastern"] == 0.0
    assert metrics["enriched.no_face"] == 1.0
    assert "enriched.gender.diversity_index" not in metrics  # undefined, not 0
    assert all(re.fullmatch(r"[\w.\-/ ]+", k) for k in metrics)  # MLflow's allowed characters


def test_tsne_sample_keeps_every_point_when_there_are_no_more_than_max():
    groups = ["Baseline"] * 3 + ["Enriched"] * 5
    for cap in (8, 100):
        sample = stratified_sample(groups, cap, seed=1)
        assert sample.indices.tolist() == list(range(8))
        assert sample.counts == {"Baseline": (3, 3), "Enriched": (5, 5)}
        assert sample.note == "Shown: all 8 face embeddings"


def test_tsne_sample_is_stratified_by_set_and_seeded():
    groups = np.array(["Baseline"] * 100 + ["Enriched"] * 1400)
    sample = stratified_sample(groups, 150, seed=3)
    assert sample.shown == 150 and sample.total == 1500
    assert sample.counts == {"Baseline": (10, 100), "Enriched": (140, 1400)}  # each set keeps its share
    assert (groups[sample.indices] == "Baseline").sum() == 10
    assert np.all(np.diff(sample.indices) > 0)  # sorted, no repeats
    assert np.array_equal(sample.indices, stratified_sample(groups, 150, seed=3).indices)  # deterministic
    assert not np.array_equal(sample.indices, stratified_sample(groups, 150, seed=4).indices)
    assert "150 of 1,500" in sample.note and "Baseline 10 of 100; Enriched 140 of 1,400" in sample.note
    # A set's sample depends on its own seed stream: growing the other set leaves it alone.
    grown = np.array(["Baseline"] * 100 + ["Enriched"] * 2900)
    again = stratified_sample(grown, 300, seed=3)
    assert np.array_equal(again.indices[:10], sample.indices[:10])


def test_allocation_is_proportional_and_keeps_small_sets_on_the_map():
    assert allocate([1, 2, 7], 5) == [1, 1, 3]  # largest remainder, ties to the earlier set
    assert sum(allocate([333, 333, 334], 100)) == 100
    assert allocate([1, 10_000], 10) == [1, 9]  # a proportional 0.001 would drop the small set
    assert allocate([0, 50], 10) == [0, 10]


def test_tsne_map_drops_faceless_rows_and_bounds_the_points():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 16))
    emb[::5] = np.nan  # 8 images without a face
    groups = ["Baseline"] * 10 + ["Enriched"] * 30
    m = tsne_map(emb, groups, perplexity=30, max_points=12, seed=2)
    assert m.points.shape == (12, 2) and len(m.groups) == 12
    assert m.sample.counts == {"Baseline": (3, 8), "Enriched": (9, 24)}
    assert m.perplexity.used == 11 and "12 of 32" in m.note and "clamped" in m.note
