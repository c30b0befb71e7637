#!/usr/bin/env python3
"""After a fresh `dvc repro`: the working tree must equal HEAD, timings aside.

On an x86-64 CPU with AVX2, with the pinned numerics (facerefine.numerics) and the lock
(constraints.txt), a fresh clone's repro reproduces every versioned output byte for byte
(DESIGN.md, "Reproducibility rules"); the only content allowed to differ is wall-clock timing,
which the latency benchmark exists to measure, and, elsewhere, drift within stated
tolerances. `git status --porcelain` must therefore be empty except for:

* TIMING_FILES, whole files that hold nothing but the benchmark's timings;
* TIMING_PARTS, files that mix timings with deterministic numbers: they are compared
  with ``git show HEAD:<file>`` after dropping the timing keys or section, so a changed
  deterministic number in them still fails;
* TIMING_PART_DIRS, folders of such mixed files (the model cards, whose latency section
  and latency model-index metrics are timings);
* files that differ from HEAD only within the tolerances of ``facerefine.drift`` (numbers
  within a relative 2 %, images at PSNR >= 35 dB, parquet numeric columns likewise): reported
  as "reproduced within tolerance (largest drift: ...)", the last bits a machine without the
  pinned numerics (a GPU, Arm, other package versions) changes; ``--exact`` fails on them;
* dvc.lock, compared stage by stage: an entry may differ only where its path is one of
  the files above, or a folder whose changed files all are (their hashes follow their
  content); any other changed entry (cmd, params, a dep or out hash, a DVC-cached output
  whose old bytes are not here to compare) fails and is named.

Usage: python .ci/check_clean.py [--exact]  (from anywhere inside the repository; exit 1 and a
list of what changed when it is not clean).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from facerefine import drift

# The latency benchmark's own outputs: every number in them is a measured time or derived
# from one (stage `benchmark` in dvc.yaml).
TIMING_FILES: frozenset[str] = frozenset({
    "metrics/latency.json",   # headline savings vs dev: ratios of measured times
    "reports/latency.json",   # the full timing table
    "reports/latency.md",
    "reports/latency.png",
})

LOCK = "dvc.lock"


def _summary_without_timings(text: str) -> dict[str, Any]:
    """metrics/summary.json less the `saving_vs_dev.*` keys (copied from metrics/latency.json);
    `latency_dev_steps` is a param and stays compared."""
    return {k: v for k, v in json.loads(text).items() if not k.startswith("saving_vs_dev.")}


_H2 = re.compile(r"^## ", re.MULTILINE)


def sections(markdown: str) -> dict[str, str]:
    """Markdown split at its `## ` headings: heading line (or "" for the preamble) -> body."""
    out: dict[str, str] = {}
    starts = [m.start() for m in _H2.finditer(markdown)]
    bounds = [0, *starts, len(markdown)]
    for begin, end in zip(bounds, bounds[1:]):
        chunk = markdown[begin:end]
        title = chunk.splitlines()[0] if chunk.startswith("## ") else ""
        out[title] = out.get(title, "") + chunk
    return out


def _report_without_latency(text: str) -> dict[str, str]:
    """reports/README.md less its "## Latency" section (reports/latency.md inlined)."""
    return {title: body for title, body in sections(text).items() if not title.startswith("## Latency")}


# The model cards' timings (facerefine.card): the "## Latency" section and the model-index
# metrics of these types, both copied from metrics/latency.json.
CARD_LATENCY_METRICS = ("saving_vs_dev", "images_per_second")


def _card_without_latency(text: str) -> dict[str, str]:
    """A model card (models/cards/<head>/README.md) less its latency: the front matter without
    the latency model-index metrics, and every section but "## Latency"."""
    if not text.startswith("---\n"):
        raise ValueError("no YAML front matter")
    end = text.index("\n---\n", 4)
    meta = yaml.safe_load(text[4:end]) or {}
    for index in meta.get("model-index") or []:
        for result in index.get("results") or []:
            result["metrics"] = [m for m in result.get("metrics") or [] if m.get("type") not in CARD_LATENCY_METRICS]
    body = {title: chunk for title, chunk in sections(text[end + 5:]).items() if not title.startswith("## Latency")}
    return {"front matter": json.dumps(meta, sort_keys=True), **body}


# path -> (projection that drops the timing parts, what is ignored, for the messages)
TIMING_PARTS: dict[str, tuple[Callable[[str], dict], str]] = {
    "metrics/summary.json": (_summary_without_timings, "keys saving_vs_dev.*"),
    "reports/README.md": (_report_without_latency, "section ## Latency"),
}
# Folders of mixed files, one per head (stage model_cards): each file is compared like a
# TIMING_PARTS file, and the folder's own hash in dvc.lock may follow their timings.
TIMING_PART_DIRS: dict[str, tuple[str, tuple[Callable[[str], dict], str]]] = {
    "models/cards": ("README.md", (_card_without_latency, "section ## Latency, latency model-index metrics")),
}


def timing_part(path: str) -> tuple[Callable[[str], dict], str] | None:
    """The projection for a mixed file: TIMING_PARTS, or the named file in a TIMING_PART_DIRS folder."""
    if path in TIMING_PARTS:
        return TIMING_PARTS[path]
    for folder, (name, part) in TIMING_PART_DIRS.items():
        inner = Path(path).relative_to(folder) if path.startswith(folder + "/") else None
        if inner is not None and inner.name == name and len(inner.parts) == 2:
            return part
    return None


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False)


def changed_paths(repo: Path) -> list[str]:
    """Paths that `git status --porcelain` reports (modified, deleted, untracked, renamed)."""
    out = git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if out.returncode:
        raise RuntimeError(f"git status failed: {out.stderr.decode(errors='replace')}")
    fields = out.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    paths, i = [], 0
    while i < len(fields) and fields[i]:
        status, path = fields[i][:2], fields[i][3:]
        paths.append(path)
        i += 2 if "R" in status or "C" in status else 1  # a rename is followed by its old path
    return paths


def head_bytes(repo: Path, path: str) -> bytes | None:
    """The file's bytes in HEAD, or None if HEAD has no such file."""
    out = git(repo, "show", f"HEAD:{path}")
    return out.stdout if out.returncode == 0 else None


def file_drift(repo: Path, path: str) -> drift.Drift | None:
    """How a changed file differs from HEAD; None when it was added or deleted (a change)."""
    old, file = head_bytes(repo, path), repo / path
    if old is None or not file.is_file():
        return None
    return drift.compare(path, old, file.read_bytes()) or drift.Drift(True, "none (equal bytes)")


def head_text(repo: Path, path: str) -> str | None:
    """The file as committed in HEAD, or None if HEAD has no such file."""
    data = head_bytes(repo, path)
    return None if data is None else data.decode("utf-8")


def work_text(repo: Path, path: str) -> str | None:
    file = repo / path
    return file.read_text(encoding="utf-8") if file.is_file() else None


def _diff_keys(old: Mapping, new: Mapping) -> list[str]:
    return sorted(str(k) for k in set(old) | set(new) if old.get(k, object()) != new.get(k, object()))


def partial_changes(repo: Path, path: str) -> tuple[list[str], list[str]]:
    """What changed in a mixed file beyond its timing parts: (changes, drifts within tolerance);
    both empty when only timings did."""
    project, ignored = timing_part(path)
    old, new = head_text(repo, path), work_text(repo, path)
    if old is None or new is None:
        return [f"{path}: {'added' if old is None else 'deleted'}"], []
    try:
        old_parts, new_parts = project(old), project(new)
        keys = _diff_keys(old_parts, new_parts)
    except (ValueError, IndexError) as err:  # unreadable now: a real change, not a timing
        return [f"{path}: cannot compare ({err})"], []
    drifts = {k: drift.compare_text(json.dumps(old_parts.get(k)), json.dumps(new_parts.get(k))) for k in keys}
    if keys and all(d.within for d in drifts.values()):
        found = "; ".join(f"{k}: {d.largest}" for k, d in drifts.items())
        return [], [f"{path}: reproduced within tolerance (largest drift: {found}) (ignoring {ignored})"]
    return ([f"{path}: {', '.join(keys)} (ignoring {ignored})"] if keys else []), []


def _entries(stage: Mapping, key: str) -> dict[str, Any]:
    """A stage's deps/outs list keyed by path (params is a mapping already)."""
    value = stage.get(key)
    if isinstance(value, list):
        return {entry.get("path", json.dumps(entry, sort_keys=True)): entry for entry in value}
    return value if isinstance(value, dict) else {"": value}


def _tolerated(path: str, allowed: frozenset[str], blocked: frozenset[str]) -> bool:
    """A lock entry's path may change: it is allowed, or a folder holding allowed changes and no blocked one."""
    if path in allowed:
        return True
    inside = path.rstrip("/") + "/"
    return any(a.startswith(inside) for a in allowed) and not any(b.startswith(inside) for b in blocked)


def lock_changes(old: Mapping | None, new: Mapping | None, allowed: frozenset[str],
                 blocked: frozenset[str] = frozenset()) -> list[str]:
    """dvc.lock, stage by stage: every changed entry whose path is not tolerated (``allowed``,
    or a folder of allowed changes without a ``blocked`` one)."""
    old_stages, new_stages = (old or {}).get("stages", {}), (new or {}).get("stages", {})
    problems = []
    for name in sorted(set(old_stages) | set(new_stages)):
        if name not in old_stages or name not in new_stages:
            problems.append(f"{LOCK}: stage {name} {'added' if name not in old_stages else 'removed'}")
            continue
        o, n = old_stages[name], new_stages[name]
        for key in sorted(set(o) | set(n)):
            if o.get(key) == n.get(key):
                continue
            if key not in ("deps", "outs"):
                problems.append(f"{LOCK}: {name}.{key}")
                continue
            oe, ne = _entries(o, key), _entries(n, key)
            changed = [p for p in sorted(set(oe) | set(ne))
                       if oe.get(p) != ne.get(p) and not _tolerated(p, allowed, blocked)]
            problems += [f"{LOCK}: {name}.{key} {p}" for p in changed]
    return problems


def check(repo: Path, exact: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(problems, allowed timing differences, drifts within tolerance) of the working tree
    against HEAD; ``exact`` counts drifts as problems."""
    problems, allowed, drifted = [], [], []
    tolerated, blocked = set(TIMING_FILES | frozenset(TIMING_PARTS) | frozenset(TIMING_PART_DIRS)), set()
    paths = changed_paths(repo)
    for path in [p for p in paths if p != LOCK]:
        if path in TIMING_FILES:
            allowed.append(path)
            continue
        if timing_part(path) is not None:
            found, drifts = partial_changes(repo, path)
            if not found and not drifts:
                allowed.append(f"{path} ({timing_part(path)[1]} only)")
        else:
            found, drifts = [], []
            difference = file_drift(repo, path)
            if difference is not None and difference.within:
                drifts = [f"{path}: {difference.describe()}"]
            else:
                found = [path if difference is None else f"{path}: {difference.describe()}"]
        if exact:
            found, drifts = found + drifts, []
        problems += found
        drifted += drifts
        (blocked if found else tolerated).add(path)
    if LOCK in paths:
        old, new = head_text(repo, LOCK), work_text(repo, LOCK)
        found = lock_changes(yaml.safe_load(old or "{}"), yaml.safe_load(new or "{}"),
                             frozenset(tolerated), frozenset(blocked))
        problems += found
        if not found:
            allowed.append(f"{LOCK} (hashes of timing or tolerated files only)")
    return problems, allowed, drifted


def main(argv: list[str] | None = None) -> int:
    exact = "--exact" in (sys.argv[1:] if argv is None else argv)
    top = git(Path.cwd(), "rev-parse", "--show-toplevel")
    repo = Path(top.stdout.decode().strip()) if top.returncode == 0 else Path.cwd()
    problems, allowed, drifted = check(repo, exact=exact)
    for line in allowed:
        print(f"   differs, allowed (timings): {line}")
    for line in drifted:
        print(f"   {line}")
    if problems:
        print("error: a fresh `dvc repro` changed versioned outputs (not timings"
              + ("" if exact else ", beyond the tolerances of facerefine.drift")
              + "); commit what today's code produces, or make the output deterministic:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    if drifted:
        print(f"   reproduced within tolerance: {len(drifted)} file(s) differ in their last digits (see above; "
              "bit-exact needs an x86-64 AVX2 CPU, the pinned numerics and constraints.txt)")
    else:
        print("   working tree matches HEAD (timings aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
