"""Checkpoint / resume behaviour of the CycleGAN trainer (tiny nets, 32x32)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

from facerefine.heads import read_head_folder
from facerefine.train.cycle import CycleConfig, train_cycle
from facerefine.train.schedules import linear_decay_factor

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

STEPS_PER_EPOCH = 3
# A pool smaller than an epoch's fakes, so that it is full and swapping across
# an epoch boundary: its contents and RNG must survive a resume.
CFG = CycleConfig(ngf=4, n_blocks=1, ndf=4, lr=1e-3, n_epochs=1, n_epochs_decay=2, pool_size=3, seed=3, progress=False)


def loaders() -> tuple[DataLoader, DataLoader, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2 * STEPS_PER_EPOCH, 3, 32, 32, generator=g) * 2 - 1
    b = torch.rand(2 * STEPS_PER_EPOCH, 3, 32, 32, generator=g) * 2 - 1
    # No per-loader generator: the shuffle then comes from the global RNG,
    # which the trainer reseeds every epoch, so the order survives a resume.
    la = DataLoader(TensorDataset(a), batch_size=2, shuffle=True)
    lb = DataLoader(TensorDataset(b), batch_size=2, shuffle=True)
    return la, lb, [a[:2]]


def state(directory: Path) -> dict:
    return torch.load(directory / "last" / "state.pt", weights_only=True)


def stop_after_first_epoch(record: dict) -> None:
    if record["epoch"] == 1:
        raise KeyboardInterrupt


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    la, lb, val = loaders()
    straight = train_cycle(CFG, la, lb, tmp_path / "straight", val_a=val)

    la, lb, val = loaders()
    with pytest.raises(KeyboardInterrupt):
        train_cycle(CFG, la, lb, tmp_path / "killed", val_a=val, on_epoch_end=stop_after_first_epoch)
    saved = state(tmp_path / "killed")
    assert saved["epoch"] == 1 and saved["step"] == STEPS_PER_EPOCH
    assert saved["optimizers"]["sched_G"]["last_epoch"] == 1
    assert len(saved["extra"]["history"]) == 1

    la, lb, val = loaders()
    seen: list[int] = []
    resumed = train_cycle(CFG, la, lb, tmp_path / "killed", val_a=val, on_epoch_end=lambda r: seen.append(r["epoch"]))

    assert resumed.start_epoch == 1
    assert seen == [2, 3]  # continues at epoch 2
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]  # epoch 1's record kept
    assert resumed.initial_val == straight.initial_val
    # lr schedule continued: epoch 2 (0-based 1) trains at the decayed rate.
    assert resumed.history[1]["lr"] == pytest.approx(CFG.lr * linear_decay_factor(1, 1, 2))
    final = state(tmp_path / "killed")
    adam_steps = final["optimizers"]["opt_G"]["state"][0]["step"].item()
    assert adam_steps == 3 * STEPS_PER_EPOCH  # Adam moments restored, not restarted
    assert final["optimizers"]["sched_D"]["last_epoch"] == 3
    # Same data order, same seeds per epoch: resuming changes nothing.
    assert resumed.history == straight.history
    assert all("seconds" not in r and "epoch_seconds" not in r for r in resumed.history)  # versioned: no clock
    for name in ("G_AB", "G_BA", "D_A", "D_B"):
        w_straight = load_file(tmp_path / "straight" / "last" / f"{name}.safetensors")
        w_resumed = load_file(tmp_path / "killed" / "last" / f"{name}.safetensors")
        for key, value in w_straight.items():
            torch.testing.assert_close(w_resumed[key], value)


def test_a_bare_keyboard_interrupt_keeps_the_last_complete_checkpoint(tmp_path: Path) -> None:
    """Not a requested stop (e.g. a second Ctrl-C): nothing is written mid-step,
    ``last`` stays the epoch-1 checkpoint and the rerun resumes from it."""
    la, lb, _ = loaders()
    calls = 0

    def flaky_b():
        nonlocal calls
        for batch in lb:
            calls += 1
            if calls == STEPS_PER_EPOCH + 2:  # second batch of epoch 2
                raise KeyboardInterrupt
            yield batch

    class Restartable:
        def __iter__(self):
            return flaky_b()

    with pytest.raises(KeyboardInterrupt):
        train_cycle(CFG, la, Restartable(), tmp_path)
    saved = state(tmp_path)
    assert saved["epoch"] == 1 and saved["extra"]["batches_done"] == 0
    assert saved["step"] == STEPS_PER_EPOCH

    result = train_cycle(CFG, la, lb, tmp_path)
    assert result.start_epoch == 1
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_finished_run_is_not_retrained(tmp_path: Path) -> None:
    la, lb, _ = loaders()
    first = train_cycle(CFG, la, lb, tmp_path)
    again = train_cycle(CFG, la, lb, tmp_path)
    assert again.start_epoch == 3 and again.history == first.history
    for key, value in first.g_ab.state_dict().items():
        torch.testing.assert_close(again.g_ab.state_dict()[key], value)


def test_resume_refuses_a_different_architecture(tmp_path: Path) -> None:
    la, lb, _ = loaders()
    train_cycle(CycleConfig(**{**CFG.to_dict(), "n_epochs_decay": 0}), la, lb, tmp_path)
    other = CycleConfig(**{**CFG.to_dict(), "ngf": 8})
    with pytest.raises(ValueError, match="ngf"):
        train_cycle(other, la, lb, tmp_path)


def test_best_and_final_generators_are_heads(tmp_path: Path) -> None:
    la, lb, _ = loaders()
    result = train_cycle(CFG, la, lb, tmp_path)
    best = read_head_folder(tmp_path / "best")
    assert best.config["training"]["record"]["epoch"] == result.best_epoch
    assert best.model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert read_head_folder(tmp_path / "best_inverse").config["name"] == "cyclegan_inverse"
    final = read_head_folder(tmp_path / "final")
    for key, value in result.g_ab.state_dict().items():  # final = the last epoch's G
        torch.testing.assert_close(final.model.state_dict()[key], value)


def test_rejects_images_outside_minus_one_one(tmp_path: Path) -> None:
    a = torch.rand(4, 3, 32, 32) * 255
    loader = DataLoader(TensorDataset(a), batch_size=2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_cycle(CFG, loader, loader, tmp_path)
