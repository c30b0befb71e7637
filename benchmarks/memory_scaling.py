"""Peak RSS of `evaluate` and `diversity` on N and 8N images: memory must be bounded in N.

DESIGN.md ("Reproducibility rules"): a stage's memory may grow only by per-image features
and metadata as N grows, never by images. This script writes synthetic shards of 512² images,
then runs each stage's core in a fresh subprocess per size and reads that process's peak RSS
(``resource.getrusage``), so the figures are not blurred by what another run left behind:

* evaluate: ``evaluation.evaluate_stream`` over ``pair_batches`` (schnell and dev read from
  the shards by id), with a head row and a LoRA row read from shards, Inception features,
  CLIP-IQA, ArcFace embeddings and SSIM/PSNR;
* diversity: ``analysis.diversity.analyse_set`` on both sets and ``analysis.tsne.tsne_map``.

The networks are the smoke stand-ins (``facerefine.weights``): the FID Inception, ArcFace and DeepFace's
Age/Gender/Race networks are full size there, so an image held per subject would show against
the weights. 512² RGB is 0.75 MiB as a PIL image and 3 MiB as a float tensor, so holding
the images of one set at 8N = 64 would add ~40 MiB (PIL) to ~170 MiB (float), a few hundred MiB
over the rows of Table 4 (the old code held four sets and stacked two float copies).

    python benchmarks/memory_scaling.py                     # N = 8 and 8N = 64 (about 40 min on 2 busy cores)
    python benchmarks/memory_scaling.py --n 32              # 32 and 256
    python benchmarks/memory_scaling.py --n 8 --skip-diversity
    python benchmarks/memory_scaling.py --legacy-src /tmp/old/src   # also the pre-streaming evaluate

``--legacy-src`` points at a ``src`` folder of the pre-streaming code (e.g. ``git archive
60619a9 src | tar -x -C /tmp/old``): its evaluate reads every image into memory
(``read_images`` + ``evaluate_sets``); ``--legacy-limit-mb`` caps its address space
(RLIMIT_AS) and ``--timeout`` every run; a run that fails is reported as such. The target is
a ratio of at most 1.5. Results go to ``benchmarks/results/memory_scaling_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5
SHARD_SIZE = 16
EVAL_BATCH = 8


# ----------------------------------------------------------------------------- synthetic data
def synthetic_image(rng: np.random.Generator, size: int):
    """Smooth colour noise: compresses like a photo more than white noise does."""
    from PIL import Image

    small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return small.resize((size, size), Image.Resampling.BICUBIC)


def write_set(directory: Path, keys: list[str], size: int, seed: int) -> None:
    from facerefine.data import shards

    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, len(keys), SHARD_SIZE)):
        samples = [shards.Sample(key, synthetic_image(rng, size), {"id": key})
                   for key in keys[start:start + SHARD_SIZE]]
        shards.write_shard(directory / shards.shard_name(k), samples, "memory-scaling")


def keys_for(n: int) -> list[str]:
    return [f"en{i:07d}" for i in range(n)]


def prepare(root: Path, n: int, size: int) -> Path:
    """schnell, dev and lora shard folders of n images (diversity reads schnell and dev as its
    two sets, n/2 each would halve nothing that matters, so it reads n of each)."""
    data = root / f"n{n}"
    for i, name in enumerate(("schnell", "dev", "lora")):
        write_set(data / name, keys_for(n), size, seed=100 * n + i)
    return data


# ----------------------------------------------------------------------------- child processes
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _head():
    """A small fixed head: the row's images are made batch by batch like a real head's."""
    import torch

    torch.manual_seed(0)  # the same head in every process
    head = torch.nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        head.weight.mul_(0.1)
    return head.eval()


def _extractors():
    from facerefine.analysis.embeddings import arcface_embeddings
    from facerefine.evaluation import Extractors
    from facerefine.metrics import fidelity
    from facerefine.metrics.clip_iqa import clip_iqa_scores
    from facerefine.weights import clip, inception

    extractor = fidelity.inception_extractor(inception.inception_weights_path("smoke"))
    clip_model, clip_processor = clip.load_clip("smoke")
    return Extractors(
        features=lambda ims: fidelity.inception_features(ims, extractor, EVAL_BATCH).float(),  # as the stage
        clip_iqa=lambda ims: clip_iqa_scores(ims, clip_model, clip_processor, batch_size=EVAL_BATCH),
        embed=lambda ims: arcface_embeddings(ims, "smoke", "skip"))


def child_evaluate(data: Path, n: int) -> dict:
    from facerefine.evaluation import evaluate_stream, head_set, pair_batches, shard_set

    rows = [{"id": k} for k in keys_for(n)]
    result = evaluate_stream(pair_batches(data / "schnell", data / "dev", rows, EVAL_BATCH),
                             {"lora": shard_set(data / "lora"), "unet": head_set(_head(), EVAL_BATCH)},
                             extract=_extractors(), kid_subset_size=1000, kid_subsets=10, seed=0, keep=4)
    return {"fid_dev.unet": result.rows["unet"]["fid_dev"]}


def child_legacy_evaluate(data: Path, n: int) -> dict:
    """The pre-streaming stage: every set read into memory, then evaluate_sets on the lists."""
    from facerefine.analysis.embeddings import arcface_embeddings
    from facerefine.data.datasets import read_images
    from facerefine.evaluation import EvalSet, apply_head, evaluate_sets
    from facerefine.metrics import fidelity
    from facerefine.metrics.clip_iqa import clip_iqa_scores
    from facerefine.weights import clip, inception

    ids = keys_for(n)
    schnell, dev = read_images(data / "schnell", ids), read_images(data / "dev", ids)
    sets = [EvalSet("schnell", schnell), EvalSet("dev", dev), EvalSet("lora", read_images(data / "lora", ids)),
            EvalSet("unet", apply_head(_head(), schnell, EVAL_BATCH))]
    extractor = fidelity.inception_extractor(inception.inception_weights_path("smoke"))
    clip_model, clip_processor = clip.load_clip("smoke")
    rows = evaluate_sets(
        sets, schnell, dev,
        features=lambda ims: fidelity.inception_features(ims, extractor, EVAL_BATCH),
        clip_iqa=lambda ims: clip_iqa_scores(ims, clip_model, clip_processor, batch_size=EVAL_BATCH),
        embed=lambda ims: arcface_embeddings(ims, "smoke", "skip"),
        kid_subset_size=1000, kid_subsets=10, seed=0)
    return {"fid_dev.unet": rows["unet"]["fid_dev"]}


def child_diversity(data: Path, n: int) -> dict:
    from facerefine.analysis.diversity import analyse_set
    from facerefine.analysis.tsne import tsne_map

    sets = {name: analyse_set(name, data / folder, spec="smoke", detector="skip", batch_size=16)
            for name, folder in (("baseline", "dev"), ("enriched", "schnell"))}
    embeddings = np.concatenate([s.embeddings for s in sets.values()])
    groups = np.concatenate([[name.capitalize()] * len(s.keys) for name, s in sets.items()])
    m = tsne_map(embeddings, groups, perplexity=30, max_points=10_000, seed=0)
    return {"tsne_points": m.sample.shown}


CHILDREN = {"evaluate": child_evaluate, "legacy_evaluate": child_legacy_evaluate, "diversity": child_diversity}


def run_child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = CHILDREN[args.child](Path(args.data), args.n)
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - t0, 1),
                      **out}))


# ----------------------------------------------------------------------------- the parent
def measure(stage: str, data: Path, n: int, *, src: Path, threads: int, limit_mb: int | None,
            timeout: int = 3600) -> dict:
    """One fresh subprocess; its peak RSS, or how it failed."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--child", stage, "--data", str(data), "--n", str(n),
           "--threads", str(threads)]

    def limit() -> None:  # address-space cap: the legacy code may try to hold more than the machine has
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=limit, cwd=REPO,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": True, "error": f"timed out after {timeout} s", "limit_mb": limit_mb}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"failed": True, "returncode": proc.returncode, "error": " | ".join(tail),
                "limit_mb": limit_mb}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {stage:16s} n={n:4d}: peak RSS {result['peak_rss_mb']:8.1f} MiB in {result['seconds']:6.1f} s",
          flush=True)
    return result


def summarise(small: dict, large: dict, n: int) -> dict:
    if small.get("failed") or large.get("failed"):
        return {"n": small, "8n": large, "ratio": None}
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    per_image = (large["peak_rss_mb"] - small["peak_rss_mb"]) / (7 * n)
    return {"n": small, "8n": large, "ratio": round(ratio, 3), "mib_per_extra_image": round(per_image, 3),
            "within_target": ratio <= TARGET_RATIO}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="N; the large run has 8N images per set")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-diversity", action="store_true")
    ap.add_argument("--skip-evaluate", action="store_true")
    ap.add_argument("--legacy-src", type=Path, help="src folder of the pre-streaming code, measured too")
    ap.add_argument("--legacy-limit-mb", type=int, default=None, help="address-space cap of the legacy runs")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per measured run")
    ap.add_argument("--device-name", default="cpu")
    ap.add_argument("--out", type=Path)
    # child mode (internal)
    ap.add_argument("--child", choices=sorted(CHILDREN))
    ap.add_argument("--data")
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    sys.path.insert(0, str(REPO / "src"))
    os.environ.setdefault("FACEREFINE_TRACKING", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stages = [s for s, skip in (("evaluate", args.skip_evaluate), ("diversity", args.skip_diversity)) if not skip]
    if args.legacy_src:
        stages.append("legacy_evaluate")
    report: dict = {"target_ratio": TARGET_RATIO, "image_size": args.size, "n": args.n, "8n": 8 * args.n,
                    "threads": args.threads, "machine": platform.platform(), "python": platform.python_version(),
                    "networks": "smoke stand-ins (full-size Inception, ArcFace, DeepFace Age/Gender/Race)",
                    "stages": {}}
    out = args.out or RESULTS / f"memory_scaling_{args.device_name}.json"
    with tempfile.TemporaryDirectory(prefix="memory-scaling-") as tmp:
        root = Path(tmp)
        print(f"writing synthetic shards ({args.size}² images) ...", flush=True)
        data = {n: prepare(root, n, args.size) for n in (args.n, 8 * args.n)}
        build_standins()
        for stage in stages:
            src = args.legacy_src if stage == "legacy_evaluate" else REPO / "src"
            limit = args.legacy_limit_mb if stage == "legacy_evaluate" else None
            runs = [measure(stage, data[n], n, src=src, threads=args.threads, limit_mb=limit, timeout=args.timeout)
                    for n in (args.n, 8 * args.n)]
            report["stages"][stage] = summarise(*runs, args.n)
            s = report["stages"][stage]
            write_report(report, out)  # after every stage: a long run that is stopped keeps what it measured
            print(f"{stage}: ratio 8N/N = {s['ratio']}" + (f" ({s['mib_per_extra_image']} MiB per extra image)"
                                                            if s["ratio"] is not None else " (a run failed)"),
                  flush=True)
    print(f"wrote {out}")


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def build_standins() -> None:
    """Stand-ins are built once (under $FACEREFINE_HOME), outside the measured processes."""
    from facerefine.weights import clip, deepface, inception

    inception.inception_weights_path("smoke")
    clip.load_clip("smoke")
    deepface.deepface_home("smoke")


if __name__ == "__main__":
    main()
