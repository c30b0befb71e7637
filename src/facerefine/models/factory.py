"""The one place heads are built: ``build(kind, **arch)``, and the params adapter.

A head is a *kind* (its class) and an *architecture* (the constructor arguments a head
folder's ``config.json`` stores). Everything that makes a head goes through :func:`build`:
the trainers (``train/models.py``), the latency benchmark and ``benchmarks/heads_throughput.py``
(:func:`build_heads`, from a profile's sizes), and loading a head folder (``heads.py``, so
``facerefine export`` too). :func:`head_architectures` turns params into architectures:
the active profile's sizes by default, or any profile's (``paper`` for the arch benchmark).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM

if TYPE_CHECKING:
    from facerefine.config import Params

KINDS: dict[str, type[nn.Module]] = {"resunet_cbam": ResUNetCBAM, "resnet_generator": ResnetGenerator}
HEAD_NAMES: tuple[str, ...] = ("unet", "cyclegan", "esa")  # the heads the params train


def build(kind: str, **arch: Any) -> nn.Module:
    """A head of ``kind`` with constructor arguments ``arch`` (random weights, train mode)."""
    if kind not in KINDS:
        raise ValueError(f"unknown head kind {kind!r}; known: {sorted(KINDS)}")
    return KINDS[kind].from_config(arch)


def kind_of(model: nn.Module) -> str:
    for kind, cls in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a head architecture: {type(model).__name__}")


def unwrap(module: nn.Module) -> nn.Module:
    """Strip DDP / torch.compile wrappers so keys are stable."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``, trainable or frozen (what a model card states)."""
    return sum(p.numel() for p in module.parameters())


def generator_arch(ngf: int, n_blocks: int, esa: str | None = None) -> dict[str, Any]:
    """The ResnetGenerator arguments of a CycleGAN head (RGB in and out)."""
    return {"in_channels": 3, "out_channels": 3, "ngf": ngf, "n_blocks": n_blocks, "esa": esa}


def head_architectures(params: Params, profile: str | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """``name -> (kind, arch)`` of the heads the params train, at ``profile``'s sizes
    (the active profile's by default). ESA placement is the one of ``cyclegan.esa_placement``."""
    scale = params.scale if profile is None else params.profiles[profile]
    unet, cycle = scale.unet, scale.cyclegan
    return {
        "unet": ("resunet_cbam", {"base_channels": unet.base_channels, "depth": unet.depth,
                                  "upsample": params.unet.upsample}),
        "cyclegan": ("resnet_generator", generator_arch(cycle.ngf, cycle.n_blocks)),
        "esa": ("resnet_generator", generator_arch(cycle.ngf, cycle.n_blocks, params.cyclegan.esa_placement)),
    }


def build_heads(params: Params, profile: str | None = None, *, seed: int = 0) -> dict[str, nn.Module]:
    """The heads the params train (``unet``, ``cyclegan``, ``esa``), built with random weights
    from ``seed`` in eval mode. Their latency depends on the architecture, never on the weights'
    values, so the benchmark times these and does not re-run when training changes the weights."""
    torch.manual_seed(seed)
    return {name: build(kind, **arch).eval() for name, (kind, arch) in head_architectures(params, profile).items()}

