"""Trained heads as self-describing directories.

A head directory holds ``model.safetensors`` (weights only: loading never
unpickles anything) and ``config.json``::

    {"kind": "resunet_cbam" | "resnet_generator",
     "architecture": {...constructor arguments...},
     "name": "esa", "training": {...}, "data": {...}, "format": 1}

``load_head`` takes a directory or a bare name looked up in ``models/heads/``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from facerefine import paths
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM
from facerefine.train.checkpoint import unwrap

HEADS_DIR = paths.HEADS
FORMAT = 1
KINDS: dict[str, type[torch.nn.Module]] = {"resunet_cbam": ResUNetCBAM, "resnet_generator": ResnetGenerator}


@dataclass
class Head:
    model: torch.nn.Module
    config: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return self.config.get("name", self.path.name)

    @property
    def size_multiple(self) -> int:
        return int(self.model.size_multiple)

    @property
    def min_size(self) -> int:
        return int(getattr(self.model, "min_size", self.size_multiple))


def kind_of(model: torch.nn.Module) -> str:
    for kind, cls in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not a head architecture: {type(model).__name__}")


def save_head(directory: str | Path, model: torch.nn.Module, *, name: str,
              training: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """Write a head directory atomically (a temp dir renamed over the old one)."""
    directory = Path(directory)
    model = unwrap(model)
    config = {"format": FORMAT, "kind": kind_of(model), "name": name, "architecture": model.config(),
              "training": training or {}, "data": data or {}}
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def resolve(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.is_dir():
        return path
    named = HEADS_DIR / str(path_or_name)
    if named.is_dir():
        return named
    known = sorted(p.name for p in HEADS_DIR.iterdir() if p.is_dir()) if HEADS_DIR.is_dir() else []
    raise FileNotFoundError(f"no head at '{path_or_name}' and no head of that name in {HEADS_DIR}/ "
                            f"(known: {', '.join(known) or 'none; run dvc repro first'})")


def load_head(path_or_name: str | Path, device: str | torch.device = "cpu") -> Head:
    """Rebuild a head from its directory; weights are loaded strictly, in eval mode."""
    path = resolve(path_or_name)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}/config.json: unreadable head config: {err}") from err
    if config.get("kind") not in KINDS:
        raise ValueError(f"{path}/config.json: unknown head kind {config.get('kind')!r}; known: {sorted(KINDS)}")
    model = KINDS[config["kind"]].from_config(config["architecture"])
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return Head(model.to(device).eval(), config, path)
