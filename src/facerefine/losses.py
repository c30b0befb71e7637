"""Loss functions, all pure: tensors in, scalar tensor out.

Images are NCHW tensors in [-1, 1]. GAN losses follow LSGAN (Mao et al.), as in
the reference CycleGAN code: the discriminator regresses 1 for real and 0 for
fake, the generator pushes fakes towards 1.

The pairwise head's losses (paper Eq. 1) take ``reduction="none"`` to return one
value per image (shape ``(N,)``), which validation needs to average exactly
across processes; the default ``"mean"`` gives the scalar to backpropagate.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from facerefine.metrics.image import Reduction, reduce_per_image
StructureLoss = Literal["grad", "l1"]


def lsgan_d_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Discriminator loss, halved as in CycleGAN so D learns slower than G."""
    real = F.mse_loss(real_pred, torch.ones_like(real_pred))
    fake = F.mse_loss(fake_pred, torch.zeros_like(fake_pred))
    return 0.5 * (real + fake)


def lsgan_g_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Generator's adversarial loss: make D call the fake real."""
    return F.mse_loss(fake_pred, torch.ones_like(fake_pred))


def cycle_loss(x: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """L1 between an image and its full cycle F(G(x)); weighted by λ_cyc by the caller."""
    return F.l1_loss(reconstructed, x)


def identity_loss(x: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """L1 between a target-domain image and the generator applied to it (G(y) ≈ y)."""
    return F.l1_loss(mapped, x)


def image_gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward finite differences ``(d/dy, d/dx)`` of an NCHW image, per channel.

    Shapes are (N, C, H-1, W) and (N, C, H, W-1): no padding, so image borders
    add no artificial edges.
    """
    return img[..., 1:, :] - img[..., :-1, :], img[..., :, 1:] - img[..., :, :-1]


def gradient_loss(x: torch.Tensor, z: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """GRAD(x, z): L1 between the finite-difference gradients of ``x`` and ``z``.

    The mean of the vertical and horizontal terms, each averaged over its
    elements, so it is on the scale of a per-pixel L1. Zero iff ``z`` differs
    from ``x`` by a per-channel constant: it constrains structure (edges), not
    colour or brightness, which are left to the perceptual term.
    """
    x_dy, x_dx = image_gradients(x)
    z_dy, z_dx = image_gradients(z)
    per_image = 0.5 * (
        (x_dy - z_dy).abs().mean(dim=(1, 2, 3)) + (x_dx - z_dx).abs().mean(dim=(1, 2, 3))
    )
    return reduce_per_image(per_image, reduction)


def l1_loss(x: torch.Tensor, z: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Per-pixel L1 between ``x`` and ``z`` (the paper's alternative structure term)."""
    return reduce_per_image((x - z).abs().mean(dim=(1, 2, 3)), reduction)


def lpips_loss(
    lpips_net: torch.nn.Module, y: torch.Tensor, z: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """LPIPS(y, z) from an ``lpips.LPIPS`` module; both images in [-1, 1].

    The module is used as given: the caller keeps it in eval mode and frozen
    (its dropout layers are active in train mode).
    """
    return reduce_per_image(lpips_net(y, z).reshape(y.shape[0]), reduction)


def unet_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    lpips_net: torch.nn.Module,
    structure: StructureLoss = "grad",
    reduction: Reduction = "mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Paper Eq. 1: ``GRAD(x, z) + LPIPS(y, z)``, or ``L1(x, z) + LPIPS(y, z)``.

    ``x`` is the input (schnell) image, ``y`` the target (dev) image and ``z``
    the head's output. The structure term ties ``z`` to the input because the
    pairs are not pixel-aligned; the perceptual term pulls it towards the target.

    Returns ``(total, parts)``: ``parts`` maps ``"structure"`` and ``"lpips"`` to
    detached tensors with the same shape as ``total`` (tensors, not floats, so a
    training loop does not sync the device every step); ``total`` is their sum.
    """
    if structure == "grad":
        structure_term = gradient_loss(x, z, reduction)
    elif structure == "l1":
        structure_term = l1_loss(x, z, reduction)
    else:
        raise ValueError(f"structure loss must be 'grad' or 'l1', got {structure!r}")
    perceptual = lpips_loss(lpips_net, y, z, reduction)
    total = structure_term + perceptual
    return total, {"structure": structure_term.detach(), "lpips": perceptual.detach()}
