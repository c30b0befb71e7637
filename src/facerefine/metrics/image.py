"""Full-reference image metrics on NCHW tensors in [-1, 1].

Pure functions, computed in float32. ``reduction="none"`` returns one value
per image (shape ``(N,)``) so a caller can average exactly over a dataset or
across processes. Note the paper's caveat (§5.1): SSIM and PSNR barely tell
blurry from sharp, so they are reported, not optimised or used for selection.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "none"]
# The images span [-1, 1], so the peak-to-peak signal is 2.
DATA_RANGE = (-1.0, 1.0)
# Identical images have infinite PSNR; cap it so averages and JSON stay finite.
MAX_PSNR_DB = 100.0


def reduce_per_image(per_image: torch.Tensor, reduction: Reduction) -> torch.Tensor:
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


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03,
    valid-region mean, channels averaged (torchmetrics pads the border; results agree to ~0.005).

    Scored on intensities mapped to [0, 1] (``pred`` clamped first): SSIM's
    luminance term is not shift-invariant, and the paper's ~0.95 and its 0.9
    sanity threshold assume the standard definition. Written out here rather
    than imported so training processes don't pay torchmetrics' import time.
    Images must be at least 11 pixels on a side.
    """
    _check_pair(pred, target)
    x = (pred.float().clamp(*DATA_RANGE) + 1) / 2
    y = (target.float() + 1) / 2
    channels = x.shape[1]
    window = _gaussian_window().to(x.device).expand(channels, 1, 11, 11)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return reduce_per_image(ssim_map.mean(dim=(1, 2, 3)), reduction)


def psnr(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """PSNR in dB per image, peak-to-peak 2, capped at ``MAX_PSNR_DB``."""
    _check_pair(pred, target)
    mse = (pred.float().clamp(*DATA_RANGE) - target.float()).pow(2).mean(dim=(1, 2, 3))
    peak = DATA_RANGE[1] - DATA_RANGE[0]
    floor = peak**2 / 10 ** (MAX_PSNR_DB / 10)
    per_image = 10 * torch.log10(peak**2 / mse.clamp_min(floor))
    return reduce_per_image(per_image, reduction)
