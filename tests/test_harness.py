"""The training harness (train/harness.py): seeding, RNG capture, batch skipping,
the interrupt and resume contract, and the head format, through the CycleGAN
trainer (the supervised trainer's own resume tests are in test_supervised_resume.py)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, TensorDataset

from facerefine.heads import read_head_folder
from facerefine.stagekit import run_stage
from facerefine.train.cycle import CycleConfig, train_cycle
from facerefine.train.harness import (TrainingInterrupted, capture_rng, epoch_seed, resume_batches,
                                      restore_rng)
from facerefine.train.image_pool import ImagePool
from facerefine.train.reporting import write_history

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

STEPS = 3  # batches per epoch
CFG = CycleConfig(ngf=4, n_blocks=1, ndf=4, lr=1e-3, n_epochs=1, n_epochs_decay=1, pool_size=3, seed=5,
                  progress=False)


# ---------------------------------------------------------------- pure pieces


def test_epoch_seed_is_pure_and_distinct() -> None:
    assert epoch_seed(7, 3, 1) == epoch_seed(7, 3, 1)
    seeds = {epoch_seed(s, e, r) for s in range(4) for e in range(50) for r in range(8)}
    assert len(seeds) == 4 * 50 * 8  # no collisions, unlike seed + epoch
    assert all(0 <= s < 2**32 for s in seeds)
    with pytest.raises(ValueError):
        epoch_seed(0, -1)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    torch.save(capture_rng(), tmp_path / "rng.pt")
    want = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])


def test_resume_batches_skips_then_restores_the_rng() -> None:
    torch.manual_seed(0)
    state = capture_rng()
    want = torch.rand(1)
    torch.manual_seed(123)  # anything: the skip must restore the saved state
    out = []
    for index, batch in resume_batches(iter(range(5)), 2, state):
        out.append((index, batch, torch.rand(1) if index == 2 else None))
    assert [(i, b) for i, b, _ in out] == [(2, 2), (3, 3), (4, 4)]
    assert torch.equal(out[0][2], want)


def test_image_pool_state_round_trips() -> None:
    pool = ImagePool(2, seed=0)
    for _ in range(4):
        pool.query(torch.rand(2, 3, 4, 4))
    copy = ImagePool(2)
    copy.load_state_dict(pool.state_dict())
    batch = torch.rand(2, 3, 4, 4)
    assert torch.equal(pool.query(batch), copy.query(batch))
    with pytest.raises(ValueError, match="size"):
        ImagePool(3).load_state_dict(pool.state_dict())


def test_history_refuses_wall_clock_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seconds"):
        write_history(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5, "seconds": 3.2}])
    write_history(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5}])
    assert (tmp_path / "h.csv").read_text() == "epoch,loss\n1,0.5\n"


# ---------------------------------------------------------------- the contract, end to end


class SignalAt(Dataset):
    """Sends this process SIGINT when item ``at`` is read (Ctrl-C in the middle of an epoch)."""

    def __init__(self, images: torch.Tensor, at: int) -> None:
        self.images, self.at, self.reads = images, at, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        if self.reads == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        self.reads += 1
        return (self.images[i],)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.rand(2 * STEPS, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))


def loaders(b_set: Dataset | None = None) -> tuple[DataLoader, DataLoader]:
    a, b = data()
    return (DataLoader(TensorDataset(a), batch_size=2, shuffle=True),
            DataLoader(b_set or TensorDataset(b), batch_size=2, shuffle=True))


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name in ("G_AB", "G_BA", "D_A", "D_B")
            for k, v in load_file(directory / "last" / f"{name}.safetensors").items()}


def test_sigint_mid_epoch_checkpoints_exits_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = train_cycle(CFG, *loaders(), tmp_path / "straight")

    # Items 0-5 are epoch 1; item 8 is read with epoch 2's second batch (accelerate's
    # loaders fetch a batch ahead, so the stop lands after the first or second step).
    with pytest.raises(TrainingInterrupted):
        train_cycle(CFG, *loaders(SignalAt(data()[1], at=8)), tmp_path / "cut")
    state = torch.load(tmp_path / "cut" / "last" / "state.pt", weights_only=True)
    done = state["extra"]["batches_done"]
    assert state["epoch"] == 1 and 0 < done < STEPS and state["step"] == STEPS + done
    assert len(state["extra"]["pools"][0]["images"]) == CFG.pool_size  # the pools were saved, full

    resumed = train_cycle(CFG, *loaders(), tmp_path / "cut")
    assert resumed.start_epoch == 1
    assert resumed.history == straight.history  # the interrupted epoch's mean included its first part
    ref, got = weights(tmp_path / "straight"), weights(tmp_path / "cut")
    assert ref.keys() == got.keys()
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=0, msg=key)
    # best and final are heads that load as `facerefine enhance` loads them
    final = read_head_folder(tmp_path / "cut" / "final").model.state_dict()
    for key, value in final.items():
        torch.testing.assert_close(value, ref[f"G_AB.{key}"], rtol=0, atol=0)
    assert read_head_folder(tmp_path / "cut" / "best").config["training"]["record"]["epoch"] == resumed.best_epoch


def test_an_interrupt_exits_the_stage_non_zero() -> None:
    def stage() -> None:
        raise TrainingInterrupted("interrupted in epoch 2; checkpoint in runs/x/last")

    with pytest.raises(SystemExit) as exit_info:
        run_stage(stage)
    assert exit_info.value.code == 130
