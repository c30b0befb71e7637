"""Process topology for ``accelerate launch`` / ``torchrun`` (or a plain run).

Generation stages need only rank, world size, a device and a barrier;
``accelerate.PartialState`` reads the launcher's environment and sets up the
process group (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass
class Topology:
    rank: int
    world_size: int
    device: torch.device
    _state: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self._state is not None and self.world_size > 1:
            self._state.wait_for_everyone()


class _Lazy:
    @cached_property
    def topology(self) -> Topology:
        from accelerate import PartialState

        # cpu=True is what lets accelerate form a gloo group of CPU processes.
        state = PartialState(cpu=not torch.cuda.is_available())
        return Topology(state.process_index, state.num_processes, state.device, state)


_lazy = _Lazy()


def topology() -> Topology:
    """The current process's place in the launch (one per process, created on first use)."""
    return _lazy.topology
