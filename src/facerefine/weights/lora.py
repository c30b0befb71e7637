"""The realism LoRA of the Table 4 baseline: where its weights are, which file to load (always
named, never a guess) and loading it into a FLUX pipeline. ``smoke``/``random`` stand-ins are
random LoRAs on the attention of the matching schnell stand-in."""

from __future__ import annotations

from pathlib import Path

import torch

from facerefine.config import RANDOM, SMOKE, RandomDepth
from facerefine.weights.flux import depth_tag, load_flux
from facerefine.weights.hf import hub_offline
from facerefine.weights.standins import build_once


# Bump when _build_lora_standin changes (standins.STANDIN_VERSION would rebuild every stand-in).
LORA_STANDIN_REVISION = 1
# The stand-in LoRA folder holds two files, like a hub repo with several versions, so that smoke
# and rehearsal runs go through the named-file path (models.lora_weight_name) the paper run needs.
LORA_STANDIN_FILES = ("standin_lora_v1.safetensors", "standin_lora_v2.safetensors")


def _build_lora_standin(out: Path, spec: str = SMOKE, depth: RandomDepth | None = None, rank: int = 4,
                        files: tuple[str, ...] = LORA_STANDIN_FILES) -> None:
    """Random LoRAs on the attention of the schnell stand-in (``spec``), in diffusers' format:
    one file per name in ``files``, each with its own seeded values."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = load_flux(spec, "schnell", depth=depth).transformer
    torch.manual_seed(0)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    shapes = get_peft_model_state_dict(transformer)
    for seed, name in enumerate(files):
        generator = torch.Generator().manual_seed(seed)
        # PEFT starts lora_B at zero (a no-op adapter); give every matrix random values.
        state = {k: torch.randn(v.shape, generator=generator, dtype=v.dtype) * 0.2 for k, v in shapes.items()}
        FluxPipeline.save_lora_weights(out, transformer_lora_layers=state, weight_name=name)


def lora_location(spec: str, depth: RandomDepth | None = None) -> str:
    """Hub id or local folder for ``pipe.load_lora_weights`` (the realism-LoRA baseline)."""
    if spec == SMOKE:
        return str(build_once(f"lora-schnell-r{LORA_STANDIN_REVISION}", _build_lora_standin))
    if spec == RANDOM:  # on the full-width random schnell of the same depth, rank 16
        depth = depth or RandomDepth()
        return str(build_once(f"lora-schnell-random-{depth_tag(depth)}-r{LORA_STANDIN_REVISION}",
                               lambda out: _build_lora_standin(out, RANDOM, depth, rank=16)))
    return spec


def lora_files(location: str) -> list[str] | None:
    """The ``.safetensors`` files of a LoRA folder or hub repo (paths relative to it), sorted;
    None when they cannot be listed (a hub id while ``HF_HUB_OFFLINE`` is set)."""
    path = Path(location).expanduser()
    if path.is_dir():
        return sorted(p.relative_to(path).as_posix() for p in path.rglob("*.safetensors"))
    if hub_offline():
        return None
    from huggingface_hub import list_repo_files

    try:
        return sorted(f for f in list_repo_files(location) if f.endswith(".safetensors"))
    except Exception as err:  # network, auth, unknown repo: all mean "cannot check the LoRA"
        raise OSError(f"cannot list the files of the LoRA repository '{location}': {err}") from err


def lora_weight_file(spec: str, weight_name: str | None, depth: RandomDepth | None = None,
                     key: str = "models.lora_weight_name") -> tuple[str, str]:
    """(location, weight_name) to pass to ``load_lora_weights``, checked without loading.

    ``weight_name`` null: the location must hold exactly one ``.safetensors`` file (diffusers
    would otherwise pick one for us, in directory order). Named: the file must be there. Every
    failure raises ``FileNotFoundError`` naming the spec, the param ``key`` and the files found.
    """
    location = lora_location(spec, depth)
    files = lora_files(location)
    if files is None:  # offline hub id: only the local Hugging Face cache can answer
        from huggingface_hub import try_to_load_from_cache

        if weight_name is None:
            raise FileNotFoundError(
                f"LoRA '{spec}': HF_HUB_OFFLINE is set, so the repository's files cannot be listed; "
                f"name the file in {key}")
        if not isinstance(try_to_load_from_cache(location, weight_name), str):
            raise FileNotFoundError(
                f"LoRA '{spec}': '{weight_name}' ({key}) is not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE is set; download it once online or point models.lora at a local folder")
        return location, weight_name
    listing = ", ".join(files) or "none"
    if weight_name is None:
        if len(files) != 1:
            raise FileNotFoundError(
                f"LoRA '{spec}' holds {len(files)} .safetensors files ({listing}); set {key} to the one "
                "to load (README, \"The LoRA baseline\")")
        return location, files[0]
    if weight_name not in files:
        raise FileNotFoundError(f"LoRA '{spec}': {key} '{weight_name}' is not among its .safetensors files "
                                f"({listing})")
    return location, weight_name


def load_lora(pipe, spec: str, weight_name: str | None, depth: RandomDepth | None = None,
              key: str = "models.lora_weight_name") -> str:
    """Load the realism LoRA into a FLUX pipeline, always naming the file (never a guess);
    returns the file loaded."""
    location, name = lora_weight_file(spec, weight_name, depth, key)
    pipe.load_lora_weights(location, weight_name=name)
    return name
