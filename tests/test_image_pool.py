"""ImagePool: CycleGAN's history buffer of generated images."""

from __future__ import annotations

import pytest
import torch

from facerefine.train.image_pool import ImagePool


def batch(start: int, n: int = 4) -> torch.Tensor:
    """Images whose every pixel holds their id, so outputs can be traced back."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()


def ids(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0]]


def test_size_zero_is_passthrough() -> None:
    pool = ImagePool(size=0)
    x = batch(0).requires_grad_()
    out = pool.query(x)
    assert ids(out) == ids(x) and len(pool) == 0
    assert not out.requires_grad  # detached: D's loss must not reach G


def test_fills_up_returning_new_images() -> None:
    pool = ImagePool(size=10, seed=0)
    assert ids(pool.query(batch(0))) == [0, 1, 2, 3]
    assert ids(pool.query(batch(4))) == [4, 5, 6, 7]
    assert len(pool) == 8
    # The batch that fills the pool: first two stored and returned, the rest go through the full-pool rule.
    out = ids(pool.query(batch(8)))
    assert out[:2] == [8, 9] and len(pool) == 10


def test_full_pool_mixes_history_and_never_grows() -> None:
    pool = ImagePool(size=8, seed=1)
    pool.query(batch(0, 8))
    swapped = total = 0
    for start in range(100, 2100, 4):
        out = ids(pool.query(batch(start)))
        assert len(out) == 4 and len(pool) == 8
        swapped += sum(got != start + k for k, got in enumerate(out))
        total += 4
    # Each image is swapped for a stored one with probability 1/2 (2000 draws: sd 0.011).
    assert 0.45 < swapped / total < 0.55


def test_old_images_come_from_history() -> None:
    pool = ImagePool(size=4, seed=2)
    pool.query(batch(0))
    seen = set(range(4))
    for start in range(10, 200, 4):
        out = ids(pool.query(batch(start)))
        assert set(out) <= seen | set(range(start, start + 4))
        seen |= set(range(start, start + 4))


def test_same_seed_same_choices_different_seed_differs() -> None:
    def run(seed: int) -> list[int]:
        pool = ImagePool(size=6, seed=seed)
        return [i for s in range(0, 200, 4) for i in ids(pool.query(batch(s)))]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_reseed_replays_choices() -> None:
    a, b = ImagePool(size=4, seed=0), ImagePool(size=4, seed=0)
    for pool in (a, b):
        pool.query(batch(0))
        pool.reseed(42)
    assert [ids(a.query(batch(s))) for s in range(10, 50, 4)] == [ids(b.query(batch(s))) for s in range(10, 50, 4)]


def test_does_not_touch_global_rng() -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    pool = ImagePool(size=2, seed=0)
    for s in range(0, 40, 4):
        pool.query(batch(s))
    assert torch.equal(torch.rand(1), expected)


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError, match="size"):
        ImagePool(size=-1)
