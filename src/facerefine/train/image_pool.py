"""History of generated images for the discriminator (Shrivastava et al., 2017),
as used by CycleGAN.

Showing the discriminator a mix of current and older fakes keeps it from
over-fitting to the generator's latest output and damps oscillation.
Per image of a batch: while the pool is not full, store it and return it;
once full, with probability 1/2 return a random stored image and put the
new one in its place, otherwise return the new image.

The pool has its own ``random.Random`` so its choices depend only on its
seed and the sequence of queries, not on any other use of randomness.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    """Fixed-size buffer of past fakes; ``size=0`` returns every batch unchanged."""

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"ImagePool size must be >= 0, got {size}")
        self.size = size
        self._rng = random.Random(seed)
        self._images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the shape of ``images`` (N x ...), mixing in history.

        Inputs are detached: the discriminator step must not backpropagate
        into the generator that made them.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out: list[torch.Tensor] = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self._images) < self.size:
                self._images.append(image.clone())
                out.append(image)
            elif self._rng.random() < 0.5:
                i = self._rng.randrange(self.size)
                out.append(self._images[i])
                self._images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    def reseed(self, seed: int) -> None:
        """Restart the pool's random choices (the stored images are kept).

        The trainer reseeds at every epoch start, so the choices within an
        epoch depend on the seed, the epoch and the stored images; a
        checkpoint keeps the rest (:meth:`state_dict`).
        """
        self._rng.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """Stored images and RNG state, as tensors and plain containers (``weights_only`` loadable)."""
        images = torch.cat(self._images).cpu() if self._images else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if state["size"] != self.size:
            raise ValueError(f"ImagePool state is for size {state['size']}, this pool has size {self.size}")
        images = state["images"]
        self._images = [images[i : i + 1].to(device) for i in range(images.shape[0])] if images.numel() else []
        version, internal, gauss_next = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss_next))
