"""The pairwise head (paper §4.1, Fig. 5): a U-Net with residual blocks and CBAM.

Convention for ``depth``: it is the number of resolution levels. Level 0 works
at the input resolution and each further level halves it, so ``depth`` levels
mean ``depth - 1`` downsamplings and H and W must be multiples of
``2 ** (depth - 1)`` (``model.size_multiple``; 32 for the paper's depth 6).
Channels double per level from ``base_channels`` and are capped at
``max_channels``: for base 32, depth 6 → 32, 64, 128, 256, 512, 512.

Layout::

    stem 3x3 conv
    encoder level i:  ResBlock(CBAM) ──────────────── skip_i
                      stride-2 3x3 conv (not after the deepest level)
    decoder level i:  upsample x2, concat skip_i, ResBlock(CBAM)
    head:             norm, act, 3x3 conv → residual r

Output choice: the head predicts a residual ``r`` in tanh-pre-activation space,
``z = tanh(atanh(x) + r)``. It is the identity when ``r = 0`` (the last conv
is zero-initialised, so training starts from "leave the image as it is", the
minimiser of the GRAD(x, z) term), it always lies in (-1, 1), and unlike a hard
clamp of ``x + r`` its gradient never becomes exactly zero, so pixels pushed out
of range can come back. ``x`` is clamped to ±(1 - 1e-3) before atanh to keep it
finite, so saturated input pixels move by at most 1e-3 at initialisation.
Upsampling (``upsample``; the paper does not say): ``"nearest"`` is nearest x2 + 3x3
conv, ours, which avoids checkerboard artifacts; ``"transpose"`` is the original U-Net's
2x2 stride-2 transposed convolution, whose periodic kernel footprint is the known source of
the checkerboard ("net-like") patterns the paper reports in hair and beards (§5.1), hence
its likely choice (README, "Deviations and assumptions").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facerefine.models import rules

# Keeps atanh(x) finite for saturated pixels; tanh(atanh(1 - 1e-3)) = 1 - 1e-3.
_ATANH_EPS = 1e-3


def _num_groups(channels: int) -> int:
    """GroupNorm groups: as many as possible (≤ 32) with at least 4 channels each.

    GroupNorm rather than BatchNorm so that the head behaves the same for batch 1
    at 512² as for larger batches, in train and eval, and under DDP without SyncBN.
    """
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


class ChannelGate(nn.Module):
    """CBAM channel attention: shared MLP over avg- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + peak)


class SpatialGate(nn.Module):
    """CBAM spatial attention: conv over the channel-wise max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"spatial_kernel must be odd to keep the size, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(stats))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))


class ResBlockCBAM(nn.Module):
    """Pre-activation residual block: (norm, act, 3x3 conv) x 2, then CBAM.

    As in the CBAM paper, attention refines the residual branch before the sum,
    so the identity path carries features through ungated. The skip is a 1x1
    projection only when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.GroupNorm(_num_groups(in_channels), in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(_num_groups(out_channels), out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            CBAM(out_channels),
        )
        self.skip = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.branch(x)


UPSAMPLE_MODES = ("nearest", "transpose")


class Upsample(nn.Module):
    """x2 upsampling: nearest-neighbour then a 3x3 conv (``nearest``, avoids checkerboards) or
    the original U-Net's 2x2 stride-2 transposed conv (``transpose``)."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.mode = mode
        self.conv = (nn.Conv2d(in_channels, out_channels, 3, padding=1) if mode == "nearest"
                     else nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class ResUNetCBAM(nn.Module):
    """U-Net with residual CBAM blocks; see the module docstring for the layout.

    Input and output are NCHW images in [-1, 1] with H and W multiples of
    ``size_multiple``. With ``in_channels == out_channels`` the output is a
    residual refinement of the input (identity at initialisation); otherwise
    it is ``tanh(r)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 32,
        depth: int = 6,
        max_channels: int = 512,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if base_channels < 1 or max_channels < base_channels:
            raise ValueError(
                f"need 1 <= base_channels <= max_channels, got {base_channels} and {max_channels}"
            )
        self._config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base_channels": base_channels,
            "depth": depth,
            "max_channels": max_channels,
            "upsample": upsample,
        }
        self.depth = depth
        self.residual = in_channels == out_channels
        widths = [min(base_channels * 2**level, max_channels) for level in range(depth)]

        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        previous = widths[0]
        for level, width in enumerate(widths):
            self.encoders.append(ResBlockCBAM(previous, width))
            if level < depth - 1:
                self.downsamples.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width

        # Decoders run from the second-deepest level back to level 0.
        self.upsamples = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth - 1)):
            width = widths[level]
            self.upsamples.append(Upsample(previous, width, upsample))
            self.decoders.append(ResBlockCBAM(2 * width, width))
            previous = width

        self.head = nn.Sequential(
            nn.GroupNorm(_num_groups(widths[0]), widths[0]),
            nn.SiLU(),
            nn.Conv2d(widths[0], out_channels, 3, padding=1),
        )
        # Zero init: r = 0 at the start, so the head starts as the identity.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def size_multiple_for(depth: int) -> int:
        """H and W must be multiples of this: one factor 2 per downsampling.

        Static so that params can be validated before a model is built.
        """
        return rules.unet_size_multiple(depth)

    @property
    def size_multiple(self) -> int:
        return self.size_multiple_for(self.depth)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments; ``from_config`` rebuilds the net."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ResUNetCBAM:
        return cls(**config)

    def check_size(self, height: int, width: int) -> None:
        """Raise a ValueError naming the size and the multiple it must be of."""
        m = self.size_multiple
        if height % m or width % m or height == 0 or width == 0:
            raise ValueError(
                f"ResUNetCBAM(depth={self.depth}) needs H and W to be positive multiples of {m}, "
                f"got {height}x{width}; resize or pad the image "
                f"(e.g. to {max(m, round(height / m) * m)}x{max(m, round(width / m) * m)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x.shape[-2], x.shape[-1])
        h = self.stem(x)
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            h = encoder(h)
            if level < self.depth - 1:
                skips.append(h)
                h = self.downsamples[level](h)
        for upsample, decoder in zip(self.upsamples, self.decoders):
            h = decoder(torch.cat([upsample(h), skips.pop()], dim=1))
        r = self.head(h)
        if not self.residual:
            return torch.tanh(r)
        # In float32: in bf16, 1 - 1e-3 rounds to 1 and atanh to inf. The
        # output keeps the input's dtype, not the (bf16) autocast dtype of r.
        base = torch.atanh(x.float().clamp(-1 + _ATANH_EPS, 1 - _ATANH_EPS))
        return torch.tanh(base + r.float()).to(x.dtype)
