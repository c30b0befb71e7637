"""Compiled heads (facerefine.compile): buckets bound the graphs, compiled equals eager, the
compile cache survives the process, and `facerefine enhance --compile on` keeps exact sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch._dynamo.testing import CompileCounter

from facerefine import cli
from facerefine.compile import (COMPILE_CHOICES, COMPILE_MODES, HeadRunner, bucket_ladder, bucket_side,
                                wants_compile)
from facerefine.enhance import Enhancer
from facerefine.head_folder import write_head_folder
from facerefine.heads import HeadFolder
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM

# Inductor's CPU kernels reassociate float32 sums (fused convs, vectorised reductions); on these
# tiny heads the largest difference from eager measured ~1e-6. 1e-4 is far below one 8-bit level
# (2/255 in [-1, 1]), i.e. no output pixel can change by more than rounding.
COMPILED_ATOL = 1e-4
MIXED_SIZES = [(37, 50), (50, 37), (64, 64), (65, 64), (100, 130), (127, 128), (128, 127), (129, 200),
               (200, 129), (250, 250), (256, 250), (300, 90), (90, 300), (31, 500)]


@pytest.fixture(autouse=True)
def _compile_cache(tmp_path: Path, monkeypatch) -> Path:
    """Each test compiles into its own cache; the env vars use_cache sets are restored after."""
    cache = tmp_path / "compile"
    monkeypatch.setenv("FACEREFINE_COMPILE_CACHE", str(cache))
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                 "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return cache


def _head(kind: str = "cyclegan") -> HeadFolder:
    torch.manual_seed(0)
    model = (ResUNetCBAM(base_channels=4, depth=3) if kind == "unet"
             else ResnetGenerator(ngf=4, n_blocks=1, esa="blocks" if kind == "esa" else None))
    if kind == "unet":
        torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    return HeadFolder(model.eval(), {"name": kind}, Path(kind))


def _images(sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=g) * 2 - 1 for h, w in sizes]


# ---------------------------------------------------------------- choices and buckets


def test_auto_compiles_on_cuda_only() -> None:
    assert wants_compile("auto", "cuda") and wants_compile(None, "cuda:1")
    assert not wants_compile("auto", "cpu") and wants_compile("on", "cpu") and not wants_compile("off", "cuda")
    assert wants_compile(True, "cpu") and not wants_compile(False, "cuda")
    with pytest.raises(ValueError, match="compile must be one of auto, on, off, got 'yes'"):
        wants_compile("yes", "cpu")
    assert set(cli.COMPILE_CHOICES) == set(COMPILE_CHOICES) and set(cli.COMPILE_MODES) == set(COMPILE_MODES)


@pytest.mark.parametrize(("multiple", "minimum", "cap"), [(4, 1, 2048), (4, 60, 1024), (32, 1, 4096), (128, 200, 2048)])
def test_bucket_ladder(multiple: int, minimum: int, cap: int) -> None:
    ladder = bucket_ladder(multiple, minimum, cap)
    unit = np.lcm(64, multiple)
    assert ladder == sorted(set(ladder)) and all(r % unit == 0 and minimum <= r <= cap for r in ladder)
    assert all(side in ladder for side in (512, 1024) if side <= cap and side % unit == 0)
    # Above the first octave a side is padded by at most 25 %.
    assert all(b <= 1.25 * a + 1e-9 for a, b in zip(ladder, ladder[1:]) if a >= 4 * unit)
    assert len(ladder) <= 4 * np.log2(cap / unit) + 1
    assert bucket_side(1, ladder) == ladder[0] and bucket_side(ladder[-1] + 1, ladder) is None
    assert all(bucket_side(r, ladder) == r and bucket_side(r - 1, ladder) == r for r in ladder)


# --------------------------------------------------------------- graphs per folder


@pytest.mark.parametrize("kind", ["cyclegan", "esa", "unet"])
def test_mixed_sizes_compile_a_bounded_number_of_graphs(kind: str) -> None:
    counter = CompileCounter()  # counts the graphs dynamo hands to the backend, runs them eagerly
    head = _head(kind)
    enhancer = Enhancer(head, compile="on", compile_backend=counter, batch_size=3, bucket_cap=512)
    eager = Enhancer(head, compile="off")
    images = _images(MIXED_SIZES)
    outputs = [enhancer.enhance_tensor(x) for x in images]
    assert [tuple(y.shape[-2:]) for y in outputs] == MIXED_SIZES  # exact sizes back
    buckets = {enhancer.batch_key(*x.shape[-2:]) for x in images}
    assert counter.frame_count == len(enhancer.runner.log.shapes) == len(buckets) < len(MIXED_SIZES)
    assert counter.frame_count <= enhancer.runner.bound
    # A second pass over the same sizes, batched (short last batches included), compiles nothing.
    for start in range(0, len(images), 2):
        group = [x for x in images[start:start + 2] if enhancer.batch_key(*x.shape[-2:]) == enhancer.batch_key(
            *images[start].shape[-2:])]
        enhancer.enhance_batch(group)
    assert counter.frame_count == len(buckets)
    # The graphs ran the head itself: on a size that is its own bucket, the output is eager's.
    x = _images([(128, 128)])[0]
    assert torch.allclose(enhancer.enhance_tensor(x), eager.enhance_tensor(x), atol=COMPILED_ATOL)


def test_sides_above_the_cap_run_eager() -> None:
    counter = CompileCounter()
    enhancer = Enhancer(_head(), compile="on", compile_backend=counter, bucket_cap=128)
    y = enhancer.enhance_tensor(_images([(40, 200)])[0])
    assert y.shape[-2:] == (40, 200) and counter.frame_count == 0 and enhancer.runner.log.eager_calls == 1


def test_enhancers_of_one_head_share_the_compiled_model() -> None:
    head = _head()
    first, second = (head_runner := HeadRunner(head.model, "cpu", compile="on", backend="eager"),
                     HeadRunner(head.model, "cpu", compile="on", backend="eager"))
    assert first._fn is second._fn and head_runner.eager is head.model
    with torch.no_grad():
        next(head.model.parameters()).add_(1.0)  # an in-place update of the weights: a fresh placement
    assert HeadRunner(head.model, "cpu", compile="on", backend="eager")._fn is not first._fn


# ------------------------------------------------------------------ inductor, cache


def test_inductor_compiled_equals_eager(_compile_cache: Path) -> None:
    head = _head("unet")
    enhancer = Enhancer(head, compile="on", batch_size=2)
    x = torch.stack(_images([(64, 128), (64, 128)]))
    compiled, eager = enhancer.runner(x), enhancer.runner.eager(x)
    assert (compiled - eager).abs().max().item() < COMPILED_ATOL
    short = enhancer.runner(x[:1])  # padded to the batch: the same graph
    assert (short - eager[:1]).abs().max().item() < COMPILED_ATOL and len(enhancer.runner.log.shapes) == 1
    assert any(_compile_cache.rglob("*")) and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(_compile_cache)


_SECOND_PROCESS = textwrap.dedent("""
    import json, sys, torch
    from facerefine.compile import HeadRunner
    from facerefine.compile_cache import cache_counters
    from facerefine.models.cyclegan import ResnetGenerator
    torch.manual_seed(0)
    runner = HeadRunner(ResnetGenerator(ngf=4, n_blocks=1).eval(), "cpu", compile="on", batch_size=1)
    runner(torch.zeros(1, 3, 64, 64))
    print(json.dumps(cache_counters()))
""")


def test_a_second_process_reuses_the_compile_cache(tmp_path: Path) -> None:
    cache = tmp_path / "compile"
    # A TORCHINDUCTOR_CACHE_DIR from outside is overridden: compiled code never lands in a global cache.
    env = {**os.environ, "FACEREFINE_COMPILE_CACHE": str(cache), "TORCHINDUCTOR_CACHE_DIR": "/nonexistent-global"}

    def run() -> dict[str, int]:
        done = subprocess.run([sys.executable, "-c", _SECOND_PROCESS], env=env, capture_output=True, text=True,
                              check=True, timeout=600)
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold = run()
    assert cold.get("fxgraph_cache_miss", 0) >= 1 and cold.get("fxgraph_cache_hit", 0) == 0
    assert any(cache.rglob("*")), "nothing written to FACEREFINE_COMPILE_CACHE"
    warm = run()
    assert warm.get("fxgraph_cache_hit", 0) >= 1 and warm.get("fxgraph_cache_miss", 0) == 0
    assert not Path("/nonexistent-global").exists()


def test_cli_compile_on_reports_the_graphs_and_keeps_sizes(tmp_path: Path) -> None:
    head = write_head_folder(tmp_path / "head", ResnetGenerator(ngf=4, n_blocks=1), name="tiny")
    sizes = [(40, 50), (60, 64), (64, 33), (100, 70)]  # (width, height): buckets 64x64 (3) and 128x128 (1)
    for i, size in enumerate(sizes):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            tmp_path / f"in{i}.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["enhance", str(tmp_path), str(out), "--head", str(head), "--compile",
                                           "on", "--quiet", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "compiled 2 graph(s) (bound 256): 64x64, 128x128" in result.output
    for i, size in enumerate(sizes):
        with Image.open(out / f"in{i}.png") as image:
            assert image.size == size


def test_gpu_speed_script_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_speed.py is meant for one unattended GPU run: its code paths are checked
    here on tiny networks (compile backend 'eager': the graphs are captured, not code-generated)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from gpu_speed import main as gpu_speed

    header = (Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_speed.py").read_text().splitlines()[:2]
    # The offline GPU machine's set-up (the usage lines of the wheels script), first, verbatim.
    assert header[0].startswith("#   python3 -m pip install") and header[0].endswith("--target /tmp/site .whl/*.whl")
    assert header[1].startswith("#   export PYTHONPATH=$PWD/src:/tmp/site HF_HUB_OFFLINE=1")
    out = tmp_path / "gpu_speed.json"
    result = gpu_speed(["--tiny", "--backend", "eager", "--sections", "heads,flux,schnell", "--modes", "default",
                        "--warmup", "0", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows == result["rows"] and not [r for r in rows if "error" in r]
    assert {(r["head"], r["variant"]) for r in rows if r["section"] == "heads"} == {
        (h, v) for h in ("unet", "cyclegan", "esa") for v in ("eager", "default")}
    assert [r["variant"] for r in rows if r["section"] == "flux"] == ["eager", "blocks", "full"]
    assert [r["variant"] for r in rows if r["section"] == "schnell"] == ["eager", "blocks"]
    assert all(r.get("img_per_s", 1) > 0 and r.get("s_per_step", 1) > 0 and r.get("s_per_image", 1) > 0
               for r in rows)
