"""Names of the CycleGAN grid cells, shared by the training and selection stages.

dvc.yaml builds the same names with ``${item.variant}-l${item.lambda_cyc}-lr${item.lr}``;
Python's ``str`` of a float is what DVC's interpolation writes, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from facerefine.config import CycleGrid


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


@dataclass(frozen=True)
class Cell:
    variant: str
    lambda_cyc: float
    lr: float

    @property
    def name(self) -> str:
        return f"{self.variant}-l{_num(self.lambda_cyc)}-lr{_num(self.lr)}"


def grid_cells(grid: CycleGrid) -> list[Cell]:
    return [Cell(v, float(l), float(r)) for v, l, r in product(grid.variant, grid.lambda_cyc, grid.lr)]
