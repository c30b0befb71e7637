"""Shapes, sizes and parameter counts of the CycleGAN generator and PatchGAN."""

from __future__ import annotations

import json

import pytest
import torch

from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.factory import count_parameters
from facerefine.models.patchgan import PatchDiscriminator, patch_output_size

# Parameter counts for ngf/ndf 64, 9 blocks / 3 layers. The plain ones equal
# the reference CycleGAN ("resnet_9blocks", "basic" D, instance norm).
PLAIN_G_PARAMS = 11_378_179
ESA_BLOCKS_G_PARAMS = 13_042_819  # + 9 ESA(256) of 184,960 each
ESA_TRUNK_G_PARAMS = 11_563_139  # + 1 ESA(256)
PATCH_D_PARAMS = 2_764_737


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_plain_generator_has_reference_parameter_count() -> None:
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=9)) == PLAIN_G_PARAMS


@pytest.mark.parametrize(("esa", "expected"), [("blocks", ESA_BLOCKS_G_PARAMS), ("trunk", ESA_TRUNK_G_PARAMS)])
def test_esa_generator_parameter_count(esa: str, expected: int) -> None:
    n = count_parameters(ResnetGenerator(ngf=64, n_blocks=9, esa=esa))
    print(f"ESA ({esa}) generator, ngf 64, 9 blocks: {n:,} parameters")
    assert n == expected


def test_discriminator_parameter_count() -> None:
    assert count_parameters(PatchDiscriminator(ndf=64, n_layers=3)) == PATCH_D_PARAMS


@pytest.mark.parametrize("esa", [None, "blocks", "trunk"])
@pytest.mark.parametrize("size", [64, 96])
def test_generator_keeps_size_and_range(esa: str | None, size: int) -> None:
    g = ResnetGenerator(ngf=4, n_blocks=2, esa=esa)
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1  # tanh output
    assert not torch.allclose(y[0], y[1])  # depends on the input


def test_generator_in_out_channels() -> None:
    g = ResnetGenerator(in_channels=1, out_channels=3, ngf=4, n_blocks=1)
    assert g(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_generator_size_limits() -> None:
    plain, esa = ResnetGenerator(ngf=4, n_blocks=1), ResnetGenerator(ngf=4, n_blocks=1, esa="blocks")
    assert plain.size_multiple == esa.size_multiple == 4
    assert plain.min_size == 8 and esa.min_size == 60
    assert plain(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    assert esa(torch.zeros(1, 3, 60, 60)).shape == (1, 3, 60, 60)
    with pytest.raises(ValueError, match="at least 60, got 56x56"):
        esa(torch.zeros(1, 3, 56, 56))
    with pytest.raises(ValueError, match="multiples of 4 and at least 8, got 62x64"):
        plain(torch.zeros(1, 3, 62, 64))


def test_generator_config_round_trips_through_json() -> None:
    g = ResnetGenerator(ngf=4, n_blocks=2, esa="trunk")
    rebuilt = ResnetGenerator.from_config(json.loads(json.dumps(g.config())))
    rebuilt.load_state_dict(g.state_dict())  # strict: same architecture
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(rebuilt(x), g(x))
    with pytest.raises(ValueError, match="unknown"):
        ResnetGenerator.from_config({**g.config(), "dropout": True})
    with pytest.raises(ValueError, match="esa"):
        ResnetGenerator(esa="everywhere")  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "side"), [(64, 6), (256, 30), (24, 1)])
def test_discriminator_output_map(size: int, side: int) -> None:
    d = PatchDiscriminator(ndf=4)
    assert patch_output_size(size) == side
    assert d(torch.zeros(2, 3, size, size)).shape == (2, 1, side, side)


def test_discriminator_refuses_too_small_inputs() -> None:
    d = PatchDiscriminator(ndf=4)
    assert d.min_size == 24
    with pytest.raises(ValueError, match="at least 24x24, got 16x16"):
        d(torch.zeros(1, 3, 16, 16))
