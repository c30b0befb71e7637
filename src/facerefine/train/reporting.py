"""Outputs every training stage writes: history tables for DVC plots and sample grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from facerefine.data.datasets import to_image
from facerefine.io import write_text
from facerefine.viz import image_grid, save_png


def clock_columns(history: Sequence[dict]) -> list[str]:
    """Columns that hold wall-clock durations (``seconds``, ``epoch_seconds``, ...)."""
    return sorted({key for record in history for key in record if key == "seconds" or key.endswith("_seconds")})


def write_history(path: str | Path, history: Sequence[dict]) -> None:
    """Per-epoch records as CSV (what ``dvc plots show`` renders).

    The file is a versioned DVC output, so a repro must reproduce it byte for
    byte: wall-clock durations are refused here; they go to MLflow and the log.
    """
    clock = clock_columns(history)
    if clock:
        raise ValueError(f"{path}: history records carry wall-clock columns {clock}; "
                         "log durations to MLflow, not to versioned outputs")
    write_text(path, pd.DataFrame(list(history)).to_csv(index=False))


@torch.inference_mode()
def sample_grid(path: str | Path, columns: dict[str, Sequence[torch.Tensor]], cell: int = 128) -> None:
    """One row per sample, one labelled column per image kind (e.g. input | output | target)."""
    names = list(columns)
    rows = [[to_image(columns[n][i]) for n in names] for i in range(len(columns[names[0]]))]
    save_png(image_grid(rows, names, cell=cell), path)
