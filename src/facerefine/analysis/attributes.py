"""Pure logic of the diversity analysis (paper §3.2, Table 1): DeepFace labels onto the
paper's columns, age buckets, distributions as fractions and a diversity index.

Bucketing rules (the paper's Table 1 leaves them implicit):

* age is a whole number of years (DeepFace's ``analyze`` truncates its expected age to
  ``int``; a float given here is truncated the same way);
* 18-30 and 31-50 are inclusive, so 30 -> 18-30, 31 -> 31-50, 50 -> 31-50 and 51 -> 50+
  (the paper's "50+" column label is kept, it holds ages above 50);
* ages under 18 go into 18-30: the paper's table has no younger column and its fractions
  sum to 1, so the youngest faces must be in its youngest bucket. Their number is reported
  separately (``under_18``) so the folding is visible.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The paper's columns, in the paper's order.
GENDERS: tuple[str, ...] = ("M", "F")
AGE_BUCKETS: tuple[str, ...] = ("18-30", "31-50", "50+")
RACES: tuple[str, ...] = ("Asian", "Black", "Indian", "Latino", "Middle Eastern", "White")
ATTRIBUTES: dict[str, tuple[str, ...]] = {"gender": GENDERS, "age": AGE_BUCKETS, "race": RACES}

# DeepFace's labels (deepface.models.demography.DemographyUtils) -> the paper's columns.
GENDER_FROM_DEEPFACE: dict[str, str] = {"Man": "M", "Woman": "F"}
RACE_FROM_DEEPFACE: dict[str, str] = {
    "asian": "Asian",
    "black": "Black",
    "indian": "Indian",
    "latino hispanic": "Latino",
    "middle eastern": "Middle Eastern",
    "white": "White",
}

ADULT_AGE = 18


def age_bucket(age: float) -> str:
    """The paper's age bucket of an age in years (see the module docstring for the rules)."""
    if not math.isfinite(age) or age < 0:
        raise ValueError(f"age must be a finite number >= 0 (got {age!r})")
    years = int(age)  # DeepFace truncates, so 30.9 is 30
    if years <= 30:
        return "18-30"  # includes under-18s, see the module docstring
    if years <= 50:
        return "31-50"
    return "50+"


def gender_label(deepface_gender: str) -> str:
    """DeepFace's "Man"/"Woman" -> the paper's "M"/"F"."""
    try:
        return GENDER_FROM_DEEPFACE[deepface_gender]
    except KeyError:
        raise ValueError(f"unknown DeepFace gender label {deepface_gender!r}; "
                         f"expected one of {sorted(GENDER_FROM_DEEPFACE)}") from None


def race_label(deepface_race: str) -> str:
    """DeepFace's race label (e.g. "latino hispanic") -> the paper's column (e.g. "Latino")."""
    try:
        return RACE_FROM_DEEPFACE[deepface_race]
    except KeyError:
        raise ValueError(f"unknown DeepFace race label {deepface_race!r}; "
                         f"expected one of {sorted(RACE_FROM_DEEPFACE)}") from None


def diversity_index(fractions: Mapping[str, float], num_classes: int | None = None) -> float:
    """Normalised Shannon entropy H(p) / log(K) in [0, 1]: 1 when the K classes are equally
    frequent, 0 when one class holds everything. K is the number of the paper's columns
    (``num_classes``), not just the classes that happened to occur."""
    k = num_classes if num_classes is not None else len(fractions)
    if k < 2:
        raise ValueError(f"a diversity index needs at least 2 classes (got {k})")
    if len(fractions) > k:
        raise ValueError(f"{len(fractions)} fractions for {k} classes")
    probs = [p for p in fractions.values() if p > 0]
    total = sum(probs)
    if total <= 0:
        raise ValueError("fractions must have a positive sum")
    entropy = -sum((p / total) * math.log(p / total) for p in probs)
    return min(1.0, max(0.0, entropy / math.log(k)))  # clip float noise at the ends


@dataclass(frozen=True)
class Distribution:
    """Counts of one attribute over the paper's columns, and fractions when defined."""

    labels: tuple[str, ...]
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def fractions(self) -> dict[str, float] | None:
        """Fractions summing to 1, or None when there is nothing to divide (no faces)."""
        if self.total == 0:
            return None
        return {label: self.counts[label] / self.total for label in self.labels}

    @property
    def index(self) -> float | None:
        fractions = self.fractions
        return None if fractions is None else diversity_index(fractions, len(self.labels))

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "fractions": self.fractions, "diversity_index": self.index}


def distribution(values: Iterable[str], labels: tuple[str, ...]) -> Distribution:
    """Count ``values`` over ``labels``; a value outside them is an error, not dropped."""
    counted = Counter(values)
    unknown = set(counted) - set(labels)
    if unknown:
        raise ValueError(f"values {sorted(unknown)} are not among the columns {list(labels)}")
    return Distribution(labels=labels, counts={label: counted.get(label, 0) for label in labels})


@dataclass(frozen=True)
class FaceAttributes:
    """One face in the paper's terms."""

    age: int
    age_bucket: str
    gender: str
    race: str
    gender_probs: dict[str, float]  # paper label -> probability
    race_probs: dict[str, float]


def from_deepface(result: Mapping) -> FaceAttributes:
    """Map one DeepFace-style result (``age``, ``dominant_gender``, ``dominant_race`` and the
    ``gender``/``race`` probability dicts keyed by DeepFace's labels) onto the paper's columns."""
    age = int(result["age"])
    return FaceAttributes(
        age=age,
        age_bucket=age_bucket(age),
        gender=gender_label(result["dominant_gender"]),
        race=race_label(result["dominant_race"]),
        gender_probs={gender_label(k): float(v) for k, v in result["gender"].items()},
        race_probs={race_label(k): float(v) for k, v in result["race"].items()},
    )


def summarise(faces: list[FaceAttributes | None]) -> dict:
    """Table 1 for one image set: per attribute counts, fractions and diversity index, plus
    how many images had no face (``None``) and how many ages were folded in from under 18."""
    found = [f for f in faces if f is not None]
    return {
        "images": len(faces),
        "faces": len(found),
        "no_face": len(faces) - len(found),
        "under_18": sum(f.age < ADULT_AGE for f in found),
        "gender": distribution((f.gender for f in found), GENDERS).as_dict(),
        "age": distribution((f.age_bucket for f in found), AGE_BUCKETS).as_dict(),
        "race": distribution((f.race for f in found), RACES).as_dict(),
    }
