"""Sharded, resumable, data-parallel generation.

The work is a list of shards (each a list of manifest rows). Process ``r`` of
``W`` takes shards ``r, r+W, r+2W, ...``; batches never cross a shard, so a
shard's bytes depend only on its rows and the job, never on how many
processes ran. Complete shards (see :mod:`facerefine.data.shards`) are
skipped, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from facerefine.data import shards
from facerefine.hashing import fingerprint
from facerefine.io import write_parquet

log = logging.getLogger(__name__)

Rows = list[dict]
# (rows of one batch, shard index) -> one image per row, in order
GenerateFn = Callable[[Rows, int], Sequence[Image.Image]]


@dataclass
class RunStats:
    shards_total: int = 0
    shards_done_before: int = 0
    shards_written: int = 0
    images_written: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def plan_shards(manifest: pd.DataFrame, shard_size: int) -> list[Rows]:
    """Cut the (id-sorted) manifest into consecutive shards of ``shard_size`` rows."""
    rows = manifest.to_dict("records")
    return [rows[i:i + shard_size] for i in range(0, len(rows), shard_size)]


def generate_shards(
    plan: Sequence[Rows],
    out_dir: str | Path,
    generate: GenerateFn,
    *,
    job_fingerprint: str,
    shard_fingerprint: Callable[[Rows, int], str] | None = None,
    sample_meta: Callable[[dict], dict],
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    desc: str = "generate",
) -> RunStats:
    """Generate this process's shards of ``plan`` into ``out_dir``; skip complete ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = RunStats(shards_total=len(plan))
    t0 = time.perf_counter()

    def fp(rows: Rows, k: int) -> str:
        extra = shard_fingerprint(rows, k) if shard_fingerprint else ""
        return fingerprint(job_fingerprint, [(r["id"], r["prompt"], r["seed"]) for r in rows], extra)

    mine = [k for k in range(len(plan)) if k % world_size == rank]
    todo = [k for k in mine if not shards.is_complete(out_dir / shards.shard_name(k), fp(plan[k], k))]
    stats.shards_done_before = len(mine) - len(todo)
    total = sum(len(plan[k]) for k in mine)
    done = total - sum(len(plan[k]) for k in todo)
    with tqdm(total=total, initial=done, desc=desc, unit="img", disable=None) as bar:
        for k in todo:
            rows = plan[k]
            images: list[Image.Image] = []
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                out = list(generate(batch, k))
                if len(out) != len(batch):
                    raise RuntimeError(f"generator returned {len(out)} images for {len(batch)} prompts")
                images.extend(out)
                bar.update(len(batch))
            samples = [shards.Sample(r["id"], img, sample_meta(r)) for r, img in zip(rows, images)]
            shards.write_shard(out_dir / shards.shard_name(k), samples, fp(rows, k))
            stats.shards_written += 1
            stats.images_written += len(rows)
    stats.seconds = time.perf_counter() - t0
    return stats


def finalize(plan: Sequence[Rows], out_dir: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """After all processes finished: drop stale shards and write the manifest.

    Run on one process only. Shards beyond the plan (the set shrank) and
    leftover temp files are removed so the output matches the params exactly.
    """
    out_dir = Path(out_dir)
    wanted = {shards.shard_name(k) for k in range(len(plan))}
    for path in shards.list_shards(out_dir):
        if path.name not in wanted:
            shards.remove_shard(path)
    for tmp in out_dir.glob(".shard-*.tmp*"):
        tmp.unlink()
    missing = [n for n in sorted(wanted) if not (out_dir / n).is_file()]
    if missing:
        raise RuntimeError(f"{out_dir}: shards missing after generation: {missing[:5]}")
    records = [dict({c: r[c] for c in columns}, shard=shards.shard_name(k))
               for k, rows in enumerate(plan) for r in rows]
    manifest = pd.DataFrame(records, columns=[*columns, "shard"])
    write_parquet(out_dir / shards.MANIFEST, manifest)
    return manifest
