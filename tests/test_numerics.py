"""Pinned CPU numerics (facerefine.numerics): what apply() sets, what it leaves alone, and whether
the committed probe hashes (tests/data/numerics_hashes.json) still reproduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from facerefine import numerics

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "numerics_probe.py"
HASHES = REPO / "tests" / "data" / "numerics_hashes.json"


@pytest.fixture
def fresh(monkeypatch):
    """A clean slate: no pin variables in the environment, apply() not yet run."""
    for key in (*numerics.PINS, numerics.SWITCH):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(numerics, "_state", {})
    monkeypatch.setattr(numerics, "_warned", set())
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as if torch were not loaded yet
    yield
    # sys.modules["torch"] comes back with monkeypatch; the env pins of this session too.


def test_pins_fill_the_environment(fresh, monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    settings = numerics.apply()
    assert {k: os.environ[k] for k in numerics.PINS} == numerics.PINS
    assert settings["mode"] == "pinned" and settings["MKL_CBWR"] == "COMPATIBLE,STRICT"


def test_your_environment_wins_and_is_marked(fresh, monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    settings = numerics.apply()
    assert os.environ["OMP_NUM_THREADS"] == "8" and settings["OMP_NUM_THREADS"] == "8 (yours)"
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2"


def test_native_opts_out_of_every_pin(fresh, monkeypatch):
    monkeypatch.setenv(numerics.SWITCH, "native")
    settings = numerics.apply()
    assert not set(numerics.PINS) & set(os.environ)
    assert settings["mode"].startswith("native") and settings["MKL_CBWR"] == "unset"


def test_without_avx2_the_isa_pins_are_skipped(fresh, monkeypatch):
    """Arm, or an x86 CPU without AVX2: ATEN_CPU_CAPABILITY=avx2 would crash there."""
    monkeypatch.setattr(numerics, "has_avx2", lambda: False)
    settings = numerics.apply()
    assert not set(numerics.ISA_PINS) & set(os.environ)
    assert os.environ["OMP_NUM_THREADS"] == numerics.THREADS
    assert "without the instruction-set pins" in settings["mode"]


def test_has_avx2_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(numerics, "cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
    assert numerics.has_avx2()
    monkeypatch.setattr(numerics, "cpu_flags", lambda: {"sse4_2", "avx"})
    assert not numerics.has_avx2()
    monkeypatch.setattr(numerics, "cpu_flags", lambda: None)  # unknown: do not risk it
    assert not numerics.has_avx2()
    monkeypatch.setattr(numerics.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(numerics, "cpu_flags", lambda: {"avx2", "fma"})
    assert not numerics.has_avx2()


def test_a_late_torch_import_warns_once(fresh, monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    monkeypatch.setitem(sys.modules, "torch", torch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        numerics.apply()
        numerics._state.clear()
        numerics.apply()
    messages = [str(w.message) for w in caught if "imported before facerefine" in str(w.message)]
    assert len(messages) == 1 and "ATEN_CPU_CAPABILITY" in messages[0]


def _probe_env() -> dict[str, str]:
    """The pinned settings as a fresh clone gets them: none of the pin variables preset."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINS and k != numerics.SWITCH}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_pinned_numerics_reproduce_the_committed_hashes():
    if not numerics.has_avx2():
        pytest.skip("the committed hashes are for x86-64 CPUs with AVX2; this CPU gets other bits")
    proc = subprocess.run([sys.executable, str(PROBE)], env=_probe_env(), capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert proc.returncode == 0, f"{PROBE.name} failed:\n{proc.stderr}"
    now = json.loads(proc.stdout)
    then = json.loads(HASHES.read_text(encoding="utf-8"))
    changed = sorted(k for k in then["hashes"] if now["hashes"].get(k) != then["hashes"][k])
    if changed:
        differs = {key: {"committed": then["made_with"].get(key), "now": now["made_with"].get(key)}
                   for key in then["made_with"] if then["made_with"].get(key) != now["made_with"].get(key)}
        pytest.fail(
            f"the pinned CPU numerics no longer reproduce {', '.join(changed)} "
            f"({HASHES.relative_to(REPO)}), so the committed pipeline outputs will not reproduce "
            "bit for bit either. Check: the versions of torch (and the MKL and oneDNN it bundles, "
            "`python -c 'import torch; print(torch.__config__.show())'`) against constraints.txt; "
            "the pin variables in facerefine/numerics.py and in your environment; the CPU flags "
            "(AVX2 and FMA needed). What differs from the machine that made the hashes:\n"
            f"{json.dumps(differs, indent=2)}\n"
            "If the change is intended (a new lock), regenerate with `python tests/numerics_probe.py "
            "--write` and regenerate the pipeline outputs (`dvc repro`) in the same commit.")
