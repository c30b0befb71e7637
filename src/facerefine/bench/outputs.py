"""The outputs: ``metrics/latency.json`` (the headline, a few numbers), ``reports/latency.json``
(the full table), ``reports/latency.md`` (with the paper's figures alongside) and
``reports/latency.png`` (Fig. 6), plus the terminal summary and the MLflow metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facerefine import paths
from facerefine.bench.derived import PAPER, head_alone_spi, spi_of, dev_key, latency_headline
from facerefine.io import save_figure

SMOKE_BANNER = ("**Smoke stand-ins: these numbers mean nothing about real latency.** The pipelines are tiny "
                "random networks with FLUX's architecture and the heads are the smoke profile's; they "
                "exercise the benchmark, not the models. Real numbers: `dvc exp run -S profile=paper` "
                "(real weights) or `facerefine bench --mode arch` (full-size random weights) on a GPU.")
CPU_BANNER = ("**Measured on a CPU: absolute times are not GPU latency.** Only ratios measured side by side "
              "in this run carry over, and only roughly.")
ARCH_NOTE = ("Architecture-only mode: full-size FLUX.1 networks and paper-size heads with random weights. "
             "Latency does not depend on weight values; the images are noise. Tokenizers are stand-ins; "
             "prompts are padded to the same lengths (77 CLIP tokens, max_sequence_length T5 tokens).")
MODE_WORDS = {"smoke": "tiny random stand-ins", "weights": "real weights",
              "arch": "architecture only (full-size, random weights)"}


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _fmt_pct(x: float | None, sign: bool = False) -> str:
    return "—" if x is None else f"{x * 100:+.1f}%" if sign else f"{x * 100:.1f}%"


def _cell(rec: Mapping[str, Any] | None) -> str:
    if not rec:
        return "—"
    if "skipped" in rec:
        return "skipped"
    return f"{fmt_seconds(rec['seconds_per_image'])} ({rec['images_per_second']:.3g}/s)"


def caveats(result: Mapping[str, Any]) -> list[str]:
    notes = []
    if result["mode"] == "smoke":
        notes.append(SMOKE_BANNER)
    if result["environment"]["device"] != "cuda" and result["mode"] != "smoke":
        notes.append(CPU_BANNER)
    if result["mode"] == "arch":
        notes.append(ARCH_NOTE)
    cap = result["settings"].get("max_steps")
    if cap:
        notes.append(f"**Steps capped at {cap}** (`profiles.<profile>.max_steps`, the rehearsal's CPU setting): "
                     f"every FLUX line ran at most {cap} denoising steps whatever its label (e.g. dev_50steps), "
                     "so the savings compare capped runs, not the real pipelines.")
    return notes


def _saving_section(result: Mapping[str, Any], steps: int, *, headline: bool) -> list[str]:
    """Saving vs dev at ``steps`` per resolution and averaged over them, and the head's overhead."""
    sizes = [str(r) for r in result["settings"]["resolutions"]]
    der = result["derived"][str(steps)]
    title = f"## Saving vs dev at {steps} steps" + (" (the headline)" if headline else "")
    lines = [title, "", f"| | {' | '.join(f'{s}²' for s in sizes)} | mean |", "|---" * (len(sizes) + 2) + "|"]
    lines.append("| schnell alone: saving vs dev | " + " | ".join(
        _fmt_pct(der[s]["schnell_saving_vs_dev"]) for s in sizes) + f" | {_fmt_pct(der['mean']['schnell_saving_vs_dev'])} |")
    for head in result["schnell_plus_head"]:
        lines.append(f"| schnell + {head}: saving vs dev | " + " | ".join(
            _fmt_pct(der[s]["heads"][head]["saving_vs_dev"]) for s in sizes)
            + f" | **{_fmt_pct(der['mean']['heads'][head]['saving_vs_dev'])}** |")
        if headline:
            lines.append(f"| schnell + {head}: overhead vs schnell | " + " | ".join(
                _fmt_pct(der[s]["heads"][head]["overhead_vs_schnell"], sign=True) for s in sizes) + " | |")
    lines.append("")
    if headline:
        dev = result["settings"]["dev"]
        lines += [f"The headline is the mean over the resolutions (the paper quotes an average, 82%), against dev "
                  f"at {steps} steps (`bench.headline_dev_steps`); every row's mean covers the same sizes, those "
                  f"measured for all of them: {', '.join(f'{r}²' for r in der['mean'].get('resolutions', [])) or 'none'}. "
                  f"Dev is timed at {', '.join(map(str, dev['steps']))} steps (`bench.dev_steps`): "
                  f"`refine_dev` is set to {dev['refine_steps']} (`dev.steps`, the paper's img2img setting) and, at "
                  f"strength {dev['refine_strength']:g} (`dev.strength`), denoises "
                  f"{dev['refine_denoised']} of them; 28 is "
                  "diffusers' default for FLUX.1-dev text-to-image. The paper does not say which it timed, and "
                  "the saving depends on it.",
                  "", "saving = 1 − t(schnell + head) / t(dev); overhead = t(schnell + head) / t(schnell) − 1, "
                  "both from end-to-end runs measured side by side in this run.", ""]
    return lines


def compiled_rows(result: Mapping[str, Any]) -> list[tuple[str, str, int, Mapping[str, Any]]]:
    """(what, size, batch, record) of every measurement timed both compiled and eager."""
    rows = [(f"FLUX {key} text-to-image", size, 1, rec) for key, by_size in result["pipelines"].items()
            for size, rec in by_size.items() if "eager" in rec]
    rows += [(f"{name} alone", size, int(b), rec) for name, entry in result["heads"].items()
             for size, cell in entry["resolutions"].items() for b, rec in cell.get("batches", {}).items()
             if "eager" in rec]
    return rows


def _compiled_section(result: Mapping[str, Any]) -> list[str]:
    """Eager vs compiled, side by side from this run; nothing when nothing was compiled."""
    rows = compiled_rows(result)
    env = result["environment"]
    if not rows:
        return ["## Compiled vs eager", "", f"Nothing was compiled in this run (FLUX `{env['flux_compile']}`, "
                f"heads {'compiled' if env['head_compile'] else 'eager'}: `bench.compile` auto compiles heads "
                "on CUDA only, `profiles.<p>.compile` sets FLUX's).", ""]
    lines = ["## Compiled vs eager", "", "The headline tables above use what the pipeline runs (FLUX "
             f"`{env['flux_compile']}`, heads {'compiled' if env['head_compile'] else 'eager'}); the same work "
             "timed eager in the same run. Compile: the first call's excess over the steady state, the compile "
             "paid there in this process (small where an earlier row compiled the same graph, or a warm "
             "compile cache held it).", "",
             "| what | size | batch | eager s/image | compiled s/image | speed-up | compile |", "|---|---|---|---|---|---|---|"]
    for what, size, batch, rec in sorted(rows, key=lambda r: (r[0], int(r[1]), r[2])):
        speedup = rec.get("speedup_vs_eager")
        lines.append(f"| {what} ({rec['variant']}) | {size}² | {batch} | {fmt_seconds(rec['eager'].get('seconds_per_image'))} | "
                     f"{fmt_seconds(rec.get('seconds_per_image'))} | {'—' if speedup is None else f'{speedup:.2f}×'} | "
                     f"{fmt_seconds(rec.get('compile_seconds'))} |")
    return lines + [""]


def render_markdown(result: Mapping[str, Any], figure: str = "latency.png") -> str:
    env, st = result["environment"], result["settings"]
    sizes = [str(r) for r in st["resolutions"]]
    head_hdr = " | ".join(f"{s}²" for s in sizes)
    sep = "|---" * (len(sizes) + 1) + "|"
    lines = ["# Latency: dev vs schnell vs schnell + head (paper §5.3, Fig. 6)", ""]
    lines += [f"> {note}\n" for note in caveats(result)]
    lines += [f"Mode: **{result['mode']}** ({MODE_WORDS[result['mode']]}) · profile `{result['profile']}` · "
              f"{env['device']} ({env['device_name']}) · pipelines {env['pipeline_dtype']} · heads "
              f"{env['head_precision']}{', channels_last' if env['head_channels_last'] else ''}"
              f"{', torch.compile' if env['head_compile'] else ''} · FLUX compile `{env['flux_compile']}` · "
              f"{env['threads']} thread(s) · median of "
              f"{st['repeats']} pipeline / {st['head_repeats']} head calls after {st['warmup']} / "
              f"{st['head_warmup']} warm-up.", "", f"![Seconds per image vs resolution]({figure})", "",
              "## Seconds per image (images per second)", "", f"| pipeline | {head_hdr} |", sep]
    dev, sch = st["dev"], st["schnell"]
    for steps in dev["steps"]:
        lines.append(f"| FLUX.1-dev text-to-image ({steps} steps, guidance {dev['guidance']:g}) | "
                     + " | ".join(_cell(result["pipelines"][dev_key(steps)].get(s)) for s in sizes) + " |")
    lines.append(f"| FLUX.1-schnell text-to-image ({sch['steps']} steps) | "
                 + " | ".join(_cell(result["pipelines"]["schnell"].get(s)) for s in sizes) + " |")
    for head, by_res in result["schnell_plus_head"].items():
        lines.append(f"| schnell + {head} | " + " | ".join(_cell(by_res.get(s)) for s in sizes) + " |")
    lines += ["", "Pipeline times include text encoding; alone it takes "
              + ", ".join(f"{fmt_seconds(result['text_encoding'][r].get('seconds_per_call'))} for {r} "
                          f"({st[r]['max_sequence_length']} T5 tokens)" for r in ("dev", "schnell")
                          if r in result["text_encoding"]) + " (any resolution).", ""]

    headline_steps = result["headline_dev_steps"]
    for steps in sorted(dev["steps"], key=lambda n: n != headline_steps):  # the headline's first
        lines += _saving_section(result, steps, headline=steps == headline_steps)

    lines += ["## Heads alone", "", "| head | parameters | size | GFLOP/image | batch | s/batch | images/s | "
              "TFLOP/s | % of peak |", "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["heads"].items():
        for s, cell in sorted(entry["resolutions"].items(), key=lambda kv: int(kv[0])):  # JSON sorts as text
            if "skipped" in cell:
                lines.append(f"| {name} | {entry['parameters']:,} | {s}² | — | — | skipped: {cell['skipped']} | | | |")
                continue
            for b, rec in sorted(cell["batches"].items(), key=lambda kv: int(kv[0])):
                if "skipped" in rec:
                    lines.append(f"| {name} | {entry['parameters']:,} | {s}² | {cell['gflop_per_image']:.3g} | {b} "
                                 f"| {rec['skipped']} | | | |")
                    continue
                lines.append(f"| {name} | {entry['parameters']:,} | {s}² | {cell['gflop_per_image']:.3g} | {b} | "
                             f"{fmt_seconds(rec['seconds_per_call'])} | {rec['images_per_second']:.3g} | "
                             f"{rec['achieved_tflops']:.3g} | {_fmt_pct(rec['fraction_of_peak'])} |")
    lines += ["", "Sources: " + "; ".join(f"`{n}`: {e['source']}" for n, e in result["heads"].items())
              + ". FLOPs are exact (2 × multiply-adds of convolutions, counted on the meta device). "
              + (f"Peak: {env['peak_bf16_tflops']:g} dense bf16 TFLOP/s (datasheet, or --peak-tflops)."
                 if env["peak_bf16_tflops"] else
                 "No peak known for this device (CPU or unlisted GPU; --peak-tflops sets one), so no % of peak."),
              ""]

    lines += _compiled_section(result)

    p, this = result["paper"], result["paper"]["this_run_512"]
    num = lambda v: "not measured" if v is None else f"{v:.3g}"  # noqa: E731
    lines += [f"## Against the paper ({p['device']}, {p['resolution']}²)", "",
              f"| | paper | this run, {p['resolution']}² |", "|---|---|---|",
              f"| FLUX.1-schnell images/s | {p['schnell_images_per_second']} | {num(this['schnell_images_per_second'])} |",
              f"| FLUX.1-dev images/s ({this['dev_steps']} steps here) | ≈{1 / p['implied_dev_seconds_per_image']:.3g} "
              "(implied, see below) | "
              f"{num(this['dev_images_per_second'])} |"]
    if this["heads"]:
        for name, h in this["heads"].items():
            bound = h["compute_bound_images_per_second"]
            lines.append(f"| head images/s: {name} | {p['head_images_per_second']} ({p['head']}) | "
                         f"{num(h['images_per_second_smallest_batch'])} at batch {h['smallest_batch']}, "
                         f"{num(h['images_per_second_best'])} at batch {h['best_batch']} "
                         f"({h['gflop_per_image']:.4g} GFLOP/image; compute bound "
                         f"{'n/a, no peak known' if bound is None else f'{bound:.4g}'}) |")
        for name, h in this["heads"].items():
            if h["saving_vs_dev"] is not None:
                lines.append(f"| saving of schnell + {name} vs dev | {p['saving_vs_dev']:.0%} (average over sizes) | "
                             f"{_fmt_pct(h['saving_vs_dev'])} (mean over this run's sizes: "
                             f"{_fmt_pct(h['saving_vs_dev_mean'])}) |")
    else:
        lines.append(f"| head images/s | {p['head_images_per_second']} ({p['head']}) | not measured |")
    lines += ["", f"From the paper's numbers: schnell {1 / p['schnell_images_per_second']:.1f} s and the head "
              f"{1 / p['head_images_per_second'] * 1e3:.0f} ms per image; an 82% saving at "
              f"{p['resolution']}² would put dev at ≈{p['implied_dev_seconds_per_image']} s per image."]
    if "implied_head_tflops" in p:
        lines.append(f"The paper-size ESA generator built here costs {p['head_gflop_per_image']} GFLOP per "
                     f"{p['resolution']}² image, so 11.2 images/s is {p['implied_head_tflops']} TFLOP/s, "
                     f"{_fmt_pct(p['implied_fraction_of_a100_bf16_peak'])} of an A100's "
                     f"{p['peak_bf16_tflops']:g} dense bf16 TFLOP/s (compute bound ≈"
                     f"{p['a100_compute_bound_images_per_second']:g} images/s), or "
                     f"{_fmt_pct(p['implied_head_tflops'] / p['peak_fp32_tflops'])} of its {p['peak_fp32_tflops']:g} "
                     "plain-float32 TFLOP/s; the paper states neither its precision nor its batch size.")
    lines += ["", "## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines.append("")
    return "\n".join(lines)


def plot_latency(result: Mapping[str, Any], path: str | Path) -> None:
    """Fig. 6: seconds per image vs resolution, one line per pipeline, log-scale y."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    sizes = [int(r) for r in result["settings"]["resolutions"]]
    fig = Figure(figsize=(7.2, 5.0))
    ax = fig.add_subplot()
    headline_steps = result["headline_dev_steps"]
    seconds_by_line: list[tuple[str, list[float | None], dict[str, Any]]] = [
        (f"FLUX.1-dev, {steps} steps", [spi_of(result["pipelines"][dev_key(steps)].get(str(s))) for s in sizes],
         {"marker": "o", "linestyle": "-" if steps == headline_steps else ":"})
        for steps in result["settings"]["dev"]["steps"]]
    seconds_by_line.append(
        ("FLUX.1-schnell", [spi_of(result["pipelines"]["schnell"].get(str(s))) for s in sizes], {"marker": "o"}))
    for head, by_res in result["schnell_plus_head"].items():
        seconds_by_line.append((f"schnell + {head}", [spi_of(by_res.get(str(s))) for s in sizes], {"marker": "s"}))
    for head, entry in result["heads"].items():
        seconds_by_line.append((f"{head} alone (batch {min(result['settings']['head_batch_sizes'])})",
                                [head_alone_spi(entry["resolutions"].get(str(s))) for s in sizes],
                                {"marker": "^", "linestyle": "--"}))
    for label, ys, style in seconds_by_line:
        pts = [(x, y) for x, y in zip(sizes, ys) if y is not None and y > 0]
        if pts:
            ax.plot(*zip(*pts), label=label, **style)
    p = PAPER
    if min(sizes) <= p["resolution"] <= max(sizes):  # only where it does not stretch the axis
        ax.plot([p["resolution"]] * 2, [1 / p["schnell_images_per_second"], 1 / p["head_images_per_second"]],
                linestyle="none", marker="*", markersize=12, color="black", label="paper, A100: schnell / ESA head")
    ax.set_yscale("log")
    # plain seconds at 1-2-5 steps rather than 6x10^-1 labels
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xscale("log", base=2)  # resolutions double: even spacing
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("resolution (pixels per side)")
    ax.set_ylabel("seconds per image (median)")
    env = result["environment"]
    title = f"Seconds per image vs resolution (paper Fig. 6)\n{result['mode']} mode on {env['device_name']}"
    if result["mode"] == "smoke":
        title += "\nsmoke stand-ins: these numbers mean nothing about real latency"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def summary_text(result: Mapping[str, Any]) -> str:
    """A terminal-sized table: seconds per image per pipeline and resolution, and the savings."""
    sizes = [str(r) for r in result["settings"]["resolutions"]]
    steps = result["headline_dev_steps"]
    derived = result["derived"][str(steps)]
    rows: list[tuple[str, list[str]]] = [
        (f"FLUX.1-dev, {n} steps", [fmt_seconds(spi_of(result["pipelines"][dev_key(n)].get(s))) for s in sizes])
        for n in result["settings"]["dev"]["steps"]]
    rows.append(("FLUX.1-schnell", [fmt_seconds(spi_of(result["pipelines"]["schnell"].get(s))) for s in sizes]))
    rows += [(f"schnell + {h}", [fmt_seconds(spi_of(by.get(s))) for s in sizes])
             for h, by in result["schnell_plus_head"].items()]
    rows += [(f"{h} alone", [fmt_seconds(head_alone_spi(e["resolutions"].get(s))) for s in sizes])
             for h, e in result["heads"].items()]
    rows += [(f"saving, schnell + {h} vs dev {steps}",
              [_fmt_pct(derived[s]["heads"][h]["saving_vs_dev"]) for s in sizes]
              + [_fmt_pct(derived["mean"]["heads"][h]["saving_vs_dev"])]) for h in result["schnell_plus_head"]]
    width = max(len(name) for name, _ in rows)
    env = result["environment"]
    lines = [f"mode {result['mode']} on {env['device']} ({env['device_name']}); seconds per image, median"]
    if result["mode"] == "smoke":
        lines.append("smoke stand-ins: these numbers mean nothing about real latency")
    lines.append(" " * width + "".join(f"{s + '²':>12}" for s in sizes) + f"{'mean':>12}")
    lines += [name.ljust(width) + "".join(f"{v:>12}" for v in values) for name, values in rows]
    return "\n".join(lines)


def mlflow_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers worth a metric: the headline, and everything numeric except raw samples and settings."""
    keep = ("pipelines", "schnell_plus_head", "heads", "text_encoding", "derived")

    def strip(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: strip(v) for k, v in node.items() if k not in ("timing", "parameters")}
        return node

    out = {k: strip(result[k]) for k in keep if k in result}
    out["headline"] = latency_headline(result)
    out["seconds_total"] = result.get("seconds_total")
    return out


@dataclass(frozen=True)
class Outputs:
    """Where the benchmark writes: the headline (a DVC metric), the full table, the figure, the report."""

    metrics: Path = paths.METRICS / "latency.json"
    table: Path = paths.REPORTS / "latency.json"
    figure: Path = paths.REPORTS / "latency.png"
    report: Path = paths.REPORTS / "latency.md"

    @classmethod
    def in_dir(cls, directory: str | Path) -> "Outputs":
        """All in one folder (``facerefine bench --out``): ``latency.json`` is the full table there."""
        d = Path(directory)
        return cls(d / "latency_headline.json", d / "latency.json", d / "latency.png", d / "latency.md")

    def all(self) -> tuple[Path, ...]:
        return (self.metrics, self.table, self.figure, self.report)


def write_outputs(result: Mapping[str, Any], out: Outputs = Outputs()) -> None:
    from facerefine.io import write_json, write_text

    write_json(out.metrics, latency_headline(result))
    write_json(out.table, result)
    plot_latency(result, out.figure)
    figure = os.path.relpath(out.figure, out.report.parent)
    write_text(out.report, render_markdown(result, figure=Path(figure).as_posix()))
