"""ResNet generator of CycleGAN (Zhu et al., 2017; Johnson et al., 2016), with
optional Enhanced Spatial Attention for ESA-CycleGAN.

Layout (ngf = base width, images NCHW in [-1, 1]):

    reflect-pad 3, 7x7 conv -> ngf, IN, ReLU
    3x3 conv stride 2 -> 2 ngf, IN, ReLU
    3x3 conv stride 2 -> 4 ngf, IN, ReLU
    n_blocks x residual block at 4 ngf       (ESA here, see ``esa``)
    3x3 transposed conv stride 2 -> 2 ngf, IN, ReLU
    3x3 transposed conv stride 2 -> ngf, IN, ReLU
    reflect-pad 3, 7x7 conv -> out_channels, tanh

Instance norm has no affine parameters and the convs keep their bias, which
is what the reference implementation does for instance norm; with ngf=64 and
9 blocks that is exactly 11,378,179 parameters.

``esa`` (ESA-CycleGAN; the paper says "into each generator", one module each):
  - ``"trunk"`` (the default, models/rules.py; ``cyclegan.esa_placement``): one ESA gate
    after the whole residual trunk (+0.18M params).
  - ``"blocks"`` (an alternative reading): an ESA gate at
    the end of every residual block's branch, before the skip is added, as in
    RFANet where ESA closes each residual module. The skip path stays
    ungated, so the generator keeps the easy near-identity start that makes
    CycleGAN train; gating the sum after each block instead would shrink the
    skip path by ~0.5 per block at initialisation (0.5^9 over the trunk).
    Cost at ngf=64: +1.66M parameters (+15%) but only a few % more FLOPs,
    because ESA's 3x3 convs run at ~1/6 of the trunk's resolution.
ESA needs the trunk (image / 4) to be at least 15x15, i.e. images >= 60x60.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from facerefine.models import rules
from facerefine.models.esa import ESA
from facerefine.models.rules import EsaPlacement

N_DOWNSAMPLINGS = rules.GENERATOR_DOWNSAMPLINGS


def init_gan_weights(module: nn.Module, std: float = 0.02) -> None:
    """Reference CycleGAN init: conv weights ~ N(0, std), biases 0.

    Use as ``net.apply(init_gan_weights)``. Small weights make every ESA gate
    start near a uniform 0.5, so attention is learned rather than random.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _conv_in_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """x + [pad, 3x3 conv, IN, ReLU, pad, 3x3 conv, IN, (ESA)](x); no dropout."""

    def __init__(self, channels: int, esa: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            *_conv_in_relu(nn.Conv2d(channels, channels, kernel_size=3), channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            nn.InstanceNorm2d(channels),
        ]
        if esa:
            layers.append(ESA(channels))
        self.branch = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator; output has the input's size.

    Inputs must be a multiple of ``size_multiple`` (4) on each side and at
    least ``min_size`` (8 plain, 60 with ESA); other sizes raise ValueError.
    """

    size_multiple: int = rules.generator_size_multiple()

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        esa: EsaPlacement | None = None,
    ) -> None:
        super().__init__()
        if esa is not None:
            rules.check_esa_placement(esa, "esa (None for no ESA)")
        if min(in_channels, out_channels, ngf) < 1 or n_blocks < 0:
            raise ValueError(
                f"bad generator shape: in_channels={in_channels}, out_channels={out_channels}, "
                f"ngf={ngf}, n_blocks={n_blocks}"
            )
        self._config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": ngf,
            "n_blocks": n_blocks,
            "esa": esa,
        }
        width = ngf * self.size_multiple
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            *_conv_in_relu(nn.Conv2d(in_channels, ngf, kernel_size=7), ngf),
        ]
        for i in range(N_DOWNSAMPLINGS):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            layers += _conv_in_relu(nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), c_out)
        layers += [ResidualBlock(width, esa=esa == "blocks") for _ in range(n_blocks)]
        if esa == "trunk":
            layers.append(ESA(width))
        for i in reversed(range(N_DOWNSAMPLINGS)):
            c_in, c_out = ngf * 2 ** (i + 1), ngf * 2**i
            up = nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1)
            layers += _conv_in_relu(up, c_out)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_gan_weights)

    @property
    def min_size(self) -> int:
        """Smallest image side: ESA needs a 15x15 trunk; reflection padding a 2x2 one."""
        return rules.generator_min_size(self._config["esa"])

    def check_size(self, height: int, width: int) -> None:
        """Raise ValueError unless an image of this size round-trips through the net."""
        m, lo = self.size_multiple, self.min_size
        if height % m or width % m or height < lo or width < lo:
            esa = f" with ESA ({self._config['esa']})" if self._config["esa"] else ""
            raise ValueError(
                f"ResnetGenerator{esa} needs height and width that are multiples of {m} "
                f"and at least {lo}, got {height}x{width}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x.shape[-2], x.shape[-1])
        return self.net(x)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments; ``from_config`` rebuilds the net."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ResnetGenerator:
        unknown = set(config) - set(_GENERATOR_KEYS)
        if unknown:
            raise ValueError(f"unknown ResnetGenerator config keys: {sorted(unknown)}")
        return cls(**dict(config))


_GENERATOR_KEYS = ("in_channels", "out_channels", "ngf", "n_blocks", "esa")
