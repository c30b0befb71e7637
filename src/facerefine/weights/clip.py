"""CLIP for CLIP-IQA: ``pretrained`` is openai/clip-vit-base-patch16 (torchmetrics' backbone
without piq), ``smoke`` a tiny random CLIP, ``random`` that architecture with random weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from facerefine.config import RANDOM, SMOKE
from facerefine.weights.hf import hub_offline, quiet_hf
from facerefine.weights.standins import build_once, write_clip_tokenizer


CLIP_IQA_MODEL = "openai/clip-vit-base-patch16"  # torchmetrics' CLIP-IQA backbone without piq


def _build_clip(out: Path, *, text: dict, vision: dict, projection: int, image_size: int,
                vocab_size: int | None = None) -> None:
    """A random-weight CLIP of the given sizes, its image processor at ``image_size`` and the
    stand-in tokenizer (``vocab_size`` None: the tokenizer's own vocabulary)."""
    from transformers import (AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTextConfig, CLIPVisionConfig)

    vocab = write_clip_tokenizer(out / "_tok")
    torch.manual_seed(0)
    text_config = CLIPTextConfig(vocab_size=vocab_size or vocab, max_position_embeddings=77, projection_dim=projection,
                                 bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1, **text)
    vision_config = CLIPVisionConfig(image_size=image_size, projection_dim=projection, **vision)
    model = CLIPModel(CLIPConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(),
                                 projection_dim=projection))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                                                 crop_size={"height": image_size, "width": image_size}),
                              tokenizer=AutoTokenizer.from_pretrained(out / "_tok"))
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    shutil.rmtree(out / "_tok")


def _build_clip_standin(out: Path) -> None:
    """A tiny CLIP (smoke)."""
    _build_clip(out, projection=32, image_size=32,
                text={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
                vision={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                        "patch_size": 8})


def _build_clip_random(out: Path) -> None:
    """openai/clip-vit-base-patch16's architecture (text 512 x 12, vision ViT-B/16 at 224²) with
    random weights, its image processor's settings, and the stand-in tokenizer."""
    _build_clip(out, projection=512, image_size=224, vocab_size=49408,
                text={"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12},
                vision={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                        "num_hidden_layers": 12, "patch_size": 16})


def load_clip(spec: str):
    """(CLIPModel, CLIPProcessor) for CLIP-IQA: ``pretrained`` is openai/clip-vit-base-patch16."""
    from transformers import CLIPModel, CLIPProcessor

    quiet_hf()
    location = {"pretrained": CLIP_IQA_MODEL, SMOKE: None, RANDOM: None}.get(spec, spec)
    if location is None:
        location = str(build_once("clip", _build_clip_standin) if spec == SMOKE
                       else build_once("clip-vit-b16-random", _build_clip_random))
    local = hub_offline() or Path(location).is_dir()
    return (CLIPModel.from_pretrained(location, local_files_only=local).eval(),
            CLIPProcessor.from_pretrained(location, local_files_only=local))
