"""ONNX export (onnxruntime vs PyTorch at three sizes, `enhance --backend onnxruntime`) and the
ComfyUI nodes (called directly with BHWC tensors, compared with the CLI's output)."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from facerefine.card import weights_sha256
from facerefine.cli import main
from facerefine.api import load_head
from facerefine.onnx_backend import CHECK_SIZES, check_onnx, load_onnx

from test_hub import random_image, tiny_heads

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_export_matches_pytorch_at_three_sizes_with_dynamic_batch_height_width(tmp_path, one_thread):
    assert any(h % 4 or w % 4 for h, w in CHECK_SIZES)  # one size is odd and needs the Enhancer's padding
    for name, path in tiny_heads(tmp_path / "heads").items():
        out = _cli("export", str(path), str(tmp_path / f"{name}.onnx"))
        assert out.count("max abs diff") == 3
        head = load_head(path)
        # a second, independent check: other random inputs, batch of 3
        diffs = check_onnx(head, tmp_path / f"{name}.onnx", [(64, 64), (61, 83), (96, 128)], batch=3, seed=1)
        assert len(diffs) == 3 and max(diffs.values()) <= 1e-4, diffs
        onnx_head = load_onnx(tmp_path / f"{name}.onnx")
        assert (onnx_head.size_multiple, onnx_head.min_size, onnx_head.name) == \
               (head.size_multiple, head.min_size, name)


def test_enhance_with_onnxruntime_backend_matches_torch(tmp_path, one_thread):
    path = tiny_heads(tmp_path / "heads")["esa"]
    _cli("export", str(path), str(path / "model.onnx"), "--no-check")
    Image.fromarray(random_image(61, 83)).save(tmp_path / "in.png")
    _cli("enhance", str(tmp_path / "in.png"), str(tmp_path / "torch.png"), "--head", str(path),
         "--backend", "torch", "--quiet")
    _cli("enhance", str(tmp_path / "in.png"), str(tmp_path / "ort.png"), "--head", str(path),
         "--backend", "onnxruntime", "--quiet")
    _cli("enhance", str(tmp_path / "in.png"), str(tmp_path / "auto.png"), "--head", str(path / "model.onnx"),
         "--quiet")  # auto: an .onnx file runs on onnxruntime
    torch_out = np.asarray(Image.open(tmp_path / "torch.png")).astype(int)
    for name in ("ort.png", "auto.png"):
        out = np.asarray(Image.open(tmp_path / name)).astype(int)
        assert out.shape == (61, 83, 3) and np.abs(out - torch_out).max() <= 1
    for backend in ("torch", "onnxruntime"):  # tiling runs the same on both backends
        _cli("enhance", str(tmp_path / "in.png"), str(tmp_path / f"tiled_{backend}.png"), "--head", str(path),
             "--backend", backend, "--tile", "64", "--overlap", "8", "--quiet")
    tiled = [np.asarray(Image.open(tmp_path / f"tiled_{b}.png")).astype(int) for b in ("torch", "onnxruntime")]
    assert np.abs(tiled[0] - tiled[1]).max() <= 1
    # the CPU default is onnxruntime, with an export cached by the weights' hash
    other = tiny_heads(tmp_path / "other")["unet"]
    cached = Path(os.environ["FACEREFINE_HOME"]) / "onnx" / f"{weights_sha256(other / 'model.safetensors')}.onnx"
    assert not cached.exists()
    _cli("enhance", str(tmp_path / "in.png"), str(tmp_path / "default.png"), "--head", str(other), "--quiet")
    assert cached.is_file() and not (other / "model.onnx").exists()
    torch_out = np.asarray(load_head(other).refine(Image.open(tmp_path / "in.png"))).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "default.png")).astype(int) - torch_out).max() <= 1
    result = CliRunner().invoke(main, ["enhance", str(tmp_path / "in.png"), str(tmp_path / "x.png"), "--head",
                                       str(path), "--backend", "onnxruntime", "--device", "cuda"])
    assert result.exit_code != 0 and "CPU only" in result.output


# ----------------------------------------------------------------- ComfyUI


def _comfy_nodes():
    """Import comfyui/ as ComfyUI does: a package loaded from its folder's __init__.py."""
    spec = importlib.util.spec_from_file_location("facerefine_comfyui", REPO / "comfyui" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "comfyui")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_comfyui_nodes_match_the_cli(tmp_path, one_thread):
    nodes = _comfy_nodes()
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    loader, apply = nodes.NODE_CLASS_MAPPINGS["FaceRefineLoadHead"], nodes.NODE_CLASS_MAPPINGS["FaceRefineApply"]
    for cls in (loader, apply):
        assert callable(getattr(cls(), cls.FUNCTION)) and "required" in cls.INPUT_TYPES()
    assert apply.INPUT_TYPES()["required"]["image"] == ("IMAGE",) and apply.RETURN_TYPES == ("IMAGE",)

    path = tiny_heads(tmp_path / "heads")["esa"]
    (head,) = loader().load(str(path), device="cpu")
    images = [random_image(61, 83, seed) for seed in (0, 1)]  # an odd size, padded inside
    for i, array in enumerate(images):
        Image.fromarray(array).save(tmp_path / f"in{i}.png")
    _cli("enhance", str(tmp_path / "in0.png"), str(tmp_path / "cli0.png"), "--head", str(path), "--quiet",
         "--batch-size", "1")
    cli = np.asarray(Image.open(tmp_path / "cli0.png")).astype(int)

    batch = torch.from_numpy(np.stack(images)).float() / 255  # ComfyUI IMAGE: B x H x W x C in [0, 1]
    (out,) = apply().apply(head, batch, batch_size=1)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    node = (out[0].numpy() * 255).round().astype(int)
    # same pixels as the CLI up to float rounding at a .5 boundary (ComfyUI gives floats, the CLI reads uint8)
    assert np.abs(node - cli).max() <= 1 and (node == cli).mean() > 0.99
    (single,) = apply().apply(head, batch[1:], batch_size=1)  # batch entries are independent
    assert torch.allclose(single[0], out[1], atol=1e-6)

    rgba = torch.cat([batch[:1], torch.rand(1, 61, 83, 1)], dim=-1)  # alpha passes through
    (out4,) = apply().apply(head, rgba, tile=64, overlap=8)
    assert out4.shape == rgba.shape and torch.equal(out4[..., 3], rgba[..., 3])

    onnx_path = tmp_path / "esa.onnx"
    _cli("export", str(path), str(onnx_path), "--no-check")
    (onnx_head,) = loader().load(str(onnx_path))
    (onnx_out,) = apply().apply(onnx_head, batch, batch_size=1)
    assert onnx_out.shape == batch.shape and float((onnx_out - out).abs().max()) <= 1e-4
