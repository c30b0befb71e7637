"""The generation stages as DVC runs them: real processes, kills, several processes.

A temporary project (params.yaml + the names sample) is built per module; the
stage scripts of this repo run in it as subprocesses.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from facerefine.data import shards

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def make_project(root: Path, **scale) -> Path:
    root.mkdir(parents=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["profiles"]["smoke"].update({"num_names": 12, "num_baseline": 4, "image_size": 32,
                                     "shard_size": 2, "batch_size": 2, **scale})
    (root / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    (root / "data/names/smoke").mkdir(parents=True)
    shutil.copy(REPO / "data/names/smoke/name.basics.tsv", root / "data/names/smoke/")
    return root


def stage(name: str, cwd: Path, launcher=(sys.executable,), **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*launcher, str(REPO / "stages" / f"{name}.py")], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def check(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("ref") / "proj")
    check(stage("prompts", root))
    check(stage("generate_schnell", root))
    return root


def test_prompts_stage_outputs(reference):
    import pandas as pd

    m = pd.read_parquet(reference / "data/prompts/enriched.parquet")
    assert len(m) == 12 and set(m["split"]) <= {"train", "val", "test"}
    assert (reference / "metrics/prompts.json").is_file()


def test_killed_stage_resumes_to_identical_shards(reference, tmp_path):
    root = make_project(tmp_path / "proj")
    check(stage("prompts", root))
    proc = stage("generate_schnell", root, start_new_session=True)
    out_dir = root / "data/schnell/enriched"
    deadline = time.time() + 240
    while not (out_dir / "shard-000000.tar").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = shards.list_shards(out_dir)
    assert 1 <= len(partial) < 6, "the kill should land mid-run"
    assert not (out_dir / shards.MANIFEST).exists()

    check(stage("generate_schnell", root))
    assert tree(root / "data/schnell") == tree(reference / "data/schnell")


def test_two_processes_write_the_same_bytes_as_one(reference, tmp_path):
    root = make_project(tmp_path / "proj")
    check(stage("prompts", root))
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    out = check(stage("generate_schnell", root, launcher=launcher))
    assert "schnell/enriched" in out
    assert tree(root / "data/schnell") == tree(reference / "data/schnell")


def test_bad_params_stop_before_any_work(tmp_path):
    root = make_project(tmp_path / "proj", image_size=60)
    proc = stage("prompts", root)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "profiles.smoke.image_size: must be a multiple of 16 (got 60)" in out
    assert "Traceback" not in out and not (root / "data/prompts").exists()
