"""Tar shards in WebDataset layout: ``<key>.png`` + ``<key>.json`` per sample.

A shard ``shard-000012.tar`` comes with an index ``shard-000012.tar.json``
(keys, fingerprint, size, sha256). A shard is *complete* only if both exist,
the size matches and the fingerprint is what the current job would write. The
tar is written under a temporary name, any stale tar removed, the index
written, and the tar renamed last, so a kill at any point leaves either a
complete shard or none. Tars are byte-deterministic
(fixed mtime/owner, sorted members in key order).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SHARD_GLOB = "shard-*.tar"
MANIFEST = "manifest.parquet"


class ShardError(RuntimeError):
    """A shard is unreadable or malformed; the message names the file and member."""


@dataclass(frozen=True)
class Sample:
    key: str
    image: Image.Image
    meta: dict


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def index_path(shard: Path) -> Path:
    return shard.with_name(shard.name + ".json")


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0  # deterministic bytes: same images -> same shard -> same DVC hash
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def write_shard(path: str | Path, samples: Sequence[Sample], fingerprint: str) -> None:
    """Write a complete shard atomically (tar, then index, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise ShardError(f"{path}: duplicate keys in shard")
    for key in keys:
        if not key or "." in key or "/" in key:
            raise ShardError(f"{path}: unsafe sample key {key!r} (no dots or slashes allowed)")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            _add(tar, f"{s.key}.png", _png_bytes(s.image))
            meta = json.dumps(s.meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
            _add(tar, f"{s.key}.json", meta)
    payload = tmp.read_bytes()
    idx = {"fingerprint": fingerprint, "keys": keys, "bytes": len(payload),
           "sha256": hashlib.sha256(payload).hexdigest()}
    # A stale tar must go before the new index lands: otherwise a kill between the
    # two renames would pair an old tar with a new fingerprint.
    path.unlink(missing_ok=True)
    idx_tmp = index_path(tmp)
    idx_tmp.write_text(json.dumps(idx, indent=1), encoding="utf-8")
    os.replace(idx_tmp, index_path(path))
    os.replace(tmp, path)


def read_index(path: str | Path) -> dict | None:
    try:
        return json.loads(index_path(Path(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(path: str | Path, fingerprint: str) -> bool:
    """True if the shard exists and was written by a job with this fingerprint."""
    path = Path(path)
    idx = read_index(path)
    return (idx is not None and idx.get("fingerprint") == fingerprint
            and path.is_file() and path.stat().st_size == idx.get("bytes"))


def iter_shard(path: str | Path) -> Iterator[Sample]:
    """Stream the samples of one shard (images decoded, metadata parsed)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r") as tar:
            pending: dict[str, dict[str, bytes]] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                data = tar.extractfile(member).read()
                parts = pending.setdefault(key, {})
                parts[ext] = data
                if "png" in parts and "json" in parts:
                    yield _decode(path, key, pending.pop(key))
            if pending:
                raise ShardError(f"{path}: incomplete sample(s) {sorted(pending)[:5]} (missing png or json)")
    except tarfile.TarError as err:
        raise ShardError(f"{path}: not a readable tar shard: {err}") from err


def _decode(path: Path, key: str, parts: dict[str, bytes]) -> Sample:
    try:
        image = Image.open(io.BytesIO(parts["png"]))
        image.load()
    except Exception as err:  # PIL raises several types for bad data
        raise ShardError(f"{path}: member {key}.png is not a readable image: {err}") from err
    try:
        meta = json.loads(parts["json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ShardError(f"{path}: member {key}.json is not valid JSON: {err}") from err
    return Sample(key=key, image=image.convert("RGB"), meta=meta)


def list_shards(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).glob(SHARD_GLOB))


def remove_shard(path: Path) -> None:
    for p in (path, index_path(path)):
        p.unlink(missing_ok=True)
