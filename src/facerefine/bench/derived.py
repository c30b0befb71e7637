"""Derived numbers as pure functions: images/s, s/image, :func:`saving`, :func:`overhead`,
achieved TFLOP/s and the compute bound; :func:`derive` builds the saving table, and
:func:`latency_headline` picks the few numbers that go to ``metrics/latency.json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def images_per_second(seconds: float, images: int = 1) -> float:
    """Throughput of one call that produced ``images`` images in ``seconds``."""
    return images / _positive("seconds", seconds)


def seconds_per_image(seconds: float, images: int = 1) -> float:
    return seconds / _positive("images", images)


def saving(cost: float, baseline: float) -> float:
    """Fraction of ``baseline``'s time saved by ``cost``: ``1 - cost / baseline``.

    The paper's headline: schnell + head vs dev, 82%.
    """
    return 1.0 - cost / _positive("baseline", baseline)


def overhead(cost: float, baseline: float) -> float:
    """Relative extra time of ``cost`` over ``baseline``: ``cost / baseline - 1``
    (schnell + head vs schnell alone: what the head adds)."""
    return cost / _positive("baseline", baseline) - 1.0


def achieved_tflops(gflop_per_image: float, images_per_sec: float) -> float:
    return gflop_per_image * images_per_sec / 1e3


def compute_bound_images_per_second(gflop_per_image: float, peak_tflops: float) -> float:
    """Images/s if every FLOP ran at the device's peak: the ceiling no kernel beats."""
    return peak_tflops * 1e3 / _positive("gflop_per_image", gflop_per_image)


def _maybe(fn: Callable[..., float], *args: float | None) -> float | None:
    """``fn(*args)`` or None when an input is missing (a skipped measurement)."""
    if any(a is None for a in args):
        return None
    return round(float(fn(*args)), 6)


def derive(pipelines: Mapping[str, Mapping[int, float | None]],
           end_to_end: Mapping[str, Mapping[int, float | None]],
           heads_alone: Mapping[str, Mapping[int, float | None]],
           resolutions: Iterable[int]) -> dict[str, Any]:
    """Savings and overheads from seconds per image.

    ``pipelines``: {"dev"|"schnell": {resolution: s/image}}; ``end_to_end``: {head:
    {resolution: s/image of schnell + head}}; ``heads_alone``: {head: {resolution:
    s/image}}. Missing values (skipped sizes) give None. ``mean`` averages over the
    resolutions where schnell and every head have a value (the paper reports an average
    saving): the means are compared side by side, so they must cover the same sizes.
    """
    out: dict[str, Any] = {}
    per_head: dict[str, dict[int, float]] = {}
    schnell_savings: dict[int, float] = {}
    for res in resolutions:
        dev = pipelines.get("dev", {}).get(res)
        schnell = pipelines.get("schnell", {}).get(res)
        row: dict[str, Any] = {"schnell_saving_vs_dev": _maybe(saving, schnell, dev),
                               "dev_over_schnell": _maybe(lambda a, b: a / b, dev, schnell), "heads": {}}
        if row["schnell_saving_vs_dev"] is not None:
            schnell_savings[res] = row["schnell_saving_vs_dev"]
        for head, by_res in end_to_end.items():
            e2e = by_res.get(res)
            alone = heads_alone.get(head, {}).get(res)
            cell = {"saving_vs_dev": _maybe(saving, e2e, dev),
                    "overhead_vs_schnell": _maybe(overhead, e2e, schnell),
                    "head_alone_over_schnell": _maybe(lambda a, b: a / _positive("schnell", b), alone, schnell)}
            if cell["saving_vs_dev"] is not None:
                per_head.setdefault(head, {})[res] = cell["saving_vs_dev"]
            row["heads"][head] = cell
        out[str(res)] = row
    common = [res for res in schnell_savings if all(res in per_head.get(h, {}) for h in end_to_end)]
    mean = lambda by_res: round(float(statistics.fmean(by_res[r] for r in common)), 6) if common else None  # noqa: E731
    out["mean"] = {"resolutions": common, "schnell_saving_vs_dev": mean(schnell_savings),
                   "heads": {h: {"saving_vs_dev": mean(per_head.get(h, {}))} for h in end_to_end}}
    return out


# The paper's numbers (§5.3): ESA-CycleGAN head and FLUX.1-schnell at 512², A100.
PAPER = {"device": "NVIDIA A100", "resolution": 512, "head": "ESA-CycleGAN",
         "head_images_per_second": 11.2, "schnell_images_per_second": 0.25,
         "saving_vs_dev": 0.82, "peak_bf16_tflops": 312.0, "peak_fp32_tflops": 19.5}  # A100 datasheet

# Dense bf16 tensor-core peaks from NVIDIA's datasheets, matched as substrings of the device
# name (first match wins, so the more specific names come first). Unknown devices: no bound.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
)


def peak_tflops_for(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def spi_of(rec: Mapping[str, Any] | None) -> float | None:
    return None if not rec else rec.get("seconds_per_image")


def head_alone_spi(cell: Mapping[str, Any] | None) -> float | None:
    """Seconds per image of a head at its smallest batch (latency, as in the paper)."""
    if not cell or "batches" not in cell:
        return None
    times = [r.get("seconds_per_image") for b, r in sorted(cell["batches"].items(), key=lambda kv: int(kv[0]))]
    return next((t for t in times if t is not None), None)


def dev_key(steps: int) -> str:
    """The ``pipelines`` entry of dev timed at ``steps`` steps, e.g. ``dev_50steps``."""
    return f"dev_{steps}steps"


def seconds_tables(result: Mapping[str, Any], dev_steps: int):
    """Seconds per image of (dev at ``dev_steps``, schnell), schnell + head, head alone: ``derive``'s inputs."""
    per_res = lambda by_res: {int(r): spi_of(rec) for r, rec in by_res.items()}  # noqa: E731
    pipes = {"dev": per_res(result["pipelines"].get(dev_key(dev_steps), {})),
             "schnell": per_res(result["pipelines"].get("schnell", {}))}
    e2e = {h: per_res(by_res) for h, by_res in result["schnell_plus_head"].items()}
    alone = {h: {int(r): head_alone_spi(cell) for r, cell in e["resolutions"].items()}
             for h, e in result["heads"].items()}
    return pipes, e2e, alone


def derive_all(result: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`derive` against dev at each timed step count, keyed by the step count."""
    sizes = [int(r) for r in result["settings"]["resolutions"]]
    return {str(s): derive(*seconds_tables(result, s), sizes) for s in result["settings"]["dev"]["steps"]}


def best_batch(cell: Mapping[str, Any] | None) -> tuple[int, float] | None:
    if not cell or "batches" not in cell:
        return None
    rates = [(int(b), r["images_per_second"]) for b, r in cell["batches"].items() if "images_per_second" in r]
    return max(rates, key=lambda br: br[1]) if rates else None


def paper_reference(result: Mapping[str, Any], head_gflop: float | None = None) -> dict[str, Any]:
    """The paper's 512² numbers next to this run's (when 512² was measured). ``head_gflop``: the
    paper-size ESA head's GFLOP per 512² image, to turn 11.2 images/s into TFLOP/s."""
    res = str(PAPER["resolution"])
    out: dict[str, Any] = {**PAPER}
    # What the paper's own numbers imply (not stated in the paper): dev's time if the 82% held
    # at 512², and the TFLOP/s its head reached if it is our ESA architecture at paper size.
    schnell_s, head_s = 1 / PAPER["schnell_images_per_second"], 1 / PAPER["head_images_per_second"]
    out["implied_dev_seconds_per_image"] = round((schnell_s + head_s) / (1 - PAPER["saving_vs_dev"]), 2)
    this: dict[str, Any] = {"schnell_images_per_second": None, "dev_images_per_second": None, "heads": {}}
    steps = result["headline_dev_steps"]
    for role, key in (("schnell", "schnell"), ("dev", dev_key(steps))):
        rec = result["pipelines"].get(key, {}).get(res)
        this[f"{role}_images_per_second"] = rec.get("images_per_second") if rec else None
    this["dev_steps"] = steps
    derived = result.get("derived", {}).get(str(steps), {})
    for name, entry in result["heads"].items():
        cell = entry["resolutions"].get(res)
        if not cell or "batches" not in cell:
            continue
        smallest = min(cell["batches"], key=int)
        best = best_batch(cell)
        this["heads"][name] = {
            "images_per_second_smallest_batch": cell["batches"][smallest].get("images_per_second"),
            "smallest_batch": int(smallest),
            "images_per_second_best": best[1] if best else None,
            "best_batch": best[0] if best else None,
            "gflop_per_image": cell["gflop_per_image"],
            "compute_bound_images_per_second": cell["compute_bound_images_per_second"],
            "vs_paper": None if not best else round(best[1] / PAPER["head_images_per_second"], 4),
            "saving_vs_dev": derived.get(res, {}).get("heads", {}).get(name, {}).get("saving_vs_dev"),
            "saving_vs_dev_mean": derived.get("mean", {}).get("heads", {}).get(name, {}).get("saving_vs_dev"),
        }
    if head_gflop is not None:
        tf = achieved_tflops(head_gflop, PAPER["head_images_per_second"])
        out["head_gflop_per_image"] = round(head_gflop, 2)
        out["implied_head_tflops"] = round(tf, 3)
        out["implied_fraction_of_a100_bf16_peak"] = round(tf / PAPER["peak_bf16_tflops"], 5)
        out["a100_compute_bound_images_per_second"] = round(
            compute_bound_images_per_second(head_gflop, PAPER["peak_bf16_tflops"]), 1)
    out["this_run_512"] = this
    return out


def latency_headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a person compares between runs, for ``metrics/latency.json``.

    The saving of schnell + head vs dev (at ``headline_dev_steps``) averaged over the
    resolutions, as the paper quotes it, with the per-resolution values beside it, each
    head's best images/s at the paper's 512² (the largest timed size when 512² was not), and
    what ran (eager or compiled FLUX and heads). About 6 + 4·(heads + 1) numbers: the full
    table (every pipeline x resolution x batch, eager beside compiled) is ``reports/latency.json``.
    """
    steps = result["headline_dev_steps"]
    derived = result["derived"][str(steps)]
    sizes = sorted(int(r) for r in result["settings"]["resolutions"])
    heads = list(result["schnell_plus_head"])
    mean = {h: derived["mean"]["heads"][h]["saving_vs_dev"] for h in heads}
    mean["schnell"] = derived["mean"]["schnell_saving_vs_dev"]
    at = PAPER["resolution"] if PAPER["resolution"] in sizes else sizes[-1]

    def best(head: str) -> float | None:
        found = best_batch(result["heads"].get(head, {}).get("resolutions", {}).get(str(at)))
        return None if found is None else found[1]

    return {
        "mode": result["mode"],
        "meaningful": result["meaningful"],
        "dev_steps": steps,
        "saving_vs_dev": {"mean": mean,
                          **{str(r): {h: derived[str(r)]["heads"][h]["saving_vs_dev"] for h in heads} for r in sizes}},
        "head_images_per_second": {"resolution": at, **{h: best(h) for h in heads}},
        "compiled": {"flux": result["environment"].get("flux_compile", "none"),
                     "heads": bool(result["environment"].get("head_compile"))},
    }
