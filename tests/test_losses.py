"""Pairwise-head losses (paper Eq. 1) and the image metrics reported with them."""

from __future__ import annotations

import math

import lpips
import pytest
import torch

from facerefine.losses import gradient_loss, l1_loss, lpips_loss, unet_loss
from facerefine.metrics.image import MAX_PSNR_DB, psnr, ssim


@pytest.fixture(scope="module")
def lpips_net() -> torch.nn.Module:
    # Random AlexNet backbone; the linear heads ship inside the lpips wheel: no download.
    torch.manual_seed(0)
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    return net.eval().requires_grad_(False)


@pytest.fixture()
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1, torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1


# --- gradient loss -----------------------------------------------------------


def test_gradient_loss_is_zero_for_identical_images_and_positive_otherwise(images) -> None:
    x, z = images
    assert gradient_loss(x, x.clone()).item() == 0.0
    assert gradient_loss(x, z).item() > 0.0


def test_gradient_loss_uses_forward_differences() -> None:
    # One bright pixel in the corner: the vertical differences are [-1, 0] and the
    # horizontal ones [-1], [0]; each term averages to 0.5, and so does the loss.
    x = torch.zeros(1, 1, 2, 2)
    z = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert gradient_loss(x, z).item() == pytest.approx(0.5)


def test_gradient_loss_ignores_intensity_shifts_but_sees_misalignment(images) -> None:
    x, _ = images
    # A per-channel brightness/colour shift keeps every edge: no structural loss.
    shift = torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)
    assert gradient_loss(x, x + shift).item() < 1e-6
    # Moving both images together (a joint flip, exact for absolute differences)
    # does not change the loss.
    z = x.roll(1, dims=-1)
    assert gradient_loss(x.flip(-1, -2), z.flip(-1, -2)).item() == pytest.approx(gradient_loss(x, z).item())
    # Moving one against the other by one pixel is a structural change.
    assert gradient_loss(x, z).item() > 0.1


def test_per_image_reduction_matches_the_mean(images) -> None:
    x, z = images
    per_image = gradient_loss(x, z, reduction="none")
    assert per_image.shape == (2,)
    assert per_image.mean().item() == pytest.approx(gradient_loss(x, z).item())
    with pytest.raises(ValueError, match="reduction"):
        gradient_loss(x, z, reduction="sum")  # type: ignore[arg-type]


# --- LPIPS and Eq. 1 -----------------------------------------------------------


def test_lpips_loss_is_zero_for_identical_images(lpips_net, images) -> None:
    x, z = images
    assert lpips_loss(lpips_net, x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert lpips_loss(lpips_net, x, z).item() > 0.0
    assert lpips_loss(lpips_net, x, z, reduction="none").shape == (2,)


@pytest.mark.parametrize("structure", ["grad", "l1"])
def test_unet_loss_parts_add_up(lpips_net, images, structure: str) -> None:
    x, y = images
    z = (x + y) / 2
    total, parts = unet_loss(x, y, z, lpips_net, structure=structure)
    assert set(parts) == {"structure", "lpips"}
    assert total.item() == pytest.approx(parts["structure"].item() + parts["lpips"].item())
    expected_structure = gradient_loss(x, z) if structure == "grad" else l1_loss(x, z)
    assert parts["structure"].item() == pytest.approx(expected_structure.item())
    assert parts["lpips"].item() == pytest.approx(lpips_loss(lpips_net, y, z).item())
    assert not parts["lpips"].requires_grad


def test_unet_loss_backpropagates_into_the_output(lpips_net, images) -> None:
    x, y = images
    z = x.clone().requires_grad_()
    total, _ = unet_loss(x, y, z, lpips_net)
    total.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_unet_loss_rejects_unknown_structure_term(lpips_net, images) -> None:
    x, y = images
    with pytest.raises(ValueError, match="'grad' or 'l1'"):
        unet_loss(x, y, x, lpips_net, structure="sobel")  # type: ignore[arg-type]


# --- SSIM / PSNR on [-1, 1] -----------------------------------------------------


def test_psnr_known_value_and_cap(images) -> None:
    y = images[0].clamp(-0.8, 0.8)
    # MSE 0.01 with a peak-to-peak range of 2: 10 * log10(4 / 0.01) dB.
    assert psnr(y + 0.1, y).item() == pytest.approx(10 * math.log10(400), rel=1e-5)
    assert psnr(y, y).item() == pytest.approx(MAX_PSNR_DB)


def test_ssim_is_one_for_identical_images_and_drops_with_noise(images) -> None:
    y = images[0]
    assert ssim(y, y).item() == pytest.approx(1.0, abs=1e-5)
    noisy = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    assert ssim(noisy, y).item() < 0.9
    assert ssim(noisy, y, reduction="none").shape == (2,)


def test_load_lpips_gives_a_frozen_net_with_the_spec_backbone(tmp_path) -> None:
    """The stand-in's AlexNet weights reach LPIPS's slices, and the net is frozen for the loss."""
    import torchvision
    from safetensors.torch import save_file

    from facerefine.weights.lpips import load_lpips

    torch.manual_seed(3)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    save_file({k: v.contiguous() for k, v in features.items()}, str(tmp_path / "alex.safetensors"))
    net = load_lpips(str(tmp_path / "alex.safetensors"))
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(getattr(net.net.slice1, "0").weight, features["0.weight"])  # children keep AlexNet's indices
    assert torch.equal(getattr(net.net.slice5, "10").weight, features["10.weight"])
    x = torch.zeros(1, 3, 32, 32)
    assert lpips_loss(net, x, x).item() == pytest.approx(0.0, abs=1e-7)
