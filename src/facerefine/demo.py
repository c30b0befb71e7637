"""``facerefine demo``: a before/after web page for the heads (Gradio), local and offline.

Two tabs, both on the CLI's :class:`~facerefine.enhance.Enhancer` (loaded exactly as
``facerefine enhance`` loads it, backend choice included):

- *Refine your images*: upload one or more images (or take the bundled portrait), pick a
  head, see before/after with a slider, size, time per image and backend, and download
  each result as a PNG at its input's exact size.
- *Generate*: FLUX.1-schnell from a prompt, then schnell + head, when FLUX weights are on
  this machine; otherwise the smoke stand-ins, labelled as such.

Uploads follow ``enhance``'s rules (EXIF orientation applied, alpha passed through,
greyscale kept, 16-bit greyscale scaled to 8 bits) and are read one at a time, so at most
one image is in memory; a corrupt, unsupported or oversize file gets a message, never a
crash. Offline: no analytics, system fonts only (no font CDN), no share link unless asked.

gradio is imported only by :func:`build_app`, so other commands never pay for it. The
Space (``app.py``) and its ``requirements.txt`` (:func:`space_requirements`) come from here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facerefine import paths

log = logging.getLogger("facerefine.demo")

if TYPE_CHECKING:
    from PIL import Image

    from facerefine.enhance import Enhancer

DEFAULT_MAX_PIXELS = 4096 * 4096      # larger uploads are refused (enhance --tile handles them offline)
DEFAULT_TILE = 1024                   # bigger images run in tiles: bounded memory, as `enhance --tile`
MAX_FILE_SIZE = "64mb"                # Gradio refuses bigger uploads before they reach us
UPLOAD_TYPES = (".png", ".jpg", ".jpeg", ".webp")  # what `enhance` reads (enhance.EXTENSION_FORMATS)
READABLE_FORMATS = ("PNG", "JPEG", "WEBP")         # checked on the content, not the name
KEEP_RESULTS_S = 3600                 # result files older than this are removed
STANDIN_MODELS = ("smoke", "random")  # weights.SMOKE / random: stand-ins, not FLUX
# System fonts only: Gradio's default theme fetches IBM Plex from Google Fonts.
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")

# Distributions the page imports at run time (checked by tests/test_demo.py); the rest of
# pyproject's dependencies (dvc, mlflow, deepface, metrics, ...) serve the pipeline only.
SPACE_DISTRIBUTIONS = (
    "torch", "torchvision", "diffusers", "transformers", "tokenizers", "accelerate", "peft", "safetensors",
    "sentencepiece", "protobuf", "pandas", "pyarrow", "click", "pydantic", "pyyaml", "pillow", "matplotlib",
    "tqdm", "filelock", "huggingface_hub", "onnx", "onnxruntime", "gradio",
)


class UploadError(ValueError):
    """An upload the page refuses; the message is shown as is."""


@dataclass(frozen=True)
class DemoConfig:
    head: str | None = None       # selected at start; None: the first head in models/heads/
    backend: str = "auto"         # as `facerefine enhance --backend`
    device: str | None = None
    model: str | None = None      # schnell weights for the Generate tab (None: as `facerefine generate`)
    max_pixels: int = DEFAULT_MAX_PIXELS
    tile: int = DEFAULT_TILE


@dataclass
class Refined:
    """One upload's outcome: the refined PNG (None if refused) and a line for the page."""

    source: str
    output: Path | None
    message: str
    before: Path | None = None  # the input as the head saw it (orientation applied), first image only


# ------------------------------------------------------------------ uploads


def portrait() -> Path:
    """The bundled example: matplotlib's public-domain photograph of Grace Hopper (512 x 600)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _mode_note(mode: str) -> str:
    """What ``enhance``'s rules (enhance.prepare/restore) do with an image of this mode."""
    if mode.startswith("I"):
        return f"{mode}: 16-bit greyscale, scaled to 8 bits"
    if mode in ("RGBA", "LA", "PA"):
        return f"{mode}: alpha passed through"
    if mode in ("L", "1"):
        return f"{mode}: greyscale, kept greyscale"
    return mode


def read_upload(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """(decoded image, a note on its mode), or :class:`UploadError` saying why not.

    The size is checked from the header, before the pixels are decoded; decoding is
    complete (``load``), so a truncated file fails here.
    """
    from PIL import Image

    name = Path(path).name
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format not in READABLE_FORMATS:
                raise UploadError(f"{name}: {image.format} images are not supported; use PNG, JPEG or WebP")
            if width * height > max_pixels:
                raise UploadError(f"{name}: {width} x {height} is {width * height / 1e6:.1f} MP, over this "
                                  f"page's limit of {max_pixels / 1e6:.1f} MP; refine it with "
                                  f"`facerefine enhance --tile 1024`")
            image.load()
            return image, _mode_note(image.mode)
    except UploadError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is a message, as in `enhance`
        raise UploadError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None


def backend_of(enhancer: Enhancer) -> str:
    from facerefine.onnx_backend import OnnxEnhancer

    kind = "onnxruntime" if isinstance(enhancer, OnnxEnhancer) else "torch"
    return f"{kind} on {enhancer.device}"


def refine_files(enhancer: Enhancer, files: Sequence[str | Path], out_dir: Path,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Refined]:
    """Refine each file into ``out_dir/<stem>_refined.png``, one at a time; never raises for a file.

    Each image is dropped as soon as its output is written; the first good one's input is
    written too (``<stem>_input.png``, EXIF orientation applied) for the slider.
    """
    from PIL import ImageOps

    from facerefine.enhance import save_atomic

    results: list[Refined] = []
    for index, source in enumerate(files):
        name = Path(source).name
        try:
            image, note = read_upload(source, max_pixels)
            start = time.perf_counter()
            refined = enhancer.enhance_image(image)
            seconds = time.perf_counter() - start
            stem = f"{index:03d}_{Path(source).stem}" if len(files) > 1 else Path(source).stem  # stems may repeat
            output = out_dir / f"{stem}_refined.png"
            save_atomic(refined, output, "PNG")
            before = None
            if not any(r.output for r in results):
                before = out_dir / f"{stem}_input.png"
                save_atomic(ImageOps.exif_transpose(image), before, "PNG")
        except UploadError as err:
            results.append(Refined(name, None, f"✗ {err}"))
            continue
        except Exception as err:  # noqa: BLE001 - e.g. out of memory: report it, keep the page up
            results.append(Refined(name, None, f"✗ {name}: {type(err).__name__}: {err}"))
            continue
        width, height = refined.size
        results.append(Refined(name, output, f"✓ {name}: {width} x {height} ({note}), refined in {seconds:.2f} s "
                                             f"with head '{enhancer.head.name}' ({backend_of(enhancer)})", before))
    return results


# ------------------------------------------------------------------- heads


def head_choices(selected: str | None = None) -> list[str]:
    """Names of the heads in models/heads/, plus ``selected`` (a folder, Hub id or .onnx)."""
    found = sorted(p.name for p in paths.HEADS.iterdir() if (p / "config.json").is_file()) \
        if paths.HEADS.is_dir() else []
    return ([selected] if selected and selected not in found else []) + found


class Enhancers:
    """The Enhancer of the head in use (one at a time: a new head replaces the old one),
    loaded as ``facerefine enhance`` loads it."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._current: tuple[str, Enhancer] | None = None

    def get(self, head: str) -> Enhancer:
        """The Enhancer for ``head``, or :class:`UploadError` with the loader's message."""
        from facerefine.backend import load_enhancer

        if not head:
            raise UploadError("choose a head (a name in models/heads/, a folder, a Hub repo id or an .onnx)")
        with self._lock:
            if self._current is None or self._current[0] != head:
                self._current = None
                try:
                    enhancer = load_enhancer(head, self.config.device, "float32", batch_size=1,
                                             tile=self.config.tile, backend=self.config.backend,
                                             note=lambda text: log.info("head '%s': %s", head, text))
                except ValueError as err:  # HeadError included
                    raise UploadError(f"head '{head}': {err}") from None
                self._current = (head, enhancer)
            return self._current[1]


# ------------------------------------------------------------------ FLUX


def flux_available(model: str) -> bool:
    """Real FLUX weights on this machine: a local folder, or a Hub id in the local cache."""
    if model in STANDIN_MODELS:
        return False
    if Path(model).is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, "model_index.json"), str)
    except ValueError:  # not a repo id
        return False


def flux_settings(config: DemoConfig):
    """(generate settings, a label for the page): the requested weights when present, else the
    smoke stand-ins."""
    # The one import of FLUX generation in the demo (`facerefine generate`'s own functions).
    from facerefine.generate import generate_settings

    device = config.device or _default_device()
    settings = generate_settings(model=config.model, device=device)
    if flux_available(settings.model):
        return settings, f"FLUX.1-schnell: `{settings.model}` ({settings.source})."
    why = ("the smoke profile" if settings.model in STANDIN_MODELS
           else f"FLUX weights `{settings.model}` are not on this machine")
    settings = generate_settings(model="smoke", device=device)
    return settings, (f"**Smoke stand-ins** ({why}): tiny random networks with FLUX's architecture. "
                      f"Their images are noise; they show the page works, not what the head does.")


def _default_device() -> str:
    from facerefine.enhance import default_device

    return default_device()


def generate_pair(prompt: str, seed: int, settings, enhancer: Enhancer, device: str):
    """(schnell image, schnell + head image, message with both timings)."""
    from facerefine.generate import generate

    start = time.perf_counter()
    raw, _ = generate(prompt, settings, seed=seed, device=device)
    schnell_s = time.perf_counter() - start
    start = time.perf_counter()
    refined = enhancer.enhance_image(raw)
    head_s = time.perf_counter() - start
    return raw, refined, (f"schnell `{settings.model}`: {settings.size} x {settings.size}, {settings.steps} steps, "
                          f"seed {seed}, {schnell_s:.2f} s; head '{enhancer.head.name}' "
                          f"({backend_of(enhancer)}): {head_s:.2f} s")


# -------------------------------------------------------------------- page


def _gradio():
    """gradio, imported with analytics and Hub telemetry off (read from the environment at import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import gradio as gr

    return gr


def _prune(folder: Path, older_than_s: float) -> None:
    cutoff = time.time() - older_than_s
    for child in folder.iterdir():
        if child.stat().st_mtime < cutoff:
            shutil.rmtree(child, ignore_errors=True)


def build_app(config: DemoConfig = DemoConfig()):
    """The page (a ``gradio.Blocks``); :func:`launch` serves it."""
    gr = _gradio()
    enhancers = Enhancers(config)
    workdir = Path(tempfile.mkdtemp(prefix="facerefine-demo-"))
    choices = head_choices(config.head)
    example = portrait()

    def refine(files: list[str] | None, head: str):
        if not files:
            return None, None, "Upload an image (PNG, JPEG or WebP) or click the example."
        try:
            enhancer = enhancers.get(head)
        except UploadError as err:
            return None, None, f"✗ {err}"
        _prune(workdir, KEEP_RESULTS_S)
        results = refine_files(enhancer, files, Path(tempfile.mkdtemp(dir=workdir)), config.max_pixels)
        good = [r for r in results if r.output is not None]
        slider = (str(good[0].before), str(good[0].output)) if good else None
        return slider, [str(r.output) for r in good] or None, "\n\n".join(r.message for r in results)

    def generate(prompt: str, seed: float, head: str):
        try:
            enhancer = enhancers.get(head)
            settings, _ = flux_settings(config)
            raw, refined, message = generate_pair(prompt, int(seed), settings, enhancer,
                                                  config.device or _default_device())
        except Exception as err:  # noqa: BLE001 - a message on the page, not a dead server
            return None, f"✗ {type(err).__name__}: {err}"
        return (raw, refined), message

    with gr.Blocks(title="facerefine", analytics_enabled=False, delete_cache=(600, KEEP_RESULTS_S)) as app:
        gr.Markdown("# facerefine\nA fast head that makes FLUX.1-schnell portraits look like FLUX.1-dev "
                    "([arXiv 2505.02255](https://arxiv.org/abs/2505.02255)). Runs on this machine only.")
        head = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                           label="Head", elem_id="facerefine-head",
                           info="a name in models/heads/, a head folder, a Hub repo id or an .onnx file")
        with gr.Tab("Refine your images"):
            with gr.Row():
                with gr.Column():
                    uploads = gr.File(file_count="multiple", file_types=list(UPLOAD_TYPES),
                                      label="Images (PNG, JPEG, WebP)", elem_id="facerefine-uploads")
                    gr.Examples([[str(example)]], inputs=[uploads], label="Example: Grace Hopper (public domain)")
                    button = gr.Button("Refine", variant="primary", elem_id="facerefine-refine")
                    status = gr.Markdown(elem_id="facerefine-status")
                with gr.Column():
                    slider = gr.ImageSlider(label="Before / after (drag)", format="png", type="pil",
                                            interactive=False, elem_id="facerefine-slider")
                    downloads = gr.File(label="Results (PNG, each at its input's size)", file_count="multiple",
                                        elem_id="facerefine-downloads", interactive=False)
            button.click(refine, [uploads, head], [slider, downloads, status])
        with gr.Tab("Generate (schnell vs schnell + head)"):
            gr.Markdown(flux_settings(config)[1], elem_id="facerefine-flux-label")
            with gr.Row():
                prompt = gr.Textbox("A professional portrait photo of a person, natural light", label="Prompt")
                seed = gr.Number(0, label="Seed", precision=0)
            go = gr.Button("Generate", variant="primary", elem_id="facerefine-generate")
            pair = gr.ImageSlider(label="schnell / schnell + head", format="png", type="pil", interactive=False)
            gen_status = gr.Markdown(elem_id="facerefine-generate-status")
            go.click(generate, [prompt, seed, head], [pair, gen_status])
    return app


def theme():
    gr = _gradio()
    return gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


def launch(app, *, host: str | None = None, port: int | None = None, share: bool = False) -> None:
    """Serve the page; ``host``/``port`` None: Gradio's defaults or GRADIO_SERVER_NAME/PORT (a Space)."""
    app.launch(server_name=host, server_port=port, share=share, theme=theme(), ssr_mode=False,
               max_file_size=MAX_FILE_SIZE, allowed_paths=[str(portrait())],
               footer_links=[], mcp_server=False)


# ------------------------------------------------------------------- Space


def project_dependencies(pyproject: str | Path = "pyproject.toml") -> dict[str, str]:
    """pyproject's ``[project] dependencies``: normalised distribution name -> requirement line."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    deps = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]["dependencies"]
    return {normalise(re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0]): d for d in deps}


def space_requirements(pyproject: str | Path = "pyproject.toml") -> str:
    """``requirements.txt`` for a Hugging Face Space: pyproject's own requirement lines (same
    bounds) for the distributions in :data:`SPACE_DISTRIBUTIONS`."""
    deps = project_dependencies(pyproject)
    missing = {normalise(d) for d in SPACE_DISTRIBUTIONS} - set(deps)
    if missing:
        raise ValueError(f"{pyproject}: SPACE_DISTRIBUTIONS names {sorted(missing)}, which are not dependencies")
    wanted = {normalise(d) for d in SPACE_DISTRIBUTIONS}
    return ("# Generated from pyproject.toml by `python app.py --requirements`; do not edit.\n"
            "# The page's run-time subset of the project's dependencies (facerefine.demo.SPACE_DISTRIBUTIONS).\n"
            + "".join(f"{line}\n" for name, line in deps.items() if name in wanted))


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()
