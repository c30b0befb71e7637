"""Small deterministic CPU computations whose output bits tell whether the pinned numerics
(facerefine.numerics) still reproduce: a matmul (MKL), a numpy matmul (OpenBLAS), a 3x3 convolution (oneDNN), a full
reduction (ATen, split by thread count), one training step of a tiny ResUNet-CBAM head and one
step of the smoke FLUX transformer.

    python tests/numerics_probe.py            # print {"hashes": ..., "made_with": ...} as JSON
    python tests/numerics_probe.py --write    # regenerate tests/data/numerics_hashes.json
    python tests/numerics_probe.py --only matmul,conv3x3   # a subset (experiments)

Run it in a fresh process: the pins must be in the environment before torch is imported,
which ``import facerefine`` (the first import below) does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import facerefine  # noqa: F401  (applies the numeric pins before torch loads)
from facerefine import numerics

import torch  # noqa: E402  (after facerefine on purpose)

HASHES = Path(__file__).resolve().parent / "data" / "numerics_hashes.json"


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def matmul() -> str:
    return digest(_randn(257, 515, seed=1) @ _randn(515, 333, seed=2))


def numpy_matmul() -> str:
    """numpy's own BLAS (OpenBLAS in its wheels): PCA and t-SNE (diversity) go through it."""
    import numpy as np

    rng = np.random.default_rng(7)
    return hashlib.sha256((rng.standard_normal((257, 515)) @ rng.standard_normal((515, 333))).tobytes()).hexdigest()[:16]


def conv3x3() -> str:
    x, w = _randn(2, 16, 33, 35, seed=3), _randn(24, 16, 3, 3, seed=4)
    return digest(torch.nn.functional.conv2d(x, w, _randn(24, seed=5), padding=1))


def reduction() -> str:
    x = _randn(3, 64, 64, 32, seed=6)
    return digest(x.sum(), x.mean(), (x * x).mean())


def head_step() -> str:
    from facerefine.models.resunet_cbam import ResUNetCBAM

    torch.manual_seed(0)
    model = ResUNetCBAM(base_channels=8, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _randn(2, 3, 32, 32, seed=7).tanh(), _randn(2, 3, 32, 32, seed=8).tanh()
    loss = (model(x) - y).abs().mean()
    loss.backward()
    opt.step()
    return digest(loss, *model.parameters())


def flux_step() -> str:
    """The smoke stand-in's transformer (facerefine.weights._build_flux_standin's config), one
    forward and one Euler step on 32x32 latents."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]).eval()
    tokens, text = 16 * 16, 8
    latents = _randn(1, tokens, 64, seed=9)
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(16.0), torch.arange(16.0), indexing="ij"),
                          -1).reshape(-1, 3)
    with torch.no_grad():
        velocity = transformer(hidden_states=latents, encoder_hidden_states=_randn(1, text, 32, seed=10),
                               pooled_projections=_randn(1, 32, seed=11), timestep=torch.tensor([1.0]),
                               img_ids=img_ids, txt_ids=torch.zeros(text, 3), return_dict=False)[0]
    return digest(latents - 0.25 * velocity)


PROBES = {"matmul": matmul, "numpy_matmul": numpy_matmul, "conv3x3": conv3x3, "reduction": reduction, "head_step": head_step,
          "flux_step": flux_step}


def made_with() -> dict[str, object]:
    """What the hashes depend on, for the failure message."""
    from importlib import metadata

    versions = {}
    for package in ("torch", "diffusers", "mkl", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    config = torch.__config__.show()
    libs = [line.strip(" -") for line in config.splitlines() if "Math Kernel" in line or "MKL-DNN" in line]
    flags = numerics.cpu_flags() or set()
    return {"versions": versions, "libraries": libs, "numerics": numerics.settings(),
            "cpu_isa": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx")))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {HASHES.relative_to(HASHES.parents[2])}")
    parser.add_argument("--only", default=",".join(PROBES), help="comma-separated probes")
    args = parser.parse_args(argv)
    numerics.pin_torch()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(PROBES))
    if unknown:
        parser.error(f"unknown probe(s) {unknown}; choose from {sorted(PROBES)}")
    result = {"hashes": {name: PROBES[name]() for name in names}, "made_with": made_with()}
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.write:
        HASHES.parent.mkdir(parents=True, exist_ok=True)
        HASHES.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
