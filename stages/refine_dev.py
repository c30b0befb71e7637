"""Stage `refine_dev`: FLUX.1-dev img2img of every enriched schnell image (paper §3.1).

Scale out with `accelerate launch --num_processes N stages/refine_dev.py`.
"""

import time

import pandas as pd

from facerefine import paths
from facerefine.config import load_params, loggable
from facerefine.data import shards
from facerefine.distributed import topology
from facerefine.generation.flux import DevImageToImage
from facerefine.generation.stage import run_set
from facerefine.io import write_json
from facerefine.precision import effective_dtype
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.weights.flux import load_flux_for, pixel_fingerprint


def main() -> None:
    params = load_params()
    scale = params.scale
    topo = topology()
    with stage_run("refine_dev", params=loggable(params), profile=params.profile,
                   enabled=topo.is_main) as run:
        t0 = time.perf_counter()
        dtype = effective_dtype(scale.dtype, topo.device)
        pipe = load_flux_for(scale, "dev", img2img=True, dtype=dtype, device=topo.device)
        generate = DevImageToImage(pipe, params.dev_run, scale.image_size, paths.SCHNELL_ENRICHED)
        schnell = pd.read_parquet(paths.SCHNELL_ENRICHED / shards.MANIFEST)
        job = {"model": scale.models.dev, "size": scale.image_size, "dtype": dtype, **params.dev_run.model_dump(),
               **pixel_fingerprint(scale.models.dev, scale)}

        def source_fingerprint(rows, k):
            # A regenerated schnell shard must regenerate its dev twin.
            index = shards.read_index(paths.SCHNELL_ENRICHED / shards.shard_name(k)) or {}
            return index.get("sha256", "")

        # Same rows and shard size as schnell, so dev shard k pairs with schnell shard k by key.
        stats = run_set(topo, schnell.drop(columns="shard"), paths.DEV, generate,
                        shard_size=scale.shard_size, batch_size=scale.batch_size, job=job,
                        shard_fingerprint=source_fingerprint, desc="dev/img2img")
        metrics = {"images": len(schnell), "shards": stats["shards_total"],
                   "seconds": round(time.perf_counter() - t0, 2)}
        if topo.is_main:
            write_json(paths.METRICS / "refine_dev.json", {k: v for k, v in metrics.items() if k != "seconds"})
            run.log_metrics(metrics)


if __name__ == "__main__":
    run_stage(main)
