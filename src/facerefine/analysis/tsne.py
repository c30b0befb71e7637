"""t-SNE of face embeddings (paper Fig. 3): a bounded sample, perplexity clamping, the 2-D map,
the figure.

scikit-learn's Barnes-Hut t-SNE takes time and memory that grow with N (hours at the paper's
~150,000 faces), so the map shows at most ``diversity.tsne_max_points``
faces: a seeded sample stratified by set, so that each set keeps its share of the points.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerefine.io import save_figure

MIN_POINTS = 3  # fewer points make no map worth drawing
SINGLE_THREAD_POINTS = 10_000  # t-SNE runs single-threaded up to this many points


@dataclass(frozen=True)
class TsneSample:
    """Which of the candidate faces the map shows, and how many of each group."""

    indices: np.ndarray  # sorted positions into the candidates
    counts: dict[str, tuple[int, int]]  # group -> (shown, available), groups in order of appearance

    @property
    def shown(self) -> int:
        return len(self.indices)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts.values())

    @property
    def note(self) -> str:
        """For the report and the figure: how many points the map shows of how many."""
        if self.shown == self.total:
            return f"Shown: all {self.total:,} face embeddings"
        per_group = "; ".join(f"{g} {k:,} of {n:,}" for g, (k, n) in self.counts.items())
        return (f"Shown: {self.shown:,} of {self.total:,} face embeddings, a seeded sample stratified "
                f"by set ({per_group})")


def allocate(sizes: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` points over groups in proportion to their sizes (largest remainder, ties
    to the earlier group), at least one per non-empty group when the budget allows."""
    total = sum(sizes)
    if total <= budget:
        return list(sizes)
    quotas = [budget * n / total for n in sizes]
    alloc = [int(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - alloc[i]), i))
    for i in by_remainder[:budget - sum(alloc)]:
        alloc[i] += 1
    # A small set must not vanish from the map: lend it a point from the largest allocation.
    for i, n in enumerate(sizes):
        if n and not alloc[i] and budget >= sum(1 for m in sizes if m):
            alloc[max(range(len(alloc)), key=lambda j: (alloc[j], -j))] -= 1
            alloc[i] = 1
    return alloc


def stratified_sample(groups: Sequence[str], max_points: int, seed: int) -> TsneSample:
    """At most ``max_points`` positions of ``groups``, stratified by group; all when there are
    no more. Each group draws from its own generator seeded by (seed, group name), so a
    group's sample does not change when another group grows."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1 (got {max_points})")
    labels = np.asarray(groups, dtype=object)
    names = list(dict.fromkeys(labels.tolist()))
    members = [np.flatnonzero(labels == g) for g in names]
    alloc = allocate([len(m) for m in members], max_points)
    chosen = []
    for name, rows, k in zip(names, members, alloc):
        if k < len(rows):
            rng = np.random.default_rng([seed, zlib.crc32(str(name).encode("utf-8"))])
            rows = rows[rng.choice(len(rows), size=k, replace=False)]
        chosen.append(rows)
    indices = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
    return TsneSample(indices, {str(g): (k, len(m)) for g, m, k in zip(names, members, alloc)})


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


@dataclass(frozen=True)
class TsneMap:
    points: np.ndarray | None  # (shown, 2); None: skipped (see perplexity.note)
    groups: np.ndarray  # the group of each point shown
    sample: TsneSample
    perplexity: Perplexity

    @property
    def note(self) -> str:
        """Everything the figure should say under the map."""
        return "; ".join(n for n in (self.sample.note, self.perplexity.note) if n)


def tsne_map(embeddings: np.ndarray, groups: Sequence[str], *, perplexity: float, max_points: int,
             seed: int) -> TsneMap:
    """The t-SNE map of the rows that hold a face (no NaN), bounded to ``max_points`` by
    :func:`stratified_sample`; perplexity clamped to the points actually mapped."""
    embeddings = np.asarray(embeddings)
    found = np.isfinite(embeddings).all(axis=1)
    candidates, labels = embeddings[found], np.asarray(groups, dtype=object)[found]
    sample = stratified_sample(labels, max_points, seed)
    clamped = clamp_perplexity(perplexity, sample.shown)
    x, shown_groups = candidates[sample.indices], labels[sample.indices]
    points = None if clamped.used is None else tsne_2d(x, clamped.used, seed)
    return TsneMap(points, shown_groups, sample, clamped)


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
