"""params.yaml validation: bad values stop a stage with the key and the allowed range."""

import copy

import pytest
import yaml

from facerefine.config import ParamsError, load_params, parse_params

BASE = yaml.safe_load(open("params.yaml", encoding="utf-8"))


def with_change(path, value):
    raw = copy.deepcopy(BASE)
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return raw


def test_repo_params_are_valid_and_smoke_is_default():
    params = load_params("params.yaml")
    assert params.profile == "smoke" and params.is_smoke
    assert params.dev.strength == 0.7 and params.dev.guidance == 3.0 and params.dev.steps == 50
    paper = params.profiles["paper"]
    assert paper.image_size == 512 and paper.models.dev == "black-forest-labs/FLUX.1-dev"


@pytest.mark.parametrize("path,value,message", [
    ("dev.strength", 1.5, r"dev\.strength: Input should be less than or equal to 1"),
    ("dev.strength", 0.0, r"dev\.strength: Input should be greater than 0"),
    ("profiles.smoke.image_size", 60, r"profiles\.smoke\.image_size: must be a multiple of 16 \(got 60\)"),
    ("profiles.smoke.num_names", -5, r"profiles\.smoke\.num_names: Input should be greater than 0"),
    ("profiles.smoke.batch_size", "eight", r"profiles\.smoke\.batch_size: Input should be a valid integer"),
    ("profile", "huge", r"profile: unknown profile 'huge'; choose one of paper, rehearsal, smoke"),
    ("prompts.template", "A portrait", r"prompts\.template: must contain the '\{name\}' placeholder"),
    ("prompts.split.train", 0.9, r"prompts\.split: train \+ val \+ test must sum to 1"),
    ("schnell.stepz", 4, r"schnell\.stepz: Extra inputs are not permitted"),
])
def test_bad_values_name_the_key(path, value, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(with_change(path, value))


def test_head_size_rules_come_from_the_models():
    """config asks models/rules.py, which the model classes use: the ESA minimum and placements too."""
    from facerefine.models.cyclegan import ResnetGenerator
    from facerefine.models.resunet_cbam import ResUNetCBAM

    multiple = ResUNetCBAM(base_channels=4, depth=6).size_multiple
    with pytest.raises(ParamsError, match=rf"must be a multiple of 2\^\(depth-1\) = {multiple}"):
        parse_params(with_change("profiles.smoke.unet.image_size", multiple + 2))
    least = ResnetGenerator(ngf=4, n_blocks=1, esa="trunk").min_size
    raw = with_change("profiles.smoke.cyclegan.image_size", least - 4)
    with pytest.raises(ParamsError, match=rf"profiles\.smoke\.cyclegan\.image_size: {least - 4} is below .*{least} px"):
        parse_params(raw)
    raw["cyclegan"]["grid"]["variant"] = ["cyclegan"]  # no ESA head trained: the plain generator fits
    parse_params(raw)
    with pytest.raises(ParamsError, match=r"cyclegan\.esa_placement: .*one of \('blocks', 'trunk'\)"):
        parse_params(with_change("cyclegan.esa_placement", "everywhere"))


def test_every_error_is_reported_at_once():
    raw = with_change("dev.strength", 2)
    raw["profiles"]["smoke"]["image_size"] = 33
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert "dev.strength" in str(err.value) and "profiles.smoke.image_size" in str(err.value)


def test_unreadable_params_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: [unclosed", encoding="utf-8")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


def test_missing_names_file_is_a_params_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_params(BASE)
    with pytest.raises(ParamsError, match=r"no IMDb names file in data/names/smoke/"):
        params.names_file
