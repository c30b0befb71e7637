"""`facerefine review`, the PR workflow that posts it, and sharing data through a DVC remote.

The end-to-end tests build throwaway git repositories from the project's files and run
real `dvc` commands there (never in the project's own checkout).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from facerefine.cli import main
from facerefine.review import (SMOKE_BANNER, FigureChanges, figure_changes, headline_table, md_table_has_rows,
                               render_review)
from facerefine.summary import label

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "review.yml"
MARKER = "<!-- facerefine-review -->"
EMPTY_DVC_TABLE = "| Path   | Param   | HEAD   | workspace   |\n|--------|---------|--------|-------------|\n"


# --------------------------------------------------------------------------- pure rendering


def test_figure_changes_compare_bytes():
    base = {"reports/a.png": b"1", "reports/b.png": b"2", "reports/gone.png": b"3"}
    workspace = {"reports/a.png": b"1", "reports/b.png": b"2!", "reports/new.png": b"4"}
    assert figure_changes(base, workspace) == FigureChanges(
        added=("reports/new.png",), changed=("reports/b.png",), removed=("reports/gone.png",))
    assert figure_changes(base, base).empty


def test_dvc_markdown_without_rows_is_no_change():
    assert not md_table_has_rows(EMPTY_DVC_TABLE)
    assert not md_table_has_rows("")
    assert md_table_has_rows(EMPTY_DVC_TABLE + "| params.yaml | seed | 1 | 2 |\n")


def test_headline_table_deltas_new_and_removed_keys():
    base = {"fid_diff.unet": 0.5, "fid_diff.esa": 0.3, "unet_best_val_loss": 0.2, "latency_resolution": 64}
    workspace = {"fid_diff.unet": 0.75, "unet_best_val_loss": 0.2, "latency_resolution": 64,
                 "saving_vs_dev.unet": None, "fid_diff.cyclegan": 0.1}
    table = headline_table(base, workspace, "main")
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "`main`" in table.splitlines()[0]
    assert rows[label("fid_diff.unet")].endswith("| 0.5 | 0.75 | +0.25 |")
    assert rows[label("unet_best_val_loss")].endswith("| 0.2 | 0.2 | 0 |")
    assert rows[label("fid_diff.esa")].endswith("| 0.3 | – | removed |")
    assert rows[label("fid_diff.cyclegan")].endswith("| – | 0.1 | new |")
    assert rows[label("saving_vs_dev.unet")].endswith("| – | – | new |")
    # Workspace order first, then what only the base has.
    assert list(rows)[-1].endswith("esa")


def test_headline_table_without_any_summary():
    assert "exists neither" in headline_table(None, None, "main")
    assert "| – | 0.5 | new |" in headline_table(None, {"fid_diff.unet": 0.5}, "main")


def test_render_review_sections_and_banner():
    kwargs = dict(rev="origin/main", summary_base=None, summary_workspace={"fid_diff.unet": 0.5},
                  params_md=EMPTY_DVC_TABLE, metrics_md="", figures=FigureChanges())
    smoke = render_review(smoke=True, **kwargs)
    assert SMOKE_BANNER in smoke
    assert SMOKE_BANNER not in render_review(smoke=False, **kwargs)
    sections = re.findall(r"^### (.+)$", smoke, flags=re.MULTILINE)
    assert [s.split(" ")[0] for s in sections] == ["Headline", "Params", "Metrics", "Figures"]
    assert smoke.count("_no changes_") == 3  # params, metrics, figures
    with_warning = render_review(smoke=False, metrics_warnings="DVC failed to load some metrics\n", **kwargs)
    assert "> dvc: DVC failed to load some metrics" in with_warning


def test_unknown_revision_is_named(tmp_path):
    result = CliRunner().invoke(main, ["review", "--base", "no-such-rev-4711", "-o", str(tmp_path / "r.md")])
    assert result.exit_code == 1
    assert "revision 'no-such-rev-4711' does not exist" in result.output
    assert not (tmp_path / "r.md").exists()
    dashed = CliRunner().invoke(main, ["review", "--base", "--output=x"])
    assert dashed.exit_code == 1 and "revision '--output=x' does not exist" in dashed.output


# --------------------------------------------------------------------------- the workflow


def test_workflow_checks_out_installs_reproduces_reviews_and_comments_once():
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))  # PyYAML reads the bare key `on` as True
    assert "pull_request" in triggers
    assert wf["permissions"]["pull-requests"] == "write"
    (job,) = wf["jobs"].values()
    steps = job["steps"]

    def index(pred) -> int:
        found = [i for i, s in enumerate(steps) if pred(s)]
        assert found, "step not found"
        return found[0]

    checkout = index(lambda s: str(s.get("uses", "")).startswith("actions/checkout@"))
    assert steps[checkout]["with"]["fetch-depth"] == 0
    install = index(lambda s: 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'
                    in s.get("run", ""))
    repro = index(lambda s: re.search(r"\bdvc repro\b", s.get("run", "")) is not None)
    review = index(lambda s: "facerefine review" in s.get("run", ""))
    run = steps[review]["run"]
    assert "--output review.md" in run and "--base" in run and "origin/" in run
    assert "github.base_ref" in str(steps[review].get("env", {})) or "github.base_ref" in run
    comment = index(lambda s: str(s.get("uses", "")).startswith("actions/github-script@"))
    script = steps[comment]["with"]["script"]
    assert MARKER in script and "review.md" in script
    assert "updateComment" in script and "createComment" in script and "listComments" in script
    assert checkout < install < repro < review < comment
    # An optional pull needs a configured remote and never a committed credential.
    text = WORKFLOW.read_text()
    assert "secrets.DVC_REMOTE_URL" in text
    assert not re.search(r"(?i)(aws_secret_access_key|password)\s*:\s*[\"']?[A-Za-z0-9/+]{16,}", text)


# --------------------------------------------------------------------------- throwaway repositories


def _env(repo: Path) -> dict[str, str]:
    """The venv's dvc/python/facerefine, the copy's own sources, no tracking or analytics."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(repo / "src"), "DVC_NO_ANALYTICS": "1", "FACEREFINE_TRACKING": "0"}


def _sh(repo: Path, *cmd: str) -> str:
    proc = subprocess.run(list(cmd), cwd=repo, env=_env(repo), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _git(repo: Path, *args: str) -> str:
    return _sh(repo, "git", "-c", "user.email=t@t", "-c", "user.name=t", *args)


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)  # a re-run may reproduce dvc.lock exactly


def make_project_copy(dest: Path) -> Path:
    """What a fresh clone of the current workspace would hold: tracked and new files that
    git does not ignore (so stages/ and src/ match dvc.yaml), minus models/ (DVC outputs)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in sorted(set(filter(None, listed))):
        src = REPO / name
        if name.startswith("models/") or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    _git(dest, "init", "-q")
    _commit(dest, "project")
    return dest


def _set_smoke(repo: Path, key: str, value: int) -> int:
    """Edit one of the smoke profile's scalar knobs in place (comments kept); return the old value."""
    path = repo / "params.yaml"
    old = yaml.safe_load(path.read_text())["profiles"]["smoke"][key]
    # The smoke profile comes first in params.yaml, so the first match is its key.
    text, count = re.subn(rf"(\n\s+{key}: ){old}\b", rf"\g<1>{value}", path.read_text(), count=1)
    assert count == 1
    path.write_text(text)
    assert yaml.safe_load(path.read_text())["profiles"]["smoke"][key] == value
    return old


def _table_row(md: str, cell: str) -> list[str]:
    """Cells of the markdown table row whose cells include ``cell``."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cell in cells:
            return cells
    raise AssertionError(f"no row with {cell!r} in:\n{md}")


def _section(md: str, title: str) -> str:
    match = re.search(rf"^### {title}.*?$(.*?)(?=^### |\Z)", md, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r}"
    return match.group(1)


@pytest.mark.slow
def test_review_shows_a_param_change_and_what_it_did(tmp_path):
    repo = make_project_copy(tmp_path / "repo")
    _sh(repo, "dvc", "repro", "prompts")
    _sh(repo, "python", "stages/summary.py")
    _commit(repo, "baseline")

    clean = _sh(repo, "facerefine", "review", "--base", "HEAD")
    assert SMOKE_BANNER in clean
    for title in ("Params", "Metrics", "Figures"):
        assert "_no changes_" in _section(clean, title), title

    # The experiment: fewer names. Re-running the stage changes its metric.
    old = _set_smoke(repo, "num_names", 40)
    _sh(repo, "dvc", "repro", "prompts")
    # A changed headline number and changed figures, as a training stage would leave them.
    unet = json.loads((repo / "metrics/unet.json").read_text())
    unet["val_loss"] += 0.5
    (repo / "metrics/unet.json").write_text(json.dumps(unet))
    _sh(repo, "python", "stages/summary.py")
    pngs = sorted(p.relative_to(repo).as_posix() for p in (repo / "reports").rglob("*.png"))
    assert len(pngs) >= 2
    from PIL import Image, ImageOps  # a real change of the pixels (same bytes' pixels would be drift)

    with Image.open(repo / pngs[0]) as image:
        ImageOps.invert(image.convert("RGB")).save(repo / pngs[0])
    (repo / pngs[1]).unlink()
    (repo / "reports" / "new_figure.png").write_bytes(b"\x89PNG new")
    (repo / "reports" / "notes.txt").write_text("not a figure")

    _sh(repo, "facerefine", "review", "--base", "HEAD", "--output", "review.md")
    md = (repo / "review.md").read_text()

    assert _table_row(_section(md, "Params"), "profiles.smoke.num_names")[-2:] == [str(old), "40"]
    metrics = _section(md, "Metrics")
    assert _table_row(metrics, "enriched.total")[0] == "metrics/prompts.json"
    assert _table_row(metrics, "enriched.total")[-3:] == [str(old), "40", str(40 - old)]
    headline = _section(md, "Headline")
    assert md.index("### Headline") < md.index("### Params")
    assert _table_row(headline, "U-Net best validation loss")[-1] == "+0.5"
    figures = _section(md, "Figures")
    assert f"- changed: `{pngs[0]}`" in figures
    assert f"- removed: `{pngs[1]}`" in figures
    assert "- added: `reports/new_figure.png`" in figures
    assert "notes.txt" not in figures


def _tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_dvc_remote_push_then_pull_skips_generation(tmp_path):
    """A newcomer pulls the generated shards from a remote and goes on without regenerating.

    The smoke prompts + schnell stages stand in for the whole dataset; refine_dev (dry run)
    stands in for the downstream stages that then start from the pulled images.
    """
    repo = make_project_copy(tmp_path / "repo")
    outs = [repo / "data/prompts", repo / "data/schnell/enriched", repo / "data/schnell/baseline"]
    # A quarter of the smoke dataset: one shard per set is enough to push and pull.
    _set_smoke(repo, "num_names", 16)
    _set_smoke(repo, "num_baseline", 8)
    _sh(repo, "dvc", "repro", "generate_schnell")
    _commit(repo, "dataset")
    before = {str(o): _tree_digest(o) for o in outs}
    assert all(before.values())

    _sh(repo, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    _sh(repo, "dvc", "push", "--with-deps", "generate_schnell")
    for out in outs:
        shutil.rmtree(out)
    shutil.rmtree(repo / ".dvc" / "cache")

    _sh(repo, "dvc", "pull", "--with-deps", "generate_schnell")  # as the README says
    assert {str(o): _tree_digest(o) for o in outs} == before
    assert "Data and pipelines are up to date" in _sh(repo, "dvc", "status", "--with-deps", "generate_schnell")
    repro = _sh(repo, "dvc", "repro", "generate_schnell")
    assert "Running stage" not in repro
    assert "Stage 'generate_schnell' didn't change" in repro and "Stage 'prompts' didn't change" in repro
    dry = _sh(repo, "dvc", "repro", "--dry", "refine_dev")
    assert "Stage 'generate_schnell' didn't change" in dry and "Running stage 'refine_dev'" in dry


def _png_bytes(array) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_drift_is_shown_apart_from_real_changes():
    """Another machine's last digits: the figure and the headline number are drift, not changes."""
    import numpy as np

    grid = (np.arange(32 * 32 * 3).reshape(32, 32, 3) * 5) % 256
    base = {"reports/tsne.png": _png_bytes(grid), "reports/grid.png": _png_bytes(grid)}
    workspace = {"reports/tsne.png": _png_bytes(np.clip(grid + (grid % 3 == 0), 0, 255)),
                 "reports/grid.png": _png_bytes((grid + 128) % 256)}
    figures = figure_changes(base, workspace)
    assert figures.changed == ("reports/grid.png",)
    assert [path for path, _ in figures.drifted] == ["reports/tsne.png"] and "PSNR" in figures.drifted[0][1]

    table = headline_table({"fid_diff.unet": -31.91, "val": 0.2, "faces": 12},
                           {"fid_diff.unet": -31.39, "val": 0.3, "faces": 13}, "main")
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows[label("fid_diff.unet")].endswith("| +0.52 (drift) |")
    assert rows[label("val")].endswith("| +0.1 |") and rows[label("faces")].endswith("| +1 |")

    md = render_review(rev="main", smoke=False, summary_base=None, summary_workspace=None, params_md="",
                       metrics_md="", figures=figures, metrics_drifted=[("metrics/unet.json", "relative 2e-05")])
    assert "- changed: `reports/grid.png`" in md
    assert "- reproduced within tolerance: `reports/tsne.png` (largest drift: PSNR" in md
    assert "### Reproduced within tolerance (`metrics/` vs `main`)" in md
    assert "- `metrics/unet.json`: largest drift relative 2e-05" in md
