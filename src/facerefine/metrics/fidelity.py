"""FID and KID with torch-fidelity's Inception, features extracted once per image set.

Table 4 compares every row against two references (schnell and dev), so we
extract each set's Inception features once and compute the distances from
features with torch-fidelity's own statistics functions, rather than calling
``calculate_metrics`` (which would re-extract both inputs for every pair).
All sets go through the same extractor and the same resizing (torch-fidelity
resizes uint8 images to 299² inside the extractor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

FEATURE_LAYER = "2048"
EXTRACTOR = "inception-v3-compat"
# Below this many images the 2048-d covariance is rank-deficient and FID is biased upward.
FID_MIN_RELIABLE = 2048
KID_DEFAULT_SUBSET = 1000


class _UInt8Images(Dataset):
    def __init__(self, images: Sequence[Image.Image]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        array = np.array(self.images[i].convert("RGB"), dtype=np.uint8)  # writable copy
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def inception_extractor(weights_path: str | None, device: torch.device | str = "cpu"):
    """torch-fidelity's InceptionV3; ``weights_path=None`` uses its own download/cache."""
    from torch_fidelity.utils import create_feature_extractor

    return create_feature_extractor(EXTRACTOR, [FEATURE_LAYER], cuda=torch.device(device).type == "cuda",
                                    feature_extractor_weights_path=weights_path, verbose=False)


def inception_features(images: Sequence[Image.Image], extractor, batch_size: int = 32) -> torch.Tensor:
    """(N, 2048) pool features of a list of images (all the same size)."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    if not images:
        raise ValueError("no images to extract features from")
    cuda = next(extractor.parameters()).is_cuda
    feats = get_featuresdict_from_dataset(_UInt8Images(images), extractor, batch_size, cuda,
                                          save_cpu_ram=True, verbose=False)
    return feats[FEATURE_LAYER].double()


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets.

    With fewer images than feature dimensions (every smoke run, and small test
    splits) we use an exact low-rank form instead of torch-fidelity's
    eigendecomposition of the 2048x2048 product Σ_a·Σ_b (tens of seconds on a
    CPU): with centred features A, B, the non-zero eigenvalues of Σ_a·Σ_b are
    the squared singular values of A·Bᵀ/√((n_a−1)(n_b−1)), so
    tr √(Σ_a·Σ_b) is that matrix's nuclear norm.
    """
    n_a, n_b = len(features_a), len(features_b)
    if min(n_a, n_b) < 2:
        raise ValueError("FID needs at least 2 images per set")
    if min(n_a, n_b) >= features_a.shape[1]:
        from torch_fidelity.metric_fid import (KEY_METRIC_FID, fid_features_to_statistics,
                                               fid_statistics_to_metric)

        stats_a, stats_b = fid_features_to_statistics(features_a), fid_features_to_statistics(features_b)
        return float(fid_statistics_to_metric(stats_a, stats_b, verbose=False)[KEY_METRIC_FID])
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    a, b = a - mu_a, b - mu_b
    scale = ((n_a - 1) * (n_b - 1)) ** 0.5
    tr_covmean = torch.linalg.svdvals(a @ b.T).sum() / scale
    trace_a, trace_b = (a * a).sum() / (n_a - 1), (b * b).sum() / (n_b - 1)
    return float(((mu_a - mu_b) ** 2).sum() + trace_a + trace_b - 2 * tr_covmean)


def kid_subset_size(n_a: int, n_b: int, requested: int = KID_DEFAULT_SUBSET) -> int:
    """KID's subset size clamped to the smaller set (torch-fidelity refuses larger)."""
    return max(2, min(requested, n_a, n_b))


@dataclass(frozen=True)
class Kid:
    mean: float
    std: float
    subset_size: int


def kid(features_a: torch.Tensor, features_b: torch.Tensor, *, subset_size: int = KID_DEFAULT_SUBSET,
        subsets: int = 100, seed: int = 0) -> Kid:
    """Kernel Inception Distance (unbiased MMD², cubic polynomial kernel), mean ± std over subsets."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = kid_subset_size(len(features_a), len(features_b), subset_size)
    # torch-fidelity's defaults for the kernel (cubic polynomial, gamma 1/d, coef0 1).
    out = kid_features_to_metric(features_a, features_b, kid_subsets=subsets, kid_subset_size=size,
                                 rng_seed=seed, verbose=False)
    return Kid(float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), size)


def fid_diff(fid_schnell: float, fid_dev: float) -> float:
    """The paper's FID_diff = FID_schnell − FID_dev: positive means closer to dev than to schnell."""
    return fid_schnell - fid_dev
