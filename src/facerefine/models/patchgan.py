"""PatchGAN discriminator (Isola et al., 2017), the 70x70 one of CycleGAN.

With n_layers=3 each output value sees a 70x70 patch of the input, so the
discriminator judges local texture rather than global layout, and one net
works at any image size. Layout (ndf = base width):

    4x4 conv stride 2 -> ndf, LeakyReLU 0.2                 (no norm on the first)
    (n_layers - 1) x [4x4 conv stride 2, IN, LeakyReLU 0.2]  (width doubles, capped at 8 ndf)
    4x4 conv stride 1, IN, LeakyReLU 0.2
    4x4 conv stride 1 -> 1 channel                           (raw scores, LSGAN)

Output side = floor(side / 2**n_layers) - 2: 30x30 at 256, 6x6 at 64.
Instance norm without affine and convs with bias, as the reference code
does; ndf=64, n_layers=3 has 2,764,737 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from facerefine.models.cyclegan import init_gan_weights

MAX_WIDTH_MULT = 8


def patch_output_size(side: int, n_layers: int = 3) -> int:
    """Side of the score map for an input side (each 4x4 conv with padding 1:
    stride 2 halves with floor, stride 1 removes one)."""
    for _ in range(n_layers):
        side //= 2
    return side - 2


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (for n_layers=3); returns an N x 1 x h x w map of scores."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or ndf < 1 or n_layers < 1:
            raise ValueError(f"bad discriminator shape: in_channels={in_channels}, ndf={ndf}, n_layers={n_layers}")
        self.n_layers = n_layers
        leaky = 0.2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(leaky, inplace=True),
        ]
        width = ndf
        for n in range(1, n_layers + 1):
            prev, width = width, ndf * min(2**n, MAX_WIDTH_MULT)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(prev, width, kernel_size=4, stride=stride, padding=1),
                nn.InstanceNorm2d(width),
                nn.LeakyReLU(leaky, inplace=True),
            ]
        layers.append(nn.Conv2d(width, 1, kernel_size=4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.apply(init_gan_weights)

    @property
    def min_size(self) -> int:
        """Smallest input side giving a >= 1x1 score map whose last instance
        norm still sees more than one pixel (>= 2x2 before the final conv)."""
        return 3 * 2**self.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(
                f"PatchDiscriminator with n_layers={self.n_layers} needs inputs of at least "
                f"{self.min_size}x{self.min_size}, got {h}x{w}"
            )
        return self.net(x)
