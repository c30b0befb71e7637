"""The headline numbers of a run in one flat file, ``metrics/summary.json``.

A pull-request review leads with these (``facerefine review``), so they are few and
flat: ``{"fid_diff.unet": 0.01, "saving_vs_dev.esa": 0.82, ...}``. Every function here
is pure: it takes the loaded metric dicts (``None`` for a file that does not exist) and
returns numbers or ``None``, never raises on a missing or partial input.

Which heads get keys comes from the current params (``unet``, the CycleGAN grid's
variants, the LoRA baseline), never from the metric files: a row left over in an old
``quality.json`` or ``latency.json`` for a head that is no longer built is dropped, and
a head that is built but not yet measured shows up as ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Number = float | int | None

UNET = "unet"
LORA = "lora"     # the paper's LoRA baseline: evaluated for quality, not timed as a head
SCHNELL = "schnell"


class SummaryInputError(ValueError):
    """A metric file exists but is not a JSON object."""


def load_metrics(path: str | Path) -> dict[str, Any] | None:
    """A metric file's content, or ``None`` when it does not exist (a stage not run yet)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SummaryInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SummaryInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]…`` or ``None`` where any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> Number:
    """A finite int/float, else ``None`` (bools, strings and NaN are not headline numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def quality_heads(variants: Sequence[str]) -> list[str]:
    """Rows of Table 4 that the current pipeline produces, in report order."""
    return [UNET, *variants, LORA]


def timed_heads(variants: Sequence[str]) -> list[str]:
    """Heads the benchmark times as schnell + head (the LoRA is not a separate head)."""
    return [UNET, *variants]


def quality_numbers(quality: Mapping[str, Any] | None, heads: Iterable[str]) -> dict[str, Number]:
    """FID_diff and identity similarity to the schnell image, per head (paper §5.4); both are in
    ``metrics/quality.json``'s headline (``evaluation.HEADLINE_COLUMNS``)."""
    out: dict[str, Number] = {}
    for head in heads:
        out[f"fid_diff.{head}"] = _number(_get(quality, head, "fid_diff"))
    for head in heads:
        out[f"identity_cos_schnell.{head}"] = _number(_get(quality, head, "identity_cos_schnell"))
    return out


def latency_numbers(latency: Mapping[str, Any] | None, heads: Sequence[str]) -> dict[str, Number]:
    """Saving of schnell + head vs dev per head, and of schnell alone, averaged over the
    benchmark's resolutions as the paper quotes it (``metrics/latency.json``'s headline),
    and the dev step count that saving is against."""
    mean = _get(latency, "saving_vs_dev", "mean")
    out: dict[str, Number] = {"latency_dev_steps": _number(_get(latency, "dev_steps"))}
    for head in heads:
        out[f"saving_vs_dev.{head}"] = _number(_get(mean, head))
    out[f"saving_vs_dev.{SCHNELL}"] = _number(_get(mean, SCHNELL))
    return out


def cycle_numbers(cyclegan: Mapping[str, Any] | None, variants: Iterable[str]) -> dict[str, Number]:
    """Best generator loss of the chosen cell per variant (select_cyclegan's ``chosen``)."""
    return {f"cycle_best_loss_G.{v}": _number(_get(cyclegan, "chosen", v, "best_loss_G")) for v in variants}


def unet_numbers(unet: Mapping[str, Any] | None) -> dict[str, Number]:
    """train_unet writes the validation loss of its best epoch as ``val_loss``."""
    return {"unet_best_val_loss": _number(_get(unet, "val_loss"))}


def build_summary(*, quality: Mapping[str, Any] | None, latency: Mapping[str, Any] | None,
                  cyclegan: Mapping[str, Any] | None, unet: Mapping[str, Any] | None,
                  variants: Sequence[str]) -> dict[str, Number]:
    """The flat headline dict; keys depend only on ``variants`` (the CycleGAN grid's)."""
    return {
        **quality_numbers(quality, quality_heads(variants)),
        **latency_numbers(latency, timed_heads(variants)),
        **cycle_numbers(cyclegan, variants),
        **unet_numbers(unet),
    }


# Human labels for the review's headline table, by key prefix.
LABELS = {
    "fid_diff": "FID_diff (FID_schnell − FID_dev, higher: closer to dev)",
    "identity_cos_schnell": "identity cosine to the schnell image",
    "latency_dev_steps": "dev steps the savings below are against",
    "saving_vs_dev": "time saved vs dev (mean over resolutions)",
    "cycle_best_loss_G": "best cycle generator loss L",
    "unet_best_val_loss": "U-Net best validation loss",
}


def label(key: str) -> str:
    """``fid_diff.esa`` -> ``FID_diff (…), esa``."""
    prefix, _, head = key.partition(".")
    text = LABELS.get(prefix, prefix)
    if prefix == "saving_vs_dev" and head:
        head = "schnell alone" if head == SCHNELL else f"schnell + {head}"
    return f"{text}: {head}" if head else text
