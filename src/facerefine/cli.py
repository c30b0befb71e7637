"""The ``facerefine`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facerefine import numerics
from facerefine.precision import DTYPES  # torch-free, so `facerefine --help` stays light

if TYPE_CHECKING:
    from facerefine.enhance import Enhancer

# A literal copy of facerefine.enhance's choices, so that `facerefine --help` does not import torch.
FORMATS = ("jpeg", "png", "webp")
COMPILE_CHOICES = ("auto", "on", "off")  # facerefine.compile.COMPILE_CHOICES / COMPILE_MODES
FLUX_COMPILE_CHOICES = ("none", "blocks", "full")  # facerefine.config.FLUX_COMPILE_CHOICES
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@click.group()
@click.version_option(package_name="facerefine")
def main() -> None:
    """facerefine: schnell + a fast head, close to dev, at a fraction of the cost."""


@main.command()
def standins() -> None:
    """Build the smoke profile's random stand-in networks (project-local, offline)."""
    from facerefine.weights.flux import flux_location

    for role in ("schnell", "dev"):
        click.echo(f"flux-{role}: {flux_location('smoke', role)}")


def _load_enhancer(head: str, device: str | None, dtype: str, batch_size: int = 1, tile: int | None = None,
                   overlap: int = 32, compile_: str = "auto", backend: str = "torch",
                   compile_mode: str | None = None) -> Enhancer:
    """:func:`facerefine.backend.load_enhancer` with its errors worded as click's."""
    from facerefine.backend import HeadError, load_enhancer

    try:
        return load_enhancer(head, device, dtype, batch_size, tile, overlap, compile_, backend, compile_mode,
                             note=lambda text: click.echo(f"note: {text}", err=True))
    except HeadError as err:
        raise click.BadParameter(str(err), param_hint="--head") from None
    except ValueError as err:  # e.g. an overlap as large as the tile
        raise click.UsageError(str(err)) from None


_device = click.option("--device", default=None, help="cpu, cuda, cuda:1, … (default: cuda if available)")
_dtype = click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                      help="bfloat16/float16 run as autocast (float16 on GPU only)")


@main.command()
@click.argument("input_spec", metavar="INPUT")
@click.argument("output", metavar="OUTPUT")
@click.option("--head", required=True,
              help="head directory, a name in models/heads/ (e.g. unet), a Hub repo id, or an exported .onnx")
@click.option("--backend", type=click.Choice(("auto", "torch", "onnxruntime")), default="auto", show_default=True,
              help="onnxruntime: on the CPU, an exported HEAD.onnx, or a head exported once and cached by its "
                   "weights' hash; auto: onnxruntime on the CPU in float32 without --compile (faster there), "
                   "else torch")
@click.option("--format", "image_format", type=click.Choice(FORMATS), default=None,
              help="output format (default: OUTPUT's extension, else the input's)")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality")
@click.option("--overwrite", is_flag=True, help="recompute outputs that already exist (default: skip them)")
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help="refine images larger than N pixels in N x N tiles (0: whole images)")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True,
              help="tile overlap in pixels, blended")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="images (of equal padded size) or tiles per forward pass")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="image-decoding processes (default: 0 on CPU, 4 on GPU)")
@click.option("--compile", "compile_", type=click.Choice(COMPILE_CHOICES), default="auto", show_default=True,
              help="torch.compile the head (auto: on CUDA only); image sizes go to a bounded set of buckets, "
                   "compiled code is cached in .facerefine/compile/ (FACEREFINE_COMPILE_CACHE)")
@click.option("--compile-mode", type=click.Choice(COMPILE_MODES), default=None,
              help="torch.compile mode (default: max-autotune-no-cudagraphs on CUDA, default on CPU; "
                   "reduce-overhead adds CUDA graphs, which pay for small images)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@_device
@_dtype
def enhance(input_spec: str, output: str, head: str, backend: str, image_format: str | None, quality: int,
            overwrite: bool, tile: int, overlap: int, batch_size: int, workers: int | None, compile_: str,
            compile_mode: str | None, quiet: bool, device: str | None, dtype: str) -> None:
    """Refine an image, a folder (recursive) or a quoted glob ("photos/**/*.jpg") with a head.

    OUTPUT mirrors INPUT: a file for a single image (or a folder if it exists or ends
    with /), else a folder with the same subfolders. Every output has its input's size,
    orientation (EXIF), alpha and grey/colour mode. Finished outputs are skipped, so an
    interrupted run resumes. Unreadable files are reported at the end (exit status 1).
    """
    from facerefine.enhance import check_not_in_place, enhance_files, find_images, output_is_folder, plan_jobs

    try:
        inputs = find_images(input_spec, exclude=Path(output).resolve())
        if not inputs.files:
            raise click.ClickException(f"{input_spec}: no .png/.jpg/.jpeg/.webp images found")
        jobs = plan_jobs(inputs, output, image_format)
        check_not_in_place(jobs)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    enhancer = _load_enhancer(head, device, dtype, batch_size, tile or None, overlap, compile_, backend, compile_mode)
    if workers is None:
        workers = 4 if enhancer.device.type == "cuda" else 0
    where = output if output_is_folder(inputs, output) else Path(output).parent
    click.echo(f"head '{enhancer.head.name}' ({enhancer.head.path}) on {enhancer.device}: "
               f"{len(jobs)} image(s) -> {where}", err=True)
    report = enhance_files(enhancer, jobs, overwrite=overwrite, workers=workers, quality=quality,
                           progress=not quiet)
    click.echo(report.summary(), err=not report.ok)
    if enhancer.compiled:
        click.echo(enhancer.runner.summary(), err=True)
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("prompt")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="image to write (.png, .jpg or .webp)")
@click.option("--seed", type=int, default=0, show_default=True, help="seeds a CPU torch.Generator")
@click.option("--size", type=click.IntRange(min=16), default=None,
              help="square side, a multiple of 16 (default: params.yaml's image_size, else 512)")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="schnell steps (default: params.yaml's schnell.steps, else 4)")
@click.option("--head", default=None, help="head directory or name in models/heads/ (default: no head)")
@click.option("--model", default=None,
              help="schnell weights: hub id, local dir or 'smoke' (default: the active profile's "
                   "models.schnell in ./params.yaml, else black-forest-labs/FLUX.1-schnell)")
@click.option("--keep-raw", is_flag=True, help="also save the schnell image as <output>_raw.<ext>")
@_device
@click.option("--dtype", type=click.Choice(DTYPES), default=None,
              help="FLUX dtype (default: the profile's, else bfloat16 on GPU / float32 on CPU), also the "
                   "head's autocast; float16 runs float32 on a CPU")
@click.option("--offload", type=click.Choice(("none", "model", "sequential")), default=None,
              help="GPU memory: offload FLUX to the CPU per component (model) or per layer (sequential); "
                   "default: the profile's offload, else none. See README, 'GPU memory'")
@click.option("--flux-compile", type=click.Choice(FLUX_COMPILE_CHOICES), default=None,
              help="torch.compile FLUX's transformer blocks (blocks) or all of it (full); pays from a few "
                   "images on, and the compiled code is cached for the next call. Default: the profile's "
                   "compile, else none. See README, 'Speed on a GPU'")
def generate(prompt: str, output: Path, seed: int, size: int | None, steps: int | None, head: str | None,
             model: str | None, keep_raw: bool, device: str | None, dtype: str | None,
             offload: str | None, flux_compile: str | None) -> None:
    """FLUX.1-schnell text-to-image, then a head: the paper's pipeline in one call."""
    from facerefine.enhance import EXTENSION_FORMATS, default_device, save_atomic
    from facerefine.generate import generate as run_generate
    from facerefine.generate import generate_settings

    numerics.pin_torch()

    image_format = EXTENSION_FORMATS.get(output.suffix.lower())
    if image_format is None:
        raise click.BadParameter(f"{output}: use a .png, .jpg or .webp name", param_hint="--output")
    device = device or default_device()
    try:
        settings = generate_settings(model=model, steps=steps, size=size, dtype=dtype, device=device,
                                     offload=offload, compile=flux_compile)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    enhancer = _load_enhancer(head, device, settings.dtype) if head else None
    note = "  (smoke stand-in: the image is noise)" if settings.model == "smoke" else ""
    click.echo(f"schnell '{settings.model}' from {settings.source}: {settings.size}x{settings.size}, "
               f"{settings.steps} steps, seed {seed}{note}", err=True)
    raw, refined = run_generate(prompt, settings, seed=seed, device=device, enhancer=enhancer)
    if keep_raw:
        raw_path = output.with_name(f"{output.stem}_raw{output.suffix}")
        save_atomic(raw, raw_path, image_format)
        click.echo(f"raw schnell image: {raw_path}", err=True)
    save_atomic(refined, output, image_format)
    click.echo(str(output))



@main.command()
@click.option("--head", default=None,
              help="head selected at start: a name in models/heads/, a folder, a Hub repo id or an .onnx "
                   "(default: the first in models/heads/; any can be typed on the page)")
@click.option("--backend", type=click.Choice(("auto", "torch", "onnxruntime")), default="auto", show_default=True,
              help="as for `facerefine enhance`")
@click.option("--model", default=None, help="schnell weights for the Generate tab (default: as `facerefine "
                                            "generate`; the smoke stand-ins, labelled, when they are not here)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: the network)")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--share", is_flag=True, help="also open a public gradio.live link (off: the page stays local)")
@click.option("--max-pixels", type=click.IntRange(min=1), default=4096 * 4096, show_default=True,
              help="larger uploads are refused with a message")
@_device
def demo(head: str | None, backend: str, model: str | None, host: str, port: int, share: bool, max_pixels: int,
         device: str | None) -> None:
    """A before/after web page (Gradio) to try the heads on your images; offline, no telemetry."""
    from facerefine.demo import DemoConfig, build_app, launch

    config = DemoConfig(head=head, backend=backend, device=device, model=model, max_pixels=max_pixels)
    launch(build_app(config), host=host, port=port, share=share)


@main.command()
@click.option("--mode", type=click.Choice(("smoke", "weights", "arch")), default=None,
              help="smoke: tiny stand-ins; weights: the profile's real checkpoints; arch: full-size FLUX.1 "
                   "and paper-size heads with random weights (GPU; no download). Default: the profile's")
@click.option("--resolutions", default=None, help="comma-separated square sides, multiples of 16 (e.g. 256,512,1024)")
@click.option("--head-batch-sizes", default=None, help="comma-separated head batch sizes (e.g. 1,8,32)")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="pipeline warm-up calls")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="timed pipeline calls (median reported)")
@click.option("--head-warmup", type=click.IntRange(min=0), default=None, help="head warm-up calls")
@click.option("--head-repeats", type=click.IntRange(min=1), default=None, help="timed head calls")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the heads")
@click.option("--dev-steps", default=None, help="comma-separated step counts dev is timed at (e.g. 50,28)")
@click.option("--headline-dev-steps", type=click.IntRange(min=1), default=None,
              help="the dev step count the headline saving is against (one of --dev-steps)")
@click.option("--device", "bench_device", default=None, help="auto, cpu, cuda, cuda:1 (default: auto)")
@click.option("--force", is_flag=True, help="allow --mode arch on a CPU (takes hours)")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="the device's peak TFLOP/s for the compute bound (default: looked up for known GPUs)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("benchmarks/results"), show_default=True,
              help="folder for latency.json (full table), latency_headline.json, latency.md and latency.png")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("params.yaml"), show_default=True)
@click.option("--track", is_flag=True, help="also log an MLflow run, as the DVC stage does")
def bench(mode: str | None, resolutions: str | None, head_batch_sizes: str | None, warmup: int | None,
          repeats: int | None, head_warmup: int | None, head_repeats: int | None, threads: int | None,
          compile_: bool | None, dev_steps: str | None, headline_dev_steps: int | None, bench_device: str | None,
          force: bool, peak_tflops: float | None, out_dir: Path, params_file: Path, track: bool) -> None:
    """Time dev vs schnell vs schnell + head across resolutions (paper §5.3, Fig. 6).

    Same benchmark as `dvc repro benchmark`, with overrides, writing to --out instead of
    metrics/ and reports/. Heads: every folder in models/heads/, plus a plain ResNet
    generator as the reference.
    """
    from facerefine import bench as benchmark
    from facerefine.config import ParamsError, load_params, loggable
    from facerefine.tracking import stage_run

    def int_list(text: str | None, hint: str) -> list[int] | None:
        if text is None:
            return None
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=hint) from None

    try:
        params = benchmark.with_overrides(
            load_params(params_file), mode=mode, resolutions=int_list(resolutions, "--resolutions"),
            head_batch_sizes=int_list(head_batch_sizes, "--head-batch-sizes"), warmup=warmup, repeats=repeats,
            head_warmup=head_warmup, head_repeats=head_repeats, threads=threads, compile=compile_,
            dev_steps=int_list(dev_steps, "--dev-steps"), headline_dev_steps=headline_dev_steps)
        options = benchmark.RunOptions(device=bench_device or "auto", force=force, peak_tflops=peak_tflops)
        with stage_run("bench-cli", params={**loggable(params), "bench_run": vars(options)},
                       profile=params.profile, enabled=track) as run:
            result = benchmark.run_benchmark(params, options)
            outputs = benchmark.Outputs.in_dir(out_dir)
            benchmark.write_outputs(result, outputs)
            run.log_metrics(benchmark.mlflow_metrics(result))
            for artifact in outputs.all():
                run.log_artifact(artifact)
    except (ParamsError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(benchmark.summary_text(result))
    click.echo(f"wrote {', '.join(str(p) for p in outputs.all())}")


def _figure_options(fn):
    """One --<figure> option (seconds per image) per cost figure."""
    from facerefine.cost import FIGURES

    for name, help_text in reversed(FIGURES.items()):
        fn = click.option(f"--{name.replace('_', '-')}", name, type=click.FloatRange(min=0, min_open=True),
                          default=None, help=f"seconds per image: {help_text}")(fn)
    return fn


@main.command()
@click.option("--from", "sources", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="measured figures: a benchmark table (reports/latency.json, benchmarks/results/*.json from "
                   "`facerefine bench`), a heads_throughput result, or {\"throughputs\": {...}} such as "
                   "benchmarks/stage_throughput.py's (which prices every stage); repeatable, "
                   "later files and explicit options win")
@click.option("--profile", "profile_name", default="paper", show_default=True, help="the profile to project")
@click.option("--gpu", default=None, help="the GPU's name (default: the one in the measured file)")
@click.option("--gpus", type=click.IntRange(min=1), default=8, show_default=True,
              help="also show wall-clock hours on this many GPUs")
@_figure_options
@click.option("--params", "params_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("params.yaml"), show_default=True)
def cost(sources: tuple[Path, ...], profile_name: str, gpu: str | None, gpus: int, params_file: Path,
         **given: float | None) -> None:
    """Project a profile's GPU-hours per stage on one GPU and on --gpus GPUs, before paying for them.

    Images per stage come from params.yaml; seconds per image from measured files (--from)
    or the options below. A stage whose figure is unknown says which option it needs.
    """
    from facerefine import cost as model
    from facerefine.config import ParamsError, load_params

    try:
        params = load_params(params_file)
        if profile_name not in params.profiles:
            raise model.CostError(f"--profile: unknown profile '{profile_name}'; choose one of "
                                  f"{', '.join(sorted(params.profiles))}")
        figures, table = model.Figures(), None
        for path in sources:
            found, maybe_table = model.load_figures(path, params, profile_name)
            figures, table = figures.merged(found), maybe_table or table
        figures = figures.merged(model.Figures(
            {k: model.Figure(v, f"--{k.replace('_', '-')}") for k, v in given.items() if v is not None}, gpu))
        stages = model.project(params, profile_name, figures, table)
        click.echo(model.render_cost_report(stages, figures, profile_name=profile_name, gpus=gpus, params=params))
    except (ParamsError, model.CostError) as err:
        raise click.ClickException(str(err)) from None


@main.command()
@click.option("--base", "rev", required=True, metavar="REV",
              help="git revision to compare the workspace with (main, origin/main, HEAD~1, a sha)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the markdown here (default: print it)")
def review(rev: str, output: Path | None) -> None:
    """Markdown review of the workspace vs REV: headline numbers, params and metrics diffs, changed figures.

    The same report the pull-request workflow posts as a comment.
    """
    from facerefine.io import write_text
    from facerefine.review import ReviewError, build_review

    try:
        markdown = build_review(rev)
    except ReviewError as err:
        raise click.ClickException(str(err)) from None
    if output is None:
        click.echo(markdown, nl=False)
    else:
        write_text(output, markdown)
        click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":
    main()


@main.command()
@click.argument("head")
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="create the repo private")
@click.option("--revision", default=None, help="branch to push to (default: main)")
@click.option("--message", default=None, help="commit message")
@click.option("--dry-run", "dry_run", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="only assemble what would be uploaded into this folder")
def push(head: str, repo_id: str, private: bool, revision: str | None, message: str | None,
         dry_run: Path | None) -> None:
    """Upload a head (folder or name in models/heads/) to the Hugging Face Hub as REPO_ID.

    Uploads model.safetensors, config.json and the model card: models/cards/<name>/README.md
    (with the pipeline's metrics) when it describes these exact weights, else the head's
    own README.md. The token comes from HF_TOKEN (or `hf auth login`), never from an option.
    """
    from facerefine import hub

    try:
        if dry_run is not None:
            staged = hub.assemble(head, dry_run)
            click.echo(f"{staged.folder}: {', '.join(staged.files)} (card: {staged.card or 'none'})")
            return
        url = hub.push(head, repo_id, private=private, revision=revision, commit_message=message)
    except (FileNotFoundError, ValueError, PermissionError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"pushed {head} to {repo_id}: {url}")


@main.command("export")
@click.argument("head")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--opset", type=click.IntRange(min=13), default=18, show_default=True, help="ONNX opset")
@click.option("--check/--no-check", default=True, show_default=True,
              help="compare onnxruntime with PyTorch at 64x64, 61x83 (odd, padded) and 96x128")
def export(head: str, output: Path, opset: int, check: bool) -> None:
    """Export HEAD (folder, name or Hub repo id) to an ONNX file with dynamic batch, height and width."""
    from facerefine.heads import read_head_folder
    from facerefine.onnx_backend import CHECK_SIZES, export_onnx

    try:
        loaded = read_head_folder(head)
        diffs = export_onnx(loaded, output, opset=opset, check_sizes=CHECK_SIZES if check else None)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{output}: head '{loaded.name}', opset {opset}, inputs N x 3 x H x W with H, W multiples of "
               f"{loaded.size_multiple} and >= {loaded.min_size} (facerefine enhance pads)")
    for size, diff in diffs.items():
        click.echo(f"  onnxruntime vs PyTorch at {size}: max abs diff {diff:.2e}")
