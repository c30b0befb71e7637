"""CLIP-IQA (Wang et al., AAAI 2023), computed here in a few lines.

The score of an image for an antonym prompt pair ("Good photo.", "Bad photo.") is the
softmax, over the pair, of the cosine similarities between the image's CLIP embedding and
each prompt's, times a fixed temperature (logit scale 100). Prompt pairs and temperature are
torchmetrics' (``clip_image_quality_assessment``). Two recipes (``evaluate.clip_iqa``):

* ``original`` (:func:`clip_iqa_original_scores`): the published metric, as piq's ``CLIPIQA``
  computes it and torchmetrics' default ``clip_iqa`` reproduces through piq: CLIP ResNet-50
  (``weights/clip_original.py``), the image at full resolution (no resize, no crop) normalised
  with CLIP's mean/std, and no positional embedding in the attention pool.
* ``vit-b16`` (:func:`clip_iqa_scores`): a Hugging Face CLIP (``openai/clip-vit-base-patch16``
  in the paper profile) through its processor's 224² resize and centre crop. Not the original
  metric's scale; Table 4 labels the rows so. (torchmetrics can use this model when asked to by
  name; it is not a fallback of its default.)

Why not torchmetrics' ViT path: it divides the input by ``data_range`` and hands the [0, 1]
tensor to the Hugging Face processor, which rescales by 1/255 a second time, so CLIP saw a nearly
uniform image. Here pixels are scaled exactly once (see :func:`_unit_float`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# torchmetrics' named antonym pairs (torchmetrics.functional.multimodal.clip_iqa._PROMPTS).
PROMPT_PAIRS: dict[str, tuple[str, str]] = {
    "quality": ("Good photo.", "Bad photo."),
    "brightness": ("Bright photo.", "Dark photo."),
    "noisiness": ("Clean photo.", "Noisy photo."),
    "colorfullness": ("Colorful photo.", "Dull photo."),
    "sharpness": ("Sharp photo.", "Blurry photo."),
    "contrast": ("High contrast photo.", "Low contrast photo."),
    "complexity": ("Complex photo.", "Simple photo."),
    "natural": ("Natural photo.", "Synthetic photo."),
    "happy": ("Happy photo.", "Sad photo."),
    "scary": ("Scary photo.", "Peaceful photo."),
    "new": ("New photo.", "Old photo."),
    "warm": ("Warm photo.", "Cold photo."),
    "real": ("Real photo.", "Abstract photo."),
    "beautiful": ("Beautiful photo.", "Ugly photo."),
    "lonely": ("Lonely photo.", "Sociable photo."),
    "relaxing": ("Relaxing photo.", "Stressful photo."),
}
DEFAULT_PROMPTS = ("quality",)
# torchmetrics' temperature: CLIP's trained logit scale, ~100 for the OpenAI models, fixed so
# that a random stand-in's (untrained) scale does not change the definition.
LOGIT_SCALE = 100.0

Prompt = str | tuple[str, str]
ImageInput = Image.Image | np.ndarray | torch.Tensor


def prompt_pairs(prompts: Sequence[Prompt]) -> list[tuple[str, str]]:
    """Named pairs (``quality``) or explicit (positive, negative) pairs, in order."""
    pairs = []
    for p in prompts:
        if isinstance(p, str):
            if p not in PROMPT_PAIRS:
                raise ValueError(f"evaluate.clip_iqa_prompts: unknown prompt name '{p}' "
                                 f"(known: {', '.join(PROMPT_PAIRS)})")
            pairs.append(PROMPT_PAIRS[p])
        elif len(p) == 2 and all(isinstance(s, str) for s in p):
            pairs.append((p[0], p[1]))
        else:
            raise ValueError(f"evaluate.clip_iqa_prompts: {p!r} is neither a name nor a (positive, negative) pair")
    if not pairs:
        raise ValueError("evaluate.clip_iqa_prompts: at least one prompt is needed")
    return pairs


def _unit_float(image: ImageInput) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]: the one and only scaling of the pixels.

    Accepted: PIL images and uint8 arrays/tensors (HWC arrays, CHW tensors) holding 0..255,
    divided by 255 here; float tensors/arrays must already be in [0, 1] and are used as they
    are (0..255 floats are refused rather than guessed).
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"CLIP-IQA: expected an (H, W, 3) array, got shape {image.shape}")
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a writable copy
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"CLIP-IQA: expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    x = image.float()
    if x.numel() and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"CLIP-IQA: float pixels must be in [0, 1] (got {float(x.min()):.3g} .. "
                         f"{float(x.max()):.3g}); pass uint8 for 0..255 images")
    return x


def _processor_geometry(processor) -> tuple[int, tuple[int, int], torch.Tensor, torch.Tensor]:
    """(shortest edge, (crop h, crop w), mean, std) from a CLIPProcessor/CLIPImageProcessor."""
    ip = getattr(processor, "image_processor", processor)
    size, crop = ip.size, ip.crop_size  # dicts, or transformers 5's SizeDict (indexable too)
    edge = int(size) if isinstance(size, int) else int(size["shortest_edge"])
    crop_hw = (int(crop), int(crop)) if isinstance(crop, int) else (int(crop["height"]), int(crop["width"]))
    return (edge, crop_hw, torch.tensor(ip.image_mean, dtype=torch.float32).view(3, 1, 1),
            torch.tensor(ip.image_std, dtype=torch.float32).view(3, 1, 1))


def clip_pixels(images: Sequence[ImageInput], processor) -> torch.Tensor:
    """(N, 3, crop, crop) ``pixel_values`` as CLIPImageProcessor makes them: bicubic resize of
    the shortest edge (antialiased, like PIL), centre crop, then (x - mean) / std with CLIP's
    mean/std, from pixels scaled to [0, 1] exactly once."""
    edge, (ch, cw), mean, std = _processor_geometry(processor)
    out = []
    for image in images:
        x = _unit_float(image)
        h, w = x.shape[-2:]
        # transformers' get_resize_output_image_size: short side -> edge, long side floored
        size = (edge, int(edge * w / h)) if h <= w else (int(edge * h / w), edge)
        if size != (h, w):
            x = F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
            x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to 0..255 too
        top, left = (size[0] - ch) // 2, (size[1] - cw) // 2
        x = x[:, top:top + ch, left:left + cw]
        out.append((x - mean) / std)
    return torch.stack(out)


@torch.inference_mode()
def _text_anchors(model, processor, pairs: list[tuple[str, str]], device) -> torch.Tensor:
    """(2P, D) unit text embeddings, positive then negative for each pair."""
    texts = [t for pair in pairs for t in pair]
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt").to(device)
    pooled = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).pooler_output
    return F.normalize(model.text_projection(pooled).float(), dim=-1)


@torch.inference_mode()
def _image_embeddings(model, pixel_values: torch.Tensor) -> torch.Tensor:
    pooled = model.vision_model(pixel_values=pixel_values).pooler_output
    return F.normalize(model.visual_projection(pooled).float(), dim=-1)


def clip_iqa_from_embeddings(images: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(N, P) probability of the positive prompt of each pair: softmax over the pair of
    LOGIT_SCALE * cosine similarity."""
    logits = LOGIT_SCALE * images @ anchors.t()
    return logits.reshape(images.shape[0], -1, 2).softmax(-1)[:, :, 0]


def clip_iqa_scores(images: Sequence[ImageInput], model, processor, *, prompts: Sequence[Prompt] = DEFAULT_PROMPTS,
                    batch_size: int = 16, device: torch.device | str = "cpu") -> np.ndarray:
    """(N,) scores in [0, 1] for the first prompt pair (higher = closer to its positive prompt).

    ``model`` is a Hugging Face ``CLIPModel`` and ``processor`` its ``CLIPProcessor`` (the
    tokenizer, and the image processor's size, crop, mean and std). Images: PIL, uint8, or
    floats in [0, 1] (see :func:`_unit_float`).
    """
    pairs = prompt_pairs(prompts)
    model = model.to(device).eval()
    dtype = next(model.parameters()).dtype
    anchors = _text_anchors(model, processor, pairs, device)
    out = []
    for start in range(0, len(images), batch_size):
        pixels = clip_pixels(images[start:start + batch_size], processor).to(device, dtype)
        out.append(clip_iqa_from_embeddings(_image_embeddings(model, pixels), anchors)[:, 0].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


# CLIP's pixel mean and std (piq.clip_iqa.OPENAI_CLIP_MEAN / _STD; torchmetrics uses the same).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def original_pixels(images: Sequence[ImageInput]) -> torch.Tensor:
    """(N, 3, H, W) what the original CLIP-IQA feeds CLIP: each image at its own full resolution
    (no resize, no crop; one size per batch), scaled to [0, 1] once and normalised with CLIP's
    mean and std, as ``piq.CLIPIQA.forward`` does."""
    xs = [_unit_float(image) for image in images]
    sizes = {tuple(x.shape[-2:]) for x in xs}
    if len(sizes) > 1:
        raise ValueError(f"CLIP-IQA (original) scores full-resolution images: a batch must share one size, "
                         f"got {sorted(sizes)}")
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    return torch.stack([(x - mean) / std for x in xs])


@torch.inference_mode()
def clip_iqa_original_scores(images: Sequence[ImageInput], clip, *, prompts: Sequence[Prompt] = DEFAULT_PROMPTS,
                             batch_size: int = 16, device: torch.device | str = "cpu") -> np.ndarray:
    """(N,) scores in [0, 1] for the first prompt pair, the original recipe (module docstring).

    ``clip``: a ``weights.clip_original.OriginalClip`` (piq's CLIP module and its tokenizer).
    Computed in float32, as piq does."""
    pairs = prompt_pairs(prompts)
    model = clip.model.to(device).float().eval()
    tokens = clip.tokens([t for pair in pairs for t in pair]).to(device)
    anchors = F.normalize(model.encode_text(tokens).float(), dim=-1)
    out = []
    for start in range(0, len(images), batch_size):
        pixels = original_pixels(images[start:start + batch_size]).to(device)
        feats = F.normalize(model.encode_image(pixels, pos_embedding=False).float(), dim=-1)
        out.append(clip_iqa_from_embeddings(feats, anchors)[:, 0].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
