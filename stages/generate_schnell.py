"""Stage `generate_schnell`: FLUX.1-schnell text-to-image for both prompt sets (paper §3.1).

Scale out with `accelerate launch --num_processes N stages/generate_schnell.py`.
"""

import time

import pandas as pd

from facerefine import paths
from facerefine.config import load_params, loggable
from facerefine.distributed import topology
from facerefine.generation.flux import SchnellTextToImage
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
    with stage_run("generate_schnell", params=loggable(params), profile=params.profile,
                   enabled=topo.is_main) as run:
        t0 = time.perf_counter()
        dtype = effective_dtype(scale.dtype, topo.device)
        pipe = load_flux_for(scale, "schnell", dtype=dtype, device=topo.device)
        generate = SchnellTextToImage(pipe, params.schnell_run, scale.image_size)
        # Everything that changes the pixels; a change regenerates the shards.
        job = {"model": scale.models.schnell, "size": scale.image_size, "dtype": dtype,
               **params.schnell_run.model_dump(), **pixel_fingerprint(scale.models.schnell, scale)}
        metrics = {}
        for name, prompts, out in [("enriched", paths.ENRICHED_PROMPTS, paths.SCHNELL_ENRICHED),
                                   ("baseline", paths.BASELINE_PROMPTS, paths.SCHNELL_BASELINE)]:
            manifest = pd.read_parquet(prompts)
            stats = run_set(topo, manifest, out, generate, shard_size=scale.shard_size,
                            batch_size=scale.batch_size, job=job, desc=f"schnell/{name}")
            metrics[name] = {"images": len(manifest), "shards": stats["shards_total"]}
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        if topo.is_main:
            write_json(paths.METRICS / "generate_schnell.json", {k: v for k, v in metrics.items() if k != "seconds"})
            run.log_metrics(metrics)


if __name__ == "__main__":
    run_stage(main)
