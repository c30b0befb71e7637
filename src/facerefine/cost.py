"""A cost model before the bill: projected GPU-hours of a profile's stages (``facerefine cost``).

GPU-hours = images a stage processes (from params.yaml) x seconds per image on the named GPU
(measured, or given). The arithmetic is pure functions; reading measured figures
(the benchmark's full table, ``benchmarks/heads_throughput.py``'s JSON, or a
``{"throughputs": {...}}`` file such as ``benchmarks/stage_throughput.py``'s, which may embed
a benchmark table) is kept apart in :func:`figures_from_json`.

Nothing is invented: a figure that is not measured or given is unknown, and every stage
that needs it says so (with the option that would supply it) instead of a number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facerefine.config import Params, Profile, img2img_steps

# The figures, in seconds per image on one GPU (the CLI option is --<name with dashes>).
FIGURES: dict[str, str] = {
    "schnell_s_per_image": "FLUX.1-schnell text-to-image at the profile's image size (schnell.steps steps)",
    "dev_s_per_image": "FLUX.1-dev img2img as refine_dev runs it (dev.steps x dev.strength denoising steps)",
    "head_s_per_image": "one head's inference at the image size (used for every head without its own figure)",
    "unet_train_s_per_image": "ResUNet training, per image (forward + backward + LPIPS) at unet.image_size",
    "cyclegan_train_s_per_image": "CycleGAN training, per image (two generators, two discriminators) at "
                                  "cyclegan.image_size",
    "diversity_s_per_image": "DeepFace attributes + ArcFace embedding of one image (face detector included)",
    "eval_s_per_image": "evaluate's feature extraction of one image of one set (Inception + CLIP + ArcFace)",
}
HEADS = ("unet", "cyclegan", "esa")
# Figures that may also be given per head or per CycleGAN variant (``<figure>.<name>``), e.g.
# ``cyclegan_train_s_per_image.esa``: the ESA generator trains slower than the plain one.
PER_NAME = {"head_s_per_image": HEADS, "cyclegan_train_s_per_image": ("cyclegan", "esa")}
LATENCY_KEY = "latency_table"  # a throughputs file may carry the benchmark's full table under this key
LATENCY_TABLE = "benchmark_latency_table"  # the benchmark stage's figure: a whole table, not one number


class CostError(ValueError):
    """A figure or a measured file is unusable; the message names which."""


@dataclass(frozen=True)
class Figure:
    """Seconds per image, and where the number comes from (printed beside it)."""

    seconds: float
    source: str

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise CostError(f"{self.source}: seconds per image must be a positive number (got {self.seconds})")


@dataclass(frozen=True)
class Figures:
    """Known figures by name (:data:`FIGURES` keys, plus ``head_s_per_image.<head>``) and the GPU's name."""

    values: Mapping[str, Figure] = field(default_factory=dict)
    gpu: str | None = None

    def get(self, name: str) -> Figure | None:
        return self.values.get(name)

    def head(self, head: str) -> Figure | None:
        return self.named("head_s_per_image", head)

    def named(self, figure: str, name: str) -> Figure | None:
        """``<figure>.<name>`` where measured, else the figure for all names."""
        return self.values.get(f"{figure}.{name}") or self.values.get(figure)

    def merged(self, other: "Figures") -> "Figures":
        """``other``'s figures win (later sources, then the command line, override earlier ones);
        a figure for all names in ``other`` also replaces ``self``'s per-name ones."""
        kept = {k: v for k, v in self.values.items() if k.split(".")[0] not in other.values}
        return Figures({**kept, **other.values}, other.gpu or self.gpu)


def option_for(figure: str) -> str:
    """The command-line option that supplies a figure."""
    if figure == LATENCY_TABLE:
        return "--from <benchmark table at the profile's bench resolutions>"
    return "--" + figure.split(".")[0].replace("_", "-")


# ----------------------------------------------------------------------------- counts


def dev_img2img_seconds(t2i_seconds: Mapping[int, float], steps: int, strength: float) -> tuple[float, str]:
    """Seconds per refine_dev image from dev text-to-image timings at one or more step counts.

    Two step counts fit ``t = fixed + per_step x steps`` (text encoding and VAE decode are the
    fixed part); one gives ``per_step = t / steps`` with no fixed part. Either way the VAE
    *encode* of the input image, which img2img adds, is not in the timings (it is small
    next to 30+ transformer steps at 512²).
    """
    if not t2i_seconds:
        raise CostError("no FLUX.1-dev timing to derive the img2img time from")
    run = img2img_steps(steps, strength)
    pts = sorted(t2i_seconds.items())
    if len(pts) >= 2:
        (s1, t1), (s2, t2) = pts[0], pts[-1]
        per_step = (t2 - t1) / (s2 - s1)
        fixed = t1 - per_step * s1
        how = f"{fixed:.3g} s + {per_step:.3g} s/step fitted to {s1} and {s2} steps"
    else:
        (s1, t1), = pts
        per_step, fixed = t1 / s1, 0.0
        how = f"{per_step:.3g} s/step from {s1} steps, no fixed part"
    return fixed + per_step * run, f"{run} img2img steps ({steps} x strength {strength:g}); {how}"


@dataclass(frozen=True)
class Counts:
    """Images each stage processes, from the profile (expected values: splits are hash-based)."""

    enriched: int
    baseline: int
    train: int
    val: int
    test: int
    unet_train: int
    unet_val: int
    unet_epochs: int
    cyclegan_train: int
    cyclegan_val: int
    cyclegan_epochs: int
    cells: int


def counts(params: Params, profile: Profile) -> Counts:
    split = params.prompts.split
    names = profile.num_names
    train, val = round(names * split.train), round(names * split.val)
    grid = params.cyclegan.grid
    from facerefine.data.datasets import subset_counts  # torch-heavy; `facerefine cost` imports this module

    # data_fraction is a share of the whole dataset, drawn from the train split (datasets.select_subset)
    unet_train, unet_val = subset_counts(names, train, val, profile.unet.data_fraction)
    cyclegan_train, cyclegan_val = subset_counts(names, train, val, profile.cyclegan.data_fraction)
    return Counts(
        enriched=names, baseline=profile.num_baseline, train=train, val=val, test=names - train - val,
        unet_train=unet_train, unet_val=unet_val, unet_epochs=profile.unet.max_epochs,
        cyclegan_train=cyclegan_train, cyclegan_val=cyclegan_val,
        cyclegan_epochs=profile.cyclegan.epochs + profile.cyclegan.epochs_decay,
        cells=len(grid.variant) * len(grid.lambda_cyc) * len(grid.lr))


# ------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Part:
    """``images`` x one figure: a piece of a stage's GPU time."""

    what: str
    images: int
    figure: str                 # FIGURES key (or head_s_per_image.<head>)
    value: Figure | None

    @property
    def hours(self) -> float | None:
        return None if self.value is None else self.images * self.value.seconds / 3600


@dataclass(frozen=True)
class StageCost:
    stage: str
    parts: tuple[Part, ...]
    note: str = ""

    @property
    def images(self) -> int:
        return sum(p.images for p in self.parts)

    @property
    def known_hours(self) -> float:
        return sum(p.hours or 0.0 for p in self.parts)

    @property
    def missing(self) -> list[str]:
        """Options that would complete this stage's projection."""
        return sorted({option_for(p.figure) for p in self.parts if p.value is None})

    @property
    def complete(self) -> bool:
        return not self.missing


def benchmark_parts(params: Params, profile: Profile, latency: Mapping[str, Any] | None,
                    heads: Iterable[str]) -> tuple[Part, ...]:
    """The benchmark stage: (warm-up + repeats) calls per pipeline line and resolution.

    Needs the per-resolution timings of a latency table covering the profile's resolutions;
    dev at step counts that were not measured follows the fitted per-step cost. Heads alone
    (milliseconds per call) and model loading are left out.
    """
    b = profile.bench
    calls = b.warmup + b.repeats
    lines: list[tuple[str, str]] = [(f"dev_{n}steps", f"dev, {n} steps") for n in params.bench.dev_steps]
    lines += [("schnell", "schnell")] + [(f"+{h}", f"schnell + {h}") for h in heads]
    parts = []
    for key, label in lines:
        seconds, sources = 0.0, []
        for res in b.resolutions:
            t = _latency_seconds(latency, key, res)
            if t is None:
                seconds = math.nan
                break
            seconds += t
            sources.append(res)
        value = None if latency is None or math.isnan(seconds) else Figure(
            seconds / len(b.resolutions), f"{latency.get('_source', 'latency table')}, mean over "
                                          f"{', '.join(f'{r}²' for r in sources)}")
        parts.append(Part(f"{label}: {calls} calls x {len(b.resolutions)} sizes", calls * len(b.resolutions),
                          LATENCY_TABLE, value))
    return tuple(parts)


def _latency_seconds(latency: Mapping[str, Any] | None, key: str, res: int) -> float | None:
    if latency is None:
        return None
    if key.startswith("+"):
        rec = latency.get("schnell_plus_head", {}).get(key[1:], {}).get(str(res))
    else:
        rec = latency.get("pipelines", {}).get(key, {}).get(str(res))
        if rec is None and key.startswith("dev_"):
            steps = int(key[4:-5])
            t2i = _dev_t2i(latency, res)
            if t2i:
                return dev_img2img_seconds(t2i, steps, 1.0)[0]  # strength 1: all steps, i.e. text-to-image
    return None if not rec else rec.get("seconds_per_image")


def _dev_t2i(latency: Mapping[str, Any], res: int) -> dict[int, float]:
    out = {}
    for key, by_res in latency.get("pipelines", {}).items():
        rec = by_res.get(str(res)) if key.startswith("dev_") else None
        if rec and rec.get("seconds_per_image"):
            out[int(rec.get("steps", key[4:-5]))] = rec["seconds_per_image"]
    return out


def project(params: Params, profile_name: str, figures: Figures,
            latency: Mapping[str, Any] | None = None) -> list[StageCost]:
    """GPU time of every GPU stage of ``profile_name``; ``latency``: a full benchmark table for
    the benchmark stage's own cost (None: that stage is unknown)."""
    profile = params.profiles[profile_name]
    n = counts(params, profile)
    heads = [h for h in HEADS if h == "unet" or h in params.cyclegan.grid.variant]
    f = figures.get
    grid = params.cyclegan.grid
    per_variant = n.cells // len(grid.variant)  # cells of one variant: lambda_cyc x lr
    cycle_train = "cyclegan_train_s_per_image"
    sets = 3 + len(heads)  # schnell, dev, LoRA and every head
    return [
        StageCost("generate_schnell", (
            Part("enriched", n.enriched, "schnell_s_per_image", f("schnell_s_per_image")),
            Part("baseline", n.baseline, "schnell_s_per_image", f("schnell_s_per_image")))),
        StageCost("refine_dev", (Part("enriched", n.enriched, "dev_s_per_image", f("dev_s_per_image")),)),
        StageCost("diversity", (Part("enriched + baseline", n.enriched + n.baseline, "diversity_s_per_image",
                                     f("diversity_s_per_image")),), "t-SNE runs on the CPU: not counted"),
        StageCost("train_unet", (
            Part(f"{n.unet_train} train x {n.unet_epochs} epochs", n.unet_train * n.unet_epochs,
                 "unet_train_s_per_image", f("unet_train_s_per_image")),
            Part(f"{n.unet_val} val x {n.unet_epochs} epochs", n.unet_val * n.unet_epochs,
                 "unet_train_s_per_image", f("unet_train_s_per_image"))),
            "max_epochs, no early stop: an upper bound; validation counted at the training rate"),
        StageCost("train_cyclegan", tuple(
            Part(f"{per_variant} {v} cells x {count} {what} x {n.cyclegan_epochs} epochs",
                 per_variant * count * n.cyclegan_epochs, f"{cycle_train}.{v}", figures.named(cycle_train, v))
            for v in grid.variant for what, count in (("train", n.cyclegan_train), ("val", n.cyclegan_val))),
            "the whole grid; validation counted at the training rate (an upper bound)"),
        StageCost("select_cyclegan", (), "reads metrics and copies the chosen generators: no GPU work"),
        StageCost("benchmark", benchmark_parts(params, profile, latency, heads),
                  "heads alone and model loading not counted"),
        StageCost("evaluate", (
            Part(f"LoRA generation, {n.test} test", n.test, "schnell_s_per_image", f("schnell_s_per_image")),
            *(Part(f"{h} on {n.test} test", n.test, f"head_s_per_image.{h}", figures.head(h)) for h in heads),
            Part(f"features of {sets} sets x {n.test} test", sets * n.test, "eval_s_per_image",
                 f("eval_s_per_image"))), "FID/KID/SSIM arithmetic on features: not counted"),
    ]


def total_hours(stages: Iterable[StageCost]) -> tuple[float, list[str]]:
    """Hours of the stages whose every figure is known, and the names of the others."""
    stages = list(stages)
    return (sum(s.known_hours for s in stages if s.complete), [s.stage for s in stages if not s.complete])


def wall_hours(gpu_hours: float, gpus: int) -> float:
    """With ``gpus`` GPUs and perfect data-parallel scaling (see the printed assumptions)."""
    if gpus < 1:
        raise CostError(f"--gpus must be >= 1 (got {gpus})")
    return gpu_hours / gpus


# ----------------------------------------------------------------------- measured files


def figures_from_json(data: Mapping[str, Any], source: str, params: Params, profile_name: str) -> Figures:
    """Figures from a measured JSON: the benchmark's full table (``reports/latency.json`` or
    ``facerefine bench``'s ``latency.json``), ``heads_throughput.py``'s results, or
    ``{"gpu": ..., "throughputs": {"schnell_s_per_image": ...}}``. Only figures at the
    profile's image size are taken."""
    size = params.profiles[profile_name].image_size
    if "throughputs" in data:
        per_name = {f"{figure}.{name}" for figure, names in PER_NAME.items() for name in names}
        unknown = sorted(set(data["throughputs"]) - set(FIGURES) - per_name)
        if unknown:
            raise CostError(f"{source}: unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}"
                            f" and {', '.join(sorted(per_name))}")
        # The embedded benchmark table first: figures measured at the stages' own batch win over it.
        table = data.get(LATENCY_KEY)
        base = _from_latency(table, source, params, size) if table else Figures()
        notes = data.get("sources", {})  # per figure: what was measured (size, batch), shown beside it
        tag = lambda k: f"{source} ({notes[k]})" if k in notes else source  # noqa: E731
        measured = Figures({k: Figure(float(v), tag(k)) for k, v in data["throughputs"].items() if v is not None},
                           data.get("gpu"))
        return base.merged(measured)
    if "pipelines" in data and "environment" in data:
        return _from_latency(data, source, params, size)
    if "results" in data and "device" in data:
        return _from_heads_throughput(data, source, size)
    raise CostError(f"{source}: not a benchmark table, a heads_throughput result or a {{'throughputs': ...}} file")


def _from_latency(data: Mapping[str, Any], source: str, params: Params, size: int) -> Figures:
    env = data["environment"]
    tag = f"{source} ({data.get('mode')} mode, {size}²)"
    values: dict[str, Figure] = {}
    schnell = data["pipelines"].get("schnell", {}).get(str(size))
    if schnell and schnell.get("seconds_per_image"):
        values["schnell_s_per_image"] = Figure(schnell["seconds_per_image"], tag)
    t2i = _dev_t2i(data, size)
    if t2i:
        seconds, how = dev_img2img_seconds(t2i, params.dev.steps, params.dev.strength)
        values["dev_s_per_image"] = Figure(seconds, f"{tag}: {how}")
    for head, entry in data.get("heads", {}).items():
        if not entry.get("end_to_end", True):
            continue  # the reference generator is not a head of the pipeline
        cell = entry.get("resolutions", {}).get(str(size), {})
        rates = [(int(b), r["images_per_second"]) for b, r in cell.get("batches", {}).items()
                 if r.get("images_per_second")]
        if rates:
            batch, rate = max(rates, key=lambda br: br[1])
            values[f"head_s_per_image.{head}"] = Figure(1 / rate, f"{tag}, batch {batch}")
    return Figures(values, env.get("device_name") if env.get("device") == "cuda" else f"CPU: {env.get('device_name')}")


def _from_heads_throughput(data: Mapping[str, Any], source: str, size: int) -> Figures:
    best: dict[str, tuple[float, str]] = {}
    for r in data["results"]:
        label = str(r.get("model", ""))
        head = next((h for h in ("esa", "unet", "cyclegan") if label.startswith(h)), None)
        if head is None or r.get("size") != size or not r.get("images_per_s"):
            continue
        if head not in best or r["images_per_s"] > best[head][0]:
            best[head] = (r["images_per_s"],
                          f"{source} ({label}, {size}², batch {r.get('batch')}, {data.get('dtype')})")
    values = {f"head_s_per_image.{h}": Figure(1 / rate, tag) for h, (rate, tag) in best.items()}
    gpu = data["device"] if data.get("device_type") == "cuda" else f"CPU: {data['device']}"
    return Figures(values, gpu)


def load_figures(path: str | Path, params: Params, profile_name: str) -> tuple[Figures, dict[str, Any] | None]:
    """Figures from one file, and the file itself when it is a benchmark table (for the benchmark stage)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CostError(f"{path}: cannot read a JSON object ({err})") from None
    if not isinstance(data, dict):
        raise CostError(f"{path}: expected a JSON object, got {type(data).__name__}")
    figures = figures_from_json(data, path.as_posix(), params, profile_name)
    if "pipelines" in data and "environment" in data:
        table = {**data, "_source": path.as_posix()}
    elif isinstance(data.get(LATENCY_KEY), dict):
        table = {**data[LATENCY_KEY], "_source": f"{path.as_posix()} ({LATENCY_KEY})"}
    else:
        table = None
    return figures, table


# ---------------------------------------------------------------------------- printing


def _hours(h: float | None) -> str:
    return "unknown" if h is None else f"{h:,.1f}" if h >= 1 else f"{h:.3f}"


def render_cost_report(stages: list[StageCost], figures: Figures, *, profile_name: str, gpus: int, params: Params) -> str:
    """The per-stage table, the totals for 1 and ``gpus`` GPUs, the figures' sources and the assumptions."""
    profile = params.profiles[profile_name]
    n = counts(params, profile)
    gpu = figures.gpu or "an unnamed GPU"
    lines = [f"Projected GPU time of profile '{profile_name}' on {gpu}", ""]
    head = f"{'stage':<18}{'image passes':>14}{'GPU-hours':>12}{f'wall h, {gpus} GPUs':>18}  notes"
    lines += [head, "-" * len(head)]
    for s in stages:
        known = s.known_hours if s.complete else None
        if not s.parts:
            cell, wall, note = "0", "0", s.note
        elif s.complete:
            cell, wall, note = _hours(known), _hours(wall_hours(known, gpus)), s.note
        else:
            partial = f" (>= {_hours(s.known_hours)} known)" if s.known_hours else ""
            cell, wall = "unknown", "unknown"
            note = f"needs {', '.join(s.missing)}{partial}" + (f"; {s.note}" if s.note else "")
        lines.append(f"{s.stage:<18}{s.images:>14,}{cell:>12}{wall:>18}  {note}")
    total, unknown = total_hours(stages)
    lines.append("-" * len(head))
    label = "total" if not unknown else "total of known"
    lines.append(f"{label:<18}{'':>14}{_hours(total):>12}{_hours(wall_hours(total, gpus)):>18}"
                 + (f"  without {', '.join(unknown)}" if unknown else ""))
    lines += ["", f"1 GPU: {_hours(total)} h; {gpus} GPUs: {_hours(wall_hours(total, gpus))} h wall-clock"
              + (" (known stages only)" if unknown else ""), "", "Figures (seconds per image):"]
    used = {p.figure: p.value for s in stages for p in s.parts}
    for name in sorted(used):
        value = used[name]
        lines.append(f"  {name:<30} " + ("unknown" if value is None else f"{value.seconds:.4g}  from {value.source}"))
    lines += ["", "Assumptions:",
              "  image passes: images x epochs (training) or x sets (evaluate), each at one figure's seconds",
              f"  images from params.yaml, profile '{profile_name}': {n.enriched:,} enriched names, "
              f"{n.baseline:,} baseline; split {params.prompts.split.train:g}/{params.prompts.split.val:g}/"
              f"{params.prompts.split.test:g} -> {n.train:,} train, {n.val:,} val, {n.test:,} test (expected counts)",
              f"  train_unet: data_fraction {profile.unet.data_fraction:g} of the {n.enriched:,} pairs -> "
              f"{n.unet_train:,} train + "
              f"{n.unet_val:,} val images, {n.unet_epochs} epochs at {profile.unet.image_size}²",
              f"  train_cyclegan: {n.cells} grid cells, data_fraction {profile.cyclegan.data_fraction:g} of the "
              f"{n.enriched:,} pairs -> "
              f"{n.cyclegan_train:,} train + {n.cyclegan_val:,} val images, {n.cyclegan_epochs} epochs "
              f"({profile.cyclegan.epochs} + {profile.cyclegan.epochs_decay} decay) at {profile.cyclegan.image_size}²",
              f"  generation, refinement, heads and features at {profile.image_size}²; refine_dev runs "
              f"{img2img_steps(params.dev.steps, params.dev.strength)} of {params.dev.steps} steps "
              f"(strength {params.dev.strength:g})",
              f"  wall-clock with {gpus} GPUs = GPU-hours / {gpus}: perfect data-parallel scaling "
              "(accelerate launch over shards; grid cells are independent runs); model loading not counted",
              "  CPU-only stages (prompts, select_cyclegan, report, summary) cost no GPU time"]
    return "\n".join(lines)
