"""CycleGAN's constant-then-linear learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from facerefine.train.schedules import linear_decay_factor, linear_decay_scheduler


def test_constant_phase() -> None:
    assert [linear_decay_factor(e, 100, 100) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]


def test_decay_point_and_end() -> None:
    # Reference lambda_rule: 1 - max(0, epoch + 1 - n_constant) / (n_decay + 1).
    assert linear_decay_factor(100, 100, 100) == pytest.approx(1 - 1 / 101)
    assert linear_decay_factor(150, 100, 100) == pytest.approx(1 - 51 / 101)
    assert linear_decay_factor(199, 100, 100) == pytest.approx(1 / 101)  # last trained epoch
    assert linear_decay_factor(200, 100, 100) == 0.0  # first epoch past the end
    assert linear_decay_factor(500, 100, 100) == 0.0  # clamped


def test_monotone_and_edge_cases() -> None:
    values = [linear_decay_factor(e, 3, 4) for e in range(10)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert [linear_decay_factor(e, 2, 0) for e in range(3)] == [1.0, 1.0, 0.0]  # no decay phase
    assert linear_decay_factor(0, 0, 3) == pytest.approx(0.75)  # decay from the first epoch
    with pytest.raises(ValueError):
        linear_decay_factor(-1, 1, 1)


def test_scheduler_follows_the_function_and_restores() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=2e-4)
    sched = linear_decay_scheduler(opt, n_constant=2, n_decay=3)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2e-4 * linear_decay_factor(e, 2, 3) for e in range(5)])

    opt2 = torch.optim.Adam([param], lr=2e-4)
    sched2 = linear_decay_scheduler(opt2, n_constant=2, n_decay=3)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 5
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
