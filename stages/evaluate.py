"""Stage `evaluate`: Table 4 on the test split, plus KID, identity and sample grids (paper §5.4)."""

import logging
import tempfile
from pathlib import Path

import pandas as pd

from facerefine import paths, weights
from facerefine.analysis.embeddings import arcface_embeddings
from facerefine.config import Params, load_params, loggable
from facerefine.data import shards
from facerefine.distributed import topology
from facerefine.evaluation import (LABELS, Extractors, evaluate_stream, head_set, headline, pair_batches,
                                  render_table, shard_set)
from facerefine.generation import runner
from facerefine.generation.flux import SchnellTextToImage
from facerefine.generation.stage import effective_dtype
from facerefine.heads import load_head
from facerefine.io import write_json, write_text
from facerefine.metrics import fidelity
from facerefine.metrics.clip_iqa import clip_iqa_original_scores, clip_iqa_scores, prompt_pairs
from facerefine.provenance import CLIP_IQA_LABELS, table4_provenance
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.viz import image_grid, save_png

log = logging.getLogger("evaluate")
HEAD_ROWS = ("unet", "cyclegan", "esa")


def lora_weight_key(params: Params) -> str:
    return f"profiles.{params.profile}.models.lora_weight_name"


def load_lora(pipe, params: Params) -> str:
    """The realism LoRA into ``pipe``, the file named by the params (never a guess)."""
    models = params.scale.models
    return weights.load_lora(pipe, models.lora, models.lora_weight_name, params.scale.random_depth,
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


def standins(params: Params) -> list[str]:
    """Stand-in networks behind Table 4 (any of them puts the banner on the report)."""
    return weights.standin_networks(params, weights.REPORT_NETWORKS["evaluate"])


def preflight(params: Params) -> list[str]:
    """Everything that can fail on params or files, checked before any image is generated:
    the LoRA file, the heads, the CLIP-IQA prompts. Returns the heads to evaluate."""
    models = params.scale.models
    weights.lora_weight_file(models.lora, models.lora_weight_name, params.scale.random_depth,
                             key=lora_weight_key(params))
    prompt_pairs(params.evaluate.clip_iqa_prompts)
    return selected_heads(params)


def lora_shards(params, test: pd.DataFrame, device, out_dir: Path) -> None:
    """schnell with the realism LoRA, same prompts and seeds as the schnell test images, written
    shard by shard to ``out_dir``: the FLUX pipeline is freed before the metric networks load,
    and the LoRA images are read back batch by batch like every other row."""
    scale = params.scale
    # the dtype generate_schnell used, so the LoRA row differs from the schnell row by the LoRA only
    pipe = weights.load_flux_for(scale, "schnell", dtype=effective_dtype(scale.dtype, topology()), device=device)
    load_lora(pipe, params)
    generate = SchnellTextToImage(pipe, params.schnell_run, scale.image_size)
    runner.generate_shards(runner.plan_shards(test, scale.shard_size), out_dir, generate,
                           job_fingerprint="evaluate-lora", sample_meta=lambda row: {"id": row["id"]},
                           batch_size=scale.batch_size, desc="evaluate/lora")


def clip_iqa_scorer(params: Params, device):
    """Images -> CLIP-IQA scores under ``evaluate.clip_iqa`` with ``models.clip_iqa``'s network."""
    cfg, spec = params.evaluate, params.scale.models.clip_iqa
    if cfg.clip_iqa == "original":
        from facerefine.weights_clip_original import load_clip_original

        clip = load_clip_original(spec)
        return lambda ims: clip_iqa_original_scores(ims, clip, prompts=cfg.clip_iqa_prompts,
                                                    batch_size=cfg.batch_size, device=device)
    model, processor = weights.load_clip(spec)
    return lambda ims: clip_iqa_scores(ims, model, processor, prompts=cfg.clip_iqa_prompts,
                                       batch_size=cfg.batch_size, device=device)


def main() -> None:
    params = load_params()
    head_names = preflight(params)
    cfg, scale = params.evaluate, params.scale
    device = topology().device
    manifest = pd.read_parquet(paths.DEV / shards.MANIFEST)
    test = manifest[manifest["split"] == "test"].sort_values("id")
    if len(test) < 2:
        raise ValueError(f"evaluate needs at least 2 test images, found {len(test)}; raise num_names")
    ids = test["id"].tolist()

    # One MLflow run around the whole stage: its wall time and peak memory cover the LoRA
    # generation and the feature passes, not only the writing.
    with stage_run("evaluate", params=loggable(params), profile=params.profile) as run:
        # The LoRA set goes to temporary shards, not memory; removed when the stage ends.
        with tempfile.TemporaryDirectory(prefix="facerefine-lora-") as lora_dir:
            lora_shards(params, test[["id", "prompt", "seed"]], device, Path(lora_dir))
            sets = {"lora": shard_set(lora_dir)}
            head_configs = {}
            for name in head_names:
                head = load_head(name, device)
                sets[name] = head_set(head.model, cfg.batch_size, device)
                head_configs[name] = head.config

            extractor = fidelity.inception_extractor(weights.inception_weights_path(scale.models.inception), device)
            extract = Extractors(
                # Inception computes in float32: keeping its features so (not float64) halves what
                # accumulates per image, and the distances upcast them exactly.
                features=lambda ims: fidelity.inception_features(ims, extractor, cfg.batch_size).float(),
                clip_iqa=clip_iqa_scorer(params, device),
                embed=lambda ims: arcface_embeddings(ims, scale.models.deepface, scale.face_detector))
            k = min(cfg.grid_subjects, len(ids))
            result = evaluate_stream(
                pair_batches(paths.SCHNELL_ENRICHED, paths.DEV, test.to_dict("records"), cfg.batch_size), sets,
                extract=extract, kid_subset_size=cfg.kid_subset_size, kid_subsets=cfg.kid_subsets, seed=params.seed,
                keep=k)
        rows = result.rows

        notes = [f"Test split: {len(ids)} subjects at {scale.image_size}². {CLIP_IQA_LABELS[cfg.clip_iqa]} "
                 f"(`evaluate.clip_iqa: {cfg.clip_iqa}`), CLIP `{scale.models.clip_iqa}`, torchmetrics' prompts "
                 f"{cfg.clip_iqa_prompts} and temperature (computed in `metrics/clip_iqa.py`). LoRA Realism: "
                 f"`{scale.models.lora}`, file `{scale.models.lora_weight_name or 'its only .safetensors'}`. "
                 f"Identity: ArcFace (DeepFace, detector `{scale.face_detector}`) cosine to the schnell input "
                 "and to the dev twin."]
        provenance = table4_provenance(head_configs, eval_size=scale.image_size, data_models=scale.models.schnell,
                                       clip_iqa=cfg.clip_iqa, lora=scale.models.lora)
        for name, prov in provenance.items():  # the full table records what produced each row
            rows[name] = {**rows[name], "configuration": prov.description, "paper_mismatches": prov.mismatches}
        write_json(paths.REPORTS / "quality.json", rows)  # every column of every row
        write_json(paths.METRICS / "quality.json", headline(rows))  # the headline, for `dvc exp show`
        write_text(paths.REPORTS / "quality.md",
                   render_table(rows, provenance=provenance, clip_iqa=cfg.clip_iqa, standins=standins(params),
                                notes=notes))
        order = [s for s in ("schnell", *HEAD_ROWS, "lora", "dev") if s in rows]
        by_name = result.samples
        grid = image_grid([[by_name[n][i] for n in order] for i in range(k)], [LABELS[n].split(" (")[0] for n in order])
        save_png(grid, paths.REPORTS / "quality_samples.png")
        run.log_metrics({name: {k2: v for k2, v in r.items() if isinstance(v, (int, float))} for name, r in rows.items()})
        run.log_artifact(paths.REPORTS / "quality.md")
        run.log_artifact(paths.REPORTS / "quality.json")
        run.log_artifact(paths.REPORTS / "quality_samples.png")


if __name__ == "__main__":
    run_stage(main)
