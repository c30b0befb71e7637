"""LPIPS (AlexNet): the U-Net's perceptual loss.

The calibrated linear heads ship inside the ``lpips`` wheel; the AlexNet backbone comes
from the spec: ``pretrained`` (torchvision's ImageNet weights and cache), ``smoke`` or
``random`` (a seeded random AlexNet, full size, built once) or a safetensors file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from facerefine.config import RANDOM, SMOKE
from facerefine.weights.standins import build_once

if TYPE_CHECKING:
    import lpips as lpips_lib


def _alexnet_features_state(spec: str) -> dict[str, torch.Tensor]:
    """AlexNet ``features.*`` weights for LPIPS's backbone (the stand-in is full size)."""
    import torchvision
    from safetensors.torch import load_file, save_file

    if spec in (SMOKE, RANDOM):
        def build(out: Path) -> None:
            torch.manual_seed(0)
            net = torchvision.models.alexnet(weights=None)
            save_file({k: v.contiguous() for k, v in net.features.state_dict().items()},
                      str(out / "alexnet_features.safetensors"))

        return load_file(str(build_once("lpips-alexnet", build) / "alexnet_features.safetensors"))
    if spec != "pretrained":
        return load_file(spec)  # a local safetensors file of AlexNet features
    # torchvision's own loader and cache (TORCH_HOME), as lpips itself would use.
    state = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


def load_lpips(spec: str) -> "lpips_lib.LPIPS":
    """LPIPS (AlexNet) in eval mode with frozen weights.

    The calibrated linear heads ship inside the ``lpips`` wheel; only the
    backbone comes from ``spec``: ``pretrained`` (torchvision ImageNet weights),
    ``smoke`` (random stand-in) or a path to a safetensors file.
    """
    import warnings

    import lpips

    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    features = _alexnet_features_state(spec)
    # lpips splits AlexNet.features into slice1..5 keeping the original indices as names.
    for slice_ in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for idx, layer in slice_.named_children():
            own = {k.split(".", 1)[1]: v for k, v in features.items() if k.split(".", 1)[0] == idx}
            if own:
                layer.load_state_dict(own)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
