"""FLUX.1: the published configurations, random builds at full width, the smoke stand-in,
and the loader every stage and the CLI use.

A FLUX spec (``models.schnell`` / ``models.dev``) is a hub id or local directory (loaded by
diffusers' ``from_pretrained``), ``smoke`` (a tiny random pipeline with the real component
classes and latent shapes) or ``random`` (the published architecture with random weights,
depth cut by the profile's ``random_depth``). Stand-ins are built once (``standins``) and
then loaded through the same ``from_pretrained`` call as real weights.

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

import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from facerefine.compile_cache import allow_graphs, use_cache
from facerefine.config import FLUX_COMPILE_CHOICES, RANDOM, SMOKE, RandomDepth
from facerefine.precision import torch_dtype
from facerefine.weights.hf import hub_offline, quiet_hf
from facerefine.weights.standins import build_once, write_clip_tokenizer, write_t5_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy: loading a stage script imports no diffusers
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    from facerefine.config import Profile

FluxRole = Literal["schnell", "dev"]

# ------------------------------------------------------------------ published configs

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

    quiet_hf()
    standin = flux_location(SMOKE, role)  # its tokenizers: tiny, built offline once
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER[role]),
        tokenizer=AutoTokenizer.from_pretrained(standin, subfolder="tokenizer"),
        tokenizer_2=AutoTokenizer.from_pretrained(standin, subfolder="tokenizer_2"),
        **build_components(role, device=device, dtype=dtype, configs=configs),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------ stand-ins and random builds


def _build_flux_standin(role: FluxRole, out: Path) -> None:
    """Tiny FLUX pipeline with the real component classes and the real latent shapes.

    The VAE has four blocks (8x downsampling) and 16 latent channels, and the
    transformer takes 2x2-packed latents (64 channels), exactly as FLUX.1, so
    image sizes follow the same multiple-of-16 rule. dev has a guidance
    embedding, schnell does not, as in the released models.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_vocab = write_clip_tokenizer(out / "_clip_tok")
    t5_vocab = write_t5_tokenizer(out / "_t5_tok")
    torch.manual_seed(0 if role == "schnell" else 1)
    # eval(): T5 dropout in train mode would make generation non-deterministic.
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=clip_vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, projection_dim=32, max_position_embeddings=77,
        bos_token_id=clip_vocab - 2, eos_token_id=clip_vocab - 1, pad_token_id=clip_vocab - 1)).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=t5_vocab, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=(role == "dev")).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[8, 8, 16, 16],
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64, use_quant_conv=False,
        use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611).eval()
    # schnell is trained without resolution-dependent shift; dev uses it.
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=(role == "dev"),
                                                base_shift=0.5, max_shift=1.15)
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, transformer=transformer,
        text_encoder=clip, tokenizer=AutoTokenizer.from_pretrained(out / "_clip_tok"),
        text_encoder_2=t5, tokenizer_2=AutoTokenizer.from_pretrained(out / "_t5_tok"))
    pipe.save_pretrained(out)
    shutil.rmtree(out / "_clip_tok")
    shutil.rmtree(out / "_t5_tok")


def depth_tag(depth: RandomDepth) -> str:
    """Folder-name tag of a ``random`` depth, e.g. ``d1-s1-t2-c12`` (``full`` for the published one)."""
    parts = [f"{k}{v}" for k, v in zip("dstc", (depth.flux_double_blocks, depth.flux_single_blocks,
                                                  depth.t5_layers, depth.clip_layers)) if v is not None]
    return "-".join(parts) or "full"


def random_arch(depth: RandomDepth):
    """The published FLUX.1 configs (:class:`ArchConfigs`) with depth cut as ``depth`` says;
    widths, heads, vocabularies and the VAE stay as published."""
    arch = ArchConfigs()
    cut = lambda config, key, value: dict(config) if value is None else {**config, key: value}  # noqa: E731
    return replace(
        arch,
        transformer=cut(cut(arch.transformer, "num_layers", depth.flux_double_blocks),
                        "num_single_layers", depth.flux_single_blocks),
        t5=cut(arch.t5, "num_layers", depth.t5_layers),
        clip=cut(arch.clip, "num_hidden_layers", depth.clip_layers))


def _build_flux_random(role: FluxRole, depth: RandomDepth, out: Path) -> None:
    """FLUX.1-``role`` at full width with random weights, saved in bfloat16 (what the
    checkpoints ship in)."""
    torch.manual_seed(0 if role == "schnell" else 1)
    pipe = build_pipeline(role, device="cpu", dtype=torch.bfloat16, configs=random_arch(depth))
    pipe.save_pretrained(out)


def flux_location(spec: str, role: FluxRole, depth: RandomDepth | None = None) -> str:
    """Hub id or local directory to pass to ``from_pretrained`` for a FLUX spec."""
    if spec == SMOKE:
        return str(build_once(f"flux-{role}", lambda out: _build_flux_standin(role, out)))
    if spec == RANDOM:
        depth = depth or RandomDepth()
        return str(build_once(f"flux-{role}-random-{depth_tag(depth)}",
                              lambda out: _build_flux_random(role, depth, out)))
    return spec


# ------------------------------------------------------------------ loading


# Above this side the FLUX VAE decodes in tiles: a 2048² decode alone needs tens of GB.
VAE_TILING_ABOVE = 1024


def load_flux(spec: str, role: FluxRole, *, img2img: bool = False, dtype: str = "float32",
              device: str | torch.device = "cpu", depth: RandomDepth | None = None,
              offload: str = "none", image_size: int | None = None,
              compile: str = "none") -> "FluxPipeline | FluxImg2ImgPipeline":
    """Load a FLUX pipeline (text-to-image, or img2img sharing the same weights).

    ``offload`` (GPU only): ``model`` keeps one component at a time on the GPU
    (diffusers' ``enable_model_cpu_offload``), ``sequential`` one layer at a time
    (``enable_sequential_cpu_offload``); see README, "GPU memory". Images larger
    than ``VAE_TILING_ABOVE`` are decoded in VAE tiles. ``compile``: none, blocks or full
    (:func:`compile_flux`).
    """
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    quiet_hf()
    cls = FluxImg2ImgPipeline if img2img else FluxPipeline
    location = flux_location(spec, role, depth)
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones know only it
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = cls.from_pretrained(location, torch_dtype=torch_dtype(dtype),
                                       local_files_only=hub_offline() or Path(location).is_dir())
    except OSError as err:
        raise OSError(
            f"cannot load FLUX.1-{role} from '{spec}': {err}\n"
            "For the paper profile, accept the model licence on the Hub and export HF_TOKEN, "
            "or set profiles.paper.models.{role} to a local directory with the weights."
        ) from err
    pipe.set_progress_bar_config(disable=True)
    if image_size is not None and image_size > VAE_TILING_ABOVE:
        pipe.vae.enable_tiling()
    return compile_flux(place_pipeline(pipe, device, offload), compile)


def place_pipeline(pipe, device: str | torch.device, offload: str = "none"):
    """Put a diffusers pipeline on ``device``, or offload it to the CPU between uses."""
    device = torch.device(device)
    if offload == "none" or device.type == "cpu":
        return pipe.to(device)  # offloading to the CPU from the CPU means nothing
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise ValueError(f"offload must be none, model or sequential (got {offload!r})")
    return pipe


def pixel_fingerprint(spec: str, scale: "Profile") -> dict:
    """What else changes the pixels of a FLUX spec: a ``random`` network's depth, a compiled
    transformer's float bits. Empty for eager published weights, so their shards keep their keys."""
    extras = {"random_depth": scale.random_depth.model_dump()} if spec == RANDOM else {}
    return extras | ({"compile": scale.compile} if scale.compile != "none" else {})


def load_flux_for(scale: "Profile", role: FluxRole, *, device: str | torch.device, dtype: str,
                  img2img: bool = False, compile: str | None = None) -> "FluxPipeline | FluxImg2ImgPipeline":
    """FLUX.1-``role`` as the active profile says: its weights, random depth, offload, size and
    compile (``compile`` overrides the profile's)."""
    return load_flux(getattr(scale.models, role), role, img2img=img2img, dtype=dtype, device=device,
                     depth=scale.random_depth, offload=scale.offload, image_size=scale.image_size,
                     compile=compile or scale.compile)


# ------------------------------------------------------------------ compile

# profiles.<p>.compile (config.FLUX_COMPILE_CHOICES). blocks: regional compilation (diffusers'
# compile_repeated_blocks), one graph for the 19 double-stream blocks and one for the 38
# single-stream ones, compiled in seconds rather than the whole transformer's minutes; full: the
# whole transformer, one graph. Shapes are static: a stage runs one image size and at most two
# batch sizes (full batches and a shard's last one), the benchmark several resolutions, so a
# compiled function has at most block kinds x resolutions x batch sizes graphs:
FLUX_GRAPHS = 64


def compile_flux(pipe: Any, how: str, *, backend: Any = "inductor", cache: str | Path | None | bool = None) -> Any:
    """Compile ``pipe.transformer`` in place as ``how`` says (none, blocks or full) and return
    ``pipe``. The compile itself happens at the first call (and goes to the project's compile
    cache, :mod:`facerefine.compile_cache`); LoRA weights loaded before then are compiled with
    the blocks. ``fullgraph``: a graph break is an error, not a silent slow path."""
    if how not in FLUX_COMPILE_CHOICES:
        raise ValueError(f"FLUX compile must be one of {', '.join(FLUX_COMPILE_CHOICES)}, got {how!r}")
    if how == "none":
        return pipe
    use_cache(cache)
    allow_graphs(FLUX_GRAPHS)
    options: dict[str, Any] = {"backend": backend, "dynamic": False, "fullgraph": True}
    if how == "blocks":
        pipe.transformer.compile_repeated_blocks(**options)
    else:
        pipe.transformer.compile(**options)
    return pipe
