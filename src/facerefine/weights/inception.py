"""torch-fidelity's FID/KID InceptionV3: ``pretrained`` lets torch-fidelity fetch and cache its
own weights; ``smoke``/``random`` give a seeded random network of the same (full) size."""

from __future__ import annotations

from pathlib import Path

import torch

from facerefine.config import RANDOM, SMOKE
from facerefine.weights.standins import build_once


def inception_weights_path(spec: str) -> str | None:
    """Weights file for torch-fidelity's InceptionV3 (``feature_extractor_weights_path``).

    ``pretrained`` -> None: torch-fidelity downloads/caches its own FID Inception
    weights. ``smoke`` -> a random stand-in of the same network, built once.
    """
    if spec == "pretrained":
        return None
    if spec not in (SMOKE, RANDOM):  # the stand-in is the full-size network
        return spec  # a local copy of torch-fidelity's weights file

    def build(out: Path) -> None:
        from unittest import mock

        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        torch.manual_seed(0)
        # Build the real module but skip its weight loading (which would download);
        # this patch lives only in the stand-in builder, never in the loading path.
        with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
                mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                           lambda *a, **k: {}):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        # He init keeps activations O(1) through 90-odd layers; PyTorch's default
        # init shrinks them to ~1e-10 and FID on such features is numerically void.
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        torch.save(net.state_dict(), out / "inception.pt")

    return str(build_once("fidelity-inception", build) / "inception.pt")
