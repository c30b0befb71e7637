"""Compiled FLUX (profiles.<p>.compile, facerefine.weights.flux.compile_flux) on the tiny
stand-ins: which modules compile, how many graphs (none more from one batch to the next), images
that equal eager ones within float tolerance, and the combinations with offload it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounter

from facerefine import cli
from facerefine.config import FLUX_COMPILE_CHOICES, ParamsError, SchnellParams, load_params, parse_params
from facerefine.generation.flux import SchnellTextToImage
from facerefine.weights import flux
from facerefine.weights.flux import compile_flux

SIZE = 32
SAMPLING = SchnellParams(steps=2, guidance=0.0, max_sequence_length=16)
ROWS = [{"prompt": "A professional portrait of Ada Lovelace", "seed": 1},
        {"prompt": "A professional portrait of Alan Turing", "seed": 2}]
# Inductor's CPU kernels may fuse and reassociate float32 sums, and a GPU's bf16 kernels do. On
# this stand-in the 8-bit images came out identical to eager (AMD EPYC, pinned numerics); 4 levels
# and a 40 dB PSNR floor leave room for other CPUs without hiding a wrong graph, whose images
# are unrelated (two prompts' images: ~14 dB).
MAX_LEVELS = 4
MIN_PSNR_DB = 40.0


@pytest.fixture(autouse=True)
def _compile_cache(tmp_path, monkeypatch):
    """Each test compiles into its own cache and starts from dynamo's empty state."""
    monkeypatch.setenv("FACEREFINE_COMPILE_CACHE", str(tmp_path / "compile"))
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.delenv(var, raising=False)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def schnell(compile: str = "none", backend="inductor") -> SchnellTextToImage:
    return SchnellTextToImage(compile_flux(flux.load_flux("smoke", "schnell"), compile, backend=backend),
                              SAMPLING, SIZE)


def compiled_modules(transformer: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in transformer.modules() if m._compiled_call_impl is not None}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_blocks_compiles_the_repeated_blocks_and_full_the_transformer():
    blocks = schnell("blocks", backend=CompileCounter()).pipe.transformer
    assert compiled_modules(blocks) == {"FluxTransformerBlock", "FluxSingleTransformerBlock"}
    full = schnell("full", backend=CompileCounter()).pipe.transformer
    assert compiled_modules(full) == {"FluxTransformer2DModel"}
    assert compiled_modules(schnell("none").pipe.transformer) == set()


@pytest.mark.parametrize("how, graphs", [("blocks", 2), ("full", 1)])
def test_one_graph_per_compiled_region_and_none_more_from_one_batch_to_the_next(how, graphs):
    """blocks: one graph for the double-stream and one for the single-stream blocks, shared by
    every block of a kind; the second batch of the same size compiles nothing, and a shard's
    shorter last batch compiles once more, no further."""
    counter = CompileCounter()
    generate = schnell(how, backend=counter)
    generate(ROWS, 0)
    assert counter.frame_count == graphs
    generate([{**r, "seed": r["seed"] + 10} for r in ROWS], 0)
    assert counter.frame_count == graphs
    generate(ROWS[:1], 0)  # a shard's last, shorter batch
    assert counter.frame_count == 2 * graphs
    generate(ROWS[1:], 0)
    assert counter.frame_count == 2 * graphs


def test_compiled_images_equal_eager_within_tolerance():
    """The real inductor compile of the blocks, as a stage runs it, against eager."""
    eager = [np.asarray(im) for im in schnell("none")(ROWS, 0)]
    compiled = [np.asarray(im) for im in schnell("blocks")(ROWS, 0)]
    for e, c in zip(eager, compiled):
        assert e.shape == c.shape
        assert np.abs(e.astype(int) - c.astype(int)).max() <= MAX_LEVELS
        assert psnr(e, c) >= MIN_PSNR_DB
    # the two prompts' images are different images: the tolerance is far below what tells them apart
    assert psnr(eager[0], eager[1]) < MIN_PSNR_DB


def test_load_flux_for_compiles_as_the_profile_says():
    params = load_params()
    scale = params.scale.model_copy(update={"compile": "blocks"})
    pipe = flux.load_flux_for(scale, "schnell", device="cpu", dtype="float32")
    assert compiled_modules(pipe.transformer) == {"FluxTransformerBlock", "FluxSingleTransformerBlock"}


def test_a_bad_choice_is_named_and_the_cli_offers_the_params_choices():
    with pytest.raises(ValueError, match="FLUX compile must be one of none, blocks, full, got 'fast'"):
        compile_flux(object(), "fast")
    assert cli.FLUX_COMPILE_CHOICES == FLUX_COMPILE_CHOICES  # the CLI's torch-free copy


@pytest.mark.parametrize("compile, offload, message", [
    ("blocks", "sequential", "compile 'blocks' cannot run with offload 'sequential'"),
    ("full", "sequential", "compile 'full' cannot run with offload 'sequential'"),
    ("full", "model", "compile 'full' cannot run with offload 'model'.*use compile 'blocks'"),
])
def test_compile_with_an_offload_it_cannot_trace_is_refused_where_it_is_set(compile, offload, message):
    """Accelerate's offload hooks move weights inside the forward: refused in params.yaml (naming
    the profile's key) and in `facerefine generate`, before anything loads."""
    from facerefine.generate import generate_settings

    raw = load_params().model_dump()
    raw["profiles"]["smoke"].update(compile=compile, offload=offload)
    with pytest.raises(ParamsError, match=r"profiles\.smoke.*" + message):
        parse_params(raw)
    with pytest.raises(ValueError, match=message):
        generate_settings(compile=compile, offload=offload, params_path="none.yaml")


def test_blocks_with_model_offload_is_allowed():
    raw = load_params().model_dump()
    raw["profiles"]["smoke"].update(compile="blocks", offload="model")  # the hook wraps the transformer, not a block
    assert parse_params(raw).scale.compile == "blocks"
