"""Learning-rate schedules as pure functions of the epoch.

CycleGAN keeps the learning rate constant for ``n_constant`` epochs, then
decays it linearly for ``n_decay`` epochs. Convention (the reference code's
``lambda_rule`` with its default epoch_count=1), for the 0-based index of the
epoch about to be trained:

    factor(epoch) = 1 - max(0, epoch + 1 - n_constant) / (n_decay + 1)

so epochs 0 .. n_constant-1 train at the full rate, epoch n_constant at
1 - 1/(n_decay+1), and the last epoch (n_constant + n_decay - 1) at
1/(n_decay+1): the rate never reaches 0 during training. It is 0 at epoch
n_constant + n_decay, the first one that is not trained, and is clamped at 0
beyond.
"""

from __future__ import annotations

from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def linear_decay_factor(epoch: int, n_constant: int, n_decay: int) -> float:
    """Multiplier of the base learning rate for 0-based ``epoch``."""
    if epoch < 0 or n_constant < 0 or n_decay < 0:
        raise ValueError(f"need epoch, n_constant, n_decay >= 0, got {epoch}, {n_constant}, {n_decay}")
    return max(0.0, 1.0 - max(0, epoch + 1 - n_constant) / (n_decay + 1))


def linear_decay_scheduler(optimizer: torch.optim.Optimizer, n_constant: int, n_decay: int) -> LambdaLR:
    """LambdaLR applying ``linear_decay_factor``; call ``.step()`` once at the end of each epoch.

    The schedule itself is not in the state_dict (only the epoch counter is),
    so it is rebuilt from the config on resume.
    """
    return LambdaLR(optimizer, partial(linear_decay_factor, n_constant=n_constant, n_decay=n_decay))
