"""What both generation stages share: job running and metrics (the dtype rule is
``precision.effective_dtype``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from facerefine.distributed import Topology
from facerefine.generation import runner
from facerefine.hashing import fingerprint
from facerefine.prompts import MANIFEST_COLUMNS

log = logging.getLogger(__name__)


def run_set(
    topo: Topology,
    manifest: pd.DataFrame,
    out_dir: Path,
    generate: runner.GenerateFn,
    *,
    shard_size: int,
    batch_size: int,
    job: dict,
    shard_fingerprint: Callable[[runner.Rows, int], str] | None = None,
    desc: str,
) -> dict:
    """Generate one image set across all processes and finalize it on the main one."""
    plan = runner.plan_shards(manifest, shard_size)
    stats = runner.generate_shards(
        plan, out_dir, generate,
        job_fingerprint=fingerprint(job),
        shard_fingerprint=shard_fingerprint,
        sample_meta=lambda row: {**{c: row[c] for c in MANIFEST_COLUMNS}, **job},
        batch_size=batch_size, rank=topo.rank, world_size=topo.world_size, desc=desc,
    )
    topo.barrier()
    if topo.is_main:
        runner.finalize(plan, out_dir, MANIFEST_COLUMNS)
    topo.barrier()
    log.info("%s: %d shards written, %d already complete (this process), %.1fs",
             desc, stats.shards_written, stats.shards_done_before, stats.seconds)
    return stats.as_dict()
