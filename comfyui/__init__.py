"""facerefine nodes for ComfyUI (custom-node layout).

Install: `pip install facerefine` (or `pip install -e /path/to/facerefine`) into ComfyUI's
Python, then copy or symlink this folder to `ComfyUI/custom_nodes/facerefine/` and restart
ComfyUI. Nodes (category "facerefine"):

- *facerefine: load head*: a head folder, a name in models/heads/, a Hub repo id or an
  exported `.onnx` file -> FACEREFINE_HEAD
- *facerefine: refine image*: FACEREFINE_HEAD + IMAGE (float B x H x W x C in [0, 1]) -> IMAGE,
  same shape; padding, tiling and batching as `facerefine enhance`.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
