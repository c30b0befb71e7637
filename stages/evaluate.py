"""Stage `evaluate`: Table 4 on the test split, plus KID, identity and sample grids (paper §5.4)."""

import logging

import pandas as pd

from facerefine import paths, weights
from facerefine.analysis.embeddings import arcface_embeddings
from facerefine.config import load_params, loggable
from facerefine.data import shards
from facerefine.data.datasets import read_images
from facerefine.distributed import topology
from facerefine.evaluation import LABELS, EvalSet, apply_head, evaluate_sets, render_table
from facerefine.generation.flux import SchnellTextToImage
from facerefine.heads import load_head
from facerefine.io import write_json, write_text
from facerefine.metrics import fidelity
from facerefine.metrics.clip_iqa import clip_iqa_scores
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run
from facerefine.viz import image_grid, save_png

log = logging.getLogger("evaluate")
HEAD_ROWS = ("unet", "cyclegan", "esa")


def lora_images(params, rows: list[dict], device) -> list:
    """schnell with the realism LoRA, same prompts and seeds as the schnell test images."""
    scale = params.scale
    pipe = weights.load_flux_for(scale, "schnell", dtype="float32" if device.type == "cpu" else scale.dtype,
                                 device=device)
    pipe.load_lora_weights(weights.lora_location(scale.models.lora, scale.random_depth))
    generate = SchnellTextToImage(pipe, params.schnell_run, scale.image_size)
    images = []
    for start in range(0, len(rows), scale.batch_size):
        images += generate(rows[start:start + scale.batch_size], 0)
    return images


def main() -> None:
    params = load_params()
    cfg, scale = params.evaluate, params.scale
    device = topology().device
    manifest = pd.read_parquet(paths.DEV / shards.MANIFEST)
    test = manifest[manifest["split"] == "test"].sort_values("id")
    if len(test) < 2:
        raise ValueError(f"evaluate needs at least 2 test images, found {len(test)}; raise num_names")
    ids = test["id"].tolist()
    schnell, dev = read_images(paths.SCHNELL_ENRICHED, ids), read_images(paths.DEV, ids)

    sets = [EvalSet("schnell", schnell), EvalSet("dev", dev),
            EvalSet("lora", lora_images(params, test.to_dict("records"), device))]
    heads = {}
    for name in HEAD_ROWS:
        if (paths.HEADS / name).is_dir():
            heads[name] = load_head(name, device)
            sets.append(EvalSet(name, apply_head(heads[name].model, schnell, cfg.batch_size, device)))
        else:
            log.warning("no head '%s' in %s: its row is skipped", name, paths.HEADS)

    extractor = fidelity.inception_extractor(weights.inception_weights_path(scale.models.inception), device)
    clip_model, clip_processor = weights.load_clip(scale.models.clip_iqa)
    rows = evaluate_sets(
        sets, schnell, dev,
        features=lambda ims: fidelity.inception_features(ims, extractor, cfg.batch_size),
        clip_iqa=lambda ims: clip_iqa_scores(ims, clip_model, clip_processor, prompts=cfg.clip_iqa_prompts,
                                             batch_size=cfg.batch_size, device=device),
        embed=lambda ims: arcface_embeddings(ims, scale.models.deepface, scale.face_detector),
        kid_subset_size=cfg.kid_subset_size, kid_subsets=cfg.kid_subsets, seed=params.seed)

    with stage_run("evaluate", params=loggable(params), profile=params.profile) as run:
        notes = [f"Test split: {len(ids)} subjects. CLIP-IQA via torchmetrics with CLIP `{scale.models.clip_iqa}` "
                 f"and prompts {cfg.clip_iqa_prompts}. Identity: ArcFace (DeepFace, detector "
                 f"`{scale.face_detector}`) cosine to the schnell input and to the dev twin."]
        write_json(paths.METRICS / "quality.json", rows)
        write_text(paths.REPORTS / "quality.md", render_table(rows, smoke=params.is_smoke, notes=notes))
        k = min(cfg.grid_subjects, len(ids))
        order = [s for s in ("schnell", *HEAD_ROWS, "lora", "dev") if any(x.name == s for x in sets)]
        by_name = {s.name: s.images for s in sets}
        grid = image_grid([[by_name[n][i] for n in order] for i in range(k)], [LABELS[n].split(" (")[0] for n in order])
        save_png(grid, paths.REPORTS / "quality_samples.png")
        run.log_metrics({name: {k2: v for k2, v in r.items() if isinstance(v, (int, float))} for name, r in rows.items()})
        run.log_artifact(paths.REPORTS / "quality.md")
        run.log_artifact(paths.REPORTS / "quality_samples.png")


if __name__ == "__main__":
    run_stage(main)
