"""FLUX.1 as published, with random weights: the benchmark's ``--mode arch`` and the
``random`` model spec of the rehearsal profile (``weights.py``).

Latency and memory do not depend on weight values, so real-scale numbers need no
download: the networks below are built from the *published* configurations
of FLUX.1-dev / FLUX.1-schnell (transformer, VAE, CLIP-L text encoder,
T5-XXL encoder), written here as literal dicts, with random weights.

* On a GPU they are built directly on the device in bfloat16 (the dtype the
  checkpoints ship in): about 34 GB for one pipeline, so no host copy and no
  float32 detour.
* On ``torch.device("meta")`` nothing is allocated, which is how the tests
  check the parameter counts against the published ones.
* Tokenizers are the smoke stand-ins' (character-level). The pipeline pads
  CLIP prompts to 77 tokens and T5 prompts to ``max_sequence_length``, so the
  text encoders see exactly the shapes the real tokenizers would give them.

At full depth this is meant for GPUs; on a CPU one full-size dev image takes hours
(the benchmark refuses unless forced). The rehearsal keeps full width and cuts depth.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from diffusers import FluxPipeline

# FLUX.1 transformer (black-forest-labs/FLUX.1-{dev,schnell}/transformer/config.json):
# 19 double-stream + 38 single-stream blocks, 24 heads x 128 = 3072 wide.
FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,              # 16 latent channels packed 2x2
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,    # T5-XXL width
    "pooled_projection_dim": 768,   # CLIP-L pooled width
    "axes_dims_rope": (16, 56, 56),
}

# FLUX.1 VAE (vae/config.json): 8x down, 16 latent channels, no quant convs.
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 1024,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "shift_factor": 0.1159,
    "scaling_factor": 0.3611,
    "force_upcast": True,
    "mid_block_add_attention": True,
}

# CLIP ViT-L/14 text tower (text_encoder/config.json).
CLIP_L_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
}

# T5 v1.1 XXL encoder (text_encoder_2/config.json).
T5_XXL_ENCODER: dict[str, Any] = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
}

# Scheduler configs of the releases: schnell has no resolution-dependent shift, dev does.
_SCHEDULER_COMMON = {"num_train_timesteps": 1000, "base_shift": 0.5, "max_shift": 1.15,
                     "base_image_seq_len": 256, "max_image_seq_len": 4096}
FLUX_SCHEDULER: dict[str, dict[str, Any]] = {
    "schnell": {**_SCHEDULER_COMMON, "shift": 1.0, "use_dynamic_shifting": False},
    "dev": {**_SCHEDULER_COMMON, "shift": 3.0, "use_dynamic_shifting": True},
}

# Published sizes the configs must reproduce (tests check within 1%).
PUBLISHED_PARAMETERS: dict[str, float] = {
    "transformer": 11.9e9,
    "text_encoder_2": 4.76e9,   # T5-XXL encoder
    "text_encoder": 123e6,      # CLIP-L text
    "vae": 83.8e6,
}


@dataclass(frozen=True)
class ArchConfigs:
    """The four network configs; tests pass tiny ones to exercise the build path on a CPU."""

    transformer: Mapping[str, Any] = field(default_factory=lambda: dict(FLUX_TRANSFORMER))
    vae: Mapping[str, Any] = field(default_factory=lambda: dict(FLUX_VAE))
    clip: Mapping[str, Any] = field(default_factory=lambda: dict(CLIP_L_TEXT))
    t5: Mapping[str, Any] = field(default_factory=lambda: dict(T5_XXL_ENCODER))


@contextmanager
def _build_on(device: str | torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Every tensor created inside lands on ``device`` in ``dtype`` (no float32 host copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_components(role: str, *, device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16,
                     configs: ArchConfigs | None = None) -> dict[str, nn.Module]:
    """Transformer, VAE and both text encoders of FLUX.1-``role`` with random weights, in eval mode."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if role not in FLUX_SCHEDULER:
        raise ValueError(f"role must be 'schnell' or 'dev', got {role!r}")
    configs = configs or ArchConfigs()
    with _build_on(device, dtype):
        modules: dict[str, nn.Module] = {
            # dev is guidance-distilled (guidance is an input); schnell is not.
            "transformer": FluxTransformer2DModel(**configs.transformer, guidance_embeds=(role == "dev")),
            "vae": AutoencoderKL(**configs.vae),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs.clip)),
            "text_encoder_2": T5EncoderModel(T5Config(**configs.t5)),
        }
    for module in modules.values():
        module.eval().requires_grad_(False)  # eval: T5 dropout off
    return modules


def parameter_counts(role: str, configs: ArchConfigs | None = None) -> dict[str, int]:
    """Parameters per component, counted on the meta device (nothing is allocated)."""
    modules = build_components(role, device="meta", configs=configs)
    return {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}


def build_pipeline(role: str, *, device: str | torch.device, dtype: torch.dtype = torch.bfloat16,
                   configs: ArchConfigs | None = None) -> "FluxPipeline":
    """A FluxPipeline of full-size random networks on ``device`` (stand-in tokenizers, real scheduler)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import AutoTokenizer

    from facerefine import weights
    from facerefine.config import SMOKE

    weights._quiet_hf()
    standin = weights.flux_location(SMOKE, role)  # its tokenizers: tiny, built offline once
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER[role]),
        tokenizer=AutoTokenizer.from_pretrained(standin, subfolder="tokenizer"),
        tokenizer_2=AutoTokenizer.from_pretrained(standin, subfolder="tokenizer_2"),
        **build_components(role, device=device, dtype=dtype, configs=configs),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# Paper-size heads (the `paper` profile's sizes): ResUNet-CBAM base 64 depth 6, and the
# 9-block ngf-64 ResNet generator plain and with ESA.
ARCH_UNET = {"base_channels": 64, "depth": 6}
ARCH_GENERATOR = {"ngf": 64, "n_blocks": 9}


def arch_heads(esa_placement: str = "trunk") -> dict[str, nn.Module]:
    """Random-weight heads at the paper's size (built on the CPU: ~11-30M parameters each)."""
    from facerefine.models.cyclegan import ResnetGenerator
    from facerefine.models.resunet_cbam import ResUNetCBAM

    return {
        "unet": ResUNetCBAM(**ARCH_UNET).eval(),
        "cyclegan": ResnetGenerator(**ARCH_GENERATOR).eval(),
        "esa": ResnetGenerator(**ARCH_GENERATOR, esa=esa_placement).eval(),
    }
