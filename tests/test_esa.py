"""Enhanced Spatial Attention: a gate in (0, 1) of the input's shape."""

from __future__ import annotations

import pytest
import torch

from facerefine.models.esa import ESA, MIN_SIZE


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_same_shape_and_gates_the_input() -> None:
    esa = ESA(16)
    x = torch.randn(2, 16, 32, 32)
    y = esa(x)
    gate = esa.gate(x)
    assert y.shape == x.shape and gate.shape == x.shape
    assert not torch.allclose(y, x)
    assert gate.min() > 0 and gate.max() < 1
    torch.testing.assert_close(y, x * gate)
    assert gate.std() > 0  # spatially varying, not a constant scale


def test_gate_uses_wide_context() -> None:
    # A change in one corner moves the gate in the opposite corner (through the pooled branch).
    esa = ESA(8)
    x = torch.randn(1, 8, 32, 32)
    x2 = x.clone()
    x2[..., :4, :4] += 5
    far = (esa.gate(x2) - esa.gate(x))[..., -4:, -4:]
    assert far.abs().max() > 1e-6


def test_smallest_supported_sizes() -> None:
    assert MIN_SIZE == 15
    esa = ESA(8)
    for h, w in [(15, 15), (16, 16), (15, 40)]:
        assert esa(torch.randn(1, 8, h, w)).shape == (1, 8, h, w)


@pytest.mark.parametrize(("h", "w"), [(14, 14), (14, 32), (32, 8)])
def test_clear_error_below_minimum(h: int, w: int) -> None:
    with pytest.raises(ValueError, match=rf"at least 15x15 .*got {h}x{w}"):
        ESA(8)(torch.randn(1, 8, h, w))


def test_reduction_and_parameter_count() -> None:
    esa = ESA(256, reduction=4)  # f = 64: 3 1x1 convs + 4 3x3 convs
    expected = (256 * 64 + 64) + (64 * 64 + 64) + 4 * (64 * 64 * 9 + 64) + (64 * 256 + 256)
    assert sum(p.numel() for p in esa.parameters()) == expected == 184_960
    with pytest.raises(ValueError):
        ESA(2, reduction=4)


def test_gradients_reach_every_parameter() -> None:
    esa = ESA(32)  # f = 8: with very few channels all low-res ReLUs can be dead by chance
    esa(torch.randn(2, 32, 24, 24)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in esa.parameters())
