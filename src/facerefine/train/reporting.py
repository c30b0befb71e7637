"""Outputs every training stage writes: history tables for DVC plots and sample grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from facerefine.data.datasets import to_image
from facerefine.io import write_text
from facerefine.viz import image_grid, save_png


def write_history(path: str | Path, history: Sequence[dict]) -> None:
    """Per-epoch records as CSV (what ``dvc plots show`` renders)."""
    write_text(path, pd.DataFrame(list(history)).to_csv(index=False))


@torch.inference_mode()
def sample_grid(path: str | Path, columns: dict[str, Sequence[torch.Tensor]], cell: int = 128) -> None:
    """One row per sample, one labelled column per image kind (e.g. input | output | target)."""
    names = list(columns)
    rows = [[to_image(columns[n][i]) for n in names] for i in range(len(columns[names[0]]))]
    save_png(image_grid(rows, names, cell=cell), path)
