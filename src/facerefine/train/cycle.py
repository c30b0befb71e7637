"""CycleGAN / ESA-CycleGAN trainer (paper §4.2, §5.2).

Domain A = FLUX.1-schnell portraits, domain B = FLUX.1-dev portraits, sampled
unpaired. G: A -> B (the head we ship), F: B -> A, D_A judges domain A (real
A vs F(b)), D_B judges domain B (real B vs G(a)).

One step, as in the reference CycleGAN code:
  1. generators: L_G = adv + λ_cyc · cycle + λ_cyc · λ_id · identity, with
       adv      = LSGAN(D_B(G(a))) + LSGAN(D_A(F(b)))
       cycle    = |F(G(a)) - a|_1 + |G(F(b)) - b|_1          (paper Eq. 2)
       identity = |G(b) - b|_1 + |F(a) - a|_1                (skipped if λ_id = 0)
     (the discriminators are frozen for this update);
  2. discriminators: halved LSGAN loss on real images vs fakes drawn from an
     ImagePool of past fakes.

The epoch record's ``loss_G`` is the trained objective L_G above (the mean
over the epoch's steps). ``loss_G_eq3`` is the paper's Eq. 3,
adv + λ_cyc · cycle, with no identity term: the "CycleGAN loss" L of Tables
2-3, the best-epoch criterion and what the grid selection compares. With the
default λ_id = 0 (the paper's objective) the two are equal; a run with the
reference CycleGAN's identity term (λ_id = 0.5) is still judged on Eq. 3. ``loss_adv``, ``loss_cycle``
and ``loss_identity`` are the unweighted parts; ``loss_D_A``, ``loss_D_B``
the halved discriminator losses and ``loss_D`` their sum. With ``val_a``,
``ssim_cycle`` and ``val_cycle_l1`` compare held-out A images with F(G(a)).
L grows with λ_cyc, so comparing it across λ_cyc favours small λ_cyc by
construction.

An epoch is one pass of ``zip(loader_a, loader_b)``: it ends when the shorter
loader does. Loaders yield float NCHW batches in [-1, 1] (a bare tensor, a
tuple/list whose first item is the tensor, or a mapping with key "image").

Distributed: everything goes through ``accelerate.Accelerator``, so
``accelerate launch`` gives DDP with no code change (loaders are sharded,
epoch means are averaged over processes, only the main process writes files
and calls ``on_epoch_end``). On a single CPU process the Accelerator wraps
nothing and the loop is plain PyTorch.

Randomness, interrupts, resume and the head format follow ``train/harness.py``:
the initial weights come from ``cfg.seed``; every epoch reseeds python/numpy/
torch and the image pools from (seed, epoch, process). A loader that shuffles
from the global torch RNG (no ``generator=``) therefore sees the same order
after a resume. A and B must be shuffled independently: with identical orders
over a paired dataset, batches would pair up and training would no longer be
unpaired (so this trainer does not use accelerate's seedable sampler).
``checkpoint_dir/last`` is written after every epoch and on SIGINT/SIGTERM
(after the current step; then TrainingInterrupted is raised), with the image
pools' contents and RNG states, so a resumed run, mid-epoch or not, ends with
the weights of an uninterrupted one. The lowest-``loss_G_eq3`` epoch's G goes
to ``checkpoint_dir/best`` and its F to ``checkpoint_dir/best_inverse``, the
last epoch's to ``final`` and ``final_inverse``: head directories
(``save_head``), the epoch record in their ``training.record``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm

from facerefine.losses import cycle_loss, identity_loss, lsgan_d_loss, lsgan_g_loss
from facerefine.metrics.image import ssim
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.rules import DEFAULT_ESA_PLACEMENT, EsaPlacement, check_esa_placement
from facerefine.models.patchgan import PatchDiscriminator
from facerefine.train import harness
from facerefine.train.harness import BEST, FINAL, RNG_KEY, RunCheckpoints, StopRequest, TrainingInterrupted
from facerefine.train.image_pool import ImagePool
from facerefine.train.schedules import linear_decay_scheduler

log = logging.getLogger(__name__)

Variant = Literal["cyclegan", "esa"]
INVERSE = "_inverse"  # suffix of the F (B -> A) head folders beside best/ and final/
CRITERION = "loss_G_eq3"  # the paper's Eq. 3: best epoch, Tables 2-3, grid selection
VARIANTS: tuple[str, ...] = ("cyclegan", "esa")

# Order of the per-step loss vector (summed on device, no host sync per step).
PARTS: tuple[str, ...] = (
    "loss_G",
    "loss_G_eq3",
    "loss_adv",
    "loss_cycle",
    "loss_identity",
    "loss_D",
    "loss_D_A",
    "loss_D_B",
)
# Fields that may change between a run and its resume (extending training,
# runtime switches); any other difference is refused.
RESUMABLE_CHANGES = frozenset({"n_epochs", "n_epochs_decay", "bf16", "channels_last", "progress"})
PROGRESS_EVERY = 25  # steps between progress-bar loss updates (each one syncs the device)


@dataclass(frozen=True)
class CycleConfig:
    """Knobs of one CycleGAN run; defaults are the reference CycleGAN's, except
    the objective and the ESA placement, which are the paper's (Eq. 3, no
    identity term; one ESA module per generator)."""

    variant: Variant = "cyclegan"
    esa_placement: EsaPlacement = DEFAULT_ESA_PLACEMENT  # models/rules.py; "blocks": one per residual block
    lambda_cyc: float = 10.0
    lambda_identity: float = 0.0  # multiplier of lambda_cyc; CycleGAN's reference uses 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100  # at constant lr
    n_epochs_decay: int = 100  # then linear decay
    pool_size: int = 50
    seed: int = 0
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    n_layers_d: int = 3
    bf16: bool = True  # autocast to bf16, on CUDA only
    channels_last: bool = True  # on CUDA only
    progress: bool = True  # tqdm bar on the main process

    def __post_init__(self) -> None:
        def bad(key: str, value: Any, want: str) -> ValueError:
            return ValueError(f"CycleConfig.{key} must be {want}, got {value!r}")

        if self.variant not in VARIANTS:
            raise bad("variant", self.variant, f"one of {VARIANTS}")
        check_esa_placement(self.esa_placement, "CycleConfig.esa_placement")
        for key in ("lambda_cyc", "lambda_identity"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise bad(key, value, "a finite number >= 0")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise bad("lr", self.lr, "in (0, 1)")
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise bad(key, getattr(self, key), "in [0, 1)")
        for key in ("n_epochs", "n_epochs_decay", "pool_size", "n_blocks"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 0):
                raise bad(key, getattr(self, key), "an int >= 0")
        for key in ("ngf", "ndf", "n_layers_d"):
            if not (isinstance(getattr(self, key), int) and getattr(self, key) >= 1):
                raise bad(key, getattr(self, key), "an int >= 1")
        if self.n_epochs + self.n_epochs_decay < 1:
            raise bad("n_epochs + n_epochs_decay", self.n_epochs + self.n_epochs_decay, ">= 1")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def generator(self) -> ResnetGenerator:
        esa = self.esa_placement if self.variant == "esa" else None
        return ResnetGenerator(3, 3, ngf=self.ngf, n_blocks=self.n_blocks, esa=esa)

    def discriminator(self) -> PatchDiscriminator:
        return PatchDiscriminator(3, ndf=self.ndf, n_layers=self.n_layers_d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CycleResult:
    history: list[dict[str, float]]  # one record per completed epoch, oldest first
    best_epoch: int  # 1-based epoch with the lowest loss_G_eq3 (0 if none)
    best_loss_G: float  # that epoch's loss_G_eq3: the paper's L (Eq. 3)
    epochs_completed: int
    start_epoch: int  # epochs already completed when this call began (0 = fresh run)
    initial_val: dict[str, float]  # validate_cycle of the untrained nets ({} without val_a)
    g_ab: ResnetGenerator = field(repr=False)  # A -> B (schnell -> dev), last epoch's weights
    g_ba: ResnetGenerator = field(repr=False)
    checkpoint_dir: Path = Path()


class GeneratorPair(nn.Module):
    """G and F behind one forward, so DDP sees one forward per backward."""

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module) -> None:
        super().__init__()
        self.g_ab = g_ab
        self.g_ba = g_ba

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor, with_identity: bool) -> dict[str, torch.Tensor]:
        # Instance norm works per image, so running G on [a; b] at once is
        # exactly G(a) and G(b): fewer, larger kernels for the identity terms.
        na = real_a.shape[0]
        if with_identity:
            fake_b, idt_b = self.g_ab(torch.cat([real_a, real_b])).split([na, real_b.shape[0]])
            idt_a, fake_a = self.g_ba(torch.cat([real_a, real_b])).split([na, real_b.shape[0]])
        else:
            fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
            idt_a = idt_b = None
        out = {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.g_ba(fake_b), "rec_b": self.g_ab(fake_a)}
        if idt_a is not None:
            out |= {"idt_a": idt_a, "idt_b": idt_b}
        return out


class DiscriminatorPair(nn.Module):
    """D_A and D_B behind one forward (one DDP forward per backward)."""

    def __init__(self, d_a: nn.Module, d_b: nn.Module) -> None:
        super().__init__()
        self.d_a = d_a
        self.d_b = d_b

    def forward(self, images_a: torch.Tensor, images_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d_a(images_a), self.d_b(images_b)


# ---------------------------------------------------------------- pure pieces


def generator_loss(
    adv: torch.Tensor, cycle: torch.Tensor, identity: torch.Tensor, lambda_cyc: float, lambda_identity: float
) -> torch.Tensor:
    """L_G = adv + λ_cyc · cycle + λ_cyc · λ_id · identity (reference CycleGAN weighting)."""
    return adv + lambda_cyc * cycle + lambda_cyc * lambda_identity * identity


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ and that are not allowed to change on resume."""
    keys = (set(saved) | set(current)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def _images(batch: Any, name: str) -> torch.Tensor:
    """The image tensor of a loader batch (tensor, (tensor, ...), or {"image": tensor})."""
    if isinstance(batch, Mapping):
        batch = batch.get("image")
    elif isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or not batch.is_floating_point():
        raise TypeError(
            f"{name} must yield float NCHW image tensors (or (tensor, ...) / {{'image': tensor}}), "
            f"got {type(batch).__name__}{'' if not isinstance(batch, torch.Tensor) else tuple(batch.shape)}"
        )
    return batch


def _check_range(images: torch.Tensor, name: str) -> None:
    lo, hi = images.min().item(), images.max().item()
    if lo < -1.01 or hi > 1.01:
        raise ValueError(f"{name} yielded values in [{lo:.3g}, {hi:.3g}]; images must be scaled to [-1, 1]")


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


# ---------------------------------------------------------------- training


@dataclass
class _Nets:
    g_ab: ResnetGenerator
    g_ba: ResnetGenerator
    d_a: PatchDiscriminator
    d_b: PatchDiscriminator
    gens: nn.Module  # GeneratorPair, possibly DDP-wrapped
    discs: nn.Module  # DiscriminatorPair, possibly DDP-wrapped


def _train_step(
    nets: _Nets,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    pools: tuple[ImagePool, ImagePool],
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    cfg: CycleConfig,
    accelerator: Accelerator,
) -> torch.Tensor:
    """One CycleGAN step; returns the detached loss parts in ``PARTS`` order."""
    with_identity = cfg.lambda_identity > 0
    # 1) G and F. The raw (unwrapped) discriminators score the fakes: their
    # weights are frozen here, and going around DDP keeps its gradient
    # bookkeeping to the discriminator update below.
    _set_requires_grad(nets.discs, False)
    with accelerator.autocast():
        out = nets.gens(real_a, real_b, with_identity)
        adv = lsgan_g_loss(nets.d_b(out["fake_b"])) + lsgan_g_loss(nets.d_a(out["fake_a"]))
        cyc = cycle_loss(real_a, out["rec_a"]) + cycle_loss(real_b, out["rec_b"])
        if with_identity:
            idt = identity_loss(real_b, out["idt_b"]) + identity_loss(real_a, out["idt_a"])
        else:
            idt = torch.zeros((), device=real_a.device)
        loss_g = generator_loss(adv, cyc, idt, cfg.lambda_cyc, cfg.lambda_identity)
    opt_g.zero_grad(set_to_none=True)
    accelerator.backward(loss_g)
    opt_g.step()

    # 2) D_A and D_B on real vs pooled fakes; real and fake go through in one
    # batch per discriminator (instance norm is per image, so this is exact).
    _set_requires_grad(nets.discs, True)
    fake_a = pools[0].query(out["fake_a"]).to(real_a.dtype)
    fake_b = pools[1].query(out["fake_b"]).to(real_b.dtype)
    with accelerator.autocast():
        pred_a, pred_b = nets.discs(torch.cat([real_a, fake_a]), torch.cat([real_b, fake_b]))
        loss_d_a = lsgan_d_loss(*pred_a.split([real_a.shape[0], fake_a.shape[0]]))
        loss_d_b = lsgan_d_loss(*pred_b.split([real_b.shape[0], fake_b.shape[0]]))
        loss_d = loss_d_a + loss_d_b
    opt_d.zero_grad(set_to_none=True)
    accelerator.backward(loss_d)
    opt_d.step()

    loss_eq3 = adv + cfg.lambda_cyc * cyc
    parts = (loss_g, loss_eq3, adv, cyc, idt, loss_d, loss_d_a, loss_d_b)
    return torch.stack([p.detach().float() for p in parts])


@torch.no_grad()
def validate_cycle(
    g_ab: nn.Module,
    g_ba: nn.Module,
    batches: Iterable[Any],
    accelerator: Accelerator,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, float]:
    """Held-out A images vs their full cycle F(G(a)), averaged per image:
    SSIM (the paper's sanity check, §5.2; 11x11 Gaussian window, images mapped
    to [0, 1]) and L1 on the [-1, 1] scale (``val_cycle_l1``)."""
    g_ab.eval()
    g_ba.eval()
    ssim_sum, l1_sum, count = 0.0, 0.0, 0
    try:
        for batch in batches:
            a = _images(batch, "val_a").to(accelerator.device).contiguous(memory_format=memory_format).float()
            with accelerator.autocast():
                rec = g_ba(g_ab(a))
            rec = rec.float()
            ssim_sum += ssim(rec, a, reduction="none").sum().item()
            l1_sum += (rec - a).abs().mean(dim=(1, 2, 3)).sum().item()
            count += a.shape[0]
    finally:
        g_ab.train()
        g_ba.train()
    if count == 0:
        raise ValueError("val_a yielded no images")
    return {"ssim_cycle": ssim_sum / count, "val_cycle_l1": l1_sum / count}


def best_of(history: list[dict[str, float]]) -> tuple[int, float]:
    """(epoch, loss) of the lowest Eq. 3 loss in ``history``; (0, inf) if empty."""
    if not history:
        return 0, math.inf
    rec = min(history, key=lambda r: r[CRITERION])
    return int(rec["epoch"]), float(rec[CRITERION])


def train_cycle(
    cfg: CycleConfig,
    loader_a: Iterable[Any],
    loader_b: Iterable[Any],
    checkpoint_dir: str | Path,
    *,
    val_a: Iterable[Any] | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    accelerator: Accelerator | None = None,
) -> CycleResult:
    """Train (or resume) a CycleGAN run until ``cfg.total_epochs`` epochs are done.

    ``val_a``: held-out A batches for the per-epoch cycle SSIM (every process
    runs all of it; keep it small). ``on_epoch_end(record)`` runs on the main
    process after each epoch's checkpoint is written; it also gets
    ``epoch_seconds`` (wall clock, for MLflow and logs; never in ``history``,
    which is versioned). Pass ``accelerator`` to reuse one; by default the
    harness's (bf16 autocast only on CUDA). On SIGINT/SIGTERM the current step
    finishes, ``last`` is written and TrainingInterrupted is raised.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if accelerator is None:
        accelerator = harness.make_accelerator(bf16=cfg.bf16, seed=cfg.seed, seedable_sampler=False)
    else:
        harness.check_world_size(accelerator)
    on_cuda = accelerator.device.type == "cuda"
    memory_format = torch.channels_last if cfg.channels_last and on_cuda else torch.contiguous_format

    # Same initial weights on every process (DDP broadcasts rank 0's anyway).
    set_seed(cfg.seed)
    g_ab, g_ba = cfg.generator(), cfg.generator()
    d_a, d_b = cfg.discriminator(), cfg.discriminator()
    for net in (g_ab, g_ba, d_a, d_b):
        net.to(memory_format=memory_format)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=cfg.lr, betas=betas)
    # Schedulers stay out of accelerator.prepare: accelerate would step them
    # once per process per call, but this schedule counts epochs.
    sched_g = linear_decay_scheduler(opt_g, cfg.n_epochs, cfg.n_epochs_decay)
    sched_d = linear_decay_scheduler(opt_d, cfg.n_epochs, cfg.n_epochs_decay)
    checkpoints = RunCheckpoints(checkpoint_dir, accelerator, {"G_AB": g_ab, "G_BA": g_ba, "D_A": d_a, "D_B": d_b},
                                 {"opt_G": opt_g, "opt_D": opt_d, "sched_G": sched_g, "sched_D": sched_d})

    history: list[dict[str, float]] = []
    initial_val: dict[str, float] = {}
    start, step, batches_done = 0, 0, 0
    partial: dict[str, Any] = {}
    rng: dict[str, Any] | None = None
    pool_states: list[dict[str, Any]] | None = None
    if checkpoints.exists():
        # Compare configs before loading weights, so a mismatch reads as one, not as a shape error.
        diff = config_differences(checkpoints.peek_extra().get("config", {}), cfg.to_dict())
        if diff:
            raise ValueError(
                f"checkpoint {checkpoints.last_dir} was written with a different config ({', '.join(diff)}); "
                "use a new checkpoint_dir or the same settings"
            )
        # Loaded before prepare(): prepare moves weights and optimizer state to the device.
        saved = checkpoints.load()
        extra = saved["extra"]
        start, step = saved["epoch"], saved["step"]
        history = list(extra.get("history", []))
        initial_val = dict(extra.get("initial_val", {}))
        batches_done = int(extra.get("batches_done", 0))
        partial = dict(extra.get("partial", {}))
        rng = extra.get(RNG_KEY)
        pool_states = extra.get("pools")

    gens, discs, opt_g, opt_d = accelerator.prepare(
        GeneratorPair(g_ab, g_ba), DiscriminatorPair(d_a, d_b), opt_g, opt_d
    )
    loader_a, loader_b = accelerator.prepare(loader_a, loader_b)
    nets = _Nets(g_ab, g_ba, d_a, d_b, gens, discs)
    pools = (ImagePool(cfg.pool_size), ImagePool(cfg.pool_size))

    def load_pools() -> None:
        for pool, state in zip(pools, pool_states or []):
            pool.load_state_dict(state, accelerator.device)

    load_pools()  # the stored fakes carry over epoch boundaries
    main = accelerator.is_main_process
    if val_a is not None and start == 0 and not initial_val:
        # Baseline for the held-out metrics: what the untrained nets do.
        initial_val = validate_cycle(g_ab, g_ba, val_a, accelerator, memory_format)

    def save_last(epochs_done: int, in_epoch: int, sums: torch.Tensor | None, n_steps: int) -> None:
        extra = {
            "config": cfg.to_dict(),
            "history": history,
            "initial_val": initial_val,
            "batches_done": in_epoch,
            # Loss sums of the interrupted epoch, averaged over processes: every
            # process resumes from them, so the epoch mean stays exact under DDP.
            "partial": {} if sums is None else {"sums": sums.cpu(), "steps": n_steps},
            "pools": [pool.state_dict() for pool in pools],
        }
        checkpoints.save_last(epoch=epochs_done, step=step, extra=extra)

    def save_heads(which: str, record: Mapping[str, float]) -> None:
        training = {**cfg.to_dict(), "record": dict(record)}
        checkpoints.save_head(which, g_ab, name=cfg.variant, training=training)
        checkpoints.save_head(which + INVERSE, g_ba, name=cfg.variant + INVERSE, training=training)

    checked_range = False
    with StopRequest() as stop:
        for epoch in range(start + 1, cfg.total_epochs + 1):
            started = time.perf_counter()
            seed = harness.start_epoch(accelerator, cfg.seed, epoch, [loader_a, loader_b])
            pools[0].reseed(seed + 1)
            pools[1].reseed(seed + 2)
            skip = batches_done
            if skip:  # resuming inside this epoch: pools and loss sums as they were
                load_pools()
                sums = partial["sums"].to(accelerator.device)
                n_steps = int(partial["steps"])
            else:
                sums = torch.zeros(len(PARTS), device=accelerator.device)
                n_steps = 0
            bar = tqdm(
                desc=f"epoch {epoch}/{cfg.total_epochs}",
                total=len(loader_a) if hasattr(loader_a, "__len__") else None,
                initial=skip,
                disable=not (main and cfg.progress),
                leave=False,
            )
            batches = harness.resume_batches(zip(loader_a, loader_b), skip, rng if skip else None)
            batches_done, rng = 0, None
            for index, (batch_a, batch_b) in batches:
                real_a = _images(batch_a, "loader_a").to(accelerator.device).contiguous(memory_format=memory_format)
                real_b = _images(batch_b, "loader_b").to(accelerator.device).contiguous(memory_format=memory_format)
                if not checked_range:  # one host sync per run catches [0, 1] / [0, 255] inputs
                    _check_range(real_a, "loader_a")
                    _check_range(real_b, "loader_b")
                    checked_range = True
                sums += _train_step(nets, opt_g, opt_d, pools, real_a, real_b, cfg, accelerator)
                n_steps += 1
                step += 1
                bar.update(1)
                if bar.n % PROGRESS_EVERY == 0 and not bar.disable:
                    running = dict(zip(PARTS, (sums / n_steps).tolist()))
                    bar.set_postfix({k: f"{running[k]:.3f}" for k in ("loss_G", "loss_cycle", "loss_D")})
                if stop.requested(accelerator):
                    bar.close()
                    save_last(epoch - 1, index + 1, accelerator.reduce(sums, reduction="mean"), n_steps)
                    raise TrainingInterrupted(
                        f"interrupted in epoch {epoch}; checkpoint in {checkpoints.last_dir}")
            bar.close()
            if n_steps == 0:
                raise ValueError(f"epoch {epoch}: loader_a or loader_b yielded no batches")

            means = accelerator.reduce(sums / n_steps, reduction="mean").tolist()
            if not all(math.isfinite(m) for m in means):
                # Raised before saving, so checkpoint_dir/last keeps the last finite epoch.
                raise FloatingPointError(f"epoch {epoch}: non-finite losses {dict(zip(PARTS, means))}")
            # steps: per process; the loss means are averaged over processes.
            record: dict[str, float] = {"epoch": epoch, "steps": n_steps, "lr": sched_g.get_last_lr()[0]}
            record |= dict(zip(PARTS, means))
            if val_a is not None:
                record |= validate_cycle(g_ab, g_ba, val_a, accelerator, memory_format)
            improved = record[CRITERION] < best_of(history)[1]
            history.append(record)
            sched_g.step()
            sched_d.step()
            if improved:  # best before last: a kill in between redoes this epoch
                save_heads(BEST, record)
            save_last(epoch, 0, None, 0)
            seconds = time.perf_counter() - started
            log.info("epoch %d/%d: L (Eq. 3) %.4g (%.1f s)", epoch, cfg.total_epochs, record[CRITERION], seconds)
            if main and on_epoch_end is not None:
                on_epoch_end({**record, "epoch_seconds": seconds})
            if stop.requested(accelerator):
                raise TrainingInterrupted(f"interrupted after epoch {epoch}; checkpoint in {checkpoints.last_dir}")

    if history:
        save_heads(FINAL, history[-1])
    accelerator.wait_for_everyone()
    best_epoch, best_loss = best_of(history)
    return CycleResult(
        history=history,
        best_epoch=best_epoch,
        best_loss_G=best_loss,
        epochs_completed=len(history),
        start_epoch=start,
        initial_val=initial_val,
        g_ab=g_ab,
        g_ba=g_ba,
        checkpoint_dir=checkpoint_dir,
    )
