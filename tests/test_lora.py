"""The LoRA row loads the named file of a folder that holds several (issue 13, item 2)."""

import pytest
import torch
from safetensors.torch import load_file

from facerefine.weights import flux, lora

FILES = ("realism_a.safetensors", "realism_b.safetensors")


@pytest.fixture(scope="module")
def two_file_lora(tmp_path_factory):
    """A stand-in LoRA folder with two .safetensors files of different random values, as a
    hub repository holding two versions."""
    folder = tmp_path_factory.mktemp("lora")
    lora._build_lora_standin(folder, files=FILES)
    return folder


def loaded_lora_state(transformer) -> dict[str, torch.Tensor]:
    """The transformer's LoRA matrices under the file's key names
    (``transformer.<module>.lora_A.weight``), whatever the adapter is called."""
    out = {}
    for name, param in transformer.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            module, ab, _adapter, leaf = name.rsplit(".", 3)
            out[f"transformer.{module}.{ab}.{leaf}"] = param.detach()
    return out


def test_standin_folder_holds_two_different_files(two_file_lora):
    assert lora.lora_files(str(two_file_lora)) == sorted(FILES)
    a, b = (load_file(two_file_lora / f) for f in FILES)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", FILES)
def test_the_named_file_is_the_one_loaded(two_file_lora, name):
    pipe = flux.load_flux("smoke", "schnell")
    assert lora.load_lora(pipe, str(two_file_lora), name) == name
    expected = load_file(two_file_lora / name)
    loaded = loaded_lora_state(pipe.transformer)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key].float(), value.float(), msg=key)


def test_wrong_name_is_a_clear_error_listing_the_files(two_file_lora):
    with pytest.raises(FileNotFoundError, match=r"'realism_c.safetensors' is not among .*realism_a.safetensors, "
                                                r"realism_b.safetensors"):
        lora.lora_weight_file(str(two_file_lora), "realism_c.safetensors")


def test_no_name_with_two_files_is_an_error_not_a_guess(two_file_lora):
    with pytest.raises(FileNotFoundError, match=r"holds 2 .safetensors files .*set models.lora_weight_name"):
        lora.lora_weight_file(str(two_file_lora), None)


def test_no_name_with_one_file_takes_it(tmp_path, two_file_lora):
    (tmp_path / "only.safetensors").write_bytes((two_file_lora / FILES[0]).read_bytes())
    assert lora.lora_weight_file(str(tmp_path), None) == (str(tmp_path), "only.safetensors")


def test_offline_hub_id_needs_a_cached_named_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="name the file in models.lora_weight_name"):
        lora.lora_weight_file("someone/not-a-local-folder", None)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        lora.lora_weight_file("someone/not-a-local-folder", "x.safetensors")


def test_smoke_standin_has_two_files_and_the_params_name_one():
    from facerefine.config import load_params

    models = load_params().profiles["smoke"].models
    location = lora.lora_location("smoke")
    assert lora.lora_files(location) == list(lora.LORA_STANDIN_FILES)
    assert lora.lora_weight_file(models.lora, models.lora_weight_name) == (location, models.lora_weight_name)
