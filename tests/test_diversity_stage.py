"""stages/diversity.py wiring: what it writes, with the DeepFace analysis replaced by a fake
(the real one is covered by test_diversity_deepface.py, and costs seconds per image)."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerefine.analysis.attributes import from_deepface
from facerefine.analysis.diversity import COLUMNS, SetAnalysis
from facerefine.analysis.report import SMOKE_BANNER

REPO = Path(__file__).resolve().parents[1]


def load_stage():
    spec = importlib.util.spec_from_file_location("diversity_stage", REPO / "stages" / "diversity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_face(i: int):
    races = ["asian", "indian", "black", "white", "middle eastern", "latino hispanic"]
    race = {r: 0.02 for r in races} | {races[i % 6]: 0.9}
    return from_deepface({"age": 15 + 7 * i, "dominant_gender": ["Man", "Woman"][i % 2],
                          "gender": {"Woman": 0.3, "Man": 0.7}, "dominant_race": races[i % 6], "race": race})


def fake_analyse(no_face_every: int):
    def analyse_set(name, directory, *, spec, detector, batch_size):
        n = {"baseline": 4, "enriched": 8}[name]
        faces = [None if no_face_every and i % no_face_every == 0 else fake_face(i) for i in range(n)]
        emb = np.random.default_rng(len(name)).normal(size=(n, 512)).astype(np.float32)
        emb[[f is None for f in faces]] = np.nan
        return SetAnalysis(name=name, keys=[f"{name[:2]}{i:07d}" for i in range(n)], faces=faces,
                           confidences=[None if f is None else 0.0 for f in faces], embeddings=emb)
    return analyse_set


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stage_writes_table1_metrics_report_figure_and_table(project, monkeypatch):
    stage = load_stage()
    monkeypatch.setattr(stage, "analyse_set", fake_analyse(no_face_every=4))
    stage.main()

    metrics = json.loads((project / "metrics/diversity.json").read_text())
    baseline, enriched = metrics["sets"]["baseline"], metrics["sets"]["enriched"]
    assert (baseline["images"], baseline["no_face"], enriched["images"], enriched["no_face"]) == (4, 1, 8, 2)
    assert sum(enriched["race"]["fractions"].values()) == pytest.approx(1.0)
    # ages 15 + 7i, i = 0 and 4 without a face: 22 29 | 36 50 | 57 64
    assert enriched["age"]["counts"] == {"18-30": 2, "31-50": 2, "50+": 2}
    assert metrics["tsne"] == {"points": 9, "faces": 9, "max_points": 10_000, "perplexity_requested": 30.0,
                               "perplexity": 8.0, "note": metrics["tsne"]["note"]}
    assert "clamped" in metrics["tsne"]["note"]

    report = (project / "reports/diversity.md").read_text()
    assert SMOKE_BANNER in report and "| Enriched |" in report and "(diversity_tsne.png)" in report
    assert "Shown: all 9 face embeddings." in report
    assert (project / "reports/diversity_tsne.png").read_bytes()[:4] == b"\x89PNG"

    table = pd.read_parquet(project / "data/diversity/attributes.parquet")
    assert list(table.columns) == COLUMNS and len(table) == 12
    assert table["face_found"].sum() == 9 and table.loc[~table["face_found"], "age"].isna().all()
    assert set(table["set"]) == {"baseline", "enriched"}


def test_stage_with_no_face_anywhere_still_reports(project, monkeypatch):
    stage = load_stage()
    monkeypatch.setattr(stage, "analyse_set", fake_analyse(no_face_every=1))
    stage.main()
    metrics = json.loads((project / "metrics/diversity.json").read_text())
    assert metrics["sets"]["enriched"]["gender"]["fractions"] is None
    assert metrics["tsne"]["perplexity"] is None and "skipped" in metrics["tsne"]["note"]
    report = (project / "reports/diversity.md").read_text()
    assert "n/a (no face)" in report and "t-SNE skipped" in report
    assert (project / "reports/diversity_tsne.png").stat().st_size > 0  # DVC still gets its output


def test_stage_maps_a_stratified_sample_above_tsne_max_points(project, monkeypatch):
    text = (project / "params.yaml").read_text().replace("tsne_max_points: 10000", "tsne_max_points: 6")
    (project / "params.yaml").write_text(text)
    stage = load_stage()
    monkeypatch.setattr(stage, "analyse_set", fake_analyse(no_face_every=0))
    stage.main()
    tsne = json.loads((project / "metrics/diversity.json").read_text())["tsne"]
    assert (tsne["points"], tsne["faces"], tsne["max_points"], tsne["perplexity"]) == (6, 12, 6, 5.0)
    report = (project / "reports/diversity.md").read_text()
    assert ("Shown: 6 of 12 face embeddings, a seeded sample stratified by set "
            "(Baseline 2 of 4; Enriched 4 of 8).") in report
