"""Shard I/O: WebDataset layout, byte determinism, atomic completion, clear errors."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from facerefine.data import shards


def samples(n=3, offset=0):
    rng = np.random.default_rng(offset)
    return [shards.Sample(f"nm{i + offset}", Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)),
                          {"id": f"nm{i}", "name": "Zoë \"Q\" / 🎬"}) for i in range(n)]


def test_roundtrip_in_webdataset_layout(tmp_path):
    path = tmp_path / shards.shard_name(0)
    data = samples()
    shards.write_shard(path, data, "fp")
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["nm0.png", "nm0.json", "nm1.png", "nm1.json", "nm2.png", "nm2.json"]
    back = list(shards.iter_shard(path))
    assert [s.key for s in back] == ["nm0", "nm1", "nm2"]
    assert back[0].meta["name"] == "Zoë \"Q\" / 🎬"
    assert np.array_equal(np.asarray(back[1].image), np.asarray(data[1].image))


def test_bytes_are_deterministic(tmp_path):
    a, b = tmp_path / "a" / "shard-000000.tar", tmp_path / "b" / "shard-000000.tar"
    shards.write_shard(a, samples(), "fp")
    shards.write_shard(b, samples(), "fp")
    assert a.read_bytes() == b.read_bytes()


def test_completeness_needs_matching_fingerprint_and_size(tmp_path):
    path = tmp_path / "shard-000000.tar"
    assert not shards.is_complete(path, "fp")
    shards.write_shard(path, samples(), "fp")
    assert shards.is_complete(path, "fp") and not shards.is_complete(path, "other")
    path.write_bytes(path.read_bytes()[:100])  # truncated copy
    assert not shards.is_complete(path, "fp")


def test_rewrite_never_pairs_old_tar_with_new_index(tmp_path, monkeypatch):
    path = tmp_path / "shard-000000.tar"
    shards.write_shard(path, samples(), "old")
    real_replace = shards.os.replace

    def die_before_tar_rename(src, dst):
        if str(dst).endswith(".tar"):
            raise KeyboardInterrupt  # killed between index and tar rename
        real_replace(src, dst)

    monkeypatch.setattr(shards.os, "replace", die_before_tar_rename)
    with pytest.raises(KeyboardInterrupt):
        shards.write_shard(path, samples(offset=5), "new")
    assert not shards.is_complete(path, "new") and not shards.is_complete(path, "old")


@pytest.mark.parametrize("key", ["a.b", "a/b", ""])
def test_unsafe_keys_are_refused(tmp_path, key):
    with pytest.raises(shards.ShardError, match="unsafe sample key"):
        shards.write_shard(tmp_path / "s.tar", [shards.Sample(key, Image.new("RGB", (2, 2)), {})], "fp")


def _raw_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_corrupt_members_name_file_and_member(tmp_path):
    bad_png = tmp_path / "bad_png.tar"
    _raw_tar(bad_png, {"k.png": b"not a png", "k.json": b"{}"})
    with pytest.raises(shards.ShardError, match=r"bad_png\.tar: member k\.png is not a readable image"):
        list(shards.iter_shard(bad_png))
    half = tmp_path / "half.tar"
    _raw_tar(half, {"k.json": b"{}"})
    with pytest.raises(shards.ShardError, match=r"half\.tar: incomplete sample"):
        list(shards.iter_shard(half))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(shards.ShardError, match="garbage.tar"):
        list(shards.iter_shard(garbage))
