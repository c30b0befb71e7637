"""Stage `train_unet`: the pairwise head, ResUNet-CBAM on (schnell, dev) pairs (paper §4.1, §5.1).

Multi-GPU: `accelerate launch --num_processes N stages/train_unet.py`.
"""

import pandas as pd

import facerefine  # noqa: F401  before torch: pins the CPU numerics (facerefine.numerics)
import torch
from torch.utils.data import DataLoader

from facerefine import paths
from facerefine.card import write_model_card
from facerefine.config import load_params, loggable
from facerefine.data import shards
from facerefine.data.datasets import PairedShardDataset, data_fingerprint, select_subset
from facerefine.head_folder import write_head_folder
from facerefine.heads import read_head_folder
from facerefine.io import write_json
from facerefine.models.factory import count_parameters
from facerefine.models.resunet_cbam import ResUNetCBAM
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.train.checkpoint import run_directory
from facerefine.train.reporting import sample_grid, write_history
from facerefine.train.supervised import SupervisedConfig, make_accelerator, train_supervised
from facerefine.weights.lpips import load_lpips

REPORT = paths.REPORTS / "unet"


def main() -> None:
    params = load_params()
    scale = params.scale.unet
    manifest = pd.read_parquet(paths.DEV / shards.MANIFEST)
    subset = select_subset(manifest, scale.data_fraction, params.seed)  # of the whole dataset
    train_ids, val_ids = subset.train, subset.val
    if not train_ids or not val_ids:
        raise ValueError(f"train_unet needs train and val pairs; got {len(train_ids)} and {len(val_ids)} "
                         "(raise profiles.<profile>.num_names or unet.data_fraction)")
    train_ds = PairedShardDataset(paths.SCHNELL_ENRICHED, paths.DEV, train_ids, scale.image_size)
    val_ds = PairedShardDataset(paths.SCHNELL_ENRICHED, paths.DEV, val_ids, scale.image_size)
    train_loader = DataLoader(train_ds, batch_size=scale.batch_size, shuffle=True, drop_last=False)
    val_loader = DataLoader(val_ds, batch_size=scale.batch_size)

    cfg = SupervisedConfig(lr=params.unet.lr, max_epochs=scale.max_epochs, patience=params.unet.patience,
                           structure=params.unet.structure_loss, seed=params.seed)
    data_id = data_fingerprint(paths.SCHNELL_ENRICHED, paths.DEV)
    training = {**params.unet.model_dump(), **scale.model_dump(), "seed": params.seed,
                "lpips": params.scale.models.lpips}
    torch.manual_seed(params.seed)
    model = ResUNetCBAM(base_channels=scale.base_channels, depth=scale.depth, upsample=params.unet.upsample)
    lpips_net = load_lpips(params.scale.models.lpips)
    accelerator = make_accelerator(cfg)
    run_dir = run_directory("train_unet", {"training": training, "data": data_id,
                                           "train": train_ids, "val": val_ids})

    with stage_run("train_unet", params=loggable(params), profile=params.profile,
                   enabled=accelerator.is_main_process) as run:
        result = train_supervised(model, lpips_net, train_loader, val_loader, cfg, run_dir,
                                  accelerator=accelerator,
                                  on_epoch_end=lambda rec: run.log_metrics(rec, step=int(rec["epoch"])))
        if not accelerator.is_main_process:
            return
        head = read_head_folder(result.best_dir)
        write_head_folder(paths.UNET_HEAD, head.model, name="unet", training=training,
                          data={"fingerprint": data_id, **subset.record()})
        write_model_card(paths.UNET_HEAD, params)  # after write_head_folder (it replaces the folder)
        write_history(REPORT / "history.csv", result.history)
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        metrics = {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "val_loss": best["val_loss"], "val_lpips": best["val_lpips"],
            "val_ssim": best["val_ssim"], "val_psnr": best["val_psnr"],
            "parameters": count_parameters(head.model),
            **subset.record(),
        }
        write_json(paths.METRICS / "unet.json", metrics)
        n = min(4, len(val_ds))
        x = torch.stack([val_ds[i][0] for i in range(n)])
        y = torch.stack([val_ds[i][1] for i in range(n)])
        with torch.inference_mode():
            z = head.model(x)
        sample_grid(REPORT / "samples.png", {"schnell (input)": x, "U-Net (output)": z, "dev (target)": y})
        run.log_metrics(metrics)
        run.log_artifact(REPORT / "samples.png")


if __name__ == "__main__":
    run_stage(main)
