"""Typed, validated view of ``params.yaml``.

``params.yaml`` is the single knob file. Scientific knobs (the paper's values)
sit at the top level; scale knobs live in ``profiles.<name>`` and ``profile``
picks the active one, so ``dvc exp run -S profile=paper`` is the whole switch.

Every stage calls :func:`load_params` before doing any work; a wrong type or an
out-of-range value raises :class:`ParamsError` with the key path and the
allowed range, e.g. ``dev.strength: must be in (0, 1] (got 1.5)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facerefine.models import rules  # torch-free: the heads' size rules and ESA placements
from facerefine.precision import Dtype

SMOKE = "smoke"    # model spec: the project-local tiny random stand-in
RANDOM = "random"  # model spec: the published architecture at full width, random weights (rehearsal)

# The FLUX VAE downsamples 8x and the transformer packs 2x2 latent patches.
IMAGE_SIZE_MULTIPLE = 16

NAMES_ROOT = Path("data/names")
NAMES_FILES = ("name.basics.tsv", "name.basics.tsv.gz")


# ModelIds fields that name a network (the others, e.g. lora_weight_name, qualify one).
NETWORK_ROLES = ("schnell", "dev", "lpips", "deepface", "inception", "clip_iqa", "lora")


STANDIN_SPECS = frozenset({SMOKE, RANDOM})  # model specs that build random stand-ins


def standin_specs(models: Mapping[str, object], roles: Sequence[str] = NETWORK_ROLES) -> list[str]:
    """``role (spec)`` for each network among ``roles`` whose spec is a random stand-in
    (``smoke`` or ``random``). Takes the raw ``models`` mapping so that `facerefine review`
    can decide without validating params; ``banners.standin_networks`` is the stages' entry."""
    unknown = set(roles) - set(NETWORK_ROLES)
    if unknown:
        raise ValueError(f"unknown network roles {sorted(unknown)} (known: {', '.join(NETWORK_ROLES)})")
    return [f"{role} ({models.get(role)})" for role in NETWORK_ROLES
            if role in roles and models.get(role) in STANDIN_SPECS]


class ParamsError(ValueError):
    """A params.yaml value is missing, of the wrong type or out of range."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class SplitFractions(_Strict):
    train: Fraction
    val: Fraction
    test: Fraction

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1 (got {total:g})")
        return self


class PromptsParams(_Strict):
    template: str
    baseline_prompt: str
    professions: list[str] = Field(min_length=1)
    max_name_chars: PositiveInt = 120
    split: SplitFractions

    @field_validator("template")
    @classmethod
    def _has_name_slot(cls, v: str) -> str:
        if "{name}" not in v:
            raise ValueError("must contain the '{name}' placeholder")
        return v


class SchnellParams(_Strict):
    steps: PositiveInt
    guidance: Annotated[float, Field(ge=0.0)]
    max_sequence_length: Annotated[int, Field(gt=0, le=512)]


def img2img_steps(steps: int, strength: float) -> int:
    """Denoising steps diffusers' FLUX img2img runs: ``steps - int(max(steps - steps*strength, 0))``
    (50 at strength 0.7: 35)."""
    return steps - int(max(steps - steps * strength, 0))


class DevParams(_Strict):
    steps: PositiveInt
    guidance: Annotated[float, Field(ge=0.0)]
    strength: Annotated[float, Field(gt=0.0, le=1.0)]
    max_sequence_length: Annotated[int, Field(gt=0, le=512)]


class ModelIds(_Strict):
    """Where each pretrained network comes from (resolved in ``facerefine.weights``):
    a hub id, a local path, ``pretrained`` (the library's own weights),
    ``smoke`` for the tiny random stand-in, or ``random`` for the published
    architecture at full width with random weights (the rehearsal; depth from
    the profile's ``random_depth``)."""

    schnell: str = Field(min_length=1)
    dev: str = Field(min_length=1)
    lpips: str = Field(min_length=1)
    deepface: str = Field(min_length=1)
    inception: str = Field(min_length=1)   # torch-fidelity's FID Inception
    clip_iqa: str = Field(min_length=1)    # CLIP for CLIP-IQA
    lora: str = Field(min_length=1)        # the realism-LoRA baseline of Table 4
    # The .safetensors file of `lora` to load; null: `lora` must hold exactly one (README,
    # "The LoRA baseline"). Checked before evaluate generates anything.
    lora_weight_name: str | None = Field(default=None, min_length=1)


class UnetScale(_Strict):
    base_channels: PositiveInt
    depth: Annotated[int, Field(ge=1, le=8)]
    max_epochs: PositiveInt
    data_fraction: Annotated[float, Field(gt=0.0, le=1.0)]  # of the whole dataset, from the train split
    image_size: PositiveInt
    batch_size: PositiveInt

    @model_validator(mode="after")
    def _size_fits_depth(self) -> "UnetScale":
        multiple = rules.unet_size_multiple(self.depth)
        if self.image_size % multiple:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2^(depth-1) = {multiple}")
        return self


class CycleScale(_Strict):
    ngf: PositiveInt
    n_blocks: NonNegInt
    ndf: PositiveInt
    epochs: NonNegInt            # at constant lr
    epochs_decay: NonNegInt      # then linear decay to 0
    data_fraction: Annotated[float, Field(gt=0.0, le=1.0)]  # of the whole dataset, from the train split
    image_size: PositiveInt
    batch_size: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> "CycleScale":
        if self.epochs + self.epochs_decay < 1:
            raise ValueError("epochs + epochs_decay must be at least 1")
        multiple = rules.generator_size_multiple()
        if self.image_size % multiple:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {multiple}")
        return self


class BenchScale(_Strict):
    """Latency benchmark scale (§5.3): what is timed and how often."""

    mode: Literal["smoke", "weights", "arch"]  # arch: full-size FLUX with random weights (GPU)
    resolutions: list[PositiveInt] = Field(min_length=1)
    head_batch_sizes: list[PositiveInt] = Field(min_length=1)
    warmup: NonNegInt
    repeats: PositiveInt
    head_warmup: NonNegInt
    head_repeats: PositiveInt
    threads: PositiveInt | None = None

    @field_validator("resolutions")
    @classmethod
    def _multiples_of_16(cls, v: list[int]) -> list[int]:
        bad = [r for r in v if r % IMAGE_SIZE_MULTIPLE]
        if bad:
            raise ValueError(f"resolutions must be multiples of {IMAGE_SIZE_MULTIPLE} (got {bad})")
        return v


class RandomDepth(_Strict):
    """Depth of the ``random`` networks: null keeps the published depth (full size, for a GPU);
    a CPU rehearsal keeps full width and cuts depth, which changes time, not tensor shapes."""

    flux_double_blocks: PositiveInt | None = None   # FLUX.1: 19
    flux_single_blocks: PositiveInt | None = None   # FLUX.1: 38
    t5_layers: PositiveInt | None = None            # T5-XXL encoder: 24
    clip_layers: PositiveInt | None = None          # FLUX's CLIP-L text encoder: 12


Offload = Literal["none", "model", "sequential"]
# torch.compile of the FLUX transformer (facerefine.weights.flux.compile_flux): none (eager),
# blocks (regional: one graph per repeated block class) or full (the whole transformer, one graph).
FluxCompile = Literal["none", "blocks", "full"]
FLUX_COMPILE_CHOICES: tuple[str, ...] = get_args(FluxCompile)


def compile_offload_conflict(compile: str, offload: str) -> str | None:
    """Why FLUX ``compile`` cannot run with ``offload``, or None. Offloading moves weights inside
    the forward with accelerate hooks, which a full-graph compile cannot trace: ``sequential``
    hooks every layer (so every block), ``model`` the transformer's own forward (so ``full``)."""
    if compile != "none" and offload == "sequential":
        return (f"compile {compile!r} cannot run with offload 'sequential' (accelerate moves every layer's "
                "weights inside the compiled blocks); use compile 'none'")
    if compile == "full" and offload == "model":
        return "compile 'full' cannot run with offload 'model' (its hook wraps the transformer); use compile 'blocks'"
    return None


class Profile(_Strict):
    num_names: PositiveInt
    num_baseline: NonNegInt
    image_size: PositiveInt
    shard_size: PositiveInt
    batch_size: PositiveInt
    dtype: Dtype
    face_detector: str = Field(min_length=1)  # DeepFace detector_backend; "skip" needs no weights
    # GPU memory: diffusers' enable_model_cpu_offload ("model") or enable_sequential_cpu_offload
    # ("sequential") for FLUX; see README, "GPU memory". Ignored on a CPU.
    offload: Offload = "none"
    # torch.compile of FLUX wherever the profile's FLUX runs: generate_schnell, refine_dev,
    # evaluate's LoRA row, the benchmark, benchmarks/stage_throughput.py, and `facerefine
    # generate` and the demo inside a project. It changes float bits (README, "Speed on a GPU").
    compile: FluxCompile = "none"
    # Rehearsal only: cap on denoising steps (time, not memory or shapes); null = the paper's steps.
    max_steps: PositiveInt | None = None
    random_depth: RandomDepth = RandomDepth()
    models: ModelIds
    unet: UnetScale
    cyclegan: CycleScale
    bench: BenchScale

    @model_validator(mode="after")
    def _compile_with_offload(self) -> "Profile":
        conflict = compile_offload_conflict(self.compile, self.offload)
        if conflict:
            raise ValueError(conflict)
        return self

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        if v % IMAGE_SIZE_MULTIPLE:
            raise ValueError(f"must be a multiple of {IMAGE_SIZE_MULTIPLE} (got {v})")
        return v


class DiversityParams(_Strict):
    tsne_perplexity: Annotated[float, Field(gt=0)]  # clamped below the sample count
    # t-SNE time and memory grow with N: more faces than this are sampled, stratified by set.
    # At least 3, the fewest points t-SNE maps (analysis.tsne.MIN_POINTS).
    tsne_max_points: Annotated[int, Field(ge=3)] = 10_000
    batch_size: PositiveInt


# CLIP-IQA recipes (metrics/clip_iqa.py): ``original`` is Wang et al.'s as piq implements it
# (and torchmetrics' default ``clip_iqa`` reproduces): CLIP ResNet-50, full-resolution input,
# no positional embedding. ``vit-b16``: CLIP ViT-B/16 through its processor (224² resize + crop).
ClipIqaRecipe = Literal["original", "vit-b16"]


class EvaluateParams(_Strict):
    kid_subset_size: PositiveInt       # clamped to the test-set size
    kid_subsets: PositiveInt
    clip_iqa_prompts: list[str] = Field(min_length=1)  # torchmetrics' pair names (metrics/clip_iqa.PROMPT_PAIRS)
    clip_iqa: ClipIqaRecipe = "original"  # the network is profiles.<p>.models.clip_iqa
    batch_size: PositiveInt
    grid_subjects: PositiveInt         # rows of the sample grid (Figs. 1, 7)
    # Heads evaluated (Table 4 rows); each must exist in models/heads/. Leave one out to
    # evaluate without it.
    heads: list[Literal["unet", "cyclegan", "esa"]] = ["unet", "cyclegan", "esa"]

    @field_validator("heads")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"lists a head twice (got {v})")
        return v


class BenchShared(_Strict):
    # torch.compile the heads (auto: on CUDA); timed beside eager, the compiling call kept out of the stats
    compile: bool | Literal["auto"]
    channels_last: bool
    dev_steps: list[PositiveInt] = Field(min_length=1)  # dev is timed at each (paper 50, diffusers' t2i 28)
    headline_dev_steps: PositiveInt                     # the one the headline saving is against

    @model_validator(mode="after")
    def _headline_is_timed(self) -> "BenchShared":
        if self.headline_dev_steps not in self.dev_steps:
            raise ValueError(f"headline_dev_steps {self.headline_dev_steps} must be one of dev_steps {self.dev_steps}")
        if len(set(self.dev_steps)) != len(self.dev_steps):
            raise ValueError(f"dev_steps must not repeat a value (got {self.dev_steps})")
        return self


class UnetParams(_Strict):
    lr: Annotated[float, Field(gt=0, lt=1)]
    patience: PositiveInt                  # epochs without val improvement before stopping
    structure_loss: Literal["grad", "l1"]  # Eq. 1 uses GRAD; the paper saw L1 behave the same
    # Decoder upsampling (README, "Deviations and assumptions"): nearest + conv (ours, no
    # checkerboard) or transposed conv (the paper's likely choice: its "net-like patterns").
    upsample: Literal["nearest", "transpose"] = "nearest"


class CycleGrid(_Strict):
    variant: list[Literal["cyclegan", "esa"]] = Field(min_length=1)
    lambda_cyc: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    lr: list[Annotated[float, Field(gt=0, lt=1)]] = Field(min_length=1)


class CycleParams(_Strict):
    grid: CycleGrid
    lambda_identity: Annotated[float, Field(ge=0)]  # multiplier of lambda_cyc as in CycleGAN; 0 = the paper's Eq. 3
    pool_size: NonNegInt
    beta1: Annotated[float, Field(ge=0, lt=1)]
    esa_placement: str                               # models/rules.py: ESA_PLACEMENTS
    ssim_fail: Fraction                              # cycle SSIM below this flags a failed run (§5.2)


    @field_validator("esa_placement")
    @classmethod
    def _known_placement(cls, v: str) -> str:
        return rules.check_esa_placement(v)


class Params(_Strict):
    profile: str
    seed: NonNegInt
    prompts: PromptsParams
    schnell: SchnellParams
    dev: DevParams
    diversity: DiversityParams
    unet: UnetParams
    cyclegan: CycleParams
    evaluate: EvaluateParams
    bench: BenchShared
    profiles: dict[str, Profile] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_profile(self) -> "Params":
        if self.profile not in self.profiles:
            raise ValueError(
                f"profile: unknown profile '{self.profile}'; choose one of {', '.join(sorted(self.profiles))}"
            )
        return self

    @model_validator(mode="after")
    def _fractions_fit_train_split(self) -> "Params":
        # data_fraction is a share of the whole dataset (the paper's "20% subset of the entire
        # dataset"), drawn from the train split, so it cannot exceed the train split's share.
        bad = [f"profiles.{name}.{head}.data_fraction {getattr(prof, head).data_fraction:g}"
               for name, prof in self.profiles.items() for head in ("unet", "cyclegan")
               if getattr(prof, head).data_fraction > self.prompts.split.train + 1e-9]
        if bad:
            raise ValueError(f"{'; '.join(bad)}: a fraction of the whole dataset, drawn from the train split, "
                             f"must be at most prompts.split.train = {self.prompts.split.train:g}")
        return self

    @model_validator(mode="after")
    def _esa_fits(self) -> "Params":
        # The ESA head needs a 15x15 trunk: every profile that trains it must feed big enough images.
        if "esa" in self.cyclegan.grid.variant:
            least = rules.generator_min_size(self.cyclegan.esa_placement)
            for name, profile in self.profiles.items():
                if profile.cyclegan.image_size < least:
                    raise ValueError(f"profiles.{name}.cyclegan.image_size: {profile.cyclegan.image_size} is below "
                                     f"the ESA generator's minimum of {least} px (drop 'esa' from "
                                     "cyclegan.grid.variant or raise the size)")
        return self

    @property
    def scale(self) -> Profile:
        """The active profile's scale knobs."""
        return self.profiles[self.profile]

    @property
    def names_file(self) -> Path:
        """The active profile's IMDb file: ``data/names/<profile>/name.basics.tsv(.gz)``."""
        folder = NAMES_ROOT / self.profile
        for name in NAMES_FILES:
            if (folder / name).is_file():
                return folder / name
        raise ParamsError(
            f"profile '{self.profile}': no IMDb names file in {folder}/ (expected one of {', '.join(NAMES_FILES)}); "
            "see README, 'The IMDb names file'")

    @property
    def schnell_run(self) -> SchnellParams:
        """schnell's knobs with the profile's step cap applied (what generation runs)."""
        return _capped(self.schnell, self.scale.max_steps)

    @property
    def dev_run(self) -> DevParams:
        """dev's knobs with the profile's step cap applied (what generation runs)."""
        return _capped(self.dev, self.scale.max_steps)

    @property
    def is_smoke(self) -> bool:
        """The profile's *name* is smoke. Banners do not use this: banners.standin_networks."""
        return self.profile == SMOKE


def _capped(knobs, cap: int | None):
    return knobs if cap is None or knobs.steps <= cap else knobs.model_copy(update={"steps": cap})


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or "(got" in msg else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, source=str(path))


def loggable(params: Params) -> dict:
    """Params as a plain dict with only the active profile (what a run actually used)."""
    data = params.model_dump(mode="json")
    data["profiles"] = {params.profile: data["profiles"][params.profile]}
    return data
