"""The Python API: a head refines PIL images, numpy arrays or torch tensors and gives back the same kind.

    from facerefine import load_head
    head = load_head("esa")                       # folder, name in models/heads/, or Hub repo id
    out = head(Image.open("portrait.png"))        # PIL -> PIL (mode, alpha, ICC kept)
    out = head(array)                             # HxWx3 / NxHxWx3 numpy, uint8 or float in [0, 1]
    out = head(tensor)                            # 3xHxW / Nx3xHxW torch, uint8 or float in [0, 1]
    images = head.refine(pipe(prompt).images)     # a diffusers FLUX pipeline's list of PIL images

Every call goes through :class:`facerefine.enhance.Enhancer`, so sizes are padded and
cropped back (and large images tiled with ``tile=``) exactly as ``facerefine enhance`` does.
Float arrays and tensors are taken to be in [0, 1] (as diffusers' ``output_type="np"``/``"pt"``
and ComfyUI give them); the result keeps the input's dtype, layout and (for tensors) device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facerefine import head_folder, heads
from facerefine.enhance import Enhancer, to_uint8


class Head(heads.HeadFolder):
    """A head you can call: ``head(images)`` / ``head.refine(images, **options)``, plus
    ``save_pretrained`` and ``push_to_hub``. ``Head.from_pretrained(folder | name | repo id)``."""

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write weights, config and a model card into ``directory``: the card that describes these
        exact weights (the pipeline's published card, else the source folder's), else a fresh one."""
        from facerefine.hub import write_card

        out = head_folder.write_head_folder(directory, self.model, name=self.name,
                                           training=self.config.get("training"), data=self.config.get("data"))
        write_card(self.path, out)
        return out

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload this head (see :func:`facerefine.hub.push`; the token comes from the environment)."""
        from facerefine.hub import push

        return push(self.path, repo_id, **kwargs)

    def enhancer(self, **options: Any) -> Enhancer:
        """An Enhancer for this head (``device``, ``dtype``, ``batch_size``, ``tile``, ``overlap``),
        on the head's current device by default."""
        return make_enhancer(self, **options)

    def refine(self, images: Any, **options: Any) -> Any:
        """See :func:`refine`; ``options`` go to the Enhancer."""
        return refine(self, images, **options)

    __call__ = refine


def load_head(name_or_path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> Head:
    """A callable :class:`Head` from a folder, a name in ``models/heads/`` or a Hub repo id."""
    return Head.from_pretrained(name_or_path, device=device, **kwargs)


def make_enhancer(head: Any, *, device: str | torch.device | None = None, dtype: str = "float32",
                  batch_size: int = 4, tile: int | None = None, overlap: int = 32,
                  compile: str = "auto", compile_mode: str | None = None) -> Enhancer:
    """An Enhancer for a Head (on the head's current device unless ``device`` is given), or the
    given Enhancer itself (e.g. an onnxruntime one). ``compile``: auto (on CUDA only) | on | off;
    the compiled head is kept with the head's model, so repeated calls compile once."""
    if isinstance(head, Enhancer):
        return head
    if device is None:
        device = next(head.model.parameters()).device
    return Enhancer(head, device=device, dtype=dtype, batch_size=batch_size, tile=tile, overlap=overlap,
                    compile=compile, compile_mode=compile_mode)


def refine_batch(enhancer: Enhancer, x: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W float in [-1, 1] -> refined, same shape, float32 on the CPU.

    Same-size images run ``enhancer.batch_size`` at a time; images larger than the
    enhancer's tile run tile by tile.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W, got {tuple(x.shape)}")
    if enhancer.needs_tiling(*x.shape[-2:]):
        return torch.stack([enhancer.enhance_tiled(image).cpu() for image in x])
    out = []
    for start in range(0, len(x), enhancer.batch_size):
        out.extend(y.cpu() for y in enhancer.enhance_batch(list(x[start:start + enhancer.batch_size])))
    return torch.stack(out)


def _from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> [-1, 1] with the exact arithmetic of ``data.datasets.to_tensor`` (what the CLI reads)."""
    return x.to(torch.float32) / 127.5 - 1.0


def _refine_array(enhancer: Enhancer, array: np.ndarray) -> np.ndarray:
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"numpy images must be H x W x 3 or N x H x W x 3 (RGB), got shape {array.shape}")
    batched = array if array.ndim == 4 else array[None]
    x = torch.from_numpy(np.array(batched, order="C")).permute(0, 3, 1, 2)  # a copy: inputs may be read-only
    if array.dtype == np.uint8:
        y = refine_batch(enhancer, _from_uint8(x))
        out = to_uint8(y).numpy()
    elif np.issubdtype(array.dtype, np.floating):
        y = refine_batch(enhancer, x.to(torch.float32) * 2 - 1)
        out = ((y.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy().astype(array.dtype)
    else:
        raise TypeError(f"numpy images must be uint8 or float in [0, 1], got {array.dtype}")
    return out if array.ndim == 4 else out[0]


def _refine_tensor(enhancer: Enhancer, tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"tensor images must be 3 x H x W or N x 3 x H x W (RGB), got {tuple(tensor.shape)}")
    batched = tensor if tensor.dim() == 4 else tensor.unsqueeze(0)
    if tensor.dtype == torch.uint8:
        y = refine_batch(enhancer, _from_uint8(batched.detach().cpu()))
        out = to_uint8(y).permute(0, 3, 1, 2)
    elif tensor.is_floating_point():
        y = refine_batch(enhancer, batched.detach().to(torch.float32) * 2 - 1)
        out = ((y.clamp(-1, 1) + 1) / 2).to(tensor.dtype)
    else:
        raise TypeError(f"tensor images must be uint8 or float in [0, 1], got {tensor.dtype}")
    out = out.to(tensor.device)
    return out if tensor.dim() == 4 else out[0]


def refine(head: Any, images: Any, **options: Any) -> Any:
    """Refine ``images`` with ``head`` (a :class:`Head` or an Enhancer).

    ``images``: a PIL image, a numpy array (H x W x 3 or N x H x W x 3), a torch tensor
    (3 x H x W or N x 3 x H x W), or a list/tuple of any of these (e.g. a diffusers
    pipeline's ``.images``). Returns the same kind. ``options``: ``device``, ``dtype``,
    ``batch_size``, ``tile``, ``overlap``, ``compile``, ``compile_mode`` as for ``facerefine enhance``.
    """
    enhancer = make_enhancer(head, **options)
    if isinstance(images, Image.Image):
        return enhancer.enhance_image(images)
    if isinstance(images, np.ndarray):
        return _refine_array(enhancer, images)
    if isinstance(images, torch.Tensor):
        return _refine_tensor(enhancer, images)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return type(images)(refine(enhancer, image) for image in images)
    if hasattr(images, "images"):  # a diffusers pipeline output object
        return refine(enhancer, images.images)
    raise TypeError(f"cannot refine a {type(images).__name__}: pass PIL images, numpy arrays or torch tensors")
