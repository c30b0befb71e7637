"""ONNX export of a head and an onnxruntime backend for ``facerefine enhance`` and the Python API.

``export_onnx`` writes one graph with dynamic batch, height and width: any size the head
accepts (a multiple of ``size_multiple``, at least ``min_size``); the Enhancer's padding
gets every image there, exactly as with PyTorch. The head's config, size rules and the
sha256 of its weights travel in the model's metadata, so an ``.onnx`` file alone is a
usable head: ``facerefine enhance IN OUT --head head.onnx`` (or ``--backend onnxruntime``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerefine.enhance import Enhancer, padding_for, supported_size
from facerefine.paths import facerefine_home

OPSET = 18
INPUT, OUTPUT = "image", "refined"
ONNX_FILE = "model.onnx"
CHECK_SIZES = [(64, 64), (61, 83), (96, 128)]  # the odd one is padded by the Enhancer's rules


def default_backend(head: str | Path, device: str | None = None, dtype: str = "float32",
                    compile_: bool = False) -> str:
    """``--backend auto``: onnxruntime for an ``.onnx`` file, and on the CPU in float32 without
    ``--compile`` (measured faster there: benchmarks/results/onnx_vs_torch_cpu.json); else torch."""
    if str(head).endswith(".onnx"):
        return "onnxruntime"
    from facerefine.enhance import default_device

    if torch.device(device or default_device()).type != "cpu" or dtype != "float32" or compile_:
        return "torch"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnxruntime"


def export_cache() -> Path:
    """``$FACEREFINE_HOME/onnx`` (``paths.facerefine_home``: default ``./.facerefine``, never a
    user-global cache)."""
    return facerefine_home() / "onnx"


def cached_export(head: str | Path) -> Path:
    """The ONNX export of a head (folder, name or Hub repo id), made once and kept in
    :func:`export_cache` under the sha256 of its weights: a changed head never meets a stale export."""
    from facerefine.card import weights_sha256
    from facerefine.heads import WEIGHTS, read_head_folder, resolve_pretrained
    folder = resolve_pretrained(head)
    path = export_cache() / f"{weights_sha256(folder / WEIGHTS)}.onnx"
    if not path.is_file():
        export_onnx(read_head_folder(folder), path, check_sizes=[(64, 64)])
    return path


def _atanh(g, x):  # the legacy exporter has no symbolic for aten::atanh (ResUNet-CBAM's residual)
    return g.op("Atanh", x)


def export_onnx(head: Any, path: str | Path, *, opset: int = OPSET, check_sizes: list[tuple[int, int]] | None = None,
                atol: float = 1e-4) -> dict[str, float]:
    """Write ``head`` (a HeadFolder, or anything ``read_head_folder`` takes) to ``path``; with ``check_sizes``
    compare onnxruntime with PyTorch on those (unpadded) sizes after the Enhancer's padding
    and return the max abs difference per size (ValueError above ``atol``)."""
    from facerefine.card import weights_sha256
    from facerefine.heads import HeadFolder, read_head_folder

    if not isinstance(head, HeadFolder):
        head = read_head_folder(head)
    model = head.model.float().eval().cpu()
    size = supported_size(2 * head.min_size, head.size_multiple, head.min_size)
    example = torch.zeros(1, 3, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique: two processes may export at once
    torch.onnx.register_custom_op_symbolic("aten::atanh", _atanh, 9)
    dims = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the (static) size checks
        torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: dims, OUTPUT: dims}, opset_version=opset, dynamo=False)
    import onnx

    proto = onnx.load(str(tmp))
    weights = head.path / "model.safetensors"
    meta = {"facerefine_config": json.dumps(head.config, sort_keys=True), "size_multiple": str(head.size_multiple),
            "min_size": str(head.min_size), "name": head.name,
            "weights_sha256": weights_sha256(weights) if weights.is_file() else ""}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    if not check_sizes:
        return {}
    return check_onnx(head, path, check_sizes, atol=atol)


def check_onnx(head: Any, path: str | Path, sizes: list[tuple[int, int]], *, atol: float = 1e-4,
               batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Max abs difference of onnxruntime vs PyTorch per ``HxW`` (padded as the Enhancer pads)."""
    session = OnnxHead.load(path).session
    generator = torch.Generator().manual_seed(seed)
    diffs = {}
    for h, w in sizes:
        p = padding_for(h, w, head.size_multiple, head.min_size)
        x = torch.rand(batch, 3, h + p.top + p.bottom, w + p.left + p.right, generator=generator) * 2 - 1
        with torch.inference_mode():
            expected = head.model(x).numpy()
        got = session.run([OUTPUT], {INPUT: x.numpy()})[0]
        diffs[f"{h}x{w}"] = float(np.abs(expected - got).max())
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        raise ValueError(f"{path}: onnxruntime differs from PyTorch by more than {atol}: {bad}")
    return diffs


def session_for(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxHead:
    """An exported head: what the Enhancer needs (name, path, size rules) plus the session."""

    session: Any
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    size_multiple: int = 1
    min_size: int = 1

    @property
    def name(self) -> str:
        return self.config.get("name", self.path.stem)

    @property
    def model(self) -> torch.nn.Module:
        """A parameter-free placeholder: the Enhancer moves and freezes ``head.model``; onnxruntime
        runs the graph (``OnnxEnhancer.forward``)."""
        return _PLACEHOLDER

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxHead:
        from facerefine import paths

        path = Path(path)
        if not path.exists() and (paths.HEADS / str(path)).is_dir():
            path = paths.HEADS / str(path)
        if path.is_dir() and (path / ONNX_FILE).is_file() and _matches_weights(path / ONNX_FILE, path):
            path = path / ONNX_FILE
        elif not str(path).endswith(".onnx"):  # a head folder, name or Hub repo id: export once, cached
            path = cached_export(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX head at {path} (export one with `facerefine export HEAD {path}`)")
        session = session_for(path, threads)
        meta = session.get_modelmeta().custom_metadata_map
        if "size_multiple" not in meta:
            raise ValueError(f"{path}: not exported by `facerefine export` (no size rules in its metadata)")
        return cls(session, path, json.loads(meta.get("facerefine_config", "{}")), int(meta["size_multiple"]),
                   int(meta["min_size"]))

    def enhancer(self, **options: Any) -> OnnxEnhancer:
        return OnnxEnhancer(self, **options)

    def refine(self, images: Any, **options: Any) -> Any:
        from facerefine.api import refine

        return refine(self.enhancer(**options), images)

    __call__ = refine


def _matches_weights(onnx_path: Path, head_dir: Path) -> bool:
    """Whether an export sitting in a head folder was made from that folder's weights."""
    import onnx

    from facerefine.card import weights_sha256

    weights = head_dir / "model.safetensors"
    if not weights.is_file():
        return True  # a folder holding only the export
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return meta.get("weights_sha256") == weights_sha256(weights)


_PLACEHOLDER = torch.nn.Identity()


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxHead:
    return OnnxHead.load(path, threads)


class OnnxEnhancer(Enhancer):
    """:class:`Enhancer` whose forward pass is onnxruntime on the CPU; padding, tiling and
    batching are the Enhancer's own."""

    def __init__(self, head: OnnxHead, *, batch_size: int = 1, tile: int | None = None, overlap: int = 32,
                 device: str | None = None, dtype: str = "float32", **_: Any) -> None:
        if device not in (None, "cpu"):
            raise ValueError(f"the onnxruntime backend runs on the CPU only, got --device {device}")
        if dtype != "float32":
            raise ValueError(f"the onnxruntime backend runs float32 only, got --dtype {dtype}")
        # The Enhancer's own set-up (sizes, tiles, checks); its torch model is a placeholder.
        super().__init__(head, device="cpu", dtype="float32", batch_size=batch_size, tile=tile, overlap=overlap,
                         compile="off")
        self.session = head.session

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])
