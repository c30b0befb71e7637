"""Learning test: the head with the paper's loss (Eq. 1) learns a synthetic refinement.

Task: y are smooth random colour images (the "dev" targets); x = the same
images after a tone curve (gamma 1.6, darker mid-tones) and a warm colour tint
(the "schnell" inputs). This is the kind of gap Eq. 1 is built for: structure
is kept (GRAD(x, z) ties edges to the input) while appearance moves towards the
target (LPIPS(y, z)). A blur → sharp task would fight the GRAD term, which by
design keeps the input's (blurred) gradients.

lr is 3e-3 instead of the paper's 5e-5: the paper trains for thousands of
steps at 512²; here a tiny head must move visibly in 30 steps.
"""

from __future__ import annotations

import lpips
import torch
import torch.nn.functional as F

from facerefine.losses import unet_loss
from facerefine.models.resunet_cbam import ResUNetCBAM

SIZE = 32  # smallest size the AlexNet LPIPS backbone accepts comfortably
STEPS = 30
BATCH = 4
LR = 3e-3
MARGIN = 0.30  # required relative improvement


def smooth_images(n: int, gen: torch.Generator) -> torch.Tensor:
    """Random colour fields: 4x4 noise upsampled bicubically to SIZE², in [-1, 1]."""
    low = torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1
    return F.interpolate(low, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(-1, 1)


def degrade(y: torch.Tensor) -> torch.Tensor:
    tint = torch.tensor([0.08, 0.0, -0.08]).view(1, 3, 1, 1)
    return (((y + 1) / 2) ** 1.6 * 2 - 1 + tint).clamp(-1, 1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """(Eq. 1 loss, L1 to the target) on a whole set."""
    z = model(x)
    loss, _ = unet_loss(x, y, z, net)
    return loss.item(), (z - y).abs().mean().item()


def test_head_learns_tone_and_colour_correction() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    y_train, y_test = smooth_images(16, gen), smooth_images(8, gen)
    x_train, x_test = degrade(y_train), degrade(y_test)
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval().requires_grad_(False)
    model = ResUNetCBAM(base_channels=8, depth=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    train_before, _ = evaluate(model, net, x_train, y_train)
    test_loss_before, test_l1_before = evaluate(model, net, x_test, y_test)
    for _ in range(STEPS):
        idx = torch.randint(0, len(x_train), (BATCH,), generator=gen)
        x, y = x_train[idx], y_train[idx]
        loss, _ = unet_loss(x, y, model(x), net)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_after, _ = evaluate(model, net, x_train, y_train)
    test_loss_after, test_l1_after = evaluate(model, net, x_test, y_test)

    print(
        f"train loss {train_before:.4f} -> {train_after:.4f}; "
        f"held-out loss {test_loss_before:.4f} -> {test_loss_after:.4f}; "
        f"held-out L1 {test_l1_before:.4f} -> {test_l1_after:.4f}"
    )
    assert train_after < (1 - MARGIN) * train_before
    assert test_loss_after < (1 - MARGIN) * test_loss_before
    assert test_l1_after < (1 - MARGIN) * test_l1_before
