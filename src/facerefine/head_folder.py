"""The head folder format and its writer, shared by training and inference.

A head folder holds ``model.safetensors`` (weights only: loading never unpickles
anything) and ``config.json``::

    {"kind": "resunet_cbam" | "resnet_generator",
     "architecture": {...constructor arguments...},
     "name": "esa", "training": {...}, "data": {...}, "format": 1}

The trainers write best/final heads with :func:`write_head_folder`; ``heads.py`` reads
them (and resolves names and Hub repos). Both import this module, never each other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from facerefine.models.factory import kind_of, unwrap

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = 1


def write_head_folder(directory: str | Path, model: torch.nn.Module, *, name: str,
                      training: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """Write a head folder atomically (a temp dir renamed over the old one)."""
    directory = Path(directory)
    model = unwrap(model)
    config = {"format": FORMAT, "kind": kind_of(model), "name": name, "architecture": model.config(),
              "training": training or {}, "data": data or {}}
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory
