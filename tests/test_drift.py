"""facerefine.drift: exact, within tolerance, or a change."""

import io

import numpy as np
import pandas as pd
from PIL import Image

from facerefine import drift


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_equal_bytes_are_no_drift():
    assert drift.compare("metrics/x.json", b'{"a": 1}', b'{"a": 1}') is None


def test_numbers_in_text_within_the_relative_tolerance():
    found = drift.compare("reports/quality.md", "| unet | \u221231.91 | 0.0297057 |".encode(),
                          "| unet | \u221231.39 | 0.0297055 |".encode())
    assert found.within and "31.91 -> \u221231.39" in found.largest and found.largest.startswith("relative 0.016")
    assert found.describe().startswith("reproduced within tolerance (largest drift: relative 0.016")


def test_text_beyond_tolerance_other_words_or_counts_are_changes():
    assert not drift.compare_text('{"fid": 10.0}', '{"fid": 10.5}').within
    assert not drift.compare_text('{"faces": 12}', '{"faces": 13}').within  # integers: exact
    assert not drift.compare_text("best: esa", "best: unet").within
    assert not drift.compare_text("md5: 3fa9c1", "md5: 3fa9c2").within  # a hash is no number
    assert drift.compare_text("loss 1e-09", "loss 1.2e-09").within  # near zero: absolute tolerance
    assert drift.compare_text("0.0", "-0.0").within


def test_png_psnr_and_largest_level():
    base = (np.arange(32 * 32 * 3).reshape(32, 32, 3) * 7) % 256
    one_level = np.clip(base + (base % 5 == 0), 0, 255)
    found = drift.compare("reports/a.png", png(base), png(one_level))
    assert found.within and "largest level difference 1" in found.largest
    noise = (base + 128) % 256
    assert not drift.compare("reports/a.png", png(base), png(noise)).within
    assert not drift.compare("reports/a.png", png(base), png(base[:16])).within  # size differs


def test_parquet_numeric_columns_within_tolerance_others_exact():
    frame = pd.DataFrame({"key": ["a", "b"], "p": [0.25, 0.5], "n": [1, 2]})
    assert drift.compare("x.parquet", parquet(frame), parquet(frame.assign(p=[0.2500001, 0.5]))).within
    assert not drift.compare("x.parquet", parquet(frame), parquet(frame.assign(p=[0.3, 0.5]))).within
    assert not drift.compare("x.parquet", parquet(frame), parquet(frame.assign(key=["a", "c"]))).within
    assert not drift.compare("x.parquet", parquet(frame), parquet(frame.assign(n=[1, 3]))).within


def test_other_binary_files_are_changes():
    assert not drift.compare("models/x.safetensors", b"\xff\x00\x01", b"\xff\x00\x02").within
