"""Supervised trainer: checkpoints, resume after a stop or a signal, early stopping."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lpips
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from facerefine.heads import read_head_folder
from facerefine.models.resunet_cbam import ResUNetCBAM
from facerefine.train.supervised import HISTORY_KEYS, SupervisedConfig, train_supervised

EPOCHS = 3


class Killed(Exception):
    """Stands in for the process dying right after an epoch's checkpoint."""


class SignalAt(Dataset):
    """A paired dataset that sends the process SIGINT when item ``at`` is read (Ctrl-C mid-epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, at: int) -> None:
        self.x, self.y, self.at, self.reads = x, y, at, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reads == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        self.reads += 1
        return self.x[i], self.y[i]


@pytest.fixture(scope="module")
def lpips_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)


@pytest.fixture(scope="module")
def pairs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(12, 3, 32, 32, generator=gen) * 2 - 1
    x = (0.8 * y + 0.1).clamp(-1, 1)
    return {"x_train": x[:8], "y_train": y[:8], "x_val": x[8:], "y_val": y[8:]}


def make_model(seed: int = 0) -> ResUNetCBAM:
    torch.manual_seed(seed)
    return ResUNetCBAM(base_channels=4, depth=2)


def loaders(pairs, train_set: Dataset | None = None) -> tuple[DataLoader, DataLoader]:
    train_set = train_set or TensorDataset(pairs["x_train"], pairs["y_train"])
    # Shuffled, two batches per epoch: resuming must replay the same order.
    return (
        DataLoader(train_set, batch_size=4, shuffle=True),
        DataLoader(TensorDataset(pairs["x_val"], pairs["y_val"]), batch_size=4),
    )


def config(**overrides) -> SupervisedConfig:
    return SupervisedConfig(**{"lr": 1e-3, "max_epochs": EPOCHS, "cpu": True, "progress": False, **overrides})


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return read_head_folder(directory).model.state_dict() if (directory / "config.json").exists() else {}


def last_weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint_dir / "last" / "model.safetensors"))


def adam_steps(checkpoint_dir: Path) -> set[int]:
    state = torch.load(checkpoint_dir / "last" / "state.pt", weights_only=True)
    return {int(s["step"]) for s in state["optimizers"]["optimizer"]["state"].values()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lpips_net, pairs):
    directory = tmp_path_factory.mktemp("uninterrupted")
    result = train_supervised(make_model(), lpips_net, *loaders(pairs), config(), directory)
    return directory, result


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0, msg=key)


def test_uninterrupted_run_records_history_and_checkpoints(uninterrupted) -> None:
    directory, result = uninterrupted
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert all(set(r) == set(HISTORY_KEYS) for r in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert adam_steps(directory) == {2 * EPOCHS}
    best = min(result.history, key=lambda r: r["val_loss"])
    assert (result.best_epoch, result.best_val_loss) == (best["epoch"], best["val_loss"])
    assert (directory / "best" / "config.json").is_file()


def test_resume_after_a_kill_continues_and_matches(tmp_path, lpips_net, pairs, uninterrupted) -> None:
    reference_dir, reference = uninterrupted

    def kill_after_first_epoch(record: dict[str, float]) -> None:
        raise Killed

    with pytest.raises(Killed):
        train_supervised(
            make_model(), lpips_net, *loaders(pairs), config(), tmp_path, on_epoch_end=kill_after_first_epoch
        )
    assert adam_steps(tmp_path) == {2}  # one epoch of two batches was saved

    seen: list[int] = []
    # A differently initialised model: everything must come from the checkpoint.
    result = train_supervised(
        make_model(seed=1),
        lpips_net,
        *loaders(pairs),
        config(),
        tmp_path,
        on_epoch_end=lambda record: seen.append(record["epoch"]),
    )
    assert seen == [2, 3]
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[0] == reference.history[0]  # epoch 1 record kept from before the kill
    # Adam's step count continued (a fresh optimizer would be at 4) and the weights
    # equal the uninterrupted run's, which needs the restored moments too.
    assert adam_steps(tmp_path) == {2 * EPOCHS}
    assert_same_weights(last_weights(tmp_path), last_weights(reference_dir))
    assert result.history == reference.history


def test_sigint_mid_epoch_saves_and_resumes_exactly(tmp_path, lpips_net, pairs, uninterrupted) -> None:
    reference_dir, reference = uninterrupted
    # Item 12 is read while epoch 2's first batch is loaded (epoch 1 reads items 0-7).
    train_set = SignalAt(pairs["x_train"], pairs["y_train"], at=12)
    with pytest.raises(KeyboardInterrupt):
        train_supervised(make_model(), lpips_net, *loaders(pairs, train_set), config(), tmp_path)
    state = torch.load(tmp_path / "last" / "state.pt", weights_only=True)
    assert (state["epoch"], state["extra"]["batches_done"]) == (1, 1)

    result = train_supervised(make_model(seed=1), lpips_net, *loaders(pairs), config(), tmp_path)
    assert_same_weights(last_weights(tmp_path), last_weights(reference_dir))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    for got, want in zip(result.history, reference.history):
        assert got == pytest.approx(want, rel=1e-9)


def test_finished_run_is_not_trained_again(lpips_net, pairs, uninterrupted) -> None:
    directory, reference = uninterrupted
    before = last_weights(directory)
    result = train_supervised(make_model(seed=1), lpips_net, *loaders(pairs), config(), directory)
    assert result.history == reference.history
    assert_same_weights(last_weights(directory), before)


def test_early_stopping_and_a_checkpoint_cut_between_renames(tmp_path, lpips_net, pairs) -> None:
    # lr so small that validation cannot improve after epoch 1: stop after 1 + patience epochs.
    cfg = config(lr=1e-12, max_epochs=5, patience=2)
    result = train_supervised(make_model(), lpips_net, *loaders(pairs), cfg, tmp_path)
    assert result.stopped_early
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1
    assert weights(tmp_path / "best")  # the best head is a loadable head directory

    # A save killed between "last -> last.old" and "last.tmp -> last" leaves only last.old.
    os.replace(tmp_path / "last", tmp_path / "last.old")
    again = train_supervised(make_model(seed=1), lpips_net, *loaders(pairs), cfg, tmp_path)
    assert again.history == result.history and again.stopped_early
