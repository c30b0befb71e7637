"""Stage `evaluate`: Table 4 on the test split, plus KID, identity and sample grids (paper §5.4)."""

import logging
import tempfile
from pathlib import Path

import pandas as pd

from facerefine import paths
from facerefine.analysis.embeddings import arcface_embeddings
from facerefine.banners import REPORT_NETWORKS, standin_networks
from facerefine.config import Params, load_params, loggable
from facerefine.data import shards
from facerefine.distributed import topology
from facerefine.evaluation import (LABELS, Extractors, evaluate_stream, head_set, pair_batches, quality_headline,
                                  render_table, shard_set)
from facerefine.evaluation_inputs import HEAD_ROWS, lora_shards, preflight
from facerefine.heads import read_head_folder
from facerefine.io import write_json, write_text
from facerefine.metrics import fidelity
from facerefine.metrics.clip_iqa import clip_iqa_original_scores, clip_iqa_scores
from facerefine.provenance import CLIP_IQA_LABELS, table4_provenance
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.viz import image_grid, save_png
from facerefine.weights import clip, inception

log = logging.getLogger("evaluate")


def standins(params: Params) -> list[str]:
    """Stand-in networks behind Table 4 (any of them puts the banner on the report)."""
    return standin_networks(params, REPORT_NETWORKS["evaluate"])


def clip_iqa_scorer(params: Params, device):
    """Images -> CLIP-IQA scores under ``evaluate.clip_iqa`` with ``models.clip_iqa``'s network."""
    cfg, spec = params.evaluate, params.scale.models.clip_iqa
    if cfg.clip_iqa == "original":
        from facerefine.weights.clip_original import load_clip_original

        network = load_clip_original(spec)
        return lambda ims: clip_iqa_original_scores(ims, network, prompts=cfg.clip_iqa_prompts,
                                                    batch_size=cfg.batch_size, device=device)
    model, processor = clip.load_clip(spec)
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
                head = read_head_folder(name, device)
                sets[name] = head_set(head.model, cfg.batch_size, device)
                head_configs[name] = head.config

            extractor = fidelity.inception_extractor(inception.inception_weights_path(scale.models.inception), device)
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
        write_json(paths.METRICS / "quality.json", quality_headline(rows))  # the headline, for `dvc exp show`
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
