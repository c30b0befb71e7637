"""Model cards (Hugging Face Hub format) for trained heads.

Two cards, one renderer, so that no card ever disagrees with the pipeline's numbers:

- the **head card**, ``models/heads/<name>/README.md``, written by the stage that
  writes the head (``train_unet``, ``select_cyclegan``) right after ``write_head_folder``:
  architecture, size, training params, data fingerprint, usage, provenance and
  limitations. It has no quality or latency numbers, because those stages run
  before ``evaluate`` and ``benchmark`` measure them, and DVC forbids a later stage
  from writing into an earlier stage's output folder;
- the **published card**, ``models/cards/<name>/README.md`` (+ ``samples.png``), written
  by the ``model_cards`` stage, which depends on the heads *and* on
  ``reports/quality.json`` (every Table 4 column; ``metrics/quality.json`` holds only the
  headline), ``metrics/latency.json`` and the report's sample grid:
  the same card plus the head's Table 4 row, its latency and the samples. DVC re-runs
  it whenever a head or a metric changes.

Every card records the sha256 of the ``model.safetensors`` it describes (in a
hidden ``facerefine-card`` comment and in the text); ``facerefine push`` uploads
the published card only when that hash matches the weights being pushed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from facerefine.io import write_text

CARDS_DIR = Path("models/cards")  # the model_cards stage's output: one folder per head
BASE_MODEL = "black-forest-labs/FLUX.1-schnell"
DEV_LICENSE = "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md"
IMDB_TERMS = "https://developer.imdb.com/non-commercial-datasets/"
PAPER = "https://arxiv.org/abs/2505.02255"
# The networks whose stand-ins make a head meaningless: it is trained on schnell and dev images.
# The published card also carries metrics, which every network feeds (config.NETWORK_ROLES).
HEAD_NETWORKS = ("schnell", "dev")
KIND_LABELS = {"resunet_cbam": "ResUNet-CBAM (pairwise, paper §4.1)",
               "resnet_generator": "CycleGAN ResNet generator (non-pairwise, paper §4.2)"}
# Table 4 columns of reports/quality.json, in the order the card shows them.
QUALITY_COLUMNS = (("fid_schnell", "FID vs schnell"), ("fid_dev", "FID vs dev"), ("fid_diff", "FID_diff"),
                   ("clip_iqa", "CLIP-IQA"), ("kid_dev_mean", "KID vs dev"),
                   ("identity_cos_schnell", "ArcFace identity vs input"), ("face_fail", "faces lost"),
                   ("images", "test images"))
LATENCY_HEADING = "## Latency"
LATENCY_METRICS = ("saving_vs_dev", "images_per_second")  # the model-index entries that are timings
_MARKER = re.compile(r"<!-- facerefine-card: (\{.*?\}) -->")


def weights_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_info(text: str) -> dict[str, Any]:
    """The machine-readable facts a card was written with (empty if none)."""
    found = _MARKER.search(text)
    return json.loads(found.group(1)) if found else {}


def card_weights_sha256(text: str) -> str | None:
    return card_info(text).get("weights_sha256")


def front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block of a card."""
    if not text.startswith("---\n"):
        return {}
    return yaml.safe_load(text[4:text.index("\n---\n", 4)]) or {}


def _num(x: Any) -> str:
    """How the card prints a metric (the model-index holds the exact value)."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def quality_row(quality: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if not quality else quality.get(name)


def latency_row(latency: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The head's numbers from ``metrics/latency.json`` (the bench headline): saving of
    schnell + head vs dev (mean over resolutions and per resolution) and the head's
    best images/s at the resolution the headline names (512², else the largest timed)."""
    if not latency or "saving_vs_dev" not in latency:
        return None
    saving = latency["saving_vs_dev"]
    per_resolution = {r: v.get(name) for r, v in saving.items() if r != "mean" and isinstance(v, Mapping)}
    ips = latency.get("head_images_per_second", {})
    return {"dev_steps": latency.get("dev_steps"), "saving_mean": saving.get("mean", {}).get(name),
            "saving_per_resolution": per_resolution, "images_per_second": ips.get(name),
            "resolution": ips.get("resolution"), "mode": latency.get("mode"),
            "meaningful": latency.get("meaningful")}


def _model_index(name: str, quality: Mapping[str, Any] | None, latency: Mapping[str, Any] | None) -> list | None:
    metrics = []
    for key, label in QUALITY_COLUMNS:
        if quality and quality.get(key) is not None and key != "images":
            metrics.append({"type": key, "name": label, "value": quality[key]})
    if latency and latency.get("saving_mean") is not None:
        metrics.append({"type": LATENCY_METRICS[0], "name": f"time saved by schnell + head vs dev "
                        f"({latency['dev_steps']} steps), mean over resolutions", "value": latency["saving_mean"]})
    if latency and latency.get("images_per_second") is not None:
        metrics.append({"type": LATENCY_METRICS[1], "name": f"head images/s at {latency['resolution']}²",
                        "value": latency["images_per_second"]})
    if not metrics:
        return None
    return [{"name": f"facerefine-{name}", "results": [{
        "task": {"type": "image-to-image", "name": "schnell → dev portrait refinement"},
        "dataset": {"type": "facerefine-test-split", "name": "facerefine test split (schnell/dev pairs)"},
        "metrics": metrics}]}]


def render_card(head_dir: str | Path, *, profile: str | None = None, standins: list[str] | None = None,
                quality: Mapping[str, Any] | None = None, latency: Mapping[str, Any] | None = None,
                samples: str | None = None) -> str:
    """The model card of the head in ``head_dir``; ``standins``: the random stand-in networks
    behind it (``banners.standin_networks``, the one banner rule; non-empty: a banner);
    ``quality``/``latency`` are its rows from :func:`quality_row`/:func:`latency_row` (None: not
    measured yet); ``samples`` an image path relative to the card."""
    from facerefine.heads import read_head_folder
    from facerefine.models.factory import count_parameters

    head_dir = Path(head_dir)
    head = read_head_folder(head_dir)
    config = head.config
    name, kind, arch = head.name, config["kind"], config["architecture"]
    sha = weights_sha256(head_dir / "model.safetensors")
    params = count_parameters(head.model)
    size_mb = (head_dir / "model.safetensors").stat().st_size / 1e6
    variant = "ESA-CycleGAN" if arch.get("esa") else ("CycleGAN" if kind == "resnet_generator" else "U-Net")
    tags = ["facerefine", "image-to-image", "flux", "portrait", "face", "pytorch", "safetensors",
            "cyclegan" if kind == "resnet_generator" else "unet"]
    if arch.get("esa"):
        tags.append("esa")
    meta: dict[str, Any] = {
        "license": "other", "license_name": "flux-1-dev-non-commercial-license", "license_link": DEV_LICENSE,
        "library_name": "facerefine", "pipeline_tag": "image-to-image", "base_model": BASE_MODEL, "tags": tags,
    }
    index = _model_index(name, quality, latency)
    if index:
        meta["model-index"] = index
    standins = list(standins or [])
    info = {"head": name, "kind": kind, "profile": profile, "standins": standins, "weights_sha256": sha}

    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"<!-- facerefine-card: {json.dumps(info, sort_keys=True)} -->", "",
             f"# facerefine head `{name}`: {variant} refinement for FLUX.1-schnell portraits", ""]
    if standins:
        lines += [f"> **Not a usable model: made with stand-in networks** ({', '.join(standins)}: randomly "
                  f"initialised, not the published weights; profile `{profile}`). It only shows that the pipeline "
                  "runs end to end; its outputs and numbers mean nothing.", ""]
    lines += [f"A fast image-to-image head that adds skin, hair and eye detail to portraits from "
              f"[FLUX.1-schnell](https://huggingface.co/{BASE_MODEL}), trained to bring them close to "
              f"FLUX.1-dev at a fraction of its cost ([paper]({PAPER})). It works on images from any "
              "generator. Made by the facerefine DVC pipeline, which regenerates this card whenever the "
              "head or its metrics change.", ""]

    lines += ["## Architecture", "",
              "| | |", "|---|---|",
              f"| kind | {KIND_LABELS.get(kind, kind)} |",
              f"| constructor | `{json.dumps(arch, sort_keys=True)}` |",
              f"| parameters | {params:,} |",
              f"| weights | `model.safetensors`, {size_mb:.2f} MB, sha256 `{sha}` |",
              f"| input sizes | any; padded (reflect) to a multiple of {head.size_multiple}, at least "
              f"{head.min_size} px, and cropped back |", "",
              "Input and output are RGB in [-1, 1], NCHW.", ""]

    training, data = config.get("training") or {}, config.get("data") or {}
    lines += ["## Training", ""]
    if training:
        lines += ["| param | value |", "|---|---|"]
        lines += [f"| {k} | `{json.dumps(v)}` |" for k, v in sorted(training.items())]
        lines.append("")
    if data:
        lines += ["Data: " + ", ".join(f"{k} `{v}`" for k, v in sorted(data.items())) + ".", ""]
    lines += [f"Profile: `{profile or 'unknown'}`.", ""]

    lines += ["## Results", ""]
    if quality is None and latency is None:
        lines += ["Quality (Table 4) and latency are measured later in the pipeline, by the `evaluate` and "
                  "`benchmark` stages. The published card with them is `models/cards/" + name +
                  "/README.md` (stage `model_cards`); `facerefine push` uploads that one.", ""]
    if quality is not None:
        lines += ["Table 4 row (paper §5.4) on the test split, from `reports/quality.json`:", "",
                  "| " + " | ".join(label for _, label in QUALITY_COLUMNS) + " |",
                  "|" + "---|" * len(QUALITY_COLUMNS),
                  "| " + " | ".join(_num(quality.get(key)) for key, _ in QUALITY_COLUMNS) + " |", ""]
        if quality.get("low_confidence"):
            lines += ["Low confidence: fewer test images than FID's 2048 feature dimensions.", ""]
        if quality.get("configuration"):  # Table 4 provenance (evaluate, provenance.py)
            differs = "; ".join(quality.get("paper_mismatches") or []) or "none"
            lines += [f"Produced by: {quality['configuration']}. Differs from the paper's final run: {differs}.", ""]
    if latency is not None:  # its own section: the only timings in the card (.ci/check_clean.py ignores it)
        per = latency["saving_per_resolution"]
        lines += [LATENCY_HEADING, "",
                  f"From `metrics/latency.json` (mode `{latency['mode']}`): schnell + this head saves "
                  f"**{_pct(latency['saving_mean'])}** of FLUX.1-dev's time ({latency['dev_steps']} steps) on "
                  "average over resolutions"
                  + (" (" + ", ".join(f"{r}²: {_pct(v)}" for r, v in sorted(per.items(), key=lambda kv: int(kv[0])))
                     + ")" if per else "")
                  + f"; the head alone runs {_num(latency['images_per_second'])} images/s at "
                  f"{latency['resolution']}².", ""]
        if latency.get("meaningful") is False:
            lines += ["These timings come from stand-in networks and mean nothing for the real model.", ""]
    if samples:
        lines += ["## Samples", "", f"![schnell input, heads' outputs and dev target]({samples})", ""]

    lines += ["## How to use", "", "```bash", "pip install -e .   # in a clone of facerefine",
              f"facerefine enhance photos/ refined/ --head {name}   # a folder, a file or a glob; or --head owner/repo",
              f"facerefine export {name} {name}.onnx          # ONNX (dynamic batch, height and width)",
              "```", "", "```python", "from facerefine import load_head", "",
              f'head = load_head("{name}")  # a folder, a name in models/heads/, or a Hub repo id',
              "refined = head(image)  # PIL image, numpy HWC array or torch tensor in, the same kind out",
              "refined = head.refine(pipe(prompt).images)  # a diffusers FLUX pipeline's output", "```", "",
              "ComfyUI: copy or link the `comfyui/` folder of facerefine into `ComfyUI/custom_nodes/`; the "
              "nodes are *facerefine: load head* and *facerefine: refine image*.", ""]

    lines += ["## Provenance and licences", "",
              "- Training pairs are FLUX.1-schnell images refined by **FLUX.1-dev** (img2img). FLUX.1 [dev] is "
              f"released under the [FLUX.1 [dev] Non-Commercial License]({DEV_LICENSE}), which restricts how its "
              "outputs may be used, including to train other models. These weights derive from those outputs, "
              "so this card declares that licence.",
              "- Prompts are built from actor names in the **IMDb** datasets, which IMDb allows for personal and "
              f"non-commercial use only ([terms]({IMDB_TERMS})).",
              "- **Check both before any commercial use** of this head or its outputs. The facerefine code is "
              "Apache-2.0; that does not extend to the weights.", ""]
    lines += ["## Limitations", "",
              "- Trained on synthetic portraits only (one face, studio framing, 512² or smaller); other content "
              "may be altered in unwanted ways.",
              "- The training prompts name real actors, and a head can alter a person's likeness: identity "
              "similarity to the input is reported above, but check outputs that show real people.",
              "- Quality is measured with FID/KID/CLIP-IQA on a small synthetic test split, not by people.",
              "- Very large images should be tiled (`--tile`); the head never saw them whole.",
              "- Not a safety filter and not a face-restoration model for damaged photos.", ""]
    return "\n".join(lines)


def standins_of(params: Any, roles: tuple[str, ...] = HEAD_NETWORKS) -> list[str]:
    """The stand-in networks among ``roles`` in the active profile (the report banners' rule)."""
    from facerefine.banners import standin_networks

    return standin_networks(params, roles)


def write_model_card(head_dir: str | Path, params: Any = None, *, profile: str | None = None,
                     standins: list[str] | None = None) -> Path:
    """The head card (no metrics yet), written into the head folder by the stage that wrote the head:
    ``write_model_card(head_dir, params)`` takes the profile and the stand-in banner from the params."""
    if params is not None:
        profile, standins = params.profile, standins_of(params)
    path = Path(head_dir) / "README.md"
    write_text(path, render_card(head_dir, profile=profile, standins=standins))
    return path


def write_published_cards(heads_dir: str | Path, cards_dir: str | Path, *, profile: str | None,
                          standins: list[str] | None, quality: Mapping[str, Any] | None,
                          latency: Mapping[str, Any] | None, samples: str | Path | None = None) -> list[Path]:
    """``cards_dir/<name>/README.md`` (+ ``samples.png``) for every head in ``heads_dir``, with its
    Table 4 row and latency; folders of heads that no longer exist are removed."""
    heads_dir, cards_dir = Path(heads_dir), Path(cards_dir)
    names = sorted(p.name for p in heads_dir.iterdir() if (p / "config.json").is_file()) if heads_dir.is_dir() else []
    if cards_dir.is_dir():
        for stale in cards_dir.iterdir():
            if stale.is_dir() and stale.name not in names:
                shutil.rmtree(stale)
    written = []
    for name in names:
        out = cards_dir / name
        out.mkdir(parents=True, exist_ok=True)
        sample_name = None
        if samples is not None and Path(samples).is_file():
            sample_name = "samples.png"
            shutil.copyfile(samples, out / sample_name)
        text = render_card(heads_dir / name, profile=profile, standins=standins,
                           quality=quality_row(quality, name), latency=latency_row(latency, name),
                           samples=sample_name)
        write_text(out / "README.md", text)
        written.append(out / "README.md")
    return written
