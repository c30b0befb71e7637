"""Full-reference image metrics on NCHW tensors in [-1, 1].

Pure functions, computed in float32. ``reduction="none"`` returns one value
per image (shape ``(N,)``) so a caller can average exactly over a dataset or
across processes. Note the paper's caveat (§5.1): SSIM and PSNR barely tell
blurry from sharp, so they are reported, not optimised or used for selection.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

Reduction = Literal["mean", "none"]
# The images span [-1, 1], so the peak-to-peak signal is 2.
DATA_RANGE = (-1.0, 1.0)
# Identical images have infinite PSNR; cap it so averages and JSON stay finite.
MAX_PSNR_DB = 100.0


def _reduce(per_image: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            f"expected two NCHW tensors of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def ssim(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """SSIM with the standard 11x11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03.

    ``pred`` is clamped to [-1, 1]. Images must be at least 11 pixels on a side.
    """
    _check_pair(pred, target)
    per_image = structural_similarity_index_measure(
        pred.float(), target.float(), data_range=DATA_RANGE, reduction="none"
    )
    return _reduce(per_image, reduction)


def psnr(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """PSNR in dB per image, peak-to-peak 2, capped at ``MAX_PSNR_DB``."""
    _check_pair(pred, target)
    mse = (pred.float().clamp(*DATA_RANGE) - target.float()).pow(2).mean(dim=(1, 2, 3))
    peak = DATA_RANGE[1] - DATA_RANGE[0]
    floor = peak**2 / 10 ** (MAX_PSNR_DB / 10)
    per_image = 10 * torch.log10(peak**2 / mse.clamp_min(floor))
    return _reduce(per_image, reduction)
