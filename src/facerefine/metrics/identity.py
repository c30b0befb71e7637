"""Identity preservation (FastFace §5.1): ArcFace cosine similarity and face-fail counts."""

from __future__ import annotations

import numpy as np


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays; NaN where either row is NaN (no face)."""
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("ij,ij->i", a, b) / norms


def identity_summary(outputs: np.ndarray, references: np.ndarray) -> dict[str, float | int | None]:
    """Mean cosine over pairs where both faces were found, plus how many outputs lost their face."""
    sims = cosine_rows(outputs, references)
    valid = np.isfinite(sims)
    return {
        "cos_mean": float(sims[valid].mean()) if valid.any() else None,
        "cos_std": float(sims[valid].std()) if valid.any() else None,
        "pairs": int(valid.sum()),
        "face_fail": int((~np.isfinite(outputs).all(axis=1)).sum()),
    }
