"""Stage `train_cyclegan@<cell>`: one CycleGAN / ESA-CycleGAN run of the λ_cyc × lr grid (paper §4.2, §5.2).

dvc.yaml runs one instance per grid cell (a DVC matrix). Multi-GPU / multi-node:
`accelerate launch --num_processes N [--num_machines M ...] stages/train_cyclegan.py --variant ...`.
"""

import argparse

import pandas as pd

import facerefine  # noqa: F401  before torch: pins the CPU numerics (facerefine.numerics)
import torch
from torch.utils.data import DataLoader

from facerefine import paths
from facerefine.config import load_params, loggable
from facerefine.data import shards
from facerefine.data.datasets import ImageShardDataset, data_fingerprint, select_subset
from facerefine.head_folder import write_head_folder
from facerefine.heads import read_head_folder
from facerefine.io import write_json
from facerefine.models.factory import count_parameters
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.train.cells import Cell
from facerefine.train.checkpoint import run_directory
from facerefine.train.cycle import INVERSE, CycleConfig, train_cycle
from facerefine.train.harness import BEST
from facerefine.train.reporting import sample_grid, write_history


def parse_cell() -> Cell:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=["cyclegan", "esa"], required=True)
    parser.add_argument("--lambda-cyc", type=float, required=True)
    parser.add_argument("--lr", type=float, required=True)
    args = parser.parse_args()
    return Cell(args.variant, args.lambda_cyc, args.lr)


def main() -> None:
    cell = parse_cell()
    params = load_params()
    scale, shared = params.scale.cyclegan, params.cyclegan
    manifest = pd.read_parquet(paths.DEV / shards.MANIFEST)
    subset = select_subset(manifest, scale.data_fraction, params.seed)  # of the whole dataset
    train_ids, val_ids = subset.train, subset.val
    if not train_ids or not val_ids:
        raise ValueError(f"train_cyclegan needs train and val images; got {len(train_ids)} and {len(val_ids)}")
    domain_a = ImageShardDataset(paths.SCHNELL_ENRICHED, train_ids, scale.image_size)  # schnell
    domain_b = ImageShardDataset(paths.DEV, train_ids, scale.image_size)               # dev
    val_a = ImageShardDataset(paths.SCHNELL_ENRICHED, val_ids, scale.image_size)
    # Two independent shuffles of the global RNG: A and B never arrive as aligned pairs.
    loader_a = DataLoader(domain_a, batch_size=scale.batch_size, shuffle=True, drop_last=True)
    loader_b = DataLoader(domain_b, batch_size=scale.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_a, batch_size=scale.batch_size)

    cfg = CycleConfig(variant=cell.variant, esa_placement=shared.esa_placement, lambda_cyc=cell.lambda_cyc,
                      lambda_identity=shared.lambda_identity, lr=cell.lr, beta1=shared.beta1,
                      n_epochs=scale.epochs, n_epochs_decay=scale.epochs_decay, pool_size=shared.pool_size,
                      seed=params.seed, ngf=scale.ngf, n_blocks=scale.n_blocks, ndf=scale.ndf)
    data_id = data_fingerprint(paths.SCHNELL_ENRICHED, paths.DEV)
    run_dir = run_directory(f"train_cyclegan/{cell.name}", {"config": cfg.to_dict(), "data": data_id,
                                                           "size": scale.image_size, "batch": scale.batch_size,
                                                           "train": train_ids, "val": val_ids})
    out_dir = paths.CYCLEGAN_RUNS / cell.name
    report_dir = paths.REPORTS / "cyclegan" / cell.name

    with stage_run(f"train_cyclegan@{cell.name}", params=loggable(params), profile=params.profile) as run:
        run.set_tags({"cell": cell.name, "variant": cell.variant})
        run.log_params({"cell.lambda_cyc": cell.lambda_cyc, "cell.lr": cell.lr})
        result = train_cycle(cfg, loader_a, loader_b, run_dir, val_a=val_loader,
                             on_epoch_end=lambda rec: run.log_metrics(rec, step=int(rec["epoch"])))
        g_ab = read_head_folder(run_dir / BEST).model
        best = result.history[result.best_epoch - 1]
        write_head_folder(out_dir, g_ab, name=cell.variant,
                          training={**cfg.to_dict(), "image_size": scale.image_size, "batch_size": scale.batch_size,
                                    "data_fraction": scale.data_fraction, "best_epoch": result.best_epoch},
                          data={"fingerprint": data_id, **subset.record()})
        metrics = {
            "cell": cell.name, "variant": cell.variant, "lambda_cyc": cell.lambda_cyc, "lr": cell.lr,
            # best_loss_G: the paper's L, Eq. 3 (adversarial + λ_cyc·cycle), whatever lambda_identity trained
            "best_loss_G": result.best_loss_G, "best_epoch": result.best_epoch,
            "ssim_cycle": best.get("ssim_cycle"), "epochs": result.epochs_completed,
            "parameters_G": count_parameters(g_ab), **subset.record(),
        }
        write_json(paths.METRICS / "cyclegan" / f"{cell.name}.json", metrics)
        write_history(report_dir / "history.csv", result.history)
        n = min(4, len(val_a))
        a = torch.stack([val_a[i] for i in range(n)])
        with torch.inference_mode():
            fake_b = g_ab(a)
            rec = read_head_folder(run_dir / (BEST + INVERSE)).model(fake_b)
        sample_grid(report_dir / "samples.png", {"A (schnell)": a, "G(A)": fake_b, "F(G(A))": rec})
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        # Wall-clock durations go to MLflow (per epoch, via on_epoch_end) and the log, never to
        # the versioned history.csv.
        run.log_artifact(report_dir / "samples.png")


if __name__ == "__main__":
    run_stage(main)
