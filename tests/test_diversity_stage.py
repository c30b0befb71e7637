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
from facerefine.io import write_parquet

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

    metrics = json.loads((project / "reports/diversity.json").read_text())
    baseline, enriched = metrics["sets"]["baseline"], metrics["sets"]["enriched"]
    assert (baseline["images"], baseline["no_face"], enriched["images"], enriched["no_face"]) == (4, 1, 8, 2)
    assert sum(enriched["race"]["fractions"].values()) == pytest.approx(1.0)
    # ages 15 + 7i, i = 0 and 4 without a face: 22 29 | 36 50 | 57 64
    assert enriched["age"]["counts"] == {"18-30": 2, "31-50": 2, "50+": 2}
    assert metrics["tsne"] == {"points": 9, "faces": 9, "max_points": 10_000, "perplexity_requested": 30.0,
                               "perplexity": 8.0, "note": metrics["tsne"]["note"]}
    assert "clamped" in metrics["tsne"]["note"]
    # metrics/ holds the headline only, under the full file's key paths
    assert json.loads((project / "metrics/diversity.json").read_text()) == {
        "sets": {name: {"faces": s["faces"], **{a: {"diversity_index": s[a]["diversity_index"]}
                                               for a in ("gender", "age", "race")}}
                 for name, s in metrics["sets"].items()},
        "tsne": {"points": 9, "faces": 9}}

    report = (project / "reports/diversity.md").read_text()
    assert "> **Stand-in networks:** schnell (smoke), deepface (smoke)" in report
    assert "| Enriched |" in report and "(diversity_tsne.png)" in report
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
    metrics = json.loads((project / "reports/diversity.json").read_text())
    assert metrics["sets"]["enriched"]["gender"]["fractions"] is None
    assert metrics["tsne"]["perplexity"] is None and "skipped" in metrics["tsne"]["note"]
    report = (project / "reports/diversity.md").read_text()
    assert "n/a (no face)" in report and "t-SNE skipped" in report
    assert (project / "reports/diversity_tsne.png").stat().st_size > 0  # DVC still gets its output


def test_attributes_table_is_byte_identical_when_written_twice(project, monkeypatch):
    """data/diversity is a versioned DVC out: the same analysis must give the same bytes."""
    stage = load_stage()
    monkeypatch.setattr(stage, "analyse_set", fake_analyse(no_face_every=4))
    table = project / "data/diversity/attributes.parquet"
    stage.main()
    first = table.read_bytes()
    table.unlink()
    stage.main()
    assert table.read_bytes() == first


def deepface_like(p_man: float, p_white: float) -> dict:
    race = {"asian": 0.164553, "indian": 0.167473, "black": 0.166667, "latino hispanic": 0.167406,
            "middle eastern": 0.168351 - (p_white - 0.16555), "white": p_white}
    return {"age": 49, "dominant_gender": "Man", "gender": {"Man": p_man, "Woman": 1 - p_man},
            "dominant_race": "middle eastern", "race": race}


def test_float_noise_of_the_models_does_not_reach_the_table_bytes(tmp_path):
    """Another deepface/opencv/torch build or CPU moves DeepFace's outputs in their last bits
    (~1e-7); the stored table must not follow them (DECIMALS). The values are the smoke run's."""
    def table_bytes(noise: float, name: str) -> bytes:
        face = from_deepface(deepface_like(0.500187 + noise, 0.16555 + noise))
        analysis = SetAnalysis(name="enriched", keys=["en0000000", "en0000001"], faces=[face, None],
                               confidences=[0.9731 + noise, None], embeddings=np.zeros((2, 512), np.float32))
        write_parquet(tmp_path / name, analysis.table())
        return (tmp_path / name).read_bytes()

    assert table_bytes(0.0, "a.parquet") == table_bytes(1e-7, "b.parquet") == table_bytes(-1e-7, "c.parquet")
    table = pd.read_parquet(tmp_path / "a.parquet")
    assert table.loc[0, "p_male"] == 0.5 and table.loc[0, "p_white"] == 0.166 and table.loc[0, "face_confidence"] == 0.973
    assert pd.isna(table.loc[1, "p_male"]) and pd.isna(table.loc[1, "age"])


def test_stage_maps_a_stratified_sample_above_tsne_max_points(project, monkeypatch):
    text = (project / "params.yaml").read_text().replace("tsne_max_points: 10000", "tsne_max_points: 6")
    (project / "params.yaml").write_text(text)
    stage = load_stage()
    monkeypatch.setattr(stage, "analyse_set", fake_analyse(no_face_every=0))
    stage.main()
    tsne = json.loads((project / "reports/diversity.json").read_text())["tsne"]
    assert (tsne["points"], tsne["faces"], tsne["max_points"], tsne["perplexity"]) == (6, 12, 6, 5.0)
    report = (project / "reports/diversity.md").read_text()
    assert ("Shown: 6 of 12 face embeddings, a seeded sample stratified by set "
            "(Baseline 2 of 4; Enriched 4 of 8).") in report
