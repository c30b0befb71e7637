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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from facerefine.data.datasets import to_image, to_tensor
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


@dataclass
class EvalSet:
    name: str
    images: list[Image.Image]


@torch.inference_mode()
def apply_head(model: torch.nn.Module, images: Sequence[Image.Image], batch_size: int,
               device: torch.device | str = "cpu") -> list[Image.Image]:
    """Run a head over images of one size, batched; returns PIL images of the same size."""
    out: list[Image.Image] = []
    model = model.to(device).eval()
    for start in range(0, len(images), batch_size):
        x = torch.stack([to_tensor(im) for im in images[start:start + batch_size]]).to(device)
        out.extend(to_image(z) for z in model(x).float().cpu())
    return out


def pixel_metrics(images: Sequence[Image.Image], targets: Sequence[Image.Image]) -> dict[str, float]:
    x = torch.stack([to_tensor(im) for im in images])
    y = torch.stack([to_tensor(im) for im in targets])
    return {"ssim_dev": float(ssim(x, y).mean()), "psnr_dev": float(psnr(x, y).mean())}


def evaluate_sets(
    sets: Sequence[EvalSet],
    schnell: Sequence[Image.Image],
    dev: Sequence[Image.Image],
    *,
    features: Callable[[Sequence[Image.Image]], torch.Tensor],
    clip_iqa: Callable[[Sequence[Image.Image]], np.ndarray],
    embed: Callable[[Sequence[Image.Image]], np.ndarray],
    kid_subset_size: int,
    kid_subsets: int,
    seed: int,
) -> dict[str, dict]:
    """One metrics dict per set; ``features``/``clip_iqa``/``embed`` are injected so tests can fake them."""
    feats = {SCHNELL: features(schnell), DEV: features(dev)}
    emb = {SCHNELL: embed(schnell), DEV: embed(dev)}
    rows: dict[str, dict] = {}
    for s in sets:
        f = feats.get(s.name) if s.name in (SCHNELL, DEV) else features(s.images)
        e = emb.get(s.name) if s.name in (SCHNELL, DEV) else embed(s.images)
        row: dict = {"images": len(s.images), "low_confidence": len(s.images) < fidelity.FID_MIN_RELIABLE}
        for ref in (SCHNELL, DEV):
            if s.name == ref:  # a set against itself: 0 by definition, shown as "–"
                row[f"fid_{ref}"] = row[f"kid_{ref}_mean"] = row[f"kid_{ref}_std"] = None
                continue
            row[f"fid_{ref}"] = fidelity.fid(f, feats[ref])
            k = fidelity.kid(f, feats[ref], subset_size=kid_subset_size, subsets=kid_subsets, seed=seed)
            row[f"kid_{ref}_mean"], row[f"kid_{ref}_std"] = k.mean, k.std
            row["kid_subset_size"] = k.subset_size
        both = row["fid_schnell"] is not None and row["fid_dev"] is not None
        row["fid_diff"] = fidelity.fid_diff(row["fid_schnell"], row["fid_dev"]) if both else None
        row["clip_iqa"] = float(np.mean(clip_iqa(s.images)))
        for ref in (SCHNELL, DEV):
            ident = identity_summary(e, emb[ref]) if s.name != ref else {"cos_mean": None, "pairs": 0}
            row[f"identity_cos_{ref}"] = ident["cos_mean"]
        row["face_fail"] = int((~np.isfinite(e).all(axis=1)).sum())
        row.update(pixel_metrics(s.images, dev) if s.name != DEV else {"ssim_dev": None, "psnr_dev": None})
        rows[s.name] = row
    return rows


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


def render_table(rows: dict[str, dict], *, standins: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """Table 4 in the paper's layout with the paper's values alongside, then the extra metrics.
    ``standins`` (``weights.standin_networks``): non-empty puts the stand-in banner on top."""
    from facerefine.weights import standin_banner

    lines = ["# Quality evaluation (paper §5.4, Table 4)", ""]
    if standins:
        lines += [standin_banner(standins), ""]
    low = any(r["low_confidence"] for r in rows.values())
    lines += ["FID_diff = FID_schnell − FID_dev: positive means the set is closer to dev than to schnell.", "",
              f"Paper column: {PAPER_FID_SCALE_NOTE} {PAPER_ROW_NOTE}", "",
              "| Model | FID_schnell | FID_dev | FID_diff | CLIP-IQA "
              "| paper's Table 4 (its FID scale): FID_schnell / FID_dev / FID_diff / CLIP-IQA |",
              "|---|---|---|---|---|---|"]
    dagger = " †" if low else ""
    for name, r in rows.items():
        paper = PAPER_TABLE4.get(name)
        paper_cell = " / ".join(_cell(v, 2) for v in paper) if paper else "not in paper"
        lines.append(f"| {LABELS.get(name, name)} | {_cell(r['fid_schnell'])}{dagger if r['fid_schnell'] is not None else ''}"
                     f" | {_cell(r['fid_dev'])}{dagger if r['fid_dev'] is not None else ''} | {_cell(r['fid_diff'])}"
                     f" | {_cell(r['clip_iqa'])} | {paper_cell} |")
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
