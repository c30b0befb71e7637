"""DeepFace's real code path on the smoke stand-ins: offline, project-local, same results
as DeepFace's own analyze/represent.

The stand-ins have DeepFace's real sizes (three VGG-Face trunks, 224x224 inputs), so this
module builds them once and runs the fewest forwards that prove the point.
"""

import os
import socket

import numpy as np
import pytest
from PIL import Image

from facerefine.analysis.attributes import AGE_BUCKETS, GENDERS, RACES, from_deepface
from facerefine.analysis.embeddings import ARCFACE_DIM, arcface_embeddings, embed_faces, found_mask
from facerefine.analysis.faces import extract_faces, predict_attributes, to_bgr
from facerefine.config import ParamsError
from facerefine.paths import facerefine_home
from facerefine.weights import deepface as deepface_weights

pytestmark = pytest.mark.slow


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Stand-ins built and used with downloads and sockets made to fail, and HOME pointed at an
    empty folder, so any write to ~/.deepface (or anywhere in HOME) is caught."""
    from deepface.commons import weight_utils

    fake_home = tmp_path_factory.mktemp("home")
    downloads = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(fake_home))
        mp.delenv("DEEPFACE_HOME", raising=False)
        mp.setattr(weight_utils.gdown, "download", lambda *a, **k: downloads.append(a) or _no_network(*a))
        mp.setattr(weight_utils, "ensure_source_is_reachable", lambda *a, **k: downloads.append(a) or _no_network(*a))
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(deepface_weights, "_deepface_models", {})  # load inside the guard, not from another test's cache
        standin_root = facerefine_home() / "standins"
        before = set(standin_root.rglob("*")) if standin_root.exists() else set()

        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
        faces = extract_faces(images, "skip", "smoke")
        attrs = predict_attributes(faces, "smoke")
        emb = embed_faces([faces[0], None, faces[1]], "smoke")
        api = arcface_embeddings(images, "smoke", "skip")
        yield {"images": images, "faces": faces, "attrs": attrs, "emb": emb, "api": api,
               "downloads": downloads, "fake_home": fake_home, "new_files": set(standin_root.rglob("*")) - before}


def test_attributes_have_deepface_keys_and_map_onto_paper_columns(run):
    assert len(run["attrs"]) == 2
    for result in run["attrs"]:
        assert set(result) == {"age", "gender", "dominant_gender", "race", "dominant_race"}
        assert isinstance(result["age"], int) and 0 <= result["age"] <= 100
        assert sum(result["gender"].values()) == pytest.approx(1.0, abs=1e-4)
        assert sum(result["race"].values()) == pytest.approx(1.0, abs=1e-4)
        mapped = from_deepface(result)
        assert mapped.gender in GENDERS and mapped.age_bucket in AGE_BUCKETS and mapped.race in RACES


def test_embeddings_are_512d_with_nan_rows_for_no_face(run):
    emb = run["emb"]
    assert emb.shape == (3, ARCFACE_DIM) and emb.dtype == np.float32
    assert found_mask(emb).tolist() == [True, False, True]
    assert np.isnan(emb[1]).all()
    assert np.allclose(emb[[0, 2]], run["api"], atol=1e-5)  # the public API, same faces
    assert not np.allclose(emb[0], emb[2])  # the embedding depends on the image


def test_smoke_path_never_downloads_and_writes_only_its_standin_folder(run):
    assert run["downloads"] == []
    assert list(run["fake_home"].iterdir()) == []  # no ~/.deepface, nothing else in HOME either
    standin = deepface_weights.deepface_home("smoke")
    assert standin.parent == facerefine_home() / "standins"
    for path in run["new_files"]:
        assert path == standin or standin in path.parents or path.name.startswith(".deepface"), path
    files = sorted(p.name for p in (standin / ".deepface" / "weights").iterdir())
    assert files == sorted(deepface_weights.deepface_weight_file(n) for n in deepface_weights.DEEPFACE_MODELS)
    assert "DEEPFACE_HOME" not in os.environ  # set only while DeepFace resolved the files


def test_batched_path_equals_deepface_analyze_and_represent(run, monkeypatch):
    """Same models (DeepFace's cache is pointed at ours to avoid loading them twice), so this
    checks the pre- and post-processing the batched path repeats."""
    from deepface.modules import demography, modeling, representation

    monkeypatch.setattr(modeling, "build_model", lambda task, model_name: deepface_weights.load_deepface("smoke", model_name))
    ref = demography.analyze(to_bgr(run["images"][0]), actions=("age", "gender", "race"),
                             detector_backend="skip", silent=True)[0]  # what DeepFace.analyze runs
    ours = run["attrs"][0]
    assert ours["age"] == ref["age"]
    assert ours["dominant_gender"] == ref["dominant_gender"] and ours["dominant_race"] == ref["dominant_race"]
    for key in ("gender", "race"):
        assert ours[key] == pytest.approx({k: v / 100 for k, v in ref[key].items()}, abs=1e-4)

    face_bgr = run["faces"][0].rgb[:, :, ::-1]
    ref_emb = representation.represent(face_bgr, model_name="ArcFace", detector_backend="skip")[0]["embedding"]
    assert np.allclose(run["emb"][0], ref_emb, atol=1e-4)


def test_smoke_refuses_detectors_that_need_weights():
    assert deepface_weights.deepface_detector("smoke", "skip") == "skip"
    with pytest.raises(ParamsError, match="retinaface"):
        deepface_weights.deepface_detector("smoke", "retinaface")
    assert deepface_weights.deepface_detector("pretrained", "retinaface") == "retinaface"


def test_deepface_spec_resolution(tmp_path):
    assert deepface_weights.deepface_home("pretrained") is None
    assert deepface_weights.deepface_home(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="models.deepface"):
        deepface_weights.deepface_home(str(tmp_path / "missing"))
