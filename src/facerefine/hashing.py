"""Stable hashes: identical on every machine and Python run (unlike ``hash``)."""

from __future__ import annotations

import hashlib
import json


def stable_hash(*parts: object) -> int:
    """64-bit hash of the parts' string forms; drives seeds, splits and subsets."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def fingerprint(*parts: object) -> str:
    """Hex digest of JSON-serialisable parts: what determines an output (shard, run)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
