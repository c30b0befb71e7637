""".ci/check_clean.py: after a fresh repro, only timings may differ from HEAD (a throwaway git repo)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "check_clean.py"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_clean", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cc = load_checker()

README = """# facerefine report

## Dataset diversity (Table 1, Fig. 3)

| Enriched | 0.5 |

## Latency (Fig. 6)

| dev | 1.23 s |

## Quality (Table 4, Figs. 1, 7)

| unet | FID 12.0 |
"""
SUMMARY = {"fid_diff.unet": -6.6, "latency_dev_steps": 50, "saving_vs_dev.unet": 0.85, "saving_vs_dev.schnell": 0.9}
LOCK = {"schema": "2.0", "stages": {
    "train_unet": {"cmd": "python stages/train_unet.py",
                   "params": {"params.yaml": {"seed": 2505}},
                   "deps": [{"path": "data/dev", "md5": "a.dir"}],
                   "outs": [{"path": "metrics/unet.json", "md5": "u1"}]},
    "benchmark": {"cmd": "python stages/benchmark.py",
                  "deps": [{"path": "models/heads", "md5": "h.dir"}],
                  "outs": [{"path": "metrics/latency.json", "md5": "l1"}, {"path": "reports/latency.md", "md5": "m1"}]},
    "summary": {"cmd": "python stages/summary.py",
                "deps": [{"path": "metrics/latency.json", "md5": "l1"}, {"path": "metrics/unet.json", "md5": "u1"}],
                "outs": [{"path": "metrics/summary.json", "md5": "s1"}]},
}}


def write(root: Path, path: str, content) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif isinstance(content, str):
        file.write_text(content, encoding="utf-8")
    elif path.endswith(".lock"):
        file.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    else:
        file.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A committed pipeline-like tree: the tests then change files as a fresh repro would."""
    for var, value in {"GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
                       "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}.items():
        monkeypatch.setenv(var, value)
    files = {"reports/README.md": README, "metrics/summary.json": SUMMARY, "dvc.lock": LOCK,
             "metrics/unet.json": {"val_ssim": 0.03}, "metrics/latency.json": {"saving_vs_dev": {"mean": {"unet": 0.85}}},
             "reports/latency.md": "| dev | 1.23 s |\n", "reports/latency.png": b"\x89PNG1",
             ".gitignore": "/mlflow.db\n"}
    for path, content in files.items():
        write(tmp_path, path, content)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "outputs"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def test_clean_tree_passes(repo):
    write(repo, "mlflow.db", b"ignored")  # ignored files are not changes
    assert cc.check(repo) == ([], [], [])


def test_timing_files_may_change_or_appear(repo):
    write(repo, "metrics/latency.json", {"saving_vs_dev": {"mean": {"unet": 0.8}}})
    write(repo, "reports/latency.png", b"\x89PNG2")
    write(repo, "reports/latency.json", {"dev": [1.3]})  # untracked (new) timing table
    problems, allowed, _ = cc.check(repo)
    assert problems == []
    assert set(allowed) == {"metrics/latency.json", "reports/latency.png", "reports/latency.json"}


def test_any_other_changed_or_new_file_fails_by_name(repo):
    write(repo, "metrics/unet.json", {"val_ssim": 0.05})
    write(repo, "reports/unet/history.csv", "epoch,seconds\n1,3.2\n")
    (repo / "reports/latency.md").unlink()  # a deleted timing file is still only timings
    problems, allowed, _ = cc.check(repo)
    assert sorted(problems) == ["metrics/unet.json: changed (0.03 -> 0.05, relative 0.4 > 0.02)",
                                "reports/unet/history.csv"]
    assert allowed == ["reports/latency.md"]


def test_summary_may_differ_in_its_saving_keys_only(repo):
    write(repo, "metrics/summary.json", SUMMARY | {"saving_vs_dev.unet": 0.8, "saving_vs_dev.schnell": 0.91})
    assert cc.check(repo)[0] == []
    write(repo, "metrics/summary.json", SUMMARY | {"saving_vs_dev.unet": 0.8, "fid_diff.unet": -7.0,
                                                    "latency_dev_steps": 28})
    (problem,) = cc.check(repo)[0]
    assert problem.startswith("metrics/summary.json: fid_diff.unet, latency_dev_steps")


def test_report_may_differ_in_its_latency_section_only(repo):
    write(repo, "reports/README.md", README.replace("1.23 s", "1.31 s"))
    problems, allowed, _ = cc.check(repo)
    assert problems == [] and allowed == ["reports/README.md (section ## Latency only)"]
    write(repo, "reports/README.md", README.replace("1.23 s", "1.31 s").replace("FID 12.0", "FID 12.5"))
    (problem,) = cc.check(repo)[0]
    assert problem.startswith("reports/README.md: ## Quality (Table 4, Figs. 1, 7)") and "Latency" not in problem.split("(ignoring")[0]


def test_lock_may_differ_in_timing_files_hashes_only(repo):
    lock = json.loads(json.dumps(LOCK))
    lock["stages"]["benchmark"]["outs"][0]["md5"] = "l2"
    lock["stages"]["summary"]["deps"][0]["md5"] = "l2"  # downstream stages see the new hash too
    lock["stages"]["summary"]["outs"][0]["md5"] = "s2"  # summary.json itself is checked by content
    write(repo, "dvc.lock", lock)
    problems, allowed, _ = cc.check(repo)
    assert problems == [] and allowed == ["dvc.lock (hashes of timing or tolerated files only)"]


def test_lock_names_each_changed_stage_entry(repo):
    lock = json.loads(json.dumps(LOCK))
    lock["stages"]["train_unet"]["outs"][0]["md5"] = "u2"
    lock["stages"]["train_unet"]["params"]["params.yaml"]["seed"] = 1
    lock["stages"]["benchmark"]["deps"][0]["md5"] = "h2"  # the benchmark's deps are not timings
    lock["stages"]["new_stage"] = {"cmd": "true"}
    write(repo, "dvc.lock", lock)
    assert sorted(cc.check(repo)[0]) == ["dvc.lock: benchmark.deps models/heads", "dvc.lock: stage new_stage added",
                                         "dvc.lock: train_unet.outs metrics/unet.json",
                                         "dvc.lock: train_unet.params"]


def test_sections_split_at_h2_headings():
    parts = cc.sections(README)
    assert list(parts) == ["", "## Dataset diversity (Table 1, Fig. 3)", "## Latency (Fig. 6)",
                           "## Quality (Table 4, Figs. 1, 7)"]
    assert "".join(parts.values()) == README


def test_script_exits_1_and_lists_the_changed_files(repo):
    write(repo, "metrics/unet.json", {"val_ssim": 0.05})
    write(repo, "metrics/latency.json", {"saving_vs_dev": {"mean": {"unet": 0.8}}})
    out = subprocess.run([sys.executable, str(SCRIPT)], cwd=repo / "metrics", capture_output=True, text=True)
    assert out.returncode == 1
    assert "  metrics/unet.json" in out.stderr and "metrics/latency.json" not in out.stderr
    assert "allowed (timings): metrics/latency.json" in out.stdout
    write(repo, "metrics/unet.json", {"val_ssim": 0.03})
    assert subprocess.run([sys.executable, str(SCRIPT)], cwd=repo, capture_output=True).returncode == 0


def _png(pixels) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _parquet(frame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_last_digit_drift_is_reproduced_within_tolerance_and_its_lock_hash_may_follow(repo):
    """Another CPU or a GPU: the numbers move in their last digits, the hashes follow."""
    import numpy as np
    import pandas as pd

    grid = np.arange(64 * 64 * 3).reshape(64, 64, 3) % 200
    table = pd.DataFrame({"key": ["nm1", "nm2"], "age": [31.25, 40.5], "faces": [1, 1]})
    write(repo, "reports/tsne.png", _png(grid))
    write(repo, "data/attributes.parquet", _parquet(table))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "more outputs"], cwd=repo, check=True, capture_output=True)

    write(repo, "metrics/unet.json", {"val_ssim": 0.0300002})
    write(repo, "reports/tsne.png", _png(grid + (grid % 7 == 0)))  # a level here and there
    write(repo, "data/attributes.parquet", _parquet(table.assign(age=[31.2500004, 40.5])))
    lock = json.loads(json.dumps(LOCK))
    lock["stages"]["train_unet"]["outs"][0]["md5"] = "u2"
    lock["stages"]["summary"]["deps"][1]["md5"] = "u2"
    write(repo, "dvc.lock", lock)
    problems, allowed, drifted = cc.check(repo)
    assert problems == [] and allowed == ["dvc.lock (hashes of timing or tolerated files only)"]
    assert [line.split(":")[0] for line in sorted(drifted)] == [
        "data/attributes.parquet", "metrics/unet.json", "reports/tsne.png"]
    assert all("reproduced within tolerance (largest drift: " in line for line in drifted)
    assert "PSNR" in next(line for line in drifted if line.startswith("reports/tsne.png"))

    problems, _, drifted = cc.check(repo, exact=True)  # --exact: drift is a change
    assert drifted == [] and len(problems) == 5 and "dvc.lock: train_unet.outs metrics/unet.json" in problems


def test_a_lock_hash_fails_when_its_file_changed_beyond_tolerance(repo):
    write(repo, "metrics/unet.json", {"val_ssim": 0.05})
    lock = json.loads(json.dumps(LOCK))
    lock["stages"]["train_unet"]["outs"][0]["md5"] = "u2"
    write(repo, "dvc.lock", lock)
    assert "dvc.lock: train_unet.outs metrics/unet.json" in cc.check(repo)[0]


def test_summary_drift_beyond_its_timing_keys_is_tolerated(repo):
    write(repo, "metrics/summary.json", SUMMARY | {"fid_diff.unet": -6.62, "saving_vs_dev.unet": 0.7})
    problems, _, (line,) = cc.check(repo)
    assert problems == [] and line.startswith("metrics/summary.json: reproduced within tolerance")


def test_script_reports_drift_and_passes(repo):
    write(repo, "metrics/unet.json", {"val_ssim": 0.0300002})
    out = subprocess.run([sys.executable, str(SCRIPT)], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "metrics/unet.json: reproduced within tolerance (largest drift: relative" in out.stdout
    assert subprocess.run([sys.executable, str(SCRIPT), "--exact"], cwd=repo, capture_output=True).returncode == 1
