"""Table 4 (paper §5.4): how close each enhanced set is to dev rather than schnell.

Every row is a set of test-split images, one per subject, aligned by id with
the schnell and dev test images:

  FLUX.1-schnell, FLUX.1-dev         the references themselves
  LoRA Realism                       schnell + a realism LoRA, same prompt and seed
  U-Net / CycleGAN / ESA-CycleGAN    a head applied to the schnell image

Per row: FID and KID against both references (same Inception, same resizing),
FID_diff = FID_schnell − FID_dev, CLIP-IQA, ArcFace identity similarity to the
schnell input and the dev twin with the count of lost faces (FastFace §5.1),
and SSIM/PSNR against the dev twin (reference only: the paper found them
unreliable). Numbers from fewer images than FID's 2048 feature dimensions are
flagged low-confidence.

Memory is bounded in N: the test subjects stream through in batches
(:func:`pair_batches` reads each image from its shard when its batch comes),
every row's images are made batch by batch, and only per-image features
accumulate (Inception features, CLIP-IQA scores, ArcFace embeddings, per-image
SSIM/PSNR). Every feature of an image depends on that image alone, so the
numbers do not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facerefine.data.datasets import index_images, read_image, to_image, to_tensor
from facerefine.data.shards import ShardError
from facerefine.metrics import fidelity
from facerefine.metrics.identity import identity_summary
from facerefine.metrics.image import psnr, ssim

SCHNELL, DEV = "schnell", "dev"
# Paper Table 4 values for the rows we share (FID_schnell, FID_dev, FID_diff, CLIP-IQA).
PAPER_TABLE4 = {
    "schnell": (None, 0.37, None, 0.35),
    "dev": (0.37, None, None, 0.36),
    "lora": (0.32, 0.59, -0.27, 0.34),
    "unet": (0.54, 0.53, 0.01, 0.34),
    "esa": (0.75, 0.34, 0.41, 0.35),  # the paper's "Ours (non-pairwise)" is ESA-CycleGAN
}
LABELS = {"schnell": "FLUX.1-schnell", "dev": "FLUX.1-dev", "lora": "LoRA Realism", "unet": "U-Net (pairwise)",
          "cyclegan": "CycleGAN (non-pairwise)", "esa": "ESA-CycleGAN (non-pairwise)"}
# The Table 4 numbers people compare: the only ones in metrics/quality.json (DESIGN.md, metrics
# files hold headlines); every column of every row is in reports/quality.json.
HEADLINE_COLUMNS = ("fid_diff", "clip_iqa", "identity_cos_schnell")


def quality_headline(rows: Mapping[str, Mapping]) -> dict[str, dict]:
    """``metrics/quality.json``: per row, only :data:`HEADLINE_COLUMNS` (``None`` where absent)."""
    return {name: {key: row.get(key) for key in HEADLINE_COLUMNS} for name, row in rows.items()}


Images = Sequence[Image.Image]


@dataclass(frozen=True)
class PairBatch:
    """One batch of test subjects, aligned by id: manifest rows and their schnell and dev images.
    ``start`` is the index of the batch's first subject in the whole test split."""

    start: int
    rows: list[dict]
    schnell: list[Image.Image]
    dev: list[Image.Image]

    def __len__(self) -> int:
        return len(self.rows)


# A row's images for one batch of subjects, e.g. a head applied to ``batch.schnell``.
Produce = Callable[[PairBatch], Images]


class ShardImages:
    """Random access by id to the images of one shard folder: the index holds only each PNG's
    location, and an image is decoded when asked for, so a set is never held in memory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.index = index_images(self.directory)

    def require(self, ids: Sequence[str]) -> None:
        absent = [i for i in ids if i not in self.index]
        if absent:
            raise ShardError(f"{len(absent)} id(s) not found in {self.directory}: {absent[:5]}")

    def __call__(self, ids: Sequence[str]) -> list[Image.Image]:
        self.require(ids)
        return [read_image(self.index[i]) for i in ids]


def pair_batches(schnell_dir: str | Path, dev_dir: str | Path, rows: Sequence[dict],
                 batch_size: int) -> Iterator[PairBatch]:
    """Stream the test subjects in batches, reading each image from its shard only when its
    batch comes. Every id is checked up front so a missing image fails before any work."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1 (got {batch_size})")
    schnell, dev = ShardImages(schnell_dir), ShardImages(dev_dir)
    for source in (schnell, dev):
        source.require([r["id"] for r in rows])
    for start in range(0, len(rows), batch_size):
        chunk = list(rows[start:start + batch_size])
        keys = [r["id"] for r in chunk]
        yield PairBatch(start, chunk, schnell(keys), dev(keys))


def shard_set(directory: str | Path) -> Produce:
    """A row whose images already sit in shards (e.g. the LoRA set), read batch by batch."""
    images = ShardImages(directory)
    return lambda batch: images([r["id"] for r in batch.rows])


def head_set(model: torch.nn.Module, batch_size: int, device: torch.device | str = "cpu",
             compile: str = "auto") -> Produce:
    """A row made by a head from the schnell images of each batch; compiled on CUDA
    (``compile``: auto | on | off, see facerefine.compile), in float32 either way."""
    from facerefine.compile import HeadRunner

    runner = HeadRunner(model, device, compile=compile, batch_size=batch_size)
    return lambda batch: apply_head(runner, batch.schnell, batch_size)


@torch.inference_mode()
def apply_head(model: Callable[[torch.Tensor], torch.Tensor], images: Sequence[Image.Image],
               batch_size: int) -> list[Image.Image]:
    """Run a head (a placed model or a HeadRunner) over images of one size, batched; returns
    PIL images of the same size."""
    out: list[Image.Image] = []
    if isinstance(model, torch.nn.Module):
        model.eval()
    for start in range(0, len(images), batch_size):
        x = torch.stack([to_tensor(im) for im in images[start:start + batch_size]])
        out.extend(to_image(z) for z in model(x).float().cpu())
    return out


def pixel_scores(images: Images, targets: Images) -> tuple[np.ndarray, np.ndarray]:
    """Per-image SSIM and PSNR against the targets, as float64 (N,) arrays. Kept per image so a
    set's mean is the same whatever the batching (a float32 running mean is not)."""
    x = torch.stack([to_tensor(im) for im in images])
    y = torch.stack([to_tensor(im) for im in targets])
    return (ssim(x, y, reduction="none").double().numpy(), psnr(x, y, reduction="none").double().numpy())


@dataclass(frozen=True)
class Extractors:
    """Per-batch feature functions, injected so tests can fake them. Each maps a batch of images
    to one row per image, and a row must not depend on the rest of the batch."""

    features: Callable[[Images], torch.Tensor]   # (b, D) Inception pool features
    clip_iqa: Callable[[Images], np.ndarray]     # (b,) CLIP-IQA scores
    embed: Callable[[Images], np.ndarray]        # (b, 512) ArcFace embeddings, NaN rows: no face


@dataclass
class SetAccumulator:
    """What one row keeps while the images stream past: per-image features and scores, and the
    first ``keep`` images for the sample grid. Never the set's images."""

    name: str
    keep: int = 0
    features: list[torch.Tensor] = field(default_factory=list)
    clip: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    ssim: list[np.ndarray] = field(default_factory=list)
    psnr: list[np.ndarray] = field(default_factory=list)
    samples: list[Image.Image] = field(default_factory=list)
    count: int = 0

    def add(self, images: Images, dev: Images, extract: Extractors) -> None:
        if len(images) != len(dev):
            raise ValueError(f"set '{self.name}': {len(images)} images for a batch of {len(dev)} subjects")
        self.features.append(extract.features(images).cpu())  # as computed; float64 only for the distances
        self.clip.append(np.asarray(extract.clip_iqa(images), dtype=np.float64).reshape(-1))
        self.embeddings.append(np.asarray(extract.embed(images)))
        if self.name != DEV:  # dev against itself is not reported
            s, p = pixel_scores(images, dev)
            self.ssim.append(s)
            self.psnr.append(p)
        self.samples.extend(list(images[:max(0, self.keep - len(self.samples))]))
        self.count += len(images)

    def feature_matrix(self) -> torch.Tensor:
        return torch.cat(self.features).double()

    def embedding_matrix(self) -> np.ndarray:
        return np.concatenate(self.embeddings)


@dataclass(frozen=True)
class StreamResult:
    rows: dict[str, dict]
    samples: dict[str, list[Image.Image]]  # the first ``keep`` images of every row


def evaluate_stream(
    batches: Iterable[PairBatch],
    sets: Mapping[str, Produce],
    *,
    extract: Extractors,
    kid_subset_size: int,
    kid_subsets: int,
    seed: int,
    keep: int = 0,
) -> StreamResult:
    """Table 4 in one pass over the test subjects. schnell and dev are always accumulated (they
    are the references); ``sets`` names the other rows. Rows come schnell, dev, then ``sets``."""
    names = [SCHNELL, DEV, *[n for n in sets if n not in (SCHNELL, DEV)]]
    produce: dict[str, Produce] = {SCHNELL: lambda b: b.schnell, DEV: lambda b: b.dev, **dict(sets)}
    acc = {n: SetAccumulator(n, keep) for n in names}
    for batch in batches:
        for name in names:
            acc[name].add(produce[name](batch), batch.dev, extract)
    rows = summarise_sets(acc, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed)
    return StreamResult(rows, {n: a.samples for n, a in acc.items()})


def summarise_sets(acc: Mapping[str, SetAccumulator], *, kid_subset_size: int, kid_subsets: int,
                   seed: int) -> dict[str, dict]:
    """One metrics dict per accumulated set, from its per-image features alone."""
    if acc[SCHNELL].count < 2:
        raise ValueError(f"evaluation needs at least 2 test images, got {acc[SCHNELL].count}")
    feats = {ref: acc[ref].feature_matrix() for ref in (SCHNELL, DEV)}
    emb = {ref: acc[ref].embedding_matrix() for ref in (SCHNELL, DEV)}
    rows: dict[str, dict] = {}
    for name, a in acc.items():
        f = feats[name] if name in feats else a.feature_matrix()
        e = emb[name] if name in emb else a.embedding_matrix()
        row: dict = {"images": a.count, "low_confidence": a.count < fidelity.FID_MIN_RELIABLE}
        for ref in (SCHNELL, DEV):
            if name == ref:  # a set against itself: 0 by definition, shown as "–"
                row[f"fid_{ref}"] = row[f"kid_{ref}_mean"] = row[f"kid_{ref}_std"] = None
                continue
            row[f"fid_{ref}"] = fidelity.fid(f, feats[ref])
            k = fidelity.kid(f, feats[ref], subset_size=kid_subset_size, subsets=kid_subsets, seed=seed)
            row[f"kid_{ref}_mean"], row[f"kid_{ref}_std"] = k.mean, k.std
            row["kid_subset_size"] = k.subset_size
        both = row["fid_schnell"] is not None and row["fid_dev"] is not None
        row["fid_diff"] = fidelity.fid_diff(row["fid_schnell"], row["fid_dev"]) if both else None
        row["clip_iqa"] = float(np.mean(np.concatenate(a.clip)))
        for ref in (SCHNELL, DEV):
            ident = identity_summary(e, emb[ref]) if name != ref else {"cos_mean": None, "pairs": 0}
            row[f"identity_cos_{ref}"] = ident["cos_mean"]
        row["face_fail"] = int((~np.isfinite(e).all(axis=1)).sum())
        if name == DEV:
            row.update(ssim_dev=None, psnr_dev=None)
        else:
            row.update(ssim_dev=float(np.concatenate(a.ssim).mean()), psnr_dev=float(np.concatenate(a.psnr).mean()))
        rows[name] = row
    return rows


@dataclass
class EvalSet:
    """A row held in memory (small data and tests); the stage streams with :func:`evaluate_stream`."""

    name: str
    images: list[Image.Image]


def memory_batches(schnell: Images, dev: Images, batch_size: int) -> Iterator[PairBatch]:
    """In-memory lists as a batch stream (rows carry only the position)."""
    if len(schnell) != len(dev):
        raise ValueError(f"{len(schnell)} schnell images but {len(dev)} dev images")
    for start in range(0, len(schnell), batch_size):
        stop = start + batch_size
        rows = [{"id": str(i)} for i in range(start, min(stop, len(schnell)))]
        yield PairBatch(start, rows, list(schnell[start:stop]), list(dev[start:stop]))


def evaluate_sets(
    sets: Sequence[EvalSet],
    schnell: Images,
    dev: Images,
    *,
    features: Callable[[Images], torch.Tensor],
    clip_iqa: Callable[[Images], np.ndarray],
    embed: Callable[[Images], np.ndarray],
    kid_subset_size: int,
    kid_subsets: int,
    seed: int,
    batch_size: int = 64,
) -> dict[str, dict]:
    """One metrics dict per set of in-memory images, in the order of ``sets``; streamed in
    batches like the stage, so the numbers are those of :func:`evaluate_stream`."""
    produce: dict[str, Produce] = {
        s.name: (lambda b, ims=s.images: ims[b.start:b.start + len(b)])
        for s in sets if s.name not in (SCHNELL, DEV)}
    result = evaluate_stream(memory_batches(schnell, dev, batch_size), produce,
                             extract=Extractors(features, clip_iqa, embed),
                             kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed)
    return {s.name: result.rows[s.name] for s in sets}


def _cell(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# Why the paper's FIDs sit apart from ours: they are not on torch-fidelity's scale.
PAPER_FID_SCALE_NOTE = (
    "The paper's FID values (0.32–0.75) are not on the scale of the standard Inception FID that "
    "torch-fidelity computes here (FID between distinct image sets is typically in the units to "
    "hundreds); the paper does not say how its values were computed or scaled, so compare signs and "
    "orderings (e.g. of FID_diff), not magnitudes.")
# Which of the paper's rows sits beside which of ours is our reading, so the report says so.
PAPER_ROW_NOTE = (
    "The paper's rows \"Ours (pairwise)\" and \"Ours (non-pairwise)\" are shown beside our U-Net and "
    "ESA-CycleGAN rows (our reading: its best non-pairwise model is ESA-CycleGAN); it has no plain "
    "CycleGAN row.")


CLIP_IQA_HEADERS = {"original": "CLIP-IQA", "vit-b16": "CLIP-IQA (ViT-B/16)"}


def render_table(rows: dict[str, dict], *, provenance: Mapping, clip_iqa: str = "original",
                 standins: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """Table 4 in the paper's layout, then the configuration of every row, then the extra metrics.

    ``provenance``: ``provenance.RowProvenance`` per row. The paper's values sit beside a row
    only when it has no mismatches (the paper's final-run configuration); otherwise they are
    printed apart with the mismatches listed. ``clip_iqa``: the recipe (``evaluate.clip_iqa``),
    named in the header unless it is the published one. ``standins``
    (``banners.standin_networks``): non-empty puts the stand-in banner on top."""
    from facerefine.banners import standin_banner

    lines = ["# Quality evaluation (paper §5.4, Table 4)", ""]
    if standins:
        lines += [standin_banner(standins), ""]
    low = any(r["low_confidence"] for r in rows.values())

    def mismatches(name: str) -> list[str]:
        row = provenance.get(name)
        return ["configuration not recorded"] if row is None else list(row.mismatches)

    def paper_values(name: str) -> str:
        return " / ".join(_cell(v, 2) for v in PAPER_TABLE4[name])

    apart = [n for n in rows if n in PAPER_TABLE4 and mismatches(n)]
    lines += ["FID_diff = FID_schnell − FID_dev: positive means the set is closer to dev than to schnell.", "",
              f"Paper column: {PAPER_FID_SCALE_NOTE} {PAPER_ROW_NOTE} The paper's values stand beside a row only "
              "when that row was produced under the paper's final-run configuration (see \"Configuration of each "
              "row\"); otherwise they are printed apart, below.", "",
              f"| Model | FID_schnell | FID_dev | FID_diff | {CLIP_IQA_HEADERS.get(clip_iqa, clip_iqa)} "
              "| paper's Table 4 (its FID scale): FID_schnell / FID_dev / FID_diff / CLIP-IQA |",
              "|---|---|---|---|---|---|"]
    dagger = " †" if low else ""
    for name, r in rows.items():
        if name not in PAPER_TABLE4:
            paper_cell = "not in paper"
        elif name in apart:
            paper_cell = "apart: not the paper's configuration (below)"
        else:
            paper_cell = paper_values(name)
        lines.append(f"| {LABELS.get(name, name)} | {_cell(r['fid_schnell'])}{dagger if r['fid_schnell'] is not None else ''}"
                     f" | {_cell(r['fid_dev'])}{dagger if r['fid_dev'] is not None else ''} | {_cell(r['fid_diff'])}"
                     f" | {_cell(r['clip_iqa'])} | {paper_cell} |")
    lines += ["", "## Configuration of each row", "", "| Model | produced by | differs from the paper's final run |",
              "|---|---|---|"]
    for name in rows:
        row = provenance.get(name)
        lines.append(f"| {LABELS.get(name, name)} | {row.description if row else 'not recorded'} | "
                     f"{'; '.join(mismatches(name)) or 'same configuration'} |")
    if apart:
        lines += ["", "## The paper's Table 4 values, apart", "",
                  "Its final runs (U-Net: 1% of the dataset at 512²; ESA-CycleGAN: 20% at 512², 190 epochs), "
                  "real FLUX.1 weights and the published CLIP-IQA. Not comparable with our rows above because:", "",
                  "| Model | paper: FID_schnell / FID_dev / FID_diff / CLIP-IQA | why not beside ours |", "|---|---|---|"]
        lines += [f"| {LABELS.get(n, n)} | {paper_values(n)} | {'; '.join(mismatches(n))} |" for n in apart]
    lines += ["", "## More metrics", "",
              "| Model | KID vs schnell | KID vs dev | identity cos vs schnell | identity cos vs dev | face fails | SSIM vs dev | PSNR vs dev |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        kid_s = "–" if r["kid_schnell_mean"] is None else f"{r['kid_schnell_mean']:.4f} ± {r['kid_schnell_std']:.4f}"
        kid_d = "–" if r["kid_dev_mean"] is None else f"{r['kid_dev_mean']:.4f} ± {r['kid_dev_std']:.4f}"
        lines.append(f"| {LABELS.get(name, name)} | {kid_s} | {kid_d} | {_cell(r['identity_cos_schnell'])} | "
                     f"{_cell(r['identity_cos_dev'])} | {r['face_fail']}/{r['images']} | {_cell(r['ssim_dev'])} | "
                     f"{_cell(r['psnr_dev'], 2)} |")
    if low:
        n = next(iter(rows.values()))["images"]
        lines += ["", f"† low confidence: {n} images per set, fewer than FID's {fidelity.FID_MIN_RELIABLE} feature "
                  "dimensions (the covariance is rank-deficient and FID biased upward); KID is unbiased but noisy "
                  "at this size."]
    lines += ["", *notes]
    return "\n".join(lines).rstrip() + "\n"
