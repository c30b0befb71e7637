"""Trained heads as self-describing directories.

A head directory holds ``model.safetensors`` (weights only: loading never
unpickles anything) and ``config.json``::

    {"kind": "resunet_cbam" | "resnet_generator",
     "architecture": {...constructor arguments...},
     "name": "esa", "training": {...}, "data": {...}, "format": 1}

``load_head`` (= ``Head.from_pretrained``) takes a directory, a bare name looked up
in ``models/heads/``, or a Hugging Face Hub repo id (:func:`resolve_pretrained`).
The user-facing head, callable on PIL images, numpy arrays and tensors and able to
``save_pretrained``/``push_to_hub``, is :class:`facerefine.api.Head`
(``from facerefine import load_head``); this module stays lean for the pipeline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from facerefine import paths
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM
from facerefine.train.checkpoint import unwrap

if TYPE_CHECKING:
    from facerefine.config import Params

HEADS_DIR = paths.HEADS
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
HUB_FILES = (WEIGHTS, CONFIG, "README.md")  # all that is downloaded from the Hub
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(@[\w./-]+)?$")


def looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def resolve_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, local_files_only: bool = False) -> Path:
    """The local folder of a head: an existing folder, ``models/heads/<name>``, or a Hub snapshot."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    named = paths.HEADS / str(name_or_path)
    if named.is_dir():
        return named
    text = str(name_or_path)
    if not looks_like_repo_id(text):
        known = sorted(p.name for p in paths.HEADS.iterdir() if p.is_dir()) if paths.HEADS.is_dir() else []
        raise FileNotFoundError(f"no head at '{text}', no head of that name in {paths.HEADS}/ "
                                f"(known: {', '.join(known) or 'none; run dvc repro first'}), "
                                "and it is not a Hub repo id (owner/name)")
    repo_id, _, at = text.partition("@")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, revision=revision or at or None, cache_dir=cache_dir,
                                   local_files_only=local_files_only, allow_patterns=list(HUB_FILES))
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(f"head '{text}' is not in the Hub cache and the Hub cannot be reached "
                                f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {err}") from None
    except HfHubHTTPError as err:
        raise FileNotFoundError(f"head '{text}' could not be fetched from the Hub: {err}") from None
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"Hub repo '{repo_id}' has no {WEIGHTS} + {CONFIG}: not a facerefine head")
    return folder


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

    # -- the Hub's layout already: model.safetensors + config.json (+ README.md, the model card)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device = "cpu",
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False) -> Head:
        """A folder, a name in ``models/heads/``, or a Hub repo id (``owner/name[@revision]``);
        a subclass (``facerefine.api.Head``) gets an instance of itself."""
        head = load_head(name_or_path, device=device, revision=revision, cache_dir=cache_dir,
                         local_files_only=local_files_only)
        return head if type(head) is cls else cls(head.model, head.config, head.path)


def architectures(params: Params) -> dict[str, torch.nn.Module]:
    """The heads the params train (``unet``, ``cyclegan``, ``esa``), built with random weights
    in eval mode. Their latency depends on the architecture, never on the weights' values, so
    the benchmark times these and does not re-run when training changes the weights."""
    unet, cycle = params.scale.unet, params.scale.cyclegan
    torch.manual_seed(0)
    return {
        "unet": ResUNetCBAM(base_channels=unet.base_channels, depth=unet.depth, upsample=params.unet.upsample).eval(),
        "cyclegan": ResnetGenerator(3, 3, ngf=cycle.ngf, n_blocks=cycle.n_blocks, esa=None).eval(),
        "esa": ResnetGenerator(3, 3, ngf=cycle.ngf, n_blocks=cycle.n_blocks,
                               esa=params.cyclegan.esa_placement).eval(),
    }


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
    """A head folder or a name in ``models/heads/`` (Hub repo ids only from the local Hub cache)."""
    return resolve_pretrained(path_or_name, local_files_only=True)


def load_head(path_or_name: str | Path, device: str | torch.device = "cpu", *, revision: str | None = None,
              cache_dir: str | Path | None = None, local_files_only: bool = False) -> Head:
    """Rebuild a head from its directory, a name in models/heads/ or a Hub repo id; weights are
    loaded strictly (safetensors: nothing is unpickled), in eval mode."""
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
