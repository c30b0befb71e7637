"""Start-up cost: a smoke `dvc repro` starts ~28 stage processes, so a heavy library that a
stage imports but does not use is paid ~28 times. Loading a stage script (without running
it) must not import MLflow (tracking spools; a detached flusher imports it) nor the heavy
libraries that only some code paths need: those are imported inside the functions that
use them."""

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from facerefine.numerics import PINS

REPO = Path(__file__).resolve().parents[1]
STAGES = sorted(p.name for p in (REPO / "stages").glob("*.py"))
LAZY = ("mlflow", "diffusers", "transformers", "deepface", "torch_fidelity", "lpips", "torchmetrics",
        "matplotlib", "sklearn", "sqlalchemy", "alembic")

LOAD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("stage_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # no main(): __name__ differs
numerics = sys.modules.get("facerefine.numerics")
print(json.dumps({"numerics": numerics.settings()["mode"] if numerics else None}))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def load(scripts: list[Path]) -> dict[str, tuple[set[str], str | None]]:
    """Per script: the top-level packages in sys.modules after loading it in its own interpreter,
    and the numerics mode it ended in (None if it never imported facerefine). The interpreters
    run side by side (each pays the torch import), without the numeric pins in their
    environment, so each must set them itself."""
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    procs = {s.name: subprocess.Popen([sys.executable, "-c", LOAD, str(s)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO, env=env) for s in scripts}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate()
        assert proc.returncode == 0, f"loading {name} failed:\n{stderr}"
        numerics, modules = stdout.strip().splitlines()[-2:]
        out[name] = set(json.loads(modules)), json.loads(numerics)["numerics"]
    return out


@cache
def stages_loaded() -> dict[str, tuple[set[str], str | None]]:
    return load([REPO / "stages" / s for s in STAGES])


def loaded_packages(scripts: list[Path]) -> dict[str, set[str]]:
    return {name: modules for name, (modules, _) in load(scripts).items()}


def test_loading_a_stage_imports_no_heavy_library_it_does_not_use():
    found = {stage: modules for stage, (modules, _) in stages_loaded().items()}
    bad = {stage: sorted(mods & set(LAZY)) for stage, mods in found.items() if mods & set(LAZY)}
    assert not bad, f"stage scripts import heavy libraries at module level: {bad}"


def test_the_check_sees_a_module_level_import(tmp_path):
    """The subprocess check itself works: a script importing mlflow is caught."""
    script = tmp_path / "s.py"
    script.write_text("import mlflow\n")
    assert "mlflow" in loaded_packages([script])["s.py"]


def test_every_stage_pins_the_numerics_before_torch_loads():
    """`import facerefine` must come before `import torch` in a stage script, or MKL, oneDNN and
    ATen start with the machine's own code paths (facerefine.numerics)."""
    modes = {stage: mode for stage, (_, mode) in stages_loaded().items()}
    bad = {stage: mode for stage, mode in modes.items() if mode != "pinned"}
    assert not bad, f"stage scripts whose numerics are not pinned before torch loads: {bad}"
