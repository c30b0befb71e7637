"""The CLIP of CLIP-IQA as published (``evaluate.clip_iqa: original``): OpenAI's CLIP ResNet-50.

Wang et al.'s CLIP-IQA, as piq implements it and torchmetrics' default ``clip_iqa`` reproduces
through piq: the ResNet-50 CLIP (piq's snapshot of OpenAI's ``RN50.pt``, MIT-licensed weights;
piq is Apache-2.0), full-resolution input, no positional embedding in the attention pool, and
the prompts tokenised by CLIP's BPE tokenizer (torchmetrics takes it from
``openai/clip-vit-base-patch16``; every OpenAI CLIP shares it), zero-padded to 77 tokens.

Specs (``profiles.<p>.models.clip_iqa``):

* ``pretrained``: piq's own loader (``piq.feature_extractors.clip.load``), which downloads the
  snapshot once into piq's cache (``~/.cache/clip``, as torchmetrics does); offline, put
  ``RN50.pt`` there or name the file as the spec.
* a path to an ``RN50.pt`` (OpenAI's TorchScript archive): the same three loading lines as piq.
* ``smoke``: a tiny random ResNet CLIP, ``random``: the RN50 architecture with random weights;
  both built once under ``$FACEREFINE_HOME/standins`` as TorchScript archives in OpenAI's layout
  and loaded through the same lines. The smoke stand-in's "Good photo." / "Bad photo." anchors
  are fixed at build time either side of a direction that separates seeded clean synthetic
  images from blurred and noisy ones, so its scores move the way CLIP-IQA's do on those
  degradations (tests/test_clip_iqa_original.py); its numbers still mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from facerefine.config import RANDOM, SMOKE
from facerefine.weights.hf import hub_offline, quiet_hf
from facerefine.weights.standins import build_once, write_clip_tokenizer

PRETRAINED = "pretrained"
TOKENIZER_SOURCE = "openai/clip-vit-base-patch16"  # torchmetrics' tokenizer for piq's CLIP
CONTEXT_LENGTH = 77
MODEL_FILE = "RN50.pt"
# The smoke stand-in: CLIP's ModifiedResNet at width 8, one bottleneck per stage, a 64-wide,
# one-layer text transformer (piq's build_model sets heads = width // 64), 512-d embeddings.
SMOKE_ARCH = {"embed_dim": 512, "image_resolution": 224, "vision_layers": (1, 1, 1, 1), "vision_width": 8,
              "vision_patch_size": None, "context_length": CONTEXT_LENGTH, "transformer_width": 64,
              "transformer_heads": 1, "transformer_layers": 1}
RN50_ARCH = {"embed_dim": 1024, "image_resolution": 224, "vision_layers": (3, 4, 6, 3), "vision_width": 64,
             "vision_patch_size": None, "context_length": CONTEXT_LENGTH, "vocab_size": 49408,
             "transformer_width": 512, "transformer_heads": 8, "transformer_layers": 12}
QUALITY_PAIR = ("Good photo.", "Bad photo.")


@dataclass
class OriginalClip:
    """piq's CLIP module (``encode_image(x, pos_embedding)``, ``encode_text(tokens)``) and the
    tokenizer that turns prompts into its zero-padded token rows."""

    model: torch.nn.Module
    tokenizer: object
    source: str

    def tokens(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), 77) ids as torchmetrics builds them for piq's CLIP: BPE ids, zeros after."""
        out = torch.zeros(len(texts), CONTEXT_LENGTH, dtype=torch.long)
        for i, ids in enumerate(self.tokenizer(texts)["input_ids"]):
            if len(ids) > CONTEXT_LENGTH:
                raise ValueError(f"CLIP-IQA prompt {texts[i]!r} is longer than {CONTEXT_LENGTH} tokens")
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def load_file(path: str | Path) -> torch.nn.Module:
    """A CLIP from an OpenAI-layout TorchScript file, as ``piq.feature_extractors.clip.load`` does."""
    from piq.feature_extractors.clip import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"models.clip_iqa: no CLIP file {path} (OpenAI's RN50.pt, or `pretrained`)")
    with open(path, "rb") as f:
        model = torch.jit.load(f, map_location="cpu").eval()
    model = build_model(model.state_dict())
    model.float()
    return model.eval()


def _save_jit(model: torch.nn.Module, path: Path) -> None:
    """``model`` as a TorchScript archive whose state dict has OpenAI's keys (what load_file reads)."""
    image = torch.zeros(1, 3, 64, 64)
    text = torch.zeros(1, CONTEXT_LENGTH, dtype=torch.long)
    text[0, 0], text[0, 1] = 1, 2
    traced = torch.jit.trace(model, (image, text), check_trace=False)
    torch.jit.save(traced, str(path))


def synthetic_photo(seed: int, size: int = 64):
    """A seeded photo-like image: smooth colour gradients plus fine texture (uint8 HWC)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6.3, 3)
    base = np.stack([np.sin(6 * x + phase[0]), np.cos(5 * y + phase[1]), np.sin(4 * (x + y) + phase[2])], -1) * 80 + 128
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def degrade(image, kind: str, seed: int = 0):
    """The two known degradations: Gaussian blur (radius 2) and strong Gaussian noise (σ 60)."""
    import numpy as np
    from PIL import Image, ImageFilter

    if kind == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    if kind == "noise":
        rng = np.random.default_rng(10_000 + seed)
        return np.clip(image + rng.normal(0, 60, image.shape), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown degradation {kind!r} (blur, noise)")


def _fix_quality_anchors(model, tokens: torch.Tensor, calibration: int = 16, ridge: float = 1e-2,
                         spread: float = 0.05) -> None:
    """Set the text projection so that "Good photo." and "Bad photo." embed either side of the
    seeded synthetic images' mean embedding along a (ridge-regularised) Fisher direction that
    separates clean images from their blurred and noisy versions; the other prompts stay random."""
    import torch.nn.functional as F

    from facerefine.metrics.clip_iqa import original_pixels

    with torch.no_grad():
        def embed(images) -> torch.Tensor:
            return F.normalize(model.encode_image(original_pixels(images), pos_embedding=False).float(), dim=-1)

        clean_images = [synthetic_photo(s) for s in range(calibration)]
        clean = embed(clean_images)
        bad = torch.cat([embed([degrade(im, kind, s) for s, im in enumerate(clean_images)])
                         for kind in ("blur", "noise")])
        centred = torch.cat([clean - clean.mean(0), bad - bad.mean(0)])
        scatter = centred.t() @ centred / len(centred) + ridge * torch.eye(centred.shape[1])
        direction = F.normalize(torch.linalg.solve(scatter, clean.mean(0) - bad.mean(0)), dim=0)
        centre = F.normalize(torch.cat([clean, bad]).mean(0), dim=0)
        target = torch.stack([centre + spread * direction, centre - spread * direction])  # (2, D)
        # the prompts' features before the projection: encode_text without its last matmul
        x = model.token_embedding(tokens) + model.positional_embedding
        x = model.ln_final(model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2))
        eot = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]  # (2, W)
        # min-norm change of the projection that maps the two prompt features onto the targets
        model.text_projection += torch.linalg.pinv(eot) @ (target - eot @ model.text_projection)


def _build(out: Path, arch: dict, *, calibrate: bool) -> None:
    from piq.feature_extractors.clip import CLIP
    from transformers import AutoTokenizer

    vocab = write_clip_tokenizer(out / "tokenizer")
    torch.manual_seed(0)
    model = CLIP(**{"vocab_size": vocab, **arch}).eval()
    # OpenAI's init zeroes each bottleneck's last BN (a trained net's start), which leaves a random
    # net's image embedding the same for every image; He init with unit BN keeps them apart.
    for module in model.visual.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    if calibrate:
        tok = OriginalClip(model, AutoTokenizer.from_pretrained(out / "tokenizer"), "build")
        _fix_quality_anchors(model, tok.tokens(list(QUALITY_PAIR)))
    _save_jit(model, out / MODEL_FILE)


def _build_smoke(out: Path) -> None:
    _build(out, SMOKE_ARCH, calibrate=True)


def _build_random(out: Path) -> None:
    _build(out, RN50_ARCH, calibrate=False)


def load_clip_original(spec: str) -> OriginalClip:
    """The CLIP of ``evaluate.clip_iqa: original`` for ``spec`` (see the module docstring)."""
    from transformers import AutoTokenizer

    quiet_hf()
    if spec in (SMOKE, RANDOM):
        folder = build_once("clip-rn-smoke" if spec == SMOKE else "clip-rn50-random",
                             _build_smoke if spec == SMOKE else _build_random)
        return OriginalClip(load_file(folder / MODEL_FILE), AutoTokenizer.from_pretrained(folder / "tokenizer"), spec)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_SOURCE, local_files_only=hub_offline())
    if spec == PRETRAINED:
        from piq.feature_extractors import clip

        return OriginalClip(clip.load().eval(), tokenizer, "piq RN50 snapshot")
    return OriginalClip(load_file(spec), tokenizer, spec)
