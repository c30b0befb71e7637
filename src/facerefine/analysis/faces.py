"""Faces and their DeepFace attributes, batched.

``DeepFace.analyze`` runs its models one image at a time. This module runs the same steps
with DeepFace's own functions and models, but each model once per batch:

1. ``deepface.modules.detection.extract_faces`` (RGB face in [0, 1]); one face per image,
   the most confident (then the largest), since a portrait shows one person;
2. RGB -> BGR and ``preprocessing.resize_image`` to 224x224, exactly as ``analyze`` does;
3. the Age, Gender and Race clients' ``predict`` on the stacked batch, post-processed as
   ``deepface.modules.demography.analyze`` does (int age, race probabilities normalised).

Probabilities are fractions in [0, 1], where DeepFace reports percentages. The test suite
checks that the result equals ``DeepFace.analyze`` on the same image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facerefine.weights.deepface import deepface_detector, deepface_environment, load_deepface

ATTRIBUTE_INPUT = (224, 224)  # what demography.analyze resizes faces to


@dataclass(frozen=True)
class Face:
    rgb: np.ndarray  # H x W x 3, float in [0, 1], as extract_faces returns it
    confidence: float  # the detector's; 0 with detector "skip" (whole image)
    area: dict  # facial_area from extract_faces (x, y, w, h, eyes)


def to_bgr(image: Image.Image) -> np.ndarray:
    """A PIL image as the uint8 BGR array DeepFace expects for in-memory images."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[:, :, ::-1])


def extract_face(image: Image.Image, detector: str) -> Face | None:
    """The image's main face, or None when the detector finds none. With detector ``skip``
    the whole image is the face (DeepFace's own convention)."""
    from deepface.modules import detection
    from deepface.modules.exceptions import FaceNotDetected, ImgNotFound

    try:
        # enforce_detection=True: DeepFace raises on no face instead of silently handing back
        # the whole image, so "no face" is visible. ImgNotFound: every crop was empty.
        found = detection.extract_faces(img_path=to_bgr(image), detector_backend=detector,
                                        enforce_detection=True, align=True)
    except (FaceNotDetected, ImgNotFound):
        return None
    best = max(found, key=lambda f: (f["confidence"], f["facial_area"]["w"] * f["facial_area"]["h"]))
    return Face(rgb=best["face"], confidence=float(best["confidence"]), area=best["facial_area"])


def extract_faces(images: Sequence[Image.Image], detector: str, spec: str) -> list[Face | None]:
    """:func:`extract_face` for each image. The detector is checked against the spec first
    (the smoke stand-ins cover no detector weights), and a detector DeepFace builds on first
    use gets its weights from where the spec says."""
    detector = deepface_detector(spec, detector)
    with deepface_environment(spec):
        return [extract_face(image, detector) for image in images]


def face_batch(faces: Sequence[Face], size: tuple[int, int]) -> np.ndarray:
    """(n, h, w, 3) float32 BGR model input, resized (and padded) by DeepFace's resize_image."""
    from deepface.modules import preprocessing

    # resize_image returns (1, h, w, 3); [:, :, ::-1] is analyze's "rgb to bgr".
    return np.concatenate([preprocessing.resize_image(img=f.rgb[:, :, ::-1], target_size=size) for f in faces])


def predict_attributes(faces: Sequence[Face], spec: str) -> list[dict]:
    """DeepFace age, gender and race of each face, in DeepFace's labels:
    ``{"age": int, "gender": {"Woman": p, "Man": p}, "dominant_gender": ...,
    "race": {"asian": p, ...}, "dominant_race": ...}`` with p in [0, 1]."""
    from deepface.models.demography.DemographyUtils import GENDER_LABELS, RACE_LABELS

    if not faces:
        return []
    batch = face_batch(faces, ATTRIBUTE_INPUT)
    # predict() squeezes a batch of one to a single prediction; atleast_* undoes that.
    ages = np.atleast_1d(load_deepface(spec, "Age").predict(batch))
    genders = np.atleast_2d(load_deepface(spec, "Gender").predict(batch))
    races = np.atleast_2d(load_deepface(spec, "Race").predict(batch))
    results = []
    for age, gender, race in zip(ages, genders, races):
        race = race / race.sum()
        results.append({
            "age": int(age),
            "gender": {label: float(p) for label, p in zip(GENDER_LABELS, gender)},
            "dominant_gender": GENDER_LABELS[int(np.argmax(gender))],
            "race": {label: float(p) for label, p in zip(RACE_LABELS, race)},
            "dominant_race": RACE_LABELS[int(np.argmax(race))],
        })
    return results
