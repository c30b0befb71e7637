"""The node classes; ComfyUI calls ``FUNCTION`` with the inputs named in ``INPUT_TYPES``."""

from __future__ import annotations

from typing import Any

HEAD_TYPE = "FACEREFINE_HEAD"


class FaceRefineLoadHead:
    """Loads a head once; the refine node reuses it for every image."""

    CATEGORY = "facerefine"
    RETURN_TYPES = (HEAD_TYPE,)
    RETURN_NAMES = ("head",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"head": ("STRING", {"default": "esa", "multiline": False,
                                                  "tooltip": "head folder, name in models/heads/, Hub repo id "
                                                             "(owner/name) or an exported .onnx file"})},
                "optional": {"device": (["auto", "cpu", "cuda"], {"default": "auto"})}}

    def load(self, head: str, device: str = "auto") -> tuple[Any]:
        head = head.strip()
        if head.endswith(".onnx"):
            from facerefine.onnx_backend import load_onnx

            return (load_onnx(head),)
        import torch

        from facerefine.api import load_head

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return (load_head(head, device=device),)


class FaceRefineApply:
    """IMAGE (B x H x W x C float in [0, 1]) -> refined IMAGE of the same shape and dtype.

    An alpha channel (C = 4) passes through untouched; any size works (padded and
    cropped back); ``tile`` > 0 refines larger images in overlapping tiles.
    """

    CATEGORY = "facerefine"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"head": (HEAD_TYPE,), "image": ("IMAGE",)},
                "optional": {"tile": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 16}),
                             "overlap": ("INT", {"default": 32, "min": 0, "max": 1024}),
                             "batch_size": ("INT", {"default": 4, "min": 1, "max": 256})}}

    def apply(self, head: Any, image: Any, tile: int = 0, overlap: int = 32, batch_size: int = 4) -> tuple[Any]:
        import torch

        from facerefine.api import refine

        if image.dim() != 4 or image.shape[-1] not in (3, 4):
            raise ValueError(f"IMAGE must be B x H x W x 3 (or 4), got {tuple(image.shape)}")
        enhancer = head.enhancer(tile=tile or None, overlap=overlap, batch_size=batch_size)
        rgb = image[..., :3].permute(0, 3, 1, 2).float()
        out = refine(enhancer, rgb).permute(0, 2, 3, 1)
        if image.shape[-1] == 4:
            out = torch.cat([out, image[..., 3:].float()], dim=-1)
        return (out.to(device=image.device, dtype=image.dtype).contiguous(),)


NODE_CLASS_MAPPINGS = {"FaceRefineLoadHead": FaceRefineLoadHead, "FaceRefineApply": FaceRefineApply}
NODE_DISPLAY_NAME_MAPPINGS = {"FaceRefineLoadHead": "facerefine: load head",
                              "FaceRefineApply": "facerefine: refine image"}
