"""Start-up cost: a smoke `dvc repro` starts ~28 stage processes, so a heavy library that a
stage imports but does not use is paid ~28 times. Loading a stage script (without running
it) must not import MLflow (tracking spools; a detached flusher imports it) nor the heavy
libraries that only some code paths need: those are imported inside the functions that
use them."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = sorted(p.name for p in (REPO / "stages").glob("*.py"))
LAZY = ("mlflow", "diffusers", "transformers", "deepface", "torch_fidelity", "lpips", "torchmetrics",
        "matplotlib", "sklearn", "sqlalchemy", "alembic")

LOAD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("stage_under_test", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # no main(): __name__ differs
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def loaded_packages(scripts: list[Path]) -> dict[str, set[str]]:
    """Top-level packages in sys.modules after loading each script in its own interpreter;
    the interpreters run side by side (each pays the torch import)."""
    procs = {s.name: subprocess.Popen([sys.executable, "-c", LOAD, str(s)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=REPO) for s in scripts}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate()
        assert proc.returncode == 0, f"loading {name} failed:\n{stderr}"
        out[name] = set(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_loading_a_stage_imports_no_heavy_library_it_does_not_use():
    found = loaded_packages([REPO / "stages" / s for s in STAGES])
    bad = {stage: sorted(mods & set(LAZY)) for stage, mods in found.items() if mods & set(LAZY)}
    assert not bad, f"stage scripts import heavy libraries at module level: {bad}"


def test_the_check_sees_a_module_level_import(tmp_path):
    """The subprocess check itself works: a script importing mlflow is caught."""
    script = tmp_path / "s.py"
    script.write_text("import mlflow\n")
    assert "mlflow" in loaded_packages([script])["s.py"]
