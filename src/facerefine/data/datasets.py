"""Training datasets over the generated shards, with random access.

The shards are read in place: one pass over the tar headers records where
each ``<key>.png`` lives (file, offset, size), and ``__getitem__`` seeks and
decodes just that member. Memory stays small whatever the dataset size, and
DataLoader workers can share the index.

Images become float tensors in [-1, 1], CHW, resized to the training size.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from facerefine.data import shards
from facerefine.hashing import fingerprint, stable_hash


@dataclass(frozen=True)
class Member:
    shard: Path
    offset: int
    size: int


def index_images(directory: str | Path) -> dict[str, Member]:
    """Map each key to the location of its PNG inside the shards of ``directory``."""
    directory = Path(directory)
    found: dict[str, Member] = {}
    for path in shards.list_shards(directory):
        try:
            with tarfile.open(path, "r") as tar:
                for m in tar.getmembers():
                    if m.isfile() and m.name.endswith(".png"):
                        found[m.name[:-4]] = Member(path, m.offset_data, m.size)
        except tarfile.TarError as err:
            raise shards.ShardError(f"{path}: not a readable tar shard: {err}") from err
    return found


def read_image(member: Member) -> Image.Image:
    with open(member.shard, "rb") as fh:
        fh.seek(member.offset)
        data = fh.read(member.size)
    try:
        image = Image.open(io.BytesIO(data))
        return image.convert("RGB")
    except Exception as err:
        raise shards.ShardError(f"{member.shard}: image at offset {member.offset} is unreadable: {err}") from err


def to_tensor(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """PIL RGB -> float tensor in [-1, 1], CHW, optionally resized (bicubic) to size×size."""
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float CHW tensor in [-1, 1] -> PIL RGB."""
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def subset_counts(total: int, n_train: int, n_val: int, fraction: float) -> tuple[int, int]:
    """(train, val) sizes for ``fraction`` of the *whole* dataset (``total`` subjects): the
    paper's "a 20% subset of the entire dataset", drawn from the train split (capped at it).
    Validation keeps the same share of its split as training takes of the train split."""
    train = min(n_train, max(1, round(total * fraction))) if n_train else 0
    val = min(n_val, max(1, round(n_val * train / n_train))) if n_val and n_train else 0
    return train, val


@dataclass(frozen=True)
class Subset:
    """The training subjects of a head: ``fraction`` of the ``total`` subjects of the dataset."""

    train: list[str]
    val: list[str]
    total: int
    fraction: float

    def record(self) -> dict:
        """What a head's config.json and metrics state about its data."""
        return {"data_fraction": self.fraction, "dataset_pairs": self.total,
                "train_pairs": len(self.train), "val_pairs": len(self.val)}


def select_subset(manifest: pd.DataFrame, fraction: float, seed: int) -> Subset:
    """``fraction`` of the whole dataset (every split of ``manifest``) from the train split, and
    validation ids in proportion (:func:`subset_counts`); nested as ``fraction`` grows."""
    n_train = int((manifest["split"] == "train").sum())
    n_val = int((manifest["split"] == "val").sum())
    k_train, k_val = subset_counts(len(manifest), n_train, n_val, fraction)
    return Subset(_first(manifest, "train", k_train, seed), _first(manifest, "val", k_val, seed),
                  len(manifest), fraction)


def _first(manifest: pd.DataFrame, split: str, keep: int, seed: int) -> list[str]:
    ids = manifest.loc[manifest["split"] == split, "id"].tolist()
    return sorted(sorted(ids, key=lambda i: stable_hash("subset", seed, i))[:keep])


class PairedShardDataset(Dataset):
    """(schnell, dev) pairs by key: ``(x, y)`` tensors for supervised training."""

    def __init__(self, schnell_dir: str | Path, dev_dir: str | Path, ids: list[str], size: int):
        self.size, self.ids = size, list(ids)
        self.a, self.b = index_images(schnell_dir), index_images(dev_dir)
        missing = [i for i in self.ids if i not in self.a or i not in self.b]
        if missing:
            raise shards.ShardError(
                f"{len(missing)} id(s) lack a schnell/dev pair in {schnell_dir} / {dev_dir}: {missing[:5]}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.ids[i]
        return to_tensor(read_image(self.a[key]), self.size), to_tensor(read_image(self.b[key]), self.size)


class ImageShardDataset(Dataset):
    """Single images of one domain by key (for unpaired training and evaluation)."""

    def __init__(self, directory: str | Path, ids: list[str], size: int):
        self.size, self.ids = size, list(ids)
        self.index = index_images(directory)
        missing = [i for i in self.ids if i not in self.index]
        if missing:
            raise shards.ShardError(f"{len(missing)} id(s) not found in {directory}: {missing[:5]}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_tensor(read_image(self.index[self.ids[i]]), self.size)


def data_fingerprint(*directories: str | Path) -> str:
    """Identity of the generated data in these shard folders (from the shard indexes)."""
    digests = []
    for directory in directories:
        for path in shards.list_shards(directory):
            index = shards.read_index(path) or {}
            digests.append((str(path), index.get("sha256", "")))
    return fingerprint(digests)
