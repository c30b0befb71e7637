"""ArcFace face embeddings through DeepFace (paper Fig. 3; reused for identity preservation).

The steps are those of ``DeepFace.represent(model_name="ArcFace", normalization="base")``:
the detected face (RGB in [0, 1]) -> BGR -> ``preprocessing.resize_image`` to 112x112 ->
``normalize_input(..., "base")`` -> one batched forward of DeepFace's ArcFace client. The
test suite checks the result against ``DeepFace.represent`` on the same face.

Images without a face get a row of NaN, so that row i always belongs to image i; use
``np.isfinite(emb).all(axis=1)`` (or :func:`found_mask`) to select the faces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from facerefine.weights.deepface import load_deepface
from facerefine.analysis.faces import Face, extract_faces, face_batch

ARCFACE_DIM = 512
ARCFACE_INPUT = (112, 112)


def embed_faces(faces: Sequence[Face | None], spec: str) -> np.ndarray:
    """(N, 512) float32 ArcFace embeddings of already extracted faces; NaN rows for None."""
    from deepface.modules import preprocessing

    out = np.full((len(faces), ARCFACE_DIM), np.nan, dtype=np.float32)
    present = [i for i, face in enumerate(faces) if face is not None]
    if not present:
        return out
    batch = preprocessing.normalize_input(img=face_batch([faces[i] for i in present], ARCFACE_INPUT),
                                          normalization="base")
    vectors = load_deepface(spec, "ArcFace").predict(batch)
    out[present] = np.asarray(vectors, dtype=np.float32).reshape(len(present), ARCFACE_DIM)
    return out


def arcface_embeddings(images: Sequence[Image.Image], spec: str, detector: str) -> np.ndarray:
    """(N, 512) ArcFace embeddings of the main face of each image; a NaN row where the
    detector (DeepFace ``detector_backend``) finds no face. ``spec`` is a models.deepface
    value: ``pretrained``, ``smoke`` or a DEEPFACE_HOME directory."""
    return embed_faces(extract_faces(images, detector, spec), spec)


def found_mask(embeddings: np.ndarray) -> np.ndarray:
    """Boolean (N,) mask of the rows that hold an embedding (a face was found)."""
    return np.isfinite(embeddings).all(axis=1)
