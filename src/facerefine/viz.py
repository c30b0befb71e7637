"""Figures shared by stages: image grids with labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from facerefine.io import save_figure, temp_name


def image_grid(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str] = (), cell: int = 128,
               pad: int = 4) -> Image.Image:
    """Rows of equally many images, each scaled to ``cell``², with optional column labels."""
    n_cols = max(len(r) for r in rows)
    top = 16 if labels else 0
    grid = Image.new("RGB", (n_cols * (cell + pad) + pad, top + len(rows) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, label in enumerate(labels):
        draw.text((pad + c * (cell + pad) + 2, 2), label, fill="black")
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = img.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST if img.width < cell
                                             else Image.Resampling.BICUBIC)
            grid.paste(tile, (pad + c * (cell + pad), top + pad + r * (cell + pad)))
    return grid


def save_png(image: Image.Image, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    image.save(tmp, format="PNG")
    tmp.replace(path)


def line_plot(series: dict[str, tuple[list, list]], path: str | Path, *, xlabel: str, ylabel: str,
              title: str, log_y: bool = False) -> None:
    """One line per named (x, y) series, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if log_y:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
