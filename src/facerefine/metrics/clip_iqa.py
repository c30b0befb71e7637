"""CLIP-IQA (Wang et al., AAAI 2023) through torchmetrics.

torchmetrics' ``clip_image_quality_assessment`` scores each image by the
softmax of its CLIP similarity to a positive/negative prompt pair. We pass
the CLIP model through a callable, so the weights come from ``weights.py``
(``openai/clip-vit-base-patch16`` in the paper profile — torchmetrics' choice
when piq's original CLIP-IQA weights are not used — or the smoke stand-in).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

# torchmetrics' built-in pair for "quality": ("Good photo.", "Bad photo.")
DEFAULT_PROMPTS = ("quality",)


class _TensorFeatures(torch.nn.Module):
    """transformers 5 returns output objects from ``get_*_features`` where torchmetrics
    (1.9) expects the projected embedding tensor; unwrap it, touch nothing else."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(*args, **kwargs))

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(*args, **kwargs))


def clip_iqa_scores(images: Sequence[Image.Image], model, processor, *, prompts: Sequence[str] = DEFAULT_PROMPTS,
                    batch_size: int = 16, device: torch.device | str = "cpu") -> np.ndarray:
    """(N,) scores in [0, 1] for the first prompt pair (higher = better per the prompt)."""
    from torchmetrics.functional.multimodal import clip_image_quality_assessment

    model = _TensorFeatures(model).to(device).eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([torch.from_numpy(np.array(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                             for im in images[start:start + batch_size]]).to(device)
        scores = clip_image_quality_assessment(batch, model_name_or_path=lambda: (model, processor),
                                               data_range=255.0, prompts=tuple(prompts))
        first = scores[prompts[0]] if isinstance(scores, dict) else scores
        out.append(first.reshape(-1).float().cpu())
    return torch.cat(out).numpy()
