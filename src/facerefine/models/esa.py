"""Enhanced Spatial Attention (ESA), the gate of RFANet (Liu et al., 2020) and RFDN.

ESA computes a per-pixel, per-channel gate in (0, 1) from a cheap, heavily
downsampled view of the features and multiplies it with its input:

    f    = 1x1 conv (C -> C/r)                 reduce channels
    low  = max-pool 7/3 (3x3 conv, stride 2)   ~1/6 resolution, wide receptive field
    low  = 3x3 conv, ReLU, 3x3 conv, ReLU, 3x3 conv
    up   = bilinear upsample of low to H x W
    gate = sigmoid(1x1 conv (C/r -> C) of (up + 1x1 conv of f))
    out  = x * gate

The skip from ``f`` lets the gate keep full-resolution detail that the pooled
branch has lost. Sizes below the minimum are refused rather than padded:
padding a tiny map would make the max-pool see mostly padding, so the gate
would be meaningless; an error tells the caller to use bigger images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facerefine.models import rules

POOL_KERNEL = rules.ESA_POOL_KERNEL
POOL_STRIDE = 3
MIN_SIZE = rules.ESA_MIN_FEATURE  # smallest feature map side (models/rules.py)


class ESA(nn.Module):
    """Enhanced Spatial Attention on a ``channels``-wide feature map (>= 15x15)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        if channels < 1 or reduction < 1 or channels // reduction < 1:
            raise ValueError(f"ESA needs channels // reduction >= 1, got channels={channels}, reduction={reduction}")
        f = channels // reduction
        self.channels = channels
        self.reduction = reduction
        self.reduce = nn.Conv2d(channels, f, kernel_size=1)
        self.skip = nn.Conv2d(f, f, kernel_size=1)
        self.down = nn.Conv2d(f, f, kernel_size=3, stride=2, padding=0)
        # The three 3x3 convs run at ~1/6 resolution, so they are cheap.
        self.body = nn.Sequential(
            nn.Conv2d(f, f, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(f, f, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(f, f, kernel_size=3, padding=1),
        )
        self.expand = nn.Conv2d(f, channels, kernel_size=1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map in (0, 1), same shape as ``x``."""
        h, w = x.shape[-2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(
                f"ESA needs a feature map of at least {MIN_SIZE}x{MIN_SIZE} "
                f"(stride-2 conv then a {POOL_KERNEL}x{POOL_KERNEL} max-pool), got {h}x{w}"
            )
        f = self.reduce(x)
        low = F.max_pool2d(self.down(f), kernel_size=POOL_KERNEL, stride=POOL_STRIDE)
        up = F.interpolate(self.body(low), size=(h, w), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.expand(up + self.skip(f)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)
