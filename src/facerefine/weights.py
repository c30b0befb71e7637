"""The one place that resolves every pretrained network.

A *spec* names where weights come from:

* a hub id (``black-forest-labs/FLUX.1-dev``) or a local directory: the real
  loading code (``from_pretrained``), the libraries' own caches, a gated-model
  token from the environment (``HF_TOKEN``, read by huggingface_hub itself and
  never by us, so it cannot reach logs), and ``HF_HUB_OFFLINE=1`` honoured;
* ``smoke``: a tiny, randomly initialised network of the *same architecture*,
  built once under the project-local stand-in folder (``$FACEREFINE_HOME``,
  default ``./.facerefine``) and then loaded through the very same real loading
  call. Stand-ins never go to user-global caches (``~/.cache``, ``~/.deepface``).
* ``random``: the *published* architecture at full width with random weights
  (the ``rehearsal`` profile), built and loaded the same way. FLUX, T5 and
  CLIP depth come from the profile's ``random_depth`` (null: published depth).
  LPIPS's AlexNet, DeepFace's networks and the FID Inception are full size in
  their smoke stand-ins already, so ``random`` uses those.

Stand-ins are deterministic (seeded), so every machine builds identical ones.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from filelock import FileLock

from facerefine.config import NETWORK_ROLES, RANDOM, SMOKE, RandomDepth, standin_specs

if TYPE_CHECKING:  # heavy imports stay lazy: the prompts stage needs none of them
    from collections.abc import Sequence

    import lpips as lpips_lib
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    from facerefine.config import Params, Profile

FluxRole = Literal["schnell", "dev"]

# Bump when a stand-in builder changes so stale stand-ins are rebuilt.
STANDIN_VERSION = 2


def home() -> Path:
    """Project-local folder for stand-ins (never a user-global cache)."""
    return Path(os.environ.get("FACEREFINE_HOME", ".facerefine")).resolve()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _build_once(name: str, builder) -> Path:
    """Build a stand-in into ``home()/standins/<name>-v<N>`` exactly once.

    The build goes to a temp dir that is renamed when complete, under a file
    lock so that several processes (``accelerate launch``) can race safely.
    """
    root = home() / "standins"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-v{STANDIN_VERSION}"
    with FileLock(str(root / f".{name}.lock")):
        if final.is_dir():
            return final
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        builder(tmp)
        os.replace(tmp, final)
    return final


# --------------------------------------------------------------------------- FLUX


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def _write_clip_tokenizer(path: Path) -> int:
    """A byte-level BPE CLIP tokenizer with no merges (one token per character)."""
    path.mkdir(parents=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # model_max_length=77 is what FluxPipeline pads CLIP prompts to.
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}), encoding="utf-8")
    return len(tokens)


def _write_t5_tokenizer(path: Path) -> int:
    """A character-level Unigram tokenizer in T5's format (``tokenizer.json``)."""
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    path.mkdir(parents=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(c, -2.0) for c in string.printable.strip()]
    pieces += [("▁" + c, -1.5) for c in string.ascii_letters]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.save(str(path / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
              "pad_token": "<pad>", "extra_ids": 0, "model_max_length": 512}
    (path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(pieces)


def _build_flux_standin(role: FluxRole, out: Path) -> None:
    """Tiny FLUX pipeline with the real component classes and the real latent shapes.

    The VAE has four blocks (8x downsampling) and 16 latent channels, and the
    transformer takes 2x2-packed latents (64 channels), exactly as FLUX.1, so
    image sizes follow the same multiple-of-16 rule. dev has a guidance
    embedding, schnell does not, as in the released models.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_vocab = _write_clip_tokenizer(out / "_clip_tok")
    t5_vocab = _write_t5_tokenizer(out / "_t5_tok")
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
    """The published FLUX.1 configs (``flux_arch``) with depth cut as ``depth`` says; widths,
    heads, vocabularies and the VAE stay as published."""
    from dataclasses import replace

    from facerefine import flux_arch

    arch = flux_arch.ArchConfigs()
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
    from facerefine import flux_arch

    torch.manual_seed(0 if role == "schnell" else 1)
    pipe = flux_arch.build_pipeline(role, device="cpu", dtype=torch.bfloat16, configs=random_arch(depth))
    pipe.save_pretrained(out)


def flux_location(spec: str, role: FluxRole, depth: RandomDepth | None = None) -> str:
    """Hub id or local directory to pass to ``from_pretrained`` for a FLUX spec."""
    if spec == SMOKE:
        return str(_build_once(f"flux-{role}", lambda out: _build_flux_standin(role, out)))
    if spec == RANDOM:
        depth = depth or RandomDepth()
        return str(_build_once(f"flux-{role}-random-{depth_tag(depth)}",
                               lambda out: _build_flux_random(role, depth, out)))
    return spec


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _quiet_hf() -> None:
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


# Above this side the FLUX VAE decodes in tiles: a 2048² decode alone needs tens of GB.
VAE_TILING_ABOVE = 1024


def load_flux(spec: str, role: FluxRole, *, img2img: bool = False, dtype: str = "float32",
              device: str | torch.device = "cpu", depth: RandomDepth | None = None,
              offload: str = "none", image_size: int | None = None) -> "FluxPipeline | FluxImg2ImgPipeline":
    """Load a FLUX pipeline (text-to-image, or img2img sharing the same weights).

    ``offload`` (GPU only): ``model`` keeps one component at a time on the GPU
    (diffusers' ``enable_model_cpu_offload``), ``sequential`` one layer at a time
    (``enable_sequential_cpu_offload``); see README, "GPU memory". Images larger
    than ``VAE_TILING_ABOVE`` are decoded in VAE tiles.
    """
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    _quiet_hf()
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
    return place_pipeline(pipe, device, offload)


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


def random_fingerprint(spec: str, scale: "Profile") -> dict:
    """What else changes a ``random`` network's pixels (its depth); nothing for other specs."""
    return {"random_depth": scale.random_depth.model_dump()} if spec == RANDOM else {}


def load_flux_for(scale: "Profile", role: FluxRole, *, device: str | torch.device, dtype: str,
                  img2img: bool = False) -> "FluxPipeline | FluxImg2ImgPipeline":
    """FLUX.1-``role`` as the active profile says: its weights, random depth, offload and size."""
    return load_flux(getattr(scale.models, role), role, img2img=img2img, dtype=dtype, device=device,
                     depth=scale.random_depth, offload=scale.offload, image_size=scale.image_size)


# -------------------------------------------------------------------------- LPIPS


def _alexnet_features_state(spec: str) -> dict[str, torch.Tensor]:
    """AlexNet ``features.*`` weights for LPIPS's backbone (the stand-in is full size)."""
    import torchvision
    from safetensors.torch import load_file, save_file

    if spec in (SMOKE, RANDOM):
        def build(out: Path) -> None:
            torch.manual_seed(0)
            net = torchvision.models.alexnet(weights=None)
            save_file({k: v.contiguous() for k, v in net.features.state_dict().items()},
                      str(out / "alexnet_features.safetensors"))

        return load_file(str(_build_once("lpips-alexnet", build) / "alexnet_features.safetensors"))
    if spec != "pretrained":
        return load_file(spec)  # a local safetensors file of AlexNet features
    # torchvision's own loader and cache (TORCH_HOME), as lpips itself would use.
    state = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


def load_lpips(spec: str) -> "lpips_lib.LPIPS":
    """LPIPS (AlexNet) in eval mode with frozen weights.

    The calibrated linear heads ship inside the ``lpips`` wheel; only the
    backbone comes from ``spec``: ``pretrained`` (torchvision ImageNet weights),
    ``smoke`` (random stand-in) or a path to a safetensors file.
    """
    import warnings

    import lpips

    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    features = _alexnet_features_state(spec)
    # lpips splits AlexNet.features into slice1..5 keeping the original indices as names.
    for slice_ in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for idx, layer in slice_.named_children():
            own = {k.split(".", 1)[1]: v for k, v in features.items() if k.split(".", 1)[0] == idx}
            if own:
                layer.load_state_dict(own)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ======================================================================= DeepFace / ArcFace
# DeepFace (>= 0.0.100) runs on its pytorch backend when DEEPFACE_BACKEND_ENGINE=pytorch
# (deepface.commons.backend_utils, resolved once per process and cached) and each model's
# load_model() reads `$DEEPFACE_HOME/.deepface/weights/<file>.pth` (DEEPFACE_HOME defaults to
# the user's home), downloading it with gdown only when the file is missing
# (deepface.commons.weight_utils.download_weights_if_necessary).
#
# A deepface spec is ``pretrained`` (DeepFace's own loading: $DEEPFACE_HOME or ~/.deepface),
# ``smoke`` (random stand-ins of the same architectures, saved under home() with the file
# names DeepFace expects, so its loader finds them and never downloads), or a directory to use
# as DEEPFACE_HOME. Models are built by DeepFace itself (modeling.get_model_class(...)()).

# Imported here, not in the header: this section is appended to the FLUX/LPIPS code.
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

PRETRAINED = "pretrained"
DeepFaceModel = Literal["Age", "Gender", "Race", "ArcFace"]

# name -> (DeepFace task, module of its pytorch implementation: base_model(), WEIGHTS_URL)
DEEPFACE_MODELS: dict[str, tuple[str, str]] = {
    "Age": ("facial_attribute", "deepface.models.demography.pytorch.Age"),
    "Gender": ("facial_attribute", "deepface.models.demography.pytorch.Gender"),
    "Race": ("facial_attribute", "deepface.models.demography.pytorch.Race"),
    "ArcFace": ("facial_recognition", "deepface.models.facial_recognition.pytorch.ArcFace"),
}
# Every DeepFace detector but "skip" fetches weights (even opencv 5 downloads its cascades),
# and the smoke stand-ins cover none of them.
DEEPFACE_OFFLINE_DETECTORS = ("skip",)
# Bump when _build_deepface_standin changes (STANDIN_VERSION above belongs to the FLUX/LPIPS code).
DEEPFACE_STANDIN_REVISION = 1

_deepface_models: dict[tuple[str, str], object] = {}


def deepface_weight_file(name: str) -> str:
    """The file DeepFace's loader looks for: the last part of its first weights URL
    (the rule deepface.commons.weight_utils itself applies)."""
    import importlib

    urls = importlib.import_module(DEEPFACE_MODELS[name][1]).WEIGHTS_URL
    return (urls if isinstance(urls, str) else urls[0]).rsplit("/", 1)[-1]


def _build_deepface_standin(out: Path) -> None:
    """Seeded random Age/Gender/Race (VGG-Face trunk) and ArcFace (ResNet34) networks from
    DeepFace's own classes, saved as ``.deepface/weights/<file>.pth`` under ``out``.

    Stored as float16 to halve the ~1.75 GB a float32 copy of three VGG-Face trunks takes;
    DeepFace's load_state_dict casts them into its float32 parameters.
    """
    import importlib

    weights_dir = out / ".deepface" / "weights"
    weights_dir.mkdir(parents=True)
    for seed, (name, (_, module_name)) in enumerate(DEEPFACE_MODELS.items()):
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
            torch.manual_seed(seed)
            net = importlib.import_module(module_name).base_model()
        state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
        torch.save(state, weights_dir / deepface_weight_file(name))


def deepface_home(spec: str) -> Path | None:
    """DEEPFACE_HOME for a spec; None means DeepFace's default ($DEEPFACE_HOME or ~)."""
    if spec in (SMOKE, RANDOM):  # the stand-ins are DeepFace's own full-size architectures
        return _build_once(f"deepface-r{DEEPFACE_STANDIN_REVISION}", _build_deepface_standin)
    if spec == PRETRAINED:
        return None
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"models.deepface: '{spec}' is neither 'pretrained', 'smoke' nor a directory "
            "(a directory is used as DEEPFACE_HOME: weights in <dir>/.deepface/weights/)")
    return path.resolve()


def deepface_detector(spec: str, detector: str) -> str:
    """The DeepFace detector_backend to use; refuses one that would download under smoke."""
    from facerefine.config import ParamsError

    if spec in (SMOKE, RANDOM) and detector not in DEEPFACE_OFFLINE_DETECTORS:
        raise ParamsError(
            f"face_detector: '{detector}' needs pretrained detector weights, which the smoke "
            f"stand-ins do not include; use one of {', '.join(DEEPFACE_OFFLINE_DETECTORS)} with "
            "models.deepface: smoke")
    return detector


def _deepface_pytorch_engine() -> None:
    """Make DeepFace pick its pytorch backend. It caches the choice the first time any model
    or detector is built, and the variable stays set so that retina-face (which reads it
    too) agrees."""
    from deepface.commons import backend_utils

    os.environ.setdefault(backend_utils.BACKEND_ENGINE_ENV_VAR, backend_utils.PYTORCH)
    engine = backend_utils.get_backend_engine()
    if engine != backend_utils.PYTORCH:
        raise RuntimeError(
            f"DeepFace runs on its '{engine}' backend in this process; facerefine needs 'pytorch' "
            f"(unset {backend_utils.BACKEND_ENGINE_ENV_VAR} or set it to pytorch)")


@contextmanager
def deepface_environment(spec: str) -> Iterator[None]:
    """Run DeepFace calls that may load weights (models, detectors) against the spec's
    weights: DeepFace's pytorch backend, and DEEPFACE_HOME pointed at the spec's folder for
    the duration only (the user's own setting comes back after). ``pretrained`` leaves
    DEEPFACE_HOME alone and creates DeepFace's folder as ``from deepface import DeepFace``
    would."""
    home = deepface_home(spec)
    _deepface_pytorch_engine()
    if home is None:
        from deepface.commons import folder_utils

        folder_utils.initialize_folder()
        yield
        return
    saved = os.environ.get("DEEPFACE_HOME")
    os.environ["DEEPFACE_HOME"] = str(home)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DEEPFACE_HOME", None)
        else:
            os.environ["DEEPFACE_HOME"] = saved


def load_deepface(spec: str, name: DeepFaceModel):
    """DeepFace's own client for ``name`` (e.g. ApparentAgeClient, ArcFaceClient), built by
    DeepFace from the weights the spec names. Cached per (weights home, model)."""
    home = deepface_home(spec)
    key = (str(home) if home else f"{PRETRAINED}:{os.environ.get('DEEPFACE_HOME', '~')}", name)
    if key not in _deepface_models:
        from deepface.modules import modeling

        with deepface_environment(spec):
            client = modeling.get_model_class(task=DEEPFACE_MODELS[name][0], model_name=name)()
        # DeepFace's torch clients permute NHWC arrays to NCHW views, i.e. channels_last
        # strides; weights in the same layout skip a conversion per conv: 1.1-1.5x faster
        # VGG-Face forwards on a CPU (the diversity stage's main cost). Same maths; the
        # last float bits may differ from the default layout.
        if isinstance(getattr(client, "model", None), torch.nn.Module):
            client.model = client.model.to(memory_format=torch.channels_last)
        _deepface_models[key] = client
    return _deepface_models[key]


# ============================================================ Inception (FID/KID), CLIP (CLIP-IQA), LoRA


def inception_weights_path(spec: str) -> str | None:
    """Weights file for torch-fidelity's InceptionV3 (``feature_extractor_weights_path``).

    ``pretrained`` -> None: torch-fidelity downloads/caches its own FID Inception
    weights. ``smoke`` -> a random stand-in of the same network, built once.
    """
    if spec == "pretrained":
        return None
    if spec not in (SMOKE, RANDOM):  # the stand-in is the full-size network
        return spec  # a local copy of torch-fidelity's weights file

    def build(out: Path) -> None:
        from unittest import mock

        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        torch.manual_seed(0)
        # Build the real module but skip its weight loading (which would download);
        # this patch lives only in the stand-in builder, never in the loading path.
        with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
                mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
                           lambda *a, **k: {}):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        # He init keeps activations O(1) through 90-odd layers; PyTorch's default
        # init shrinks them to ~1e-10 and FID on such features is numerically void.
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        torch.save(net.state_dict(), out / "inception.pt")

    return str(_build_once("fidelity-inception", build) / "inception.pt")


CLIP_IQA_MODEL = "openai/clip-vit-base-patch16"  # torchmetrics' CLIP-IQA backbone without piq


def _build_clip(out: Path, *, text: dict, vision: dict, projection: int, image_size: int,
                vocab_size: int | None = None) -> None:
    """A random-weight CLIP of the given sizes, its image processor at ``image_size`` and the
    stand-in tokenizer (``vocab_size`` None: the tokenizer's own vocabulary)."""
    from transformers import (AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTextConfig, CLIPVisionConfig)

    vocab = _write_clip_tokenizer(out / "_tok")
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

    _quiet_hf()
    location = {"pretrained": CLIP_IQA_MODEL, SMOKE: None, RANDOM: None}.get(spec, spec)
    if location is None:
        location = str(_build_once("clip", _build_clip_standin) if spec == SMOKE
                       else _build_once("clip-vit-b16-random", _build_clip_random))
    local = hub_offline() or Path(location).is_dir()
    return (CLIPModel.from_pretrained(location, local_files_only=local).eval(),
            CLIPProcessor.from_pretrained(location, local_files_only=local))


# Bump when _build_lora_standin changes (STANDIN_VERSION above would rebuild every stand-in).
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
        return str(_build_once(f"lora-schnell-r{LORA_STANDIN_REVISION}", _build_lora_standin))
    if spec == RANDOM:  # on the full-width random schnell of the same depth, rank 16
        depth = depth or RandomDepth()
        return str(_build_once(f"lora-schnell-random-{depth_tag(depth)}-r{LORA_STANDIN_REVISION}",
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


# ==================================================================== Stand-in detection

# The networks whose outputs reach each stage's report (its data's lineage and its own models).
# Narrower than "all" so that, e.g., changing the LoRA does not rerun the diversity analysis.
REPORT_NETWORKS: dict[str, tuple[str, ...]] = {
    "diversity": ("schnell", "deepface"),              # schnell images, DeepFace attributes
    "select_cyclegan": ("schnell", "dev"),             # heads trained on schnell and dev images
    "evaluate": NETWORK_ROLES,                         # every network feeds Table 4
    "report": NETWORK_ROLES,                           # inlines every report
}


def standin_networks(params: Params, roles: Sequence[str] = NETWORK_ROLES) -> list[str]:
    """The networks among ``roles`` that are random stand-ins (``smoke`` or ``random`` specs)
    in the active profile, as ``role (spec)``. The one rule behind every stand-in banner: a
    non-empty list means the report these networks touch shows noise, whatever the profile is
    called. Stages pass ``REPORT_NETWORKS[stage]``."""
    return standin_specs(params.scale.models.model_dump(), roles)


def standin_banner(networks: Sequence[str]) -> str:
    """The markdown banner of a report made with stand-in networks ('' when there are none)."""
    if not networks:
        return ""
    return ("> **Stand-in networks:** " + ", ".join(networks) + ": randomly initialised, not the "
            "published weights. These numbers only show that the pipeline runs end to end and mean "
            "nothing; `dvc exp run -S profile=paper` gives real ones.")
