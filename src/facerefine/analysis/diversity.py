"""The diversity analysis of one image set: stream its shards in batches, find the main face
of each image, run DeepFace's attribute models and ArcFace on the faces of the batch.

Images are decoded from the tar shards in memory (``shards.iter_shard``); nothing is
extracted to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from tqdm import tqdm

from facerefine.analysis.attributes import RACES, FaceAttributes, from_deepface
from facerefine.analysis.embeddings import ARCFACE_DIM, embed_faces
from facerefine.analysis.faces import Face, extract_faces, predict_attributes
from facerefine.data import shards

log = logging.getLogger(__name__)
T = TypeVar("T")

# Probabilities and detector confidences are stored at this many decimals (0.1 percentage
# point, the report's precision). The table is a versioned DVC output: at full precision its
# bytes follow the last bits of DeepFace's CPU inference, which move (~1e-7) with the
# deepface/opencv/torch build and the CPU's SIMD kernels, while the counts, report and t-SNE
# do not. Rounding cannot help a value within ~1e-7 of a rounding boundary, so the grid is
# coarse: in the smoke run the nearest value is 2.7e-5 from a 3-decimal boundary, but one
# (p_white 0.16555007) sits 7e-8 from a 4-decimal one.
DECIMALS = 3

# Columns of data/diversity/attributes.parquet, one row per image.
RACE_COLUMNS = {race: "p_" + race.lower().replace(" ", "_") for race in RACES}  # "p_middle_eastern"
COLUMNS = ["id", "set", "face_found", "face_confidence", "age", "age_bucket", "gender", "dominant_race",
           "p_male", "p_female", *RACE_COLUMNS.values()]


@dataclass(frozen=True)
class SetAnalysis:
    name: str
    keys: list[str]
    faces: list[FaceAttributes | None]  # None: no face found
    confidences: list[float | None]
    embeddings: np.ndarray  # (N, 512), NaN rows where no face was found

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([attribute_row(k, self.name, f, c)
                             for k, f, c in zip(self.keys, self.faces, self.confidences)],
                            columns=COLUMNS).astype({"age": "Int64"})


def attribute_row(key: str, set_name: str, face: FaceAttributes | None, confidence: float | None) -> dict:
    """One row of the per-image table; attribute columns are empty when no face was found."""
    row: dict = {"id": key, "set": set_name, "face_found": face is not None,
                 "face_confidence": _rounded(confidence)}
    if face is None:
        return row
    row.update(age=face.age, age_bucket=face.age_bucket, gender=face.gender, dominant_race=face.race,
               p_male=_rounded(face.gender_probs.get("M")), p_female=_rounded(face.gender_probs.get("F")))
    row.update({column: _rounded(face.race_probs.get(race)) for race, column in RACE_COLUMNS.items()})
    return row


def _rounded(value: float | None) -> float | None:
    """A model output at the table's precision (see DECIMALS); None stays None."""
    return None if value is None else round(float(value), DECIMALS)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1 (got {size})")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_images(directory: Path) -> Iterator[shards.Sample]:
    for shard in shards.list_shards(directory):
        yield from shards.iter_shard(shard)


def count_images(directory: Path) -> int | None:
    """Number of images from the shard indexes (for the progress bar); None if unknown."""
    total = 0
    for shard in shards.list_shards(directory):
        index = shards.read_index(shard)
        if index is None:
            return None
        total += len(index.get("keys", []))
    return total


def analyse_set(name: str, directory: str | Path, *, spec: str, detector: str, batch_size: int) -> SetAnalysis:
    """Attributes and ArcFace embeddings of every image of one shard folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no image shards (run `dvc repro generate_schnell` first)")
    keys: list[str] = []
    faces: list[FaceAttributes | None] = []
    confidences: list[float | None] = []
    vectors: list[np.ndarray] = []
    with tqdm(total=count_images(directory), desc=f"diversity/{name}", unit="img") as bar:
        for batch in batched(iter_images(directory), batch_size):
            found: list[Face | None] = extract_faces([s.image for s in batch], detector, spec)
            attributes = iter(predict_attributes([f for f in found if f is not None], spec))
            for sample, face in zip(batch, found):
                keys.append(sample.key)
                faces.append(None if face is None else from_deepface(next(attributes)))
                confidences.append(None if face is None else face.confidence)
            vectors.append(embed_faces(found, spec))
            bar.update(len(batch))
    embeddings = np.concatenate(vectors) if vectors else np.empty((0, ARCFACE_DIM), dtype=np.float32)
    if not keys:
        log.warning("%s: no images in %s", name, directory)
    return SetAnalysis(name=name, keys=keys, faces=faces, confidences=confidences, embeddings=embeddings)
