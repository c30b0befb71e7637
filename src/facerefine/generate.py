"""``facerefine generate``: FLUX.1-schnell text-to-image, then a head (the paper's pipeline)
in one call, outside the DVC pipeline.

:func:`generate_settings` resolves the sampling: explicit options, then ``params.yaml`` in the
current folder, then the released FLUX.1-schnell's recommended values (:data:`SCHNELL_DEFAULTS`).
Applying the head is :class:`facerefine.enhance.Enhancer`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from facerefine.enhance import Enhancer


@dataclass(frozen=True)
class GenerateSettings:
    """How ``facerefine generate`` runs FLUX.1-schnell, and where each value came from."""

    model: str
    steps: int
    guidance: float
    max_sequence_length: int
    size: int
    dtype: str
    source: str  # "params.yaml (profile X)" or "defaults"
    offload: str = "none"        # none | model | sequential (GPU memory; see README, "GPU memory")
    random_depth: Any = None     # the profile's RandomDepth, for `random` weights
    compile: str = "none"        # FLUX transformer: none | blocks | full (weights.flux.compile_flux)


# The released model and its recommended sampling, used outside a facerefine project.
SCHNELL_DEFAULTS = {"model": "black-forest-labs/FLUX.1-schnell", "steps": 4, "guidance": 0.0,
                    "max_sequence_length": 256, "size": 512}


def generate_settings(*, model: str | None = None, steps: int | None = None, size: int | None = None,
                      dtype: str | None = None, device: str = "cpu", offload: str | None = None,
                      compile: str | None = None, params_path: str | Path = "params.yaml") -> GenerateSettings:
    """Explicit options win; then ``params.yaml`` in the current folder (the active
    profile's schnell spec, size, dtype, offload and compile, and the ``schnell`` sampling knobs);
    then the released FLUX.1-schnell with its recommended sampling."""
    from facerefine.config import FLUX_COMPILE_CHOICES, IMAGE_SIZE_MULTIPLE, compile_offload_conflict, load_params

    if Path(params_path).is_file():
        params = load_params(params_path)
        base = {"model": params.scale.models.schnell, "steps": params.schnell_run.steps,
                "guidance": params.schnell.guidance,
                "max_sequence_length": params.schnell.max_sequence_length,
                "size": params.scale.image_size, "dtype": params.scale.dtype,
                "offload": params.scale.offload, "random_depth": params.scale.random_depth,
                "compile": params.scale.compile}
        source = f"{params_path} (profile {params.profile})"
    else:
        base = {**SCHNELL_DEFAULTS, "dtype": "bfloat16" if device.startswith("cuda") else "float32",
                "offload": "none", "random_depth": None, "compile": "none"}
        source = "defaults"
    if offload not in (None, "none", "model", "sequential"):
        raise ValueError(f"offload must be none, model or sequential, got {offload!r}")
    if compile not in (None, *FLUX_COMPILE_CHOICES):
        raise ValueError(f"compile must be one of {', '.join(FLUX_COMPILE_CHOICES)}, got {compile!r}")
    settings = GenerateSettings(
        model=model or base["model"], steps=steps or base["steps"], guidance=base["guidance"],
        max_sequence_length=base["max_sequence_length"], size=size or base["size"],
        dtype=dtype or base["dtype"], source=source, offload=offload or base["offload"],
        random_depth=base["random_depth"], compile=compile or base["compile"])
    conflict = compile_offload_conflict(settings.compile, settings.offload)
    if conflict:
        raise ValueError(conflict)
    if settings.size % IMAGE_SIZE_MULTIPLE:
        raise ValueError(f"size must be a multiple of {IMAGE_SIZE_MULTIPLE} for FLUX, got {settings.size}")
    if settings.steps < 1:
        raise ValueError(f"steps must be >= 1, got {settings.steps}")
    return settings


# The last schnell pipeline loaded, by everything that shapes it: the demo's Generate button and
# API loops call generate() once per image. One at a time: a full-size pipeline is ~34 GB.
_LAST_PIPELINE: dict[tuple, Any] = {}


def schnell_pipeline(settings: GenerateSettings, device: str) -> Any:
    """FLUX.1-schnell as ``settings`` say, on ``device``; loaded once for repeated calls."""
    from facerefine.precision import effective_dtype
    from facerefine.weights.flux import load_flux

    key = (settings.model, settings.dtype, str(device), repr(settings.random_depth), settings.offload,
           settings.size, settings.compile)
    if key not in _LAST_PIPELINE:
        if _LAST_PIPELINE:  # free the previous pipeline (~34 GB at full size) before loading the next
            import gc

            import torch

            _LAST_PIPELINE.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        _LAST_PIPELINE[key] = load_flux(
            settings.model, "schnell", dtype=effective_dtype(settings.dtype, device), device=device,
            depth=settings.random_depth, offload=settings.offload, image_size=settings.size,
            compile=settings.compile)
    return _LAST_PIPELINE[key]


def generate(prompt: str, settings: GenerateSettings, *, seed: int = 0, device: str = "cpu",
             enhancer: Enhancer | None = None) -> tuple[Image.Image, Image.Image]:
    """(raw schnell image, refined image); refined is the raw image when there is no head.

    Uses the pipeline's own batch function with a CPU generator seeded from
    ``seed``, so a prompt and seed give the same image as the generate_schnell
    stage.
    """
    from facerefine.config import SchnellParams
    from facerefine.generation.flux import SchnellTextToImage

    pipe = schnell_pipeline(settings, device)
    sampling = SchnellParams(steps=settings.steps, guidance=settings.guidance,
                             max_sequence_length=settings.max_sequence_length)
    raw = SchnellTextToImage(pipe, sampling, settings.size)([{"prompt": prompt, "seed": seed}], 0)[0]
    return raw, enhancer.enhance_image(raw) if enhancer else raw
