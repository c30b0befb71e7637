"""The rehearsal profile's machinery: full-width random networks, step cap, offload, VAE tiling."""

import copy

import pytest
import torch
import yaml

from facerefine.config import ParamsError, RandomDepth, parse_params
from facerefine.precision import effective_dtype
from facerefine.weights import flux, lora

BASE = yaml.safe_load(open("params.yaml", encoding="utf-8"))


def params_for(profile: str, **changes):
    raw = copy.deepcopy(BASE)
    raw["profile"] = profile
    raw["profiles"][profile].update(changes)
    return parse_params(raw)


def test_rehearsal_profile_is_paper_sized_with_random_networks():
    params = params_for("rehearsal")
    paper = params.profiles["paper"]
    scale = params.scale
    assert scale.image_size == paper.image_size == 512
    assert (scale.unet.base_channels, scale.unet.depth) == (paper.unet.base_channels, paper.unet.depth)
    assert (scale.cyclegan.ngf, scale.cyclegan.n_blocks) == (paper.cyclegan.ngf, paper.cyclegan.n_blocks)
    from facerefine.config import NETWORK_ROLES

    assert {getattr(scale.models, role) for role in NETWORK_ROLES} == {"random"}
    assert scale.models.lora_weight_name in lora.LORA_STANDIN_FILES  # one of the stand-in LoRA's two files


def test_step_cap_applies_to_what_runs_not_to_the_science_knobs():
    params = params_for("rehearsal", max_steps=2)
    assert params.dev.steps == 50 and params.dev_run.steps == 2
    assert params.schnell_run.steps == 2
    assert params.dev_run.strength == params.dev.strength  # only steps change
    smoke = params_for("smoke")
    assert smoke.scale.max_steps is None and smoke.dev_run == smoke.dev and smoke.schnell_run == smoke.schnell


@pytest.mark.parametrize("key,value,message", [
    ("max_steps", 0, r"profiles\.rehearsal\.max_steps: Input should be greater than 0"),
    ("offload", "disk", r"profiles\.rehearsal\.offload: Input should be 'none', 'model' or 'sequential'"),
    ("random_depth", {"flux_double_blocks": 0}, r"profiles\.rehearsal\.random_depth\.flux_double_blocks"),
    ("random_depth", {"vae_blocks": 2}, r"random_depth\.vae_blocks: Extra inputs are not permitted"),
])
def test_bad_rehearsal_knobs_name_their_key(key, value, message):
    with pytest.raises(ParamsError, match=message):
        params_for("rehearsal", **{key: value})


def test_random_arch_keeps_published_widths_and_cuts_only_depth():
    published = flux.ArchConfigs()
    assert flux.random_arch(RandomDepth()) == published
    cut = flux.random_arch(RandomDepth(flux_double_blocks=1, flux_single_blocks=2, t5_layers=3))
    assert (cut.transformer["num_layers"], cut.transformer["num_single_layers"]) == (1, 2)
    assert cut.t5["num_layers"] == 3 and cut.clip == published.clip and cut.vae == published.vae
    for key in ("num_attention_heads", "attention_head_dim", "joint_attention_dim", "in_channels"):
        assert cut.transformer[key] == published.transformer[key]
    assert cut.t5["d_model"] == 4096 and cut.t5["d_ff"] == 10240
    # What the rehearsal builds: one double + one single block at full width, counted on meta.
    counts = flux.parameter_counts("dev", cut)
    full = flux.parameter_counts("dev")
    assert counts["vae"] == full["vae"] and counts["text_encoder"] == full["text_encoder"]
    assert 0.02 * full["transformer"] < counts["transformer"] < 0.1 * full["transformer"]


def test_depth_tags_name_distinct_folders():
    assert flux.depth_tag(RandomDepth()) == "full"
    assert flux.depth_tag(RandomDepth(flux_double_blocks=1, flux_single_blocks=1, t5_layers=2)) == "d1-s1-t2"
    assert flux.depth_tag(RandomDepth(clip_layers=4)) == "c4"


def test_random_depth_and_compile_enter_the_generation_fingerprint_only_when_they_apply():
    params = params_for("rehearsal", compile="none")
    assert flux.pixel_fingerprint("random", params.scale) == {
        "random_depth": params.scale.random_depth.model_dump()}
    assert flux.pixel_fingerprint("smoke", params.scale) == {}  # eager shards keep their keys
    compiled = params_for("rehearsal", compile="blocks").scale
    assert flux.pixel_fingerprint("smoke", compiled) == {"compile": "blocks"}
    assert flux.pixel_fingerprint("random", compiled) == {
        "random_depth": params.scale.random_depth.model_dump(), "compile": "blocks"}


class FakePipe:
    def __init__(self):
        self.calls = []

    def to(self, device):
        self.calls.append(("to", torch.device(device)))
        return self

    def enable_model_cpu_offload(self, device):
        self.calls.append(("model", torch.device(device)))

    def enable_sequential_cpu_offload(self, device):
        self.calls.append(("sequential", torch.device(device)))


@pytest.mark.parametrize("device,offload,expected", [
    ("cpu", "none", ("to", torch.device("cpu"))),
    ("cpu", "model", ("to", torch.device("cpu"))),          # nothing to offload to
    ("cuda", "none", ("to", torch.device("cuda"))),
    ("cuda", "model", ("model", torch.device("cuda"))),
    ("cuda:1", "sequential", ("sequential", torch.device("cuda:1"))),
])
def test_offload_places_the_pipeline_as_asked(device, offload, expected):
    pipe = FakePipe()
    assert flux.place_pipeline(pipe, device, offload) is pipe
    assert pipe.calls == [expected]


def test_offload_rejects_unknown_modes():
    with pytest.raises(ValueError, match="offload must be none, model or sequential"):
        flux.place_pipeline(FakePipe(), "cuda", "disk")


@pytest.mark.parametrize("size,tiled", [(512, False), (1024, False), (1040, True)])
def test_vae_tiles_only_above_1024(size, tiled):
    pipe = flux.load_flux("smoke", "schnell", image_size=size)
    assert pipe.vae.use_tiling is tiled


def test_cpu_keeps_bfloat16_and_refuses_float16():
    cpu = torch.device("cpu")
    assert effective_dtype("bfloat16", cpu) == "bfloat16"
    with pytest.warns(UserWarning, match="float16"):
        assert effective_dtype("float16", cpu) == "float32"
    assert effective_dtype("float16", torch.device("cuda")) == "float16"


@pytest.mark.parametrize("key, profile_value, explicit, bad", [
    ("offload", "model", "sequential", "disk"),
    ("compile", "blocks", "none", "fast"),  # FLUX compile; outside a project one image runs eager
])
def test_generate_honours_the_profile_setting_and_an_explicit_one(tmp_path, key, profile_value, explicit, bad):
    from facerefine.generate import generate_settings

    raw = copy.deepcopy(BASE)
    raw["profiles"]["smoke"][key] = profile_value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert getattr(generate_settings(params_path=path), key) == profile_value
    assert getattr(generate_settings(params_path=path, **{key: explicit}), key) == explicit
    assert getattr(generate_settings(params_path=tmp_path / "none.yaml"), key) == "none"
    with pytest.raises(ValueError, match=f"{key} must be .*got '{bad}'"):
        generate_settings(params_path=path, **{key: bad})
