"""Stage `evaluate`: a bad LoRA file or a missing head stops it before any generation
(issue 13, items 2 and 6)."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from facerefine import evaluation_inputs
from facerefine.config import parse_params
from facerefine.weights import lora

REPO = Path(__file__).resolve().parents[1]
LORA_FILES = ("v1.safetensors", "v2.safetensors")


@pytest.fixture(scope="module")
def evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_stage", REPO / "stages" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    lora._build_lora_standin(folder, files=LORA_FILES)
    return folder


@pytest.fixture
def heads_dir(tmp_path, monkeypatch):
    heads = tmp_path / "heads"
    for name in evaluation_inputs.HEAD_ROWS:
        (heads / name).mkdir(parents=True)
    monkeypatch.setattr(evaluation_inputs.paths, "HEADS", heads)
    return heads


def smoke_params(**changes):
    """params.yaml's smoke profile with ``changes`` applied to its models or to evaluate."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for key, value in changes.items():
        section, field = key.split(".")
        target = raw["profiles"]["smoke"]["models"] if section == "models" else raw[section]
        target[field] = value
    return parse_params(raw)


def no_generation(*args, **kwargs):
    raise AssertionError("generation started before the preflight failed")


@pytest.mark.parametrize("name, message", [
    ("v3.safetensors", r"profiles.smoke.models.lora_weight_name 'v3.safetensors' is not among .*v1.safetensors, "
                       r"v2.safetensors"),
    (None, r"holds 2 .safetensors files \(v1.safetensors, v2.safetensors\); set "
           r"profiles.smoke.models.lora_weight_name"),
])
def test_bad_lora_file_stops_main_before_any_generation(evaluate, lora_folder, heads_dir, monkeypatch, name, message):
    params = smoke_params(**{"models.lora": str(lora_folder), "models.lora_weight_name": name})
    monkeypatch.setattr(evaluate, "load_params", lambda: params)
    for stage_step in ("lora_shards", "pair_batches", "head_set", "topology"):
        monkeypatch.setattr(evaluate, stage_step, no_generation)
    monkeypatch.setattr(evaluate.pd, "read_parquet", no_generation)
    with pytest.raises(FileNotFoundError, match=message):
        evaluate.main()


def test_preflight_passes_with_the_named_file(lora_folder, heads_dir):
    params = smoke_params(**{"models.lora": str(lora_folder), "models.lora_weight_name": "v2.safetensors"})
    assert evaluation_inputs.preflight(params) == ["unet", "cyclegan", "esa"]


def test_missing_head_is_an_error_unless_left_out(heads_dir):
    (heads_dir / "cyclegan").rmdir()
    with pytest.raises(FileNotFoundError, match=r"no head 'cyclegan' in .*heads/.*evaluate.heads"):
        evaluation_inputs.selected_heads(smoke_params())
    assert evaluation_inputs.selected_heads(smoke_params(**{"evaluate.heads": ["esa", "unet"]})) == ["unet", "esa"]


def test_unknown_head_and_repeats_are_params_errors():
    from facerefine.config import ParamsError

    with pytest.raises(ParamsError, match="evaluate.heads"):
        smoke_params(**{"evaluate.heads": ["unet", "pix2pix"]})
    with pytest.raises(ParamsError, match="twice"):
        smoke_params(**{"evaluate.heads": ["unet", "unet"]})


def test_bad_clip_iqa_prompt_fails_the_preflight(heads_dir):
    with pytest.raises(ValueError, match="unknown prompt name 'qualty'"):
        evaluation_inputs.preflight(smoke_params(**{"evaluate.clip_iqa_prompts": ["qualty"]}))
