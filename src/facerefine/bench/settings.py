"""What the benchmark runs with: the validated params (``config.Params``) and run-time options.

params.yaml is the one source: ``bench`` (how heads run, which dev step counts) and
``profiles.<p>.bench`` (scale). Command-line overrides are written into a copy of the
params and validated again by the same models, so a bad override fails with the same
rule as a bad params.yaml value, named by its option. Only what params.yaml cannot
hold (the device, ``--force``, the device's peak) lives in :class:`RunOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError

from facerefine.config import SMOKE, BenchScale, BenchShared, Params, ParamsError, img2img_steps

# Overridable keys of each params section (the CLI's options, with "-" for "_").
SHARED_KEYS = tuple(BenchShared.model_fields)
PROFILE_KEYS = tuple(BenchScale.model_fields)


@dataclass(frozen=True)
class RunOptions:
    """Run-time choices that are not params: they change where it runs, not what is measured."""

    device: str = "auto"               # auto | cpu | cuda[:N]
    force: bool = False                # allow arch mode on a CPU
    peak_tflops: float | None = None   # device peak for the compute bound; None: look it up

    def __post_init__(self) -> None:
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ParamsError(f"--peak-tflops: must be > 0 (got {self.peak_tflops})")


def _option(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def with_overrides(params: Params, **overrides: Any) -> Params:
    """``params`` with bench overrides applied (None: not given), validated again.

    Keys of ``bench`` (e.g. ``compile``, ``dev_steps``) go there, keys of the profile's
    ``bench`` (``resolutions``, ``repeats``, ...) to the active profile. An invalid value
    raises :class:`ParamsError` naming the option (``--resolutions: ...``) when it was
    given, else its params.yaml key.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(SHARED_KEYS) - set(PROFILE_KEYS))
    if unknown:
        raise ParamsError(f"unknown bench setting(s): {', '.join(unknown)}; allowed: "
                          f"{', '.join(SHARED_KEYS + PROFILE_KEYS)}")
    if not given:
        return params
    raw = params.model_dump()
    raw["bench"].update({k: v for k, v in given.items() if k in SHARED_KEYS})
    raw["profiles"][params.profile]["bench"].update({k: v for k, v in given.items() if k in PROFILE_KEYS})
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError("; ".join(_describe(e, given, params.profile) for e in err.errors())) from None


def _describe(error: Mapping[str, Any], given: Mapping[str, Any], profile: str) -> str:
    loc = tuple(str(p) for p in error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    if loc[:1] == ("bench",) and len(loc) > 1 and loc[1] in given:
        key = _option(loc[1])
    elif loc[:3] == ("profiles", profile, "bench") and len(loc) > 3 and loc[3] in given:
        key = _option(loc[3])
    elif loc[:1] == ("bench",) and len(loc) == 1 and set(given) & set(SHARED_KEYS):
        key = " / ".join(_option(k) for k in given if k in SHARED_KEYS)  # a cross-field rule of `bench`
    else:
        key = ".".join(loc)
    if not key:
        return msg  # a rule across sections names its keys itself
    got = error.get("input")
    shown = "" if isinstance(got, dict) or "(got" in msg else f" (got {got!r})"
    return f"{key}: {msg}{shown}"


def uses_standins(params: Params) -> bool:
    """The profile's FLUX pipelines are the project's tiny random stand-ins."""
    models = params.scale.models
    return models.schnell == SMOKE and models.dev == SMOKE


def effective_mode(params: Params) -> str:
    """``weights`` on a profile whose weights are the stand-ins is ``smoke``: say so in the report."""
    mode = params.scale.bench.mode
    return "smoke" if mode == "weights" and uses_standins(params) else mode


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"--device: '{requested}' requested but no CUDA device is available")
    return device


def check_mode(mode: str, device: torch.device, force: bool = False) -> None:
    """Refuse arch mode off a GPU unless forced: it would run for hours and prove nothing."""
    if mode == "arch" and device.type != "cuda" and not force:
        raise ParamsError(
            "bench.mode: 'arch' builds full-size FLUX.1 with random weights (12B transformer + 4.8B T5, "
            "~34 GB in bfloat16) and is meant for a GPU; there is none here, and on a CPU one 512² dev "
            "image takes hours. Run it on a GPU, or pass --force (facerefine bench --mode arch --force).")


def settings_record(params: Params, mode: str, options: RunOptions) -> dict[str, Any]:
    """The settings as the result records them (flat, JSON-ready)."""
    return {**params.scale.bench.model_dump(), **params.bench.model_dump(), "mode": mode,
            "device": options.device, "force": options.force, "peak_tflops": options.peak_tflops,
            "prompt": params.prompts.baseline_prompt, "max_steps": params.scale.max_steps,
            "dev": {"steps": list(params.bench.dev_steps), "refine_steps": params.dev.steps,
                    "refine_strength": params.dev.strength,
                    "refine_denoised": img2img_steps(params.dev.steps, params.dev.strength),
                    "guidance": params.dev.guidance,
                    "max_sequence_length": params.dev.max_sequence_length},
            "schnell": {"steps": params.schnell.steps, "guidance": params.schnell.guidance,
                        "max_sequence_length": params.schnell.max_sequence_length}}
