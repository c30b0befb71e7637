"""What every trainer shares: device set-up, seeding, interrupts, resume and head saving.

Both trainers (``supervised.py``, ``cycle.py``) are written against these
contracts, so a long multi-GPU run behaves the same whichever head it trains.

Accelerator
    :func:`make_accelerator`: bf16 autocast only on CUDA, and a refusal when a
    launcher started more processes than accelerate can see (every process
    would otherwise act as the main one and write checkpoints).

Seeding
    :func:`epoch_seed` is a pure function of ``(seed, epoch, rank)``; a trainer
    calls :func:`start_epoch` at the top of every epoch, which reseeds python,
    numpy and torch from it and tells seedable loaders the epoch. The data
    order of an epoch is therefore a function of the seed and the epoch only.

Interrupts
    :class:`StopRequest` turns SIGINT/SIGTERM into a flag that the loop reads
    between optimizer steps: the current step finishes, ``last`` is written
    (mid-epoch, see below), and :class:`TrainingInterrupted` is raised, which
    ``stagekit.run_stage`` turns into exit status 130. A second signal, or a
    KeyboardInterrupt raised anywhere else, stops at once without writing: the
    last complete checkpoint is what a new run resumes from.

Resume
    Batch-granular. ``last`` is written at the end of every epoch and on a
    requested stop; it holds the weights, the optimizer, scheduler and grad
    scaler states, the number of batches of the current epoch already trained,
    the RNG states of the main process and whatever extra state the trainer
    adds (history, partial epoch sums, image pools). A new call replays the
    epoch's seed, skips the trained batches without training on them
    (:func:`resume_batches`), restores the saved RNG states and carries on, so
    an interrupted-then-resumed run ends with the weights of an uninterrupted
    one (bit for bit on one CPU process; tested in tests/test_harness.py).
    Under DDP only the main process's RNG states are saved: the other ranks
    restart from their epoch seed, which changes only per-rank randomness
    (dropout, image pools), never the data order or the shared weights' update
    rule.

Heads
    The best and the final models are written with
    :func:`facerefine.head_folder.write_head_folder` (``model.safetensors`` +
    ``config.json``), the format ``facerefine enhance`` and the stages read with
    ``heads.read_head_folder``. Training never imports the inference side.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed

from facerefine.head_folder import write_head_folder
from facerefine.train.checkpoint import STATE_FILE, has_checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

LAST = "last"
BEST = "best"
FINAL = "final"
RNG_KEY = "_rng"  # where save_last keeps the RNG states inside ``extra``
SCALER_KEY = "_scaler"
LOGGED = ("loss_G_eq3", "train_loss", "val_loss")  # the record values run_epochs logs


class TrainingInterrupted(KeyboardInterrupt):
    """A requested stop (SIGINT/SIGTERM): the checkpoint was written, re-run to resume.

    A KeyboardInterrupt, so stage scripts exit non-zero (130) through ``run_stage``.
    """


# ---------------------------------------------------------------- accelerator


def make_accelerator(*, cpu: bool = False, bf16: bool = True, seed: int = 0,
                     seedable_sampler: bool = True) -> Accelerator:
    """One Accelerator set-up for every trainer.

    ``seedable_sampler``: shuffling DataLoaders draw their order from
    ``(seed, epoch)`` (accelerate's seedable sampler). The CycleGAN trainer
    turns it off: its two loaders would get one seed and, over a paired data
    set, arrive as aligned pairs; it shuffles from the epoch-seeded global RNG
    instead (:func:`start_epoch`), which draws A's order and B's one after the other.
    """
    on_cuda = torch.cuda.is_available() and not cpu
    kwargs: dict[str, Any] = {}
    if seedable_sampler:
        kwargs["dataloader_config"] = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed)
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if (bf16 and on_cuda) else "no", **kwargs)
    check_world_size(accelerator)
    return accelerator


def check_world_size(accelerator: Accelerator) -> None:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > accelerator.num_processes:
        # e.g. torchrun on a machine without CUDA: accelerate then runs every
        # process as a lone "main" one, and they would all write checkpoints.
        raise RuntimeError(
            f"launched with WORLD_SIZE={world_size} but the Accelerator sees {accelerator.num_processes} "
            "process(es); on CPU launch with `accelerate launch --cpu` (or set ACCELERATE_USE_CPU=true)"
        )


# ---------------------------------------------------------------- seeding


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Seed of epoch ``epoch`` on process ``rank``: distinct for every (seed, epoch, rank)
    triple in range (a mixed-radix code, not ``seed + epoch``, which collides:
    seed 1 epoch 2 = seed 2 epoch 1)."""
    if epoch < 0 or rank < 0:
        raise ValueError(f"epoch and rank must be >= 0, got {epoch} and {rank}")
    return ((seed * 1_000_003 + epoch) * 1_009 + rank) % 2**32


def start_epoch(accelerator: Accelerator, seed: int, epoch: int, loaders: Iterable[Any] = ()) -> int:
    """Reseed every RNG for ``epoch`` and tell seedable loaders; return the seed used."""
    value = epoch_seed(seed, epoch, accelerator.process_index)
    set_seed(value)
    for loader in loaders:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
    return value


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain containers
    (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_batches(batches: Iterable[Any], skip: int, rng: Mapping[str, Any] | None) -> Iterator[tuple[int, Any]]:
    """``enumerate(batches)`` without its first ``skip`` items, the RNG states restored
    right before the first batch that is yielded (where the interrupted run saved them)."""
    iterator = iter(batches)
    for _ in range(skip):
        if next(iterator, None) is None:
            return
    if rng is not None:
        restore_rng(rng)
    for index, batch in enumerate(iterator, start=skip):
        yield index, batch


# ---------------------------------------------------------------- interrupts


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps.

    A KeyboardInterrupt raised at an arbitrary point could land inside
    ``optimizer.step()`` and leave half-updated weights to be checkpointed; a
    flag read between steps cannot. A second signal interrupts at once.
    Handlers can only be installed from the main thread; elsewhere signals keep
    their default behaviour and the last checkpoint is what survives.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.flag = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.flag:
            raise KeyboardInterrupt
        log.warning("signal %d: finishing the current step, then writing a checkpoint", signum)
        self.flag = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self, accelerator: Accelerator) -> bool:
        """True on every process if any process got a signal (one all-reduce under DDP)."""
        if accelerator.num_processes == 1:
            return self.flag
        if self.flag:
            accelerator.set_trigger()
        return accelerator.check_trigger()


# ---------------------------------------------------------------- the loop


def run_epochs(accelerator: Accelerator, epochs: Iterable[int],
               train_epoch: Callable[[int, StopRequest], dict[str, float] | None], *, last_dir: Path,
               on_epoch_end: Callable[[dict[str, float]], None] | None = None) -> None:
    """The epoch loop of every trainer. ``train_epoch(epoch, stop)`` trains one epoch, writes
    its checkpoints and returns the epoch's record, or None when the run is over (early
    stopping); on a stop requested inside the epoch it writes ``last`` and raises
    TrainingInterrupted itself. ``on_epoch_end`` gets the record plus ``epoch_seconds`` on the
    main process (wall clock, for MLflow and logs; never in a versioned history)."""
    with StopRequest() as stop:
        for epoch in epochs:
            started = time.perf_counter()
            record = train_epoch(epoch, stop)
            if record is None:
                break
            seconds = time.perf_counter() - started
            shown = ", ".join(f"{key} {record[key]:.4g}" for key in LOGGED if key in record)
            log.info("epoch %d: %s (%.1f s)", epoch, shown, seconds)
            if on_epoch_end is not None and accelerator.is_main_process:
                on_epoch_end({**record, "epoch_seconds": seconds})
            if stop.requested(accelerator):
                raise TrainingInterrupted(f"interrupted after epoch {epoch}; checkpoint in {last_dir}")


# ---------------------------------------------------------------- checkpoints


class RunCheckpoints:
    """The checkpoints of one run under ``directory``: ``last`` (resume), ``best`` and ``final`` (heads).

    ``modules`` and ``states`` are the raw (unwrapped) modules and the
    optimizers/schedulers whose ``state_dict`` a resume needs: a trainer's model object
    (``CycleGANModel``, ``UNetModel``) hands over its ``networks`` and ``training_states``.
    """

    def __init__(self, directory: str | Path, accelerator: Accelerator,
                 modules: Mapping[str, torch.nn.Module], states: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.accelerator = accelerator
        self.modules = dict(modules)
        self.states = dict(states)

    @property
    def last_dir(self) -> Path:
        return self.directory / LAST

    def exists(self) -> bool:
        return has_checkpoint(self.last_dir)

    def peek_extra(self) -> dict[str, Any]:
        """The saved ``extra`` without loading any weights (e.g. to compare configs first)."""
        found = resolve_checkpoint(self.last_dir)
        if found is None:
            return {}
        return torch.load(found / STATE_FILE, map_location="cpu", weights_only=True)["extra"]

    def load(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Restore weights, optimizer/scheduler/scaler states; return ``{"epoch", "step", "extra"}``.

        ``extra[RNG_KEY]`` holds the RNG states to hand to :func:`resume_batches`
        (only on the main process, see the module docstring).
        """
        saved = load_checkpoint(self.last_dir, self.modules, self.states, map_location)
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and SCALER_KEY in saved["extra"]:
            scaler.load_state_dict(saved["extra"][SCALER_KEY])
        if not self.accelerator.is_main_process:
            saved["extra"].pop(RNG_KEY, None)
        return saved

    def save_last(self, *, epoch: int, step: int, extra: Mapping[str, Any]) -> None:
        """Write ``last`` on the main process (atomically) and wait for every process.

        ``epoch``: epochs completed. The RNG states are captured here, so call
        it right after the last step it covers.
        """
        if self.accelerator.is_main_process:
            full = {**extra, RNG_KEY: capture_rng()}
            scaler = getattr(self.accelerator, "scaler", None)
            if scaler is not None:
                full[SCALER_KEY] = scaler.state_dict()
            save_checkpoint(self.last_dir, self.modules, self.states, epoch=epoch, step=step, extra=full)
        self.accelerator.wait_for_everyone()

    def write_head(self, which: str, model: torch.nn.Module, *, name: str,
                   training: dict[str, Any] | None = None) -> Path:
        """Write ``<directory>/<which>`` as a loadable head (main process only)."""
        path = self.directory / which
        if self.accelerator.is_main_process:
            write_head_folder(path, self.accelerator.unwrap_model(model), name=name, training=training)
        return path
