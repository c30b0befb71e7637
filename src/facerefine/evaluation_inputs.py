"""What the `evaluate` stage (Table 4, paper §5.4) checks and generates before it measures.

:func:`preflight` fails on params or files (the LoRA file, the heads, the CLIP-IQA
prompts) before any image is generated; :func:`lora_shards` writes the LoRA Realism row,
schnell with the realism LoRA on the schnell test prompts and seeds, to shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from facerefine import paths
from facerefine.config import Params
from facerefine.distributed import topology
from facerefine.generation import runner
from facerefine.generation.flux import SchnellTextToImage
from facerefine.metrics.clip_iqa import prompt_pairs
from facerefine.precision import effective_dtype
from facerefine.weights.flux import load_flux_for
from facerefine.weights.lora import load_lora, lora_weight_file

HEAD_ROWS = ("unet", "cyclegan", "esa")  # Table 4's head rows, in its order


def lora_weight_key(params: Params) -> str:
    return f"profiles.{params.profile}.models.lora_weight_name"


def load_params_lora(pipe: Any, params: Params) -> str:
    """The realism LoRA of the params into ``pipe``, the file the params name (never a guess)."""
    models = params.scale.models
    return load_lora(pipe, models.lora, models.lora_weight_name, params.scale.random_depth,
                     key=lora_weight_key(params))


def selected_heads(params: Params, heads_dir: Path | None = None) -> list[str]:
    """The heads of ``evaluate.heads``, in Table 4 order; a missing one is an error (its row
    and summary entries would silently be empty otherwise). ``heads_dir``: models/heads."""
    heads_dir = paths.HEADS if heads_dir is None else heads_dir
    chosen = [name for name in HEAD_ROWS if name in params.evaluate.heads]
    missing = [name for name in chosen if not (heads_dir / name).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"evaluate: no head {', '.join(repr(m) for m in missing)} in {heads_dir}/ (run `dvc repro` for "
            "train_unet / select_cyclegan first, or leave it out of evaluate.heads)")
    return chosen


def preflight(params: Params) -> list[str]:
    """Everything that can fail on params or files, checked before any image is generated:
    the LoRA file, the heads, the CLIP-IQA prompts. Returns the heads to evaluate."""
    models = params.scale.models
    lora_weight_file(models.lora, models.lora_weight_name, params.scale.random_depth,
                     key=lora_weight_key(params))
    prompt_pairs(params.evaluate.clip_iqa_prompts)
    return selected_heads(params)


def lora_shards(params: Params, test: pd.DataFrame, device: Any, out_dir: Path) -> None:
    """schnell with the realism LoRA, same prompts and seeds as the schnell test images, written
    shard by shard to ``out_dir``: the FLUX pipeline is freed before the metric networks load,
    and the LoRA images are read back batch by batch like every other row."""
    scale = params.scale
    # the dtype generate_schnell used, so the LoRA row differs from the schnell row by the LoRA only
    pipe = load_flux_for(scale, "schnell", dtype=effective_dtype(scale.dtype, topology().device), device=device)
    load_params_lora(pipe, params)
    generate = SchnellTextToImage(pipe, params.schnell_run, scale.image_size)
    runner.generate_shards(runner.plan_shards(test, scale.shard_size), out_dir, generate,
                           job_fingerprint="evaluate-lora", sample_meta=lambda row: {"id": row["id"]},
                           batch_size=scale.batch_size, desc="evaluate/lora")
