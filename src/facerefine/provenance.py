"""Table 4 provenance: which configuration produced each row, and whether it is the paper's.

Every head folder records its training configuration (``config.json``: ``training`` and
``data``). A row gets the paper's Table 4 values beside it only when it matches the paper's
final run (:mod:`facerefine.paper_final`); otherwise the report prints them apart with the
mismatches listed, as Tables 2–3 do (``train.selection.paper_mismatches``).

A head trained at one size and evaluated at another is *flagged*, not resized: the paper
trains and evaluates its final heads at 512², so it never resizes, and a fully convolutional
head runs at any multiple of its stride.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from facerefine.config import STANDIN_SPECS
from facerefine.paper_final import UNET_FINAL
from facerefine.train.selection import GridConfig, paper_mismatches

CLIP_IQA_LABELS = {"original": "CLIP-IQA as published (CLIP ResNet-50, full resolution; piq / torchmetrics' default)",
                   "vit-b16": "CLIP-IQA with CLIP ViT-B/16 at 224² (not the published metric's scale)"}


@dataclass(frozen=True)
class RowProvenance:
    """How one Table 4 row was made: a one-line description and how it differs from the paper."""

    description: str
    mismatches: list[str] = field(default_factory=list)


def _g(value) -> str:
    return "?" if value is None else f"{value:g}"


def _pairs(data: Mapping) -> str:
    used, total = data.get("train_pairs"), data.get("dataset_pairs")
    return f" ({used} of {total} pairs)" if used is not None and total is not None else ""


def describe_head(name: str, config: Mapping) -> str:
    """One line: the options that trained head ``name`` (its config.json)."""
    t, d = config.get("training", {}), config.get("data", {})
    fraction = t.get("data_fraction")
    frac = f"{fraction:.3g} of the dataset{_pairs(d)}" if fraction is not None else "data fraction not recorded"
    if name == "unet":
        return (f"U-Net, {t.get('upsample', 'nearest')} upsampling, {t.get('structure_loss', '?')} + LPIPS, "
                f"lr {_g(t.get('lr'))}, {t.get('image_size', '?')}², {frac}, up to {t.get('max_epochs', '?')} "
                f"epochs (early stopping, patience {t.get('patience', '?')})")
    esa = f", ESA `{t.get('esa_placement')}`" if t.get("variant") == "esa" else ""
    epochs = (f"{t['n_epochs'] + t['n_epochs_decay']} epochs ({t['n_epochs']} + {t['n_epochs_decay']} decay)"
              if "n_epochs" in t else "epochs not recorded")
    cell = f", cell `{t['selected_cell']}`" if "selected_cell" in t else ""
    return (f"{t.get('variant', name)}{esa}, λ_cyc {_g(t.get('lambda_cyc'))}, lr {_g(t.get('lr'))}, "
            f"λ_id {_g(t.get('lambda_identity', 0))}, {t.get('image_size', '?')}², {frac}, {epochs}{cell}")


def head_mismatches(name: str, config: Mapping, *, eval_size: int, data_models: str) -> list[str]:
    """How head ``name`` (its config.json) differs from the paper's final run, including being
    trained at another size than ``eval_size`` (flagged, not resized)."""
    t = config.get("training", {})
    out: list[str] = []
    size = t.get("image_size")
    if name == "unet":
        if data_models in STANDIN_SPECS:
            out.append(f"stand-in networks (`{data_models}`), not FLUX.1")
        if size != UNET_FINAL["image_size"]:
            out.append(f"trained at {size}² instead of {UNET_FINAL['image_size']}²")
        fraction = t.get("data_fraction")
        if fraction is None or abs(fraction - UNET_FINAL["data_fraction"]) > 1e-9:
            out.append(f"{fraction if fraction is None else f'{fraction:.3g}'} of the dataset instead of "
                       f"{UNET_FINAL['data_fraction']:g}")
        if t.get("max_epochs") != UNET_FINAL["max_epochs"]:
            out.append(f"up to {t.get('max_epochs')} epochs instead of {UNET_FINAL['max_epochs']}")
        if t.get("upsample", "nearest") != UNET_FINAL["upsample"]:
            out.append(f"`{t.get('upsample', 'nearest')}` upsampling instead of transposed convolutions "
                       "(the paper's likely choice)")
    else:
        if "n_epochs" not in t or t.get("data_fraction") is None:
            out.append("training configuration not recorded (epochs or data fraction)")
        else:
            grid = GridConfig(profile="", image_size=size, data_fraction=t["data_fraction"],
                              epochs=t["n_epochs"] + t["n_epochs_decay"],
                              lambda_identity=t.get("lambda_identity", 0.0),
                              esa_placement=t.get("esa_placement", "trunk"), data_models=data_models)
            out += paper_mismatches(grid, t.get("variant", name))
    if size is not None and size != eval_size:
        out.append(f"trained at {size}², applied to the {eval_size}² test images (flagged, not resized)")
    return out


def table4_provenance(heads: Mapping[str, Mapping], *, eval_size: int, data_models: str, clip_iqa: str,
                      lora: str) -> dict[str, RowProvenance]:
    """Per row (schnell, dev, lora and each head's config.json in ``heads``): description and
    mismatches against the paper's Table 4 configuration."""
    common: list[str] = []
    if data_models in STANDIN_SPECS:
        common.append(f"stand-in networks (`{data_models}`), not FLUX.1")
    clip = [] if clip_iqa == "original" else [f"CLIP-IQA recipe `{clip_iqa}` instead of the published one"]
    rows = {"schnell": RowProvenance(f"FLUX.1-schnell (`{data_models}`), {eval_size}²", common + clip),
            "dev": RowProvenance(f"FLUX.1-dev img2img of the schnell image, {eval_size}²", common + clip),
            "lora": RowProvenance(f"schnell + LoRA `{lora}`, {eval_size}²", common + clip)}
    for name, config in heads.items():
        rows[name] = RowProvenance(describe_head(name, config),
                                   head_mismatches(name, config, eval_size=eval_size, data_models=data_models) + clip)
    return rows
