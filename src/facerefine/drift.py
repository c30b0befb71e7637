"""Drift or change? A regenerated output against its committed version: exact first, then within
the tolerances below, the one place they are stated.

Under the pinned numerics (facerefine.numerics) an x86-64 CPU with AVX2 reproduces the committed
outputs bit for bit. Elsewhere (a GPU, Arm, ``FACEREFINE_NUMERICS=native``, other package versions
than constraints.txt) last-bit differences grow through training and sampling; those runs are
"reproduced within tolerance" when every difference is below:

* numbers in text files (metrics and reports JSON, markdown tables, CSV, model cards):
  relative difference ``|a - b| / max(|a|, |b|)`` at most :data:`REL_TOL` (or an absolute one
  at most :data:`ABS_TOL`, for numbers near zero); integers (counts) and all non-numeric text
  must be equal. The loosest observed case: smoke FID_diff (-31.91 vs -31.39, 1.6 %), a Fréchet
  distance over a few stand-in images, is within; a real change of code or params moves the
  numbers far more;
* PNG images: same size and mode, and PSNR at least :data:`PSNR_MIN_DB` (the largest level
  difference is reported too);
* parquet tables: same columns, dtypes and rows; numeric columns as numbers in text, the others equal.

Anything else (a file added or removed, another binary format, a changed hash) is a change.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

REL_TOL = 0.02
ABS_TOL = 1e-6
PSNR_MIN_DB = 35.0

# A number in text: optional sign (ASCII or the minus sign U+2212), digits, optional fraction and exponent.
_NUMBER = re.compile(r"([-+\u2212]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


@dataclass(frozen=True)
class Drift:
    """How a regenerated file differs from its committed version (``None`` from :func:`compare`
    when the bytes are equal)."""

    within: bool   # within the tolerances: a machine difference, not a change
    largest: str   # the largest difference found, for the report

    def describe(self) -> str:
        if self.within:
            return f"reproduced within tolerance (largest drift: {self.largest})"
        return f"changed ({self.largest})"


def relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def numbers_close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= ABS_TOL or relative(a, b) <= REL_TOL


def _number(token: str) -> float:
    return float(token.replace("\u2212", "-"))


def _is_integer(token: str) -> bool:
    return not any(c in token for c in ".eE")


def compare_text(old: str, new: str) -> Drift:
    """Numbers in two texts whose other characters are equal."""
    old_parts, new_parts = _NUMBER.split(old), _NUMBER.split(new)
    if len(old_parts) != len(new_parts):
        return Drift(False, "the text differs beyond its numbers")
    worst, where = 0.0, ""
    for i, (o, n) in enumerate(zip(old_parts, new_parts)):
        if o == n:
            continue
        if i % 2 == 0:  # text between numbers (split puts the captured numbers at odd indices)
            return Drift(False, f"text differs: {o.strip()[:40]!r} -> {n.strip()[:40]!r}")
        if _is_integer(o) and _is_integer(n):
            return Drift(False, f"integer {o} -> {n}")
        a, b = _number(o), _number(n)
        if not numbers_close(a, b):
            return Drift(False, f"{o} -> {n}, relative {relative(a, b):.2g} > {REL_TOL:g}")
        if relative(a, b) >= worst:
            worst, where = relative(a, b), f"{o} -> {n}"
    return Drift(True, f"relative {worst:.2g} ({where})")


def compare_png(old: bytes, new: bytes) -> Drift:
    import numpy as np
    from PIL import Image

    try:
        a, b = Image.open(io.BytesIO(old)), Image.open(io.BytesIO(new))
        a.load(), b.load()
    except OSError as err:
        return Drift(False, f"unreadable PNG ({err})")
    if a.size != b.size or a.mode != b.mode:
        return Drift(False, f"{a.size[0]}x{a.size[1]} {a.mode} -> {b.size[0]}x{b.size[1]} {b.mode}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    peak = 65535.0 if a.mode.startswith("I") else 255.0
    levels = float(np.abs(x - y).max())
    mse = float(np.mean((x - y) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
    found = f"PSNR {psnr:.1f} dB, largest level difference {levels:g}"
    return Drift(psnr >= PSNR_MIN_DB, found if psnr >= PSNR_MIN_DB else f"{found} < {PSNR_MIN_DB:g} dB")


def compare_parquet(old: bytes, new: bytes) -> Drift:
    import numpy as np
    import pandas as pd

    try:
        a, b = pd.read_parquet(io.BytesIO(old)), pd.read_parquet(io.BytesIO(new))
    except Exception as err:  # pyarrow raises several types for a broken file
        return Drift(False, f"unreadable parquet ({type(err).__name__})")
    if list(a.columns) != list(b.columns) or list(a.dtypes) != list(b.dtypes) or len(a) != len(b):
        return Drift(False, "columns, dtypes or row count differ")
    worst, where = 0.0, ""
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if a[column].dtype.kind in "fc":
            x, y = x.astype(np.float64), y.astype(np.float64)
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            diff = np.abs(x - y)
            rel = np.where(same, 0.0, diff / np.maximum(np.abs(x), np.abs(y)))
            bad = ~same & (diff > ABS_TOL) & ~(rel <= REL_TOL)
            if bad.any():
                i = int(np.argmax(bad))
                return Drift(False, f"{column}[{i}]: {x[i]:.6g} -> {y[i]:.6g}")
            if rel.size and float(rel.max()) >= worst:
                worst, where = float(rel.max()), column
        elif not a[column].equals(b[column]):
            return Drift(False, f"column {column} differs")
    return Drift(True, f"relative {worst:.2g}" + (f" (column {where})" if where else ""))


def compare(path: str, old: bytes, new: bytes) -> Drift | None:
    """None if the bytes are equal; else whether the difference is within the tolerances."""
    if old == new:
        return None
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".png":
        return compare_png(old, new)
    if suffix == ".parquet":
        return compare_parquet(old, new)
    try:
        return compare_text(old.decode("utf-8"), new.decode("utf-8"))
    except UnicodeDecodeError:
        return Drift(False, f"binary {suffix or 'file'} differs")
