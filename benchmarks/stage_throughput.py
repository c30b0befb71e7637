"""Seconds per image of every GPU stage's unit of work, for ``facerefine cost --from`` (issue #19).

    python benchmarks/stage_throughput.py                        # the active profile (smoke: CPU)
    python benchmarks/stage_throughput.py --profile paper --device cuda   # -> results/stage_throughput_cuda.json
    python benchmarks/stage_throughput.py --skip generation,latency   # only the heads and the feature passes
    python benchmarks/stage_throughput.py --latency resolutions=256,512,768,1024 --latency repeats=1  # bench settings

At the chosen profile's sizes and batch sizes (params.yaml), after warm-up, it times:

- ``train_unet``: one ``UNetModel.train_step`` (ResUNet-CBAM, GRAD + LPIPS, Adam) at
  ``unet.image_size`` / ``unet.batch_size``;
- ``train_cyclegan``: one ``CycleGANModel.train_step`` (G and F, then D_A and D_B) of each grid
  variant (CycleGAN, ESA-CycleGAN) at ``cyclegan.image_size`` / ``cyclegan.batch_size``;
- ``diversity``: the per-batch work of ``analysis.diversity.analyse_set`` (face extraction,
  DeepFace age/gender/race, ArcFace) on ``diversity.batch_size`` images;
- ``evaluate``: one set's feature pass of a batch (``SetAccumulator.add``: Inception features,
  CLIP-IQA as ``evaluate.clip_iqa`` says, ArcFace, SSIM/PSNR) and each head's pass
  (``evaluation.head_set``) at ``evaluate.batch_size``;
- ``generate_schnell`` / ``refine_dev``: the stages' batch functions (``SchnellTextToImage``,
  ``DevImageToImage`` with ``load_flux_for``) on ``batch_size`` prompts, so the cost model
  uses the rate the stages run at, not batch-1 latency;
- ``benchmark``: the latency benchmark itself (``facerefine.bench.run_benchmark`` at the
  profile's bench settings), embedded whole so the cost model can price that stage too.

The JSON holds ``throughputs`` (seconds per image, the keys ``facerefine cost`` knows), what
each was measured on (``sources``), the raw timings (``measurements``) and an ``environment``
block (device, torch, profile, sizes, ``facerefine.numerics.settings()``). Inputs are random
tensors/images: speed does not depend on pixel values, except the face detector's, which finds
no face in noise with a real detector (the record says how many faces it found).
"""

from __future__ import annotations

import facerefine  # noqa: F401  before torch: pins the CPU numerics (facerefine.numerics)

import argparse
import gc
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from facerefine.bench.environment import device_name
from facerefine.bench.settings import resolve_device
from facerefine.bench.timing import Timing, time_callable
from facerefine.config import Params, ParamsError, load_params
from facerefine.io import write_json

REPO = Path(__file__).resolve().parents[1]
PARTS = ("unet", "cyclegan", "diversity", "evaluate", "generation", "latency")


# ------------------------------------------------------------------------------- helpers


def with_profile(params: Params, profile: str | None) -> Params:
    """``params`` with ``profile`` active (validated like params.yaml)."""
    if profile is None or profile == params.profile:
        return params
    if profile not in params.profiles:
        raise SystemExit(f"--profile: unknown profile '{profile}'; choose one of {', '.join(sorted(params.profiles))}")
    return Params.model_validate({**params.model_dump(), "profile": profile})


def timed(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int) -> Timing:
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return time_callable(fn, warmup=warmup, repeats=repeats, sync=sync)


def record(timing: Timing, images: int, **what: Any) -> dict[str, Any]:
    """Seconds per image from the median call of ``images`` images, the call's timing beside it."""
    spi = timing.median / images
    return {**what, "images_per_call": images, "seconds_per_image": spi, "images_per_second": 1 / spi,
            "timing": timing.to_dict()}


def random_images(n: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def random_batch(n: int, size: int, device: torch.device, memory_format: torch.memory_format,
                 seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # the trainers' [-1, 1]
    return x.to(device).contiguous(memory_format=memory_format)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- training


def unet_step(params: Params, device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """One Adam step of the U-Net trainer (Eq. 1: GRAD + LPIPS) on a batch of the profile."""
    from facerefine.models.factory import build, head_architectures
    from facerefine.train.supervised import SupervisedConfig, UNetModel, make_accelerator
    from facerefine.weights.lpips import load_lpips

    scale = params.scale.unet
    cfg = SupervisedConfig(lr=params.unet.lr, structure=params.unet.structure_loss, seed=params.seed,
                           cpu=device.type == "cpu", progress=False)
    accelerator = make_accelerator(cfg)
    torch.manual_seed(params.seed)
    kind, arch = head_architectures(params)["unet"]
    model = UNetModel(build(kind, **arch), cfg, accelerator)
    model.prepare(accelerator)
    model.wrapped.train()
    lpips_net = load_lpips(params.scale.models.lpips).to(accelerator.device).eval().requires_grad_(False)
    fmt = torch.channels_last if model.channels_last else torch.contiguous_format
    x = random_batch(scale.batch_size, scale.image_size, accelerator.device, fmt, 1)
    y = random_batch(scale.batch_size, scale.image_size, accelerator.device, fmt, 2)
    timing = timed(lambda: model.train_step(x, y, lpips_net), accelerator.device, warmup=warmup, repeats=repeats)
    out = record(timing, scale.batch_size, what="UNetModel.train_step (forward, GRAD + LPIPS, backward, Adam)",
                 size=scale.image_size, batch=scale.batch_size, mixed_precision=accelerator.mixed_precision,
                 channels_last=model.channels_last)
    del model, lpips_net
    free(device)
    return out


def cyclegan_step(params: Params, variant: str, device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """One ``CycleGANModel.train_step`` (both generators, then both discriminators) of ``variant``."""
    from facerefine.train import harness
    from facerefine.train.cycle import CycleConfig, CycleGANModel
    from facerefine.train.image_pool import ImagePool

    scale, shared, grid = params.scale.cyclegan, params.cyclegan, params.cyclegan.grid
    cfg = CycleConfig(variant=variant, esa_placement=shared.esa_placement, lambda_cyc=grid.lambda_cyc[0],
                      lambda_identity=shared.lambda_identity, lr=grid.lr[0], beta1=shared.beta1,
                      n_epochs=scale.epochs, n_epochs_decay=scale.epochs_decay, pool_size=shared.pool_size,
                      seed=params.seed, ngf=scale.ngf, n_blocks=scale.n_blocks, ndf=scale.ndf, progress=False)
    accelerator = harness.make_accelerator(cpu=device.type == "cpu", bf16=cfg.bf16, seed=cfg.seed,
                                           seedable_sampler=False)
    on_cuda = accelerator.device.type == "cuda"
    fmt = torch.channels_last if cfg.channels_last and on_cuda else torch.contiguous_format  # as train_cycle
    model = CycleGANModel(cfg, fmt)
    model.prepare(accelerator)
    pools = (ImagePool(cfg.pool_size, seed=cfg.seed), ImagePool(cfg.pool_size, seed=cfg.seed + 1))
    a = random_batch(scale.batch_size, scale.image_size, accelerator.device, fmt, 3)
    b = random_batch(scale.batch_size, scale.image_size, accelerator.device, fmt, 4)
    timing = timed(lambda: model.train_step(a, b, pools), accelerator.device, warmup=warmup, repeats=repeats)
    out = record(timing, scale.batch_size, what=f"CycleGANModel.train_step, {variant} (G, F, D_A, D_B updates)",
                 size=scale.image_size, batch=scale.batch_size, mixed_precision=accelerator.mixed_precision,
                 channels_last=fmt == torch.channels_last)
    del model, pools
    free(device)
    return out


# ------------------------------------------------------------------------ feature passes


def diversity_pass(params: Params, warmup: int, repeats: int) -> dict[str, Any]:
    """``analyse_set``'s work on one batch: the main face of each image, DeepFace's attribute
    models on the faces, ArcFace on the faces (DeepFace picks its own device)."""
    from facerefine.analysis.embeddings import embed_faces
    from facerefine.analysis.faces import extract_faces, predict_attributes
    from facerefine.weights.deepface import deepface_detector

    spec, n = params.scale.models.deepface, params.diversity.batch_size
    detector = deepface_detector(spec, params.scale.face_detector)
    images = random_images(n, params.scale.image_size, 5)
    found: list[int] = []

    def batch() -> None:
        faces = extract_faces(images, detector, spec)
        predict_attributes([f for f in faces if f is not None], spec)
        embed_faces(faces, spec)
        found.append(sum(f is not None for f in faces))

    timing = timed(batch, torch.device("cpu"), warmup=warmup, repeats=repeats)
    return record(timing, n, what="face extraction + DeepFace age/gender/race + ArcFace, one batch",
                  size=params.scale.image_size, batch=n, deepface=spec, detector=detector,
                  faces_found_per_batch=found[-1],
                  note="random images: a real detector finds no face in noise, so attributes and ArcFace "
                       "ran on the faces it found" if found[-1] < n else "")


def _evaluate_stage():
    """stages/evaluate.py as a module, for its CLIP-IQA scorer (the one the stage runs)."""
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO / "stages" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_pass(params: Params, device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """One set's features of one batch, as ``evaluate_stream`` accumulates them, and each head's
    row of one batch (``head_set``)."""
    from facerefine.analysis.embeddings import arcface_embeddings
    from facerefine.evaluation import Extractors, PairBatch, SetAccumulator, head_set
    from facerefine.metrics import fidelity
    from facerefine.models.factory import build_heads
    from facerefine.weights import inception

    cfg, scale = params.evaluate, params.scale
    n, size = cfg.batch_size, scale.image_size
    extractor = fidelity.inception_extractor(inception.inception_weights_path(scale.models.inception), device)
    extract = Extractors(
        features=lambda ims: fidelity.inception_features(ims, extractor, cfg.batch_size).float(),
        clip_iqa=_evaluate_stage().clip_iqa_scorer(params, device),
        embed=lambda ims: arcface_embeddings(ims, scale.models.deepface, scale.face_detector))
    images, dev = random_images(n, size, 6), random_images(n, size, 7)
    acc = SetAccumulator("schnell")
    features = record(timed(lambda: acc.add(images, dev, extract), device, warmup=warmup, repeats=repeats), n,
                      what=f"SetAccumulator.add: Inception + CLIP-IQA ({cfg.clip_iqa}) + ArcFace + SSIM/PSNR",
                      size=size, batch=n, clip_iqa=cfg.clip_iqa, inception=scale.models.inception,
                      clip_iqa_model=scale.models.clip_iqa, deepface=scale.models.deepface)
    batch = PairBatch(0, [{"id": str(i)} for i in range(n)], images, dev)
    heads = {}
    for name, model in build_heads(params, seed=params.seed).items():
        if name != "unet" and name not in params.cyclegan.grid.variant:
            continue
        produce = head_set(model, n, device)
        heads[name] = record(timed(lambda: produce(batch), device, warmup=warmup, repeats=repeats), n,
                             what=f"evaluation.head_set ({name}): tensors in, PIL images out",
                             size=size, batch=n)
    free(device)
    return {"features": features, "heads": heads}


# ---------------------------------------------------------------------------- generation


def generation_pass(params: Params, device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """Images/s of the generation stages' batch functions at the profile's ``batch_size``."""
    from facerefine.data import shards
    from facerefine.generation.flux import DevImageToImage, SchnellTextToImage
    from facerefine.precision import effective_dtype
    from facerefine.weights.flux import load_flux_for

    scale = params.scale
    n, size = scale.batch_size, scale.image_size
    dtype = effective_dtype(scale.dtype, device)
    rows = [{"id": f"bench-{i:04d}", "prompt": params.prompts.template.format(name=f"Person {i}"), "seed": i}
            for i in range(n)]
    out: dict[str, Any] = {}
    pipe = load_flux_for(scale, "schnell", dtype=dtype, device=device)
    schnell = SchnellTextToImage(pipe, params.schnell_run, size)
    images = schnell(rows, 0)
    out["schnell"] = record(timed(lambda: schnell(rows, 0), device, warmup=warmup, repeats=repeats), n,
                            what=f"SchnellTextToImage, {params.schnell_run.steps} steps", size=size, batch=n,
                            dtype=dtype, model=scale.models.schnell)
    del pipe, schnell
    free(device)
    with tempfile.TemporaryDirectory(prefix="facerefine-stage-throughput-") as tmp:
        shards.write_shard(Path(tmp) / shards.shard_name(0),
                           [shards.Sample(r["id"], im, {}) for r, im in zip(rows, images)], "bench")
        pipe = load_flux_for(scale, "dev", img2img=True, dtype=dtype, device=device)
        dev = DevImageToImage(pipe, params.dev_run, size, tmp)
        compiles = int(scale.compile != "none")  # a compiled dev's first call compiles: never timed
        out["dev"] = record(timed(lambda: dev(rows, 0), device, warmup=max(warmup, compiles), repeats=repeats), n,
                            what=f"DevImageToImage, {params.dev_run.steps} steps x strength "
                                 f"{params.dev_run.strength:g}", size=size, batch=n, dtype=dtype,
                            model=scale.models.dev)
        del pipe, dev
    free(device)
    return out


# --------------------------------------------------------------------------------- run


def environment(params: Params, device: torch.device) -> dict[str, Any]:
    from facerefine import numerics

    scale = params.scale
    return {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "profile": params.profile,
        "dtype": scale.dtype, "flux_compile": scale.compile,  # generation runs compiled as the stages do
        "sizes": {"image_size": scale.image_size, "batch_size": scale.batch_size,
                  "unet": {"image_size": scale.unet.image_size, "batch_size": scale.unet.batch_size},
                  "cyclegan": {"image_size": scale.cyclegan.image_size, "batch_size": scale.cyclegan.batch_size},
                  "diversity_batch_size": params.diversity.batch_size,
                  "evaluate_batch_size": params.evaluate.batch_size},
        "models": scale.models.model_dump(),
        "numerics": numerics.settings(),
    }


def measure(params: Params, *, device: torch.device, warmup: int = 1, repeats: int = 3,
            skip: Sequence[str] = (), latency: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole JSON (``facerefine cost --from`` reads it); ``skip``: parts of :data:`PARTS` left out;
    ``latency``: bench settings for the embedded latency table (``resolutions``, ``warmup``,
    ``repeats``, ... as ``facerefine bench`` takes them; default the profile's)."""
    unknown = sorted(set(skip) - set(PARTS))
    if unknown:
        raise SystemExit(f"--skip: unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    m: dict[str, Any] = {}
    if "unet" not in skip:
        m["train_unet"] = unet_step(params, device, warmup, repeats)
    if "cyclegan" not in skip:
        m["train_cyclegan"] = {v: cyclegan_step(params, v, device, warmup, repeats)
                               for v in params.cyclegan.grid.variant}
    if "diversity" not in skip:
        m["diversity"] = diversity_pass(params, warmup, repeats)
    if "evaluate" not in skip:
        m["evaluate"] = evaluate_pass(params, device, warmup, repeats)
    if "generation" not in skip:
        m["generation"] = generation_pass(params, device, warmup, repeats)

    # cost-model figure -> the measurement it comes from
    figures: dict[str, dict[str, Any]] = {}
    if "train_unet" in m:
        figures["unet_train_s_per_image"] = m["train_unet"]
    for variant, rec in m.get("train_cyclegan", {}).items():
        figures[f"cyclegan_train_s_per_image.{variant}"] = rec
    if "diversity" in m:
        figures["diversity_s_per_image"] = m["diversity"]
    if "evaluate" in m:
        figures["eval_s_per_image"] = m["evaluate"]["features"]
        figures.update({f"head_s_per_image.{h}": rec for h, rec in m["evaluate"]["heads"].items()})
    if "generation" in m:
        figures["schnell_s_per_image"] = m["generation"]["schnell"]
        figures["dev_s_per_image"] = m["generation"]["dev"]
    env = environment(params, device)
    result: dict[str, Any] = {
        "gpu": env["device_name"] if device.type == "cuda" else f"CPU: {env['device_name']}",
        "environment": env,
        "throughputs": {k: rec["seconds_per_image"] for k, rec in figures.items()},
        "sources": {k: f"{params.profile} profile, {rec['size']}², batch {rec['batch']}, median of "
                       f"{rec['timing']['repeats']} after {len(rec['timing']['warmup_s'])} warm-up"
                    for k, rec in figures.items()},
        "measurements": m,
    }
    if device.type == "cpu":
        result["note"] = (f"CPU, {params.profile} profile sizes: these numbers test the code path and mean "
                          "nothing for a GPU")
    if "latency" not in skip:
        from facerefine.bench import RunOptions, run_benchmark, with_overrides

        bench_params = with_overrides(params, **dict(latency or {}))
        result["latency_table"] = run_benchmark(bench_params, RunOptions(device=str(device)))
    return result


def latency_setting(item: str) -> tuple[str, Any]:
    """``key=value`` of ``--latency``: a comma list becomes a list of ints (resolutions, batch sizes)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--latency {item!r}: expected KEY=VALUE, e.g. resolutions=256,512")
    if "," in value or key in ("resolutions", "head_batch_sizes", "dev_steps"):
        return key, [int(v) for v in value.split(",") if v]
    return key, yaml.safe_load(value)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="params.yaml profile whose sizes are timed (default: the active)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls of each measurement")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls; the figure is their median")
    ap.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    ap.add_argument("--latency", action="append", default=[], metavar="KEY=VALUE",
                    help="a bench setting of the embedded latency benchmark, as `facerefine bench` takes it "
                         "(resolutions=256,512,768,1024 warmup=0 repeats=1 head_batch_sizes=1 head_warmup=0 ...; "
                         "repeatable; default: the profile's). The cost model prices the benchmark stage only "
                         "from a table covering the projected profile's bench.resolutions")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default: benchmarks/results/stage_throughput_<device>.json)")
    args = ap.parse_args(argv)
    params = with_profile(load_params(args.params), args.profile)
    try:
        device = resolve_device(args.device)  # the benchmark's own rule for --device
    except ParamsError as err:
        raise SystemExit(str(err)) from None
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    latency = dict(latency_setting(item) for item in args.latency)
    result = measure(params, device=device, warmup=args.warmup, repeats=args.repeats, skip=skip, latency=latency)
    out = args.out or REPO / "benchmarks" / "results" / f"stage_throughput_{device.type}.json"
    write_json(out, result)
    width = max(map(len, result["throughputs"]), default=0)
    for key, spi in result["throughputs"].items():
        print(f"{key:<{width}}  {spi:.4g} s/image  ({1 / spi:.3g} images/s)")
    print(f"wrote {out}; project with: facerefine cost --profile paper --from {out}")
    return result


if __name__ == "__main__":
    main()
