"""The one-page report: every table and figure the pipeline made, in paper order."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facerefine import paths


@dataclass(frozen=True)
class Section:
    title: str
    what: str                          # one line: what the reader is looking at
    tables: tuple[str, ...] = ()       # markdown files (relative to reports/) to inline
    figures: tuple[str, ...] = ()      # PNGs (relative to reports/)


SECTIONS = (
    Section("Dataset diversity (Table 1, Fig. 3)",
            "Perceived gender, age and ethnicity of the baseline vs name-enriched schnell portraits (DeepFace), "
            "and a t-SNE of their ArcFace embeddings.",
            ("diversity.md",), ("diversity_tsne.png",)),
    Section("Pairwise head: ResUNet-CBAM (§5.1)",
            "Training and validation loss per epoch, and held-out samples: schnell input | U-Net output | dev target.",
            (), ("unet/curves.png", "unet/samples.png")),
    Section("Unpaired heads: CycleGAN and ESA-CycleGAN (Tables 2, 3)",
            "Best generator loss and cycle SSIM for every (λ_cyc, lr) cell, the chosen heads, and the loss curves.",
            ("cyclegan.md",), ("cyclegan/curves.png",)),
    Section("Latency (Fig. 6)",
            "Seconds per image of dev, schnell, the heads and schnell + head per resolution, and the saving vs dev.",
            ("latency.md",), ("latency.png",)),
    Section("Quality (Table 4, Figs. 1, 7)",
            "FID to schnell and to dev (FID_diff > 0: closer to dev), CLIP-IQA, KID, identity preservation; "
            "then the same test subjects through every pipeline.",
            ("quality.md",), ("quality_samples.png",)),
)


def _demote(markdown: str) -> str:
    """Inline a stage's report under our section: drop its H1, push headings down one level."""
    lines = [line for line in markdown.splitlines() if not line.startswith("# ")]
    return "\n".join(("#" + line) if re.match(r"#{2,5} ", line) else line for line in lines).strip()


def render_pipeline_report(reports_dir: Path = paths.REPORTS, *, profile: str, standins: Sequence[str],
           prompts_metrics: dict | None) -> str:
    """``standins`` (``banners.standin_networks``): non-empty puts the stand-in banner on top."""
    from facerefine.banners import standin_banner

    out = ["# facerefine report", ""]
    if standins:
        out += [standin_banner(standins), ""]
    out += [f"Profile: `{profile}`. Reproduce with `dvc repro`; compare runs with `dvc exp show` and "
            "`facerefine review`.", ""]
    if prompts_metrics:
        e, names = prompts_metrics.get("enriched", {}), prompts_metrics.get("names_file", {})
        out += ["## Dataset", "",
                f"{e.get('total', 0)} enriched prompts (train {e.get('train', 0)}, val {e.get('val', 0)}, "
                f"test {e.get('test', 0)}) from {names.get('kept', 0)} usable IMDb actors "
                f"({names.get('malformed', 0)} malformed rows skipped) and "
                f"{prompts_metrics.get('baseline', {}).get('total', 0)} baseline prompts; each rendered by schnell "
                "and refined by dev img2img.", ""]
    for s in SECTIONS:
        out += [f"## {s.title}", "", f"*{s.what}*", ""]
        for table in s.tables:
            path = reports_dir / table
            out += [_demote(path.read_text(encoding="utf-8")) if path.is_file() else f"_{table} was not produced._", ""]
        for fig in s.figures:
            out += [f"![{fig}]({fig})" if (reports_dir / fig).is_file() else f"_{fig} was not produced._", ""]
    return "\n".join(out).rstrip() + "\n"


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
