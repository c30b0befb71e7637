"""Training checkpoints: model weights in safetensors, training state in a
weights-only torch file, both written atomically.

A checkpoint directory holds:
  <name>.safetensors   one file per module (e.g. ``G_AB.safetensors``)
  state.pt             optimizer/scheduler state dicts, epoch, step, extra
                       numbers (loaded with ``torch.load(weights_only=True)``,
                       so nothing but tensors and plain containers is unpickled)
A checkpoint is built in a sibling temp folder and swapped in whole, so a
kill during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from facerefine.models.factory import unwrap

STATE_FILE = "state.pt"


def save_modules(directory: str | Path, modules: Mapping[str, torch.nn.Module]) -> None:
    """Save each module's state dict as ``<name>.safetensors`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        state = {k: v.detach().contiguous().cpu() for k, v in unwrap(module).state_dict().items()}
        final = directory / f"{name}.safetensors"
        tmp = final.with_suffix(".safetensors.tmp")
        save_file(state, str(tmp))
        os.replace(tmp, final)


def load_modules(directory: str | Path, modules: Mapping[str, torch.nn.Module]) -> None:
    """Load ``<name>.safetensors`` into each module (strict)."""
    directory = Path(directory)
    for name, module in modules.items():
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {directory} has no weights for '{name}' ({path.name})")
        unwrap(module).load_state_dict(load_file(str(path)), strict=True)


def save_checkpoint(
    directory: str | Path,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, Any] | None = None,
    *,
    epoch: int,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save weights and training state as one unit. ``epoch`` = epochs completed.

    The checkpoint is built in ``<dir>.tmp`` and swapped in (old -> ``<dir>.old``,
    tmp -> dir), so a kill at any moment leaves a complete checkpoint, never new
    weights next to an old optimizer state.
    """
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_modules(tmp, modules)
    state = {
        "epoch": int(epoch),
        "step": int(step),
        "optimizers": {k: v.state_dict() for k, v in (optimizers or {}).items()},
        "extra": dict(extra or {}),
    }
    torch.save(state, tmp / STATE_FILE)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint at ``directory``, or its ``.old`` twin if a save was
    killed between its two renames; None if there is none."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def has_checkpoint(directory: str | Path) -> bool:
    return resolve_checkpoint(directory) is not None


def load_checkpoint(
    directory: str | Path,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Restore weights and optimizer/scheduler state; return ``{"epoch", "step", "extra"}``."""
    found = resolve_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    state = torch.load(found / STATE_FILE, map_location=map_location, weights_only=True)
    load_modules(found, modules)
    for name, opt in (optimizers or {}).items():
        if name not in state["optimizers"]:
            raise KeyError(f"checkpoint {found} has no state for optimizer/scheduler '{name}'")
        opt.load_state_dict(state["optimizers"][name])
    return {"epoch": state["epoch"], "step": state["step"], "extra": state["extra"]}


RUN_FORMAT = 2  # 2: the shared harness (train/harness.py), best/ and final/ as head folders


def run_directory(stage: str, identity: Mapping[str, Any]) -> Path:
    """Where a training run keeps its resumable checkpoints.

    Outside the DVC outputs (DVC deletes outs before a stage runs) and keyed by
    everything that defines the run, so a kill resumes while a param or data
    change starts afresh instead of resuming a stale run.
    """
    from facerefine.hashing import fingerprint
    from facerefine.paths import facerefine_home

    # RUN_FORMAT: a run folder written by an older trainer (another checkpoint or head layout)
    # must not be resumed as if it were this one's.
    return facerefine_home() / "runs" / stage / fingerprint({**identity, "run_format": RUN_FORMAT})
