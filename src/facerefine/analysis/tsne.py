"""t-SNE of face embeddings (paper Fig. 3): perplexity clamping, the 2-D map, the figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerefine.io import save_figure

MIN_POINTS = 3  # fewer points make no map worth drawing
SINGLE_THREAD_POINTS = 10_000  # t-SNE runs single-threaded up to this many points


@dataclass(frozen=True)
class Perplexity:
    requested: float
    used: float | None  # None: t-SNE skipped
    note: str | None  # why it differs from the request, for the report and the log


def clamp_perplexity(requested: float, n_samples: int) -> Perplexity:
    """scikit-learn requires perplexity < n_samples: clamp to n_samples - 1 and say so,
    or skip below :data:`MIN_POINTS` points."""
    if requested <= 0:
        raise ValueError(f"perplexity must be > 0 (got {requested})")
    if n_samples < MIN_POINTS:
        return Perplexity(requested, None,
                          f"t-SNE skipped: {n_samples} face embedding(s), at least {MIN_POINTS} needed")
    if requested < n_samples:
        return Perplexity(requested, float(requested), None)
    used = float(n_samples - 1)
    return Perplexity(requested, used,
                      f"perplexity {requested:g} clamped to {used:g}: scikit-learn requires "
                      f"perplexity < n_samples ({n_samples} face embeddings)")


def tsne_2d(embeddings: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """(N, 2) t-SNE map of (N, D) embeddings. Rows are L2-normalised first: ArcFace
    embeddings are compared by angle, and on unit vectors Euclidean distance is a
    monotone function of cosine distance."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    # Each of the 1000 Barnes-Hut iterations opens an OpenMP parallel region; on a small map
    # that synchronisation costs far more than it saves (40x slower on 2 busy cores with
    # torch loaded). Same result either way.
    threads = 1 if len(x) <= SINGLE_THREAD_POINTS else None
    with threadpool_limits(limits=threads, user_api="openmp"):
        return tsne.fit_transform(x)


def plot_tsne(points: np.ndarray | None, groups: Sequence[str], path: str | Path, *, title: str,
              note: str | None = None) -> None:
    """Scatter the 2-D map, one colour per group (in order of first appearance), with a legend.
    With ``points=None`` the figure only states ``note`` (DVC still gets its output)."""
    # A bare Figure renders with Agg and leaves pyplot's global backend state alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    if points is None:
        ax.text(0.5, 0.5, note or "t-SNE skipped", ha="center", va="center", wrap=True, transform=ax.transAxes)
        ax.set_axis_off()
    else:
        groups = np.asarray(groups)
        colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
        for i, group in enumerate(dict.fromkeys(groups.tolist())):
            sel = groups == group
            ax.scatter(points[sel, 0], points[sel, 1], s=14, alpha=0.75, color=colours[i % len(colours)],
                       label=f"{group} (n={int(sel.sum())})")
        ax.legend(loc="best", fontsize=9)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        if note:
            fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    fig.tight_layout()
    save_figure(fig, Path(path))
