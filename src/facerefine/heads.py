"""Trained heads as self-describing directories.

A head directory holds ``model.safetensors`` (weights only: loading never
unpickles anything) and ``config.json``::

    {"kind": "resunet_cbam" | "resnet_generator",
     "architecture": {...constructor arguments...},
     "name": "esa", "training": {...}, "data": {...}, "format": 1}

``load_head`` (= ``Head.from_pretrained``) takes a directory, a bare name looked up
in ``models/heads/``, or a Hugging Face Hub repo id (see :mod:`facerefine.hub`).
A loaded head is callable on PIL images, numpy arrays and tensors (:mod:`facerefine.api`).
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

    # -- Hub-style API (the layout is already the Hub's: model.safetensors + config.json + README.md)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device = "cpu",
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False) -> Head:
        """A folder, a name in ``models/heads/``, or a Hub repo id (``owner/name[@revision]``)."""
        return load_head(name_or_path, device=device, revision=revision, cache_dir=cache_dir,
                         local_files_only=local_files_only)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write weights, config and a model card into ``directory``: the card that describes these
        exact weights (the pipeline's published card, else the source folder's), else a fresh one."""
        from facerefine.hub import write_card

        out = save_head(directory, self.model, name=self.name, training=self.config.get("training"),
                        data=self.config.get("data"))
        write_card(self.path, out)
        return out

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload this head's folder (see ``facerefine.hub.push``; token from the environment)."""
        from facerefine.hub import push

        return push(self.path, repo_id, **kwargs)

    # -- inference (PIL / numpy / torch in, the same kind out; enhance's padding and tiling)

    def enhancer(self, **options: Any):
        """An :class:`~facerefine.enhance.Enhancer` for this head (``device``, ``dtype``, ``batch_size``,
        ``tile``, ``overlap``), on the head's current device by default."""
        from facerefine.api import make_enhancer

        return make_enhancer(self, **options)

    def refine(self, images: Any, **options: Any) -> Any:
        """See :func:`facerefine.api.refine`; ``options`` go to :class:`~facerefine.enhance.Enhancer`."""
        from facerefine.api import refine

        return refine(self, images, **options)

    __call__ = refine


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


def load_head(path_or_name: str | Path, device: str | torch.device = "cpu", *, revision: str | None = None,
              cache_dir: str | Path | None = None, local_files_only: bool = False) -> Head:
    """Rebuild a head from its directory, a name in models/heads/ or a Hub repo id; weights are
    loaded strictly (safetensors: nothing is unpickled), in eval mode."""
    from facerefine.hub import resolve_pretrained

    path = resolve_pretrained(path_or_name, revision=revision, cache_dir=cache_dir,
                              local_files_only=local_files_only)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}/config.json: unreadable head config: {err}") from err
    if config.get("kind") not in KINDS:
        raise ValueError(f"{path}/config.json: unknown head kind {config.get('kind')!r}; known: {sorted(KINDS)}")
    model = KINDS[config["kind"]].from_config(config["architecture"])
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return Head(model.to(device).eval(), config, path)
