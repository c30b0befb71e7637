"""FLUX batch functions: schnell text-to-image and dev img2img.

Each image gets its own ``torch.Generator`` seeded from its manifest seed, on
the CPU (diffusers draws the noise there and moves it), so an image's noise is
the same whatever the batch, the process or the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from facerefine.config import DevParams, SchnellParams
from facerefine.data import shards


def _common_kwargs(rows: Sequence[dict], params: SchnellParams | DevParams, size: int) -> dict:
    """Arguments both FLUX pipelines take: prompts, sampling knobs, one generator per image."""
    return {
        "prompt": [r["prompt"] for r in rows],
        "num_inference_steps": params.steps,
        "guidance_scale": params.guidance,
        "height": size, "width": size,
        "max_sequence_length": params.max_sequence_length,
        "generator": [torch.Generator(device="cpu").manual_seed(int(r["seed"])) for r in rows],
        "output_type": "pil",
    }


class SchnellTextToImage:
    """FLUX.1-schnell text-to-image for a batch of manifest rows."""

    def __init__(self, pipe, params: SchnellParams, size: int):
        self.pipe, self.params, self.size = pipe, params, size

    @torch.inference_mode()
    def __call__(self, rows: Sequence[dict], shard_index: int) -> list[Image.Image]:
        return self.pipe(**_common_kwargs(rows, self.params, self.size)).images


class DevImageToImage:
    """FLUX.1-dev img2img of the schnell image with the same prompt and seed.

    Reads the schnell shard with the same index (the plans are identical, so
    shards pair by key); one shard is cached at a time.
    """

    def __init__(self, pipe, params: DevParams, size: int, schnell_dir: str | Path):
        self.pipe, self.params, self.size = pipe, params, size
        self.schnell_dir = Path(schnell_dir)
        self._cached: tuple[int, dict[str, Image.Image]] | None = None

    def _sources(self, shard_index: int) -> dict[str, Image.Image]:
        if self._cached is None or self._cached[0] != shard_index:
            path = self.schnell_dir / shards.shard_name(shard_index)
            self._cached = (shard_index, {s.key: s.image for s in shards.iter_shard(path)})
        return self._cached[1]

    @torch.inference_mode()
    def __call__(self, rows: Sequence[dict], shard_index: int) -> list[Image.Image]:
        sources = self._sources(shard_index)
        missing = [r["id"] for r in rows if r["id"] not in sources]
        if missing:
            raise shards.ShardError(
                f"{self.schnell_dir / shards.shard_name(shard_index)}: no schnell image for {missing[:5]}")
        return self.pipe(image=[sources[r["id"]] for r in rows], strength=self.params.strength,
                         **_common_kwargs(rows, self.params, self.size)).images
