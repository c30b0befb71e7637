"""Supervised trainer for the pairwise head (paper §4.1, §5.1).

Loss: paper Eq. 1, ``GRAD(x, z) + LPIPS(y, z)`` (or the L1 variant), Adam at
lr 5e-5, early stopping on validation loss, at most 10 epochs.

Checkpoints, seeding, interrupts and resume follow the shared contract of
``train/harness.py``: under ``checkpoint_dir``, ``last/`` (resumable, written
every epoch and on SIGINT/SIGTERM, batch-granular), ``best/`` (the head with
the lowest validation loss so far) and ``final/`` (the last epoch's head), both
loadable head directories (``head_folder.write_head_folder``). The model's initial weights are the
caller's: seed before building it.

Runs unchanged under ``accelerate launch`` (DDP): only the main process writes
checkpoints and calls ``on_epoch_end``; metrics are averaged over all processes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from facerefine.losses import StructureLoss, unet_loss
from facerefine.metrics.image import psnr, ssim
from facerefine.train import harness
from facerefine.train.harness import BEST, FINAL, LAST, RNG_KEY, RunCheckpoints, StopRequest, TrainingInterrupted

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_lpips", "val_ssim", "val_psnr")


@dataclass(frozen=True)
class SupervisedConfig:
    """Knobs of one training run; defaults are the paper's (§4.1, §5.1)."""

    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    max_epochs: int = 10
    patience: int = 3  # epochs without a val-loss improvement before stopping
    min_delta: float = 0.0  # an improvement must beat the best by more than this
    structure: StructureLoss = "grad"  # "grad" (Eq. 1) or "l1"
    seed: int = 0
    bf16: bool = True  # bf16 autocast; only ever on CUDA
    channels_last: bool = True  # only ever on CUDA
    cpu: bool = False  # force CPU even where a GPU is visible
    progress: bool = True  # tqdm bar, shown only on a TTY and the main process

    def __post_init__(self) -> None:
        if not (self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if self.structure not in ("grad", "l1"):
            raise ValueError(f"structure must be 'grad' or 'l1', got {self.structure!r}")


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one record per finished epoch, keys HISTORY_KEYS
    best_epoch: int  # 0 if no epoch finished
    best_val_loss: float
    stopped_early: bool
    last_dir: Path
    best_dir: Path
    final_dir: Path


@dataclass
class _Progress:
    """Everything besides weights and optimizer that a resumed run needs.

    Only plain numbers, lists and dicts, so it loads with ``weights_only=True``.
    """

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of epoch ``epoch + 1`` already trained (after an interrupt)
    partial_loss_sum: float = 0.0  # train-loss sum over those batches, all processes
    partial_count: float = 0.0  # images in those batches, all processes
    step: int = 0  # optimizer steps in total
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def make_accelerator(cfg: SupervisedConfig) -> Accelerator:
    """The harness's Accelerator for ``cfg`` (bf16 only on CUDA, seedable shuffling)."""
    return harness.make_accelerator(cpu=cfg.cpu, bf16=cfg.bf16, seed=cfg.seed)


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"loaders must yield (x, y) pairs of NCHW tensors, got {type(batch).__name__}")
    return batch[0], batch[1]


def _prepare_images(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = x.float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _sum_over_processes(accelerator: Accelerator, values: torch.Tensor) -> torch.Tensor:
    return accelerator.reduce(values, reduction="sum") if accelerator.num_processes > 1 else values


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    lpips_net: torch.nn.Module,
    loader: Iterable[Any],
    accelerator: Accelerator,
    structure: StructureLoss = "grad",
    channels_last: bool = False,
) -> dict[str, float]:
    """Validation metrics of ``z = model(x)``: loss (Eq. 1), LPIPS, SSIM and PSNR vs ``y``.

    Per-image values are gathered from all processes (dropping the samples
    accelerate repeats to even out the last batch) and averaged per image.
    """
    model.eval()
    per_image: dict[str, list[torch.Tensor]] = {key: [] for key in HISTORY_KEYS if key.startswith("val_")}
    for batch in loader:
        x, y = (_prepare_images(t, channels_last) for t in _split_batch(batch))
        with accelerator.autocast():
            z = model(x)
            loss, parts = unet_loss(x, y, z, lpips_net, structure, reduction="none")
        values = {
            "val_loss": loss.float(),
            "val_lpips": parts["lpips"].float(),
            "val_ssim": ssim(z, y, reduction="none"),
            "val_psnr": psnr(z, y, reduction="none"),
        }
        for key, value in values.items():
            per_image[key].append(accelerator.gather_for_metrics(value))
    if not per_image["val_loss"]:
        raise ValueError("the validation loader yielded no batches")
    return {key: torch.cat(chunks).mean().item() for key, chunks in per_image.items()}


def _update_early_stopping(progress: _Progress, val_loss: float, epoch: int, cfg: SupervisedConfig) -> bool:
    """Record epoch ``epoch``'s validation loss; return whether it is the new best.

    NaN never counts as an improvement (comparisons with NaN are False).
    """
    improved = val_loss < progress.best_val_loss - cfg.min_delta
    if improved:
        progress.best_val_loss, progress.best_epoch, progress.bad_epochs = val_loss, epoch, 0
    else:
        progress.bad_epochs += 1
    progress.stopped_early = progress.bad_epochs >= cfg.patience and epoch < cfg.max_epochs
    return improved


class UNetModel:
    """The pairwise head in training: the network and its Adam optimizer (paper §5.1).

    ``networks`` and ``training_states`` (the raw module and optimizer) are what a
    checkpoint holds; :meth:`prepare` wraps them for the accelerator (DDP)."""

    def __init__(self, net: torch.nn.Module, cfg: SupervisedConfig, accelerator: Accelerator) -> None:
        self.cfg = cfg
        self.channels_last = cfg.channels_last and accelerator.device.type == "cuda"
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.networks = {"model": net}
        self.training_states = {"optimizer": self.optimizer}

    def prepare(self, accelerator: Accelerator, *loaders: Any) -> list[Any]:
        """Wrap the net, optimizer and ``loaders`` (after a resume loaded the states); the loaders back."""
        self.accelerator = accelerator
        self.wrapped, self._optimizer, *loaders = accelerator.prepare(self.net, self.optimizer, *loaders)
        return loaders

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lpips_net: torch.nn.Module) -> torch.Tensor:
        """One Adam step on Eq. 1; returns the batch's (attached) mean loss."""
        with self.accelerator.autocast():
            loss, _ = unet_loss(x, y, self.wrapped(x), lpips_net, self.cfg.structure)
        self._optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self._optimizer.step()
        return loss


def _train_epoch(
    epoch: int,
    model: UNetModel,
    lpips_net: torch.nn.Module,
    loader: Iterable[Any],
    cfg: SupervisedConfig,
    progress: _Progress,
    stop: StopRequest,
    rng: dict[str, Any] | None,
) -> float | None:
    """One pass over ``loader``, skipping batches trained before an interrupt.

    Returns the epoch's mean train loss, or None if a stop was requested; the
    partial sums are then in ``progress``, ready to be checkpointed.
    """
    accelerator = model.accelerator
    # The partial sums of an interrupted epoch live on the main process only,
    # so that summing over processes counts them once.
    carried = (progress.partial_loss_sum, progress.partial_count) if accelerator.is_main_process else (0.0, 0.0)
    totals = torch.tensor(carried, dtype=torch.float64, device=accelerator.device)  # (loss sum, images)
    model.wrapped.train()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{cfg.max_epochs}",
        disable=not (cfg.progress and accelerator.is_local_main_process and sys.stderr.isatty()),
        leave=False,
    )
    # Batches trained before an interrupt are skipped (same order: the epoch seed).
    for index, batch in harness.resume_batches(bar, progress.batches_done, rng):
        x, y = (_prepare_images(t, model.channels_last) for t in _split_batch(batch))
        loss = model.train_step(x, y, lpips_net)
        progress.step += 1
        progress.batches_done = index + 1
        totals[0] += loss.detach().double() * x.shape[0]
        totals[1] += x.shape[0]
        if stop.requested(accelerator):
            progress.partial_loss_sum, progress.partial_count = _sum_over_processes(accelerator, totals).tolist()
            return None
    loss_sum, count = _sum_over_processes(accelerator, totals).tolist()
    if count == 0:
        raise ValueError("the training loader yielded no batches")
    return loss_sum / count


def train_supervised(
    model: torch.nn.Module,
    lpips_net: torch.nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any],
    cfg: SupervisedConfig,
    checkpoint_dir: str | Path,
    *,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train ``model`` on (x, y) pairs in [-1, 1] NCHW; resume from ``checkpoint_dir/last`` if present.

    ``train_loader``/``val_loader`` are plain DataLoaders (they are passed through
    ``accelerator.prepare``, which shards them across processes). ``lpips_net`` is
    an ``lpips.LPIPS`` module; it is frozen and put in eval mode here.
    ``on_epoch_end`` gets each epoch's history record on the main process, after
    that epoch's checkpoint is written. A run that already finished (max_epochs
    reached or stopped early) returns its saved result without training; raising
    ``cfg.max_epochs`` continues it unless it stopped early.
    ``on_epoch_end`` also gets ``epoch_seconds`` (wall clock, for MLflow and
    logs; never in ``history``, which is versioned). On SIGINT/SIGTERM the
    current step finishes, ``last`` is written, and TrainingInterrupted (a
    KeyboardInterrupt) is raised.
    """
    checkpoint_dir = Path(checkpoint_dir)
    accelerator = accelerator or make_accelerator(cfg)
    set_seed(cfg.seed)
    unet = UNetModel(model, cfg, accelerator)
    checkpoints = RunCheckpoints(checkpoint_dir, accelerator, unet.networks, unet.training_states)
    progress, rng = _Progress(), None
    if checkpoints.exists():
        # Loaded before prepare(): prepare moves weights and optimizer state to the device.
        extra = checkpoints.load()["extra"]
        rng = extra.pop(RNG_KEY, None)
        progress = _Progress(**{k: v for k, v in extra.items() if not k.startswith("_")})
    train_loader, val_loader = unet.prepare(accelerator, train_loader, val_loader)
    lpips_net = lpips_net.to(accelerator.device).eval().requires_grad_(False)

    def save_last() -> None:
        checkpoints.save_last(epoch=progress.epoch, step=progress.step, extra=asdict(progress))

    def train_epoch(epoch: int, stop: StopRequest) -> dict[str, float] | None:
        nonlocal rng
        if progress.stopped_early:
            return None
        harness.start_epoch(accelerator, cfg.seed, epoch, [train_loader])
        # The saved RNG states matter only when resuming inside an epoch.
        resume_rng, rng = (rng if progress.batches_done else None), None
        train_loss = _train_epoch(epoch, unet, lpips_net, train_loader, cfg, progress, stop, resume_rng)
        if train_loss is None:
            save_last()
            raise TrainingInterrupted(f"interrupted in epoch {epoch}; checkpoint in {checkpoint_dir / LAST}")
        val = evaluate(unet.wrapped, lpips_net, val_loader, accelerator, cfg.structure, unet.channels_last)
        record = {"epoch": epoch, "train_loss": train_loss, **val}
        improved = _update_early_stopping(progress, val["val_loss"], epoch, cfg)
        progress.epoch, progress.batches_done = epoch, 0
        progress.partial_loss_sum = progress.partial_count = 0.0
        progress.history.append(record)
        # best before last: if killed in between, the resumed run redoes this
        # epoch and rewrites the same best weights.
        if improved:
            checkpoints.write_head(BEST, unet.net, name="unet", training={"epoch": epoch})
        save_last()
        return record

    harness.run_epochs(accelerator, range(progress.epoch + 1, cfg.max_epochs + 1), train_epoch,
                       last_dir=checkpoint_dir / LAST, on_epoch_end=on_epoch_end)
    # The final head is the last epoch's weights (what ``last`` holds), in head format.
    checkpoints.write_head(FINAL, unet.net, name="unet", training={"epoch": progress.epoch})
    accelerator.wait_for_everyone()
    return TrainResult(
        history=list(progress.history),
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val_loss,
        stopped_early=progress.stopped_early,
        last_dir=checkpoint_dir / LAST,
        best_dir=checkpoint_dir / BEST,
        final_dir=checkpoint_dir / FINAL,
    )
