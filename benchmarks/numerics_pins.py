"""Which numeric pins (facerefine.numerics) matter on this CPU, and do they hold across thread counts?

Runs tests/numerics_probe.py (matmul, 3x3 conv, full reduction, one tiny-head training step, one
smoke FLUX step) in fresh processes under several settings and compares the output hashes with
the fully pinned run:

* native (FACEREFINE_NUMERICS=native), 1 and 2 threads: the machine's own code paths;
* pinned at 1, 2 and 4 threads;
* pinned but for one variable, set to the library's own default instead
  (MKL_CBWR=AUTO, ONEDNN_MAX_CPU_ISA=ALL, ATEN_CPU_CAPABILITY=<what this CPU would pick>),
  and MKL_CBWR=AVX2,STRICT (the branch MKL ignores on non-Intel CPUs).

    python benchmarks/numerics_pins.py [--out benchmarks/results/numerics_pins_<cpu>.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "numerics_probe.py"
sys.path.insert(0, str(REPO / "src"))
from facerefine.numerics import PINS, SWITCH, cpu_flags  # noqa: E402


def native_capability() -> str:
    flags = cpu_flags() or set()
    return "avx512" if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags else "avx2"


def run(env_overrides: dict[str, str | None]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINS and k != SWITCH}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return {"hashes": result["hashes"], "numerics": result["made_with"]["numerics"],
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    native = {SWITCH: "native"}
    configs: dict[str, dict[str, str | None]] = {
        "pinned, 2 threads": {},
        "pinned, 1 thread": {"OMP_NUM_THREADS": "1"},
        "pinned, 4 threads": {"OMP_NUM_THREADS": "4"},
        "native, 2 threads": {**native, "OMP_NUM_THREADS": "2"},
        "native, 1 thread": {**native, "OMP_NUM_THREADS": "1"},
        "pinned but MKL_CBWR=AUTO": {"MKL_CBWR": "AUTO"},
        "pinned but ONEDNN_MAX_CPU_ISA=ALL": {"ONEDNN_MAX_CPU_ISA": "ALL"},
        f"pinned but ATEN_CPU_CAPABILITY={native_capability()}": {"ATEN_CPU_CAPABILITY": native_capability()},
        "pinned but MKL_CBWR=AVX2,STRICT (a named branch)": {"MKL_CBWR": "AVX2,STRICT"},
    }
    results = {name: run(env) for name, env in configs.items()}
    reference = results["pinned, 2 threads"]["hashes"]
    probes = list(reference)
    print(f"{'setting':<52} " + " ".join(f"{p:>10}" for p in probes) + "   (= same bits as pinned, 2 threads)")
    for name, result in results.items():
        marks = ["=" if result["hashes"][p] == reference[p] else "DIFFERS" for p in probes]
        print(f"{name:<52} " + " ".join(f"{m:>10}" for m in marks) + f"   {result['seconds']} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"cpu_flags": sorted(f for f in (cpu_flags() or ()) if f.startswith(("avx", "fma"))),
                  "results": results}
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
