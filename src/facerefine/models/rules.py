"""Architecture rules of the heads that hold before any network is built (torch-free).

The model classes and ``config.py`` both read these, so an image-size rule or the set of
ESA placements is written once: the classes apply them to a built net (``size_multiple``,
``min_size``, ``check_size``), the params validate against them without importing torch
(stage scripts load params before anything heavy).

ESA placement (the paper does not say where the module goes; models/cyclegan.py):
``trunk`` (the default, §4.2's "one ESA per generator") or ``blocks`` (one per residual block).
"""

from __future__ import annotations

from typing import Literal

EsaPlacement = Literal["blocks", "trunk"]
ESA_PLACEMENTS: tuple[str, ...] = ("blocks", "trunk")
DEFAULT_ESA_PLACEMENT: EsaPlacement = "trunk"

GENERATOR_DOWNSAMPLINGS = 2  # ResnetGenerator: two stride-2 convs before the residual trunk
# ESA: a stride-2 3x3 conv without padding gives floor((n - 3) / 2) + 1 >= 7 (the max-pool
# kernel) only when n >= 15.
ESA_POOL_KERNEL = 7
ESA_MIN_FEATURE = 2 * (ESA_POOL_KERNEL - 1) + 3


def check_esa_placement(value: object, key: str = "ESA placement") -> str:
    """``value`` if it is an ESA placement, else a ValueError naming ``key`` and the choices."""
    if value not in ESA_PLACEMENTS:
        raise ValueError(f"{key} must be one of {ESA_PLACEMENTS}, got {value!r}")
    return str(value)


def unet_size_multiple(depth: int) -> int:
    """ResUNetCBAM: H and W must be multiples of this (one factor 2 per downsampling)."""
    return 2 ** (depth - 1)


def generator_size_multiple() -> int:
    """ResnetGenerator: H and W must be multiples of this."""
    return 2**GENERATOR_DOWNSAMPLINGS


def generator_min_size(esa: str | None) -> int:
    """ResnetGenerator: the smallest image side. ESA needs a 15x15 trunk (images >= 60);
    reflection padding a 2x2 one."""
    trunk = ESA_MIN_FEATURE if esa else 2
    return trunk * generator_size_multiple()
