"""``facerefine review``: what a change does to the numbers and figures, as markdown.

The pull-request workflow (``.github/workflows/review.yml``) posts this as a comment,
and a person at their terminal gets the same report with
``facerefine review --base main``. It compares the workspace with a git revision:

1. the stand-in banner when the workspace's active profile uses any ``smoke``/``random`` network;
2. the headline table of ``metrics/summary.json`` (base, workspace, change);
3. ``dvc params diff REV --md`` and ``dvc metrics diff REV --md``;
4. the figures (PNG files under ``reports/``) added, changed or removed since REV;
5. what was only reproduced within tolerance (``facerefine.drift``): metrics files and figures
   that differ from REV in their last digits or levels, as another machine leaves them, kept
   apart from real changes (the headline marks such a number "drift").

Git and DVC run as subprocesses from the repository root; rendering is pure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from facerefine import drift
from facerefine.config import standin_specs
from facerefine.summary import label

SUMMARY = "metrics/summary.json"
REPORTS = "reports"
METRICS = "metrics"
SMOKE_BANNER = ("> **Stand-in networks:** this profile uses randomly initialised networks, so "
                "these numbers only show that the pipeline runs; their changes mean nothing about quality. "
                "`dvc exp run -S profile=paper` gives real numbers.")


class ReviewError(RuntimeError):
    """The review cannot be built (no repository, unknown revision, a failing dvc call)."""


# --------------------------------------------------------------------------- subprocesses


def find_root(start: Path) -> Path:
    """The DVC repository containing ``start`` (dvc must run from there to see dvc.yaml)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise ReviewError(f"{start}: not inside a DVC repository (no .dvc/ folder here or above)")


def _run(cmd: Sequence[str], root: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(list(cmd), cwd=root, capture_output=True, check=False)
    except OSError as err:
        raise ReviewError(f"cannot run {cmd[0]}: {err}") from None


def _git(args: Sequence[str], root: Path) -> subprocess.CompletedProcess[bytes]:
    return _run(["git", *args], root)


def check_revision(rev: str, root: Path) -> str:
    """The commit ``rev`` names; a clear error if it does not exist (e.g. a shallow CI clone)."""
    # A leading dash would be read as an option by every git call below.
    proc = None if rev.startswith("-") else _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    if proc is None or proc.returncode != 0 or not proc.stdout.strip():
        raise ReviewError(f"revision '{rev}' does not exist in {root}; check the name, or fetch it "
                          "(`git fetch origin`; in CI check out with fetch-depth: 0)")
    return proc.stdout.decode().strip()


def run_dvc(args: Sequence[str], root: Path) -> tuple[str, str]:
    """stdout and stderr of ``dvc ARGS`` (the dvc of this interpreter, so the same venv)."""
    proc = _run([sys.executable, "-m", "dvc", *args], root)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise ReviewError(f"`dvc {' '.join(args)}` failed (exit {proc.returncode}):\n{err.strip() or out.strip()}")
    return out, err


def git_show(rev: str, path: str, root: Path) -> bytes | None:
    """A file's bytes at ``rev``, or None if it does not exist there."""
    proc = _git(["show", f"{rev}:{path}"], root)
    return proc.stdout if proc.returncode == 0 else None


def _names(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [n for n in proc.stdout.decode().split("\0") if n]


def files_at(rev: str, root: Path, folder: str = REPORTS, suffix: str = ".png") -> list[str]:
    proc = _git(["ls-tree", "-r", "-z", "--name-only", rev, "--", folder], root)
    return [n for n in _names(proc) if n.lower().endswith(suffix)]


def files_in_workspace(root: Path, folder: str = REPORTS, suffix: str = ".png") -> list[str]:
    """Tracked and new (not git-ignored) files (PNGs by default): files DVC caches instead of git are
    skipped on both sides."""
    proc = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", folder], root)
    return [n for n in _names(proc) if n.lower().endswith(suffix) and (root / n).is_file()]


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class FigureChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    drifted: tuple[tuple[str, str], ...] = ()  # (path, largest drift): reproduced within tolerance

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.drifted)


def drifts(base: Mapping[str, bytes], workspace: Mapping[str, bytes]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files in both whose bytes differ: (changed paths, (path, largest drift) within tolerance)."""
    changed, drifted = [], []
    for path in sorted(set(base) & set(workspace)):
        found = drift.compare(path, base[path], workspace[path])
        if found is not None:
            (drifted.append((path, found.largest)) if found.within else changed.append(path))
    return changed, drifted


def figure_changes(base: Mapping[str, bytes], workspace: Mapping[str, bytes]) -> FigureChanges:
    """Compare figures by content: path -> bytes at the base and in the workspace."""
    changed, drifted = drifts(base, workspace)
    return FigureChanges(
        added=tuple(sorted(set(workspace) - set(base))),
        changed=tuple(changed),
        removed=tuple(sorted(set(base) - set(workspace))),
        drifted=tuple(drifted),
    )


def md_table_has_rows(md: str) -> bool:
    """DVC's --md prints a bare header when nothing changed: rows are the lines after the separator."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return len(lines) > 2


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _delta(old: Any, new: Any) -> str:
    if _is_number(old) and _is_number(new):
        d = new - old
        if d == 0:
            return "0"
        close = not (isinstance(old, int) and isinstance(new, int)) and drift.numbers_close(old, new)
        return f"{d:+.4g} (drift)" if close else f"{d:+.4g}"
    return "" if old == new else "changed"


def headline_table(base: Mapping[str, Any] | None, workspace: Mapping[str, Any] | None, rev: str) -> str:
    """Rows in the workspace's key order, then keys only the base has (a head that was dropped)."""
    if base is None and workspace is None:
        return f"_`{SUMMARY}` exists neither at `{rev}` nor in the workspace (run `dvc repro summary`)._"
    base, workspace = base or {}, workspace or {}
    keys = list(workspace) + [k for k in base if k not in workspace]
    lines = [f"| metric | `{rev}` | workspace | change |", "|---|---:|---:|---:|"]
    for key in keys:
        old, new = base.get(key), workspace.get(key)
        change = "removed" if key not in workspace else "new" if key not in base else _delta(old, new)
        lines.append(f"| {label(key)} | {_fmt(old)} | {_fmt(new)} | {change} |")
    return "\n".join(lines)


def _dvc_section(title: str, md: str, warnings: str) -> list[str]:
    body = md.strip() if md_table_has_rows(md) else "_no changes_"
    notes = [f"> dvc: {line.strip()}" for line in warnings.splitlines() if line.strip()]
    return [f"### {title}", "", body, *([""] + notes if notes else []), ""]


def _figures_section(changes: FigureChanges, rev: str) -> list[str]:
    out = [f"### Figures (`{REPORTS}/**/*.png` vs `{rev}`)", ""]
    if changes.empty:
        return out + ["_no changes_", ""]
    for kind in ("added", "changed", "removed"):
        out += [f"- {kind}: `{path}`" for path in getattr(changes, kind)]
    out += [f"- reproduced within tolerance: `{path}` (largest drift: {largest})" for path, largest in changes.drifted]
    return out + [""]


def _drift_section(metrics_drifted: Sequence[tuple[str, str]], rev: str) -> list[str]:
    """Metrics files that differ from REV only within tolerance: drift, not a change."""
    if not metrics_drifted:
        return []
    out = [f"### Reproduced within tolerance (`{METRICS}/` vs `{rev}`)", "",
           "These differ only in their last digits (another CPU, a GPU or other package versions; "
           "tolerances in `facerefine.drift`); `dvc metrics diff` above lists them too.", ""]
    return out + [f"- `{path}`: largest drift {largest}" for path, largest in metrics_drifted] + [""]


def render_review(*, rev: str, smoke: bool, summary_base: Mapping[str, Any] | None,
                  summary_workspace: Mapping[str, Any] | None, params_md: str, metrics_md: str,
                  figures: FigureChanges, params_warnings: str = "", metrics_warnings: str = "",
                  metrics_drifted: Sequence[tuple[str, str]] = ()) -> str:
    parts = [f"## facerefine review: workspace vs `{rev}`", ""]
    if smoke:
        parts += [SMOKE_BANNER, ""]
    parts += [f"### Headline (`{SUMMARY}`)", "", headline_table(summary_base, summary_workspace, rev), ""]
    parts += _dvc_section(f"Params (`dvc params diff {rev}`)", params_md, params_warnings)
    parts += _dvc_section(f"Metrics (`dvc metrics diff {rev}`)", metrics_md, metrics_warnings)
    parts += _figures_section(figures, rev)
    parts += _drift_section(metrics_drifted, rev)
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------- assembly


def _json_or_none(data: bytes | None, where: str) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        loaded = json.loads(data)
    except json.JSONDecodeError as err:
        raise ReviewError(f"{where}: not valid JSON ({err})") from None
    return loaded if isinstance(loaded, dict) else None


def _workspace_bytes(root: Path, path: str) -> bytes | None:
    file = root / path
    return file.read_bytes() if file.is_file() else None


def _workspace_params(root: Path) -> dict:
    """The raw params.yaml: the banner must not depend on the rest of it validating."""
    try:
        data = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def workspace_uses_standins(root: Path) -> bool:
    """Whether the active profile's raw ``models`` name any stand-in network (config.standin_specs,
    the rule every report's banner follows), whatever the profile is called."""
    data = _workspace_params(root)
    profiles = data.get("profiles")
    profile = profiles.get(data.get("profile")) if isinstance(profiles, dict) else None
    models = profile.get("models") if isinstance(profile, dict) else None
    # params too broken to name the models: fall back to the profile's name
    return bool(standin_specs(models)) if isinstance(models, dict) else data.get("profile") == "smoke"


def collect_figures(rev: str, root: Path) -> FigureChanges:
    base_paths, ws_paths = files_at(rev, root), files_in_workspace(root)
    base = {p: git_show(rev, p, root) or b"" for p in base_paths}
    workspace = {p: (root / p).read_bytes() for p in ws_paths}
    return figure_changes(base, workspace)


def collect_metrics_drift(rev: str, root: Path) -> list[tuple[str, str]]:
    """Metrics JSON files at ``rev`` and in the workspace that differ only within tolerance."""
    base = {p: git_show(rev, p, root) or b"" for p in files_at(rev, root, METRICS, ".json")}
    workspace = {p: (root / p).read_bytes() for p in files_in_workspace(root, METRICS, ".json")}
    return drifts(base, workspace)[1]


def build_review(rev: str, start: Path | None = None) -> str:
    """The review markdown of the workspace (the repository around ``start``) vs ``rev``."""
    root = find_root(start or Path.cwd())
    check_revision(rev, root)
    params_md, params_err = run_dvc(["params", "diff", rev, "--md"], root)
    metrics_md, metrics_err = run_dvc(["metrics", "diff", rev, "--md"], root)
    return render_review(
        rev=rev,
        smoke=workspace_uses_standins(root),
        summary_base=_json_or_none(git_show(rev, SUMMARY, root), f"{rev}:{SUMMARY}"),
        summary_workspace=_json_or_none(_workspace_bytes(root, SUMMARY), SUMMARY),
        params_md=params_md, metrics_md=metrics_md, figures=collect_figures(rev, root),
        params_warnings=params_err, metrics_warnings=metrics_err,
        metrics_drifted=collect_metrics_drift(rev, root),
    )
