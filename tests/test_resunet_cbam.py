"""ResUNetCBAM and CBAM: shapes, gating, size rule, identity start, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from facerefine.head_folder import write_head_folder
from facerefine.heads import read_head_folder
from facerefine.models.factory import count_parameters
from facerefine.models.resunet_cbam import CBAM, ResUNetCBAM


def _randomise_head(model: ResUNetCBAM) -> None:
    """Give the zero-initialised output conv weights so the head is no longer the identity."""
    with torch.no_grad():
        model.head[-1].weight.normal_(std=0.05)


def test_cbam_keeps_shape_and_gates_input_dependently() -> None:
    torch.manual_seed(0)
    cbam = CBAM(16)
    a, b = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)
    out_a, out_b = cbam(a), cbam(b)
    assert out_a.shape == a.shape
    assert not torch.allclose(out_a, a)
    # The effective gate is the product of two sigmoids: strictly inside (0, 1) ...
    gate_a, gate_b = out_a / a, out_b / b
    assert gate_a.min() > 0 and gate_a.max() < 1
    # ... and it depends on the input, which no fixed per-element scaling would.
    assert (gate_a - gate_b).abs().max() > 1e-3


def test_cbam_with_fewer_channels_than_reduction_has_a_hidden_unit() -> None:
    cbam = CBAM(4, reduction=16)
    assert cbam.channel_gate.mlp[0].out_channels == 1
    assert cbam(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("size", [(64, 64), (32, 96)])
def test_resunet_output_has_input_size_and_range(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = ResUNetCBAM(base_channels=8, depth=6)
    _randomise_head(model)
    x = torch.rand(2, 3, *size) * 2 - 1
    z = model(x)
    assert z.shape == x.shape
    assert z.min() >= -1 and z.max() <= 1
    assert not torch.allclose(z, x, atol=1e-2)


def test_size_multiple_follows_depth() -> None:
    assert ResUNetCBAM(base_channels=4, depth=6).size_multiple == 32
    assert ResUNetCBAM(base_channels=4, depth=3).size_multiple == 4
    assert ResUNetCBAM(base_channels=4, depth=1).size_multiple == 1
    assert ResUNetCBAM.size_multiple_for(6) == 32


def test_bad_size_raises_a_clear_error() -> None:
    model = ResUNetCBAM(base_channels=4, depth=6)
    with pytest.raises(ValueError, match=r"multiples of 32.*48x64"):
        model(torch.zeros(1, 3, 48, 64))


def test_head_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    model = ResUNetCBAM(base_channels=8, depth=3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    # Exact up to the clamp of x to ±(1 - 1e-3) before atanh.
    torch.testing.assert_close(model(x), x, atol=1.1e-3, rtol=0)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = ResUNetCBAM(base_channels=8, depth=3)
    _randomise_head(model)
    model(torch.rand(2, 3, 16, 16) * 2 - 1).square().mean().backward()
    # Left out: the channel gates' MLPs. With channels // 16 = 1 or 2 hidden ReLU
    # units (narrow levels) all of them can be inactive for a whole batch at
    # initialisation, as in any CBAM; those gates then act as fixed scalings.
    silent = [
        name
        for name, p in model.named_parameters()
        if "channel_gate.mlp" not in name and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert silent == []


def test_save_and_load_head_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = ResUNetCBAM(base_channels=8, depth=3, max_channels=16)
    _randomise_head(model)
    write_head_folder(tmp_path / "head", model, name="unet")
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["kind"] == "resunet_cbam" and config["architecture"]["max_channels"] == 16
    loaded = read_head_folder(tmp_path / "head").model
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert ResUNetCBAM.from_config(model.config()).config() == model.config()


def test_load_head_names_what_is_missing(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no head at"):
        read_head_folder(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    with pytest.raises(ValueError, match="unreadable head config"):
        read_head_folder(tmp_path / "broken")


def test_parameter_counts_at_paper_depth() -> None:
    counts = {base: count_parameters(ResUNetCBAM(base_channels=base, depth=6)) for base in (32, 64)}
    print(f"ResUNetCBAM depth 6 parameters: {counts}")
    # Widths are capped at 512, so doubling the base grows the count by far less than 4x.
    assert 10_000_000 < counts[32] < counts[64] < 4 * counts[32]


def test_transposed_upsampling_is_the_original_unets_2x2_stride_2_and_round_trips_its_config():
    """`unet.upsample: transpose` (the paper's likely choice, issue 21) builds ConvTranspose2d
    decoders, starts as the identity like the default, and reloads from its config."""
    import torch

    from facerefine.models.resunet_cbam import ResUNetCBAM

    torch.manual_seed(0)
    net = ResUNetCBAM(base_channels=8, depth=3, upsample="transpose")
    ups = [u.conv for u in net.upsamples]
    assert all(isinstance(c, torch.nn.ConvTranspose2d) and c.kernel_size == (2, 2) and c.stride == (2, 2)
               for c in ups)
    assert all(isinstance(u.conv, torch.nn.Conv2d) and not isinstance(u.conv, torch.nn.ConvTranspose2d)
               for u in ResUNetCBAM(base_channels=8, depth=3).upsamples)
    x = torch.rand(1, 3, 16, 16) * 1.6 - 0.8
    assert torch.allclose(net(x), x, atol=1e-5)
    again = ResUNetCBAM.from_config(net.config())
    assert net.config()["upsample"] == "transpose" and isinstance(again.upsamples[0].conv, torch.nn.ConvTranspose2d)
    with __import__("pytest").raises(ValueError, match="upsample"):
        ResUNetCBAM(base_channels=8, depth=3, upsample="bilinear")
