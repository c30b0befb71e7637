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
(``head_folder.write_head_folder``), the epoch record in their ``training.record``.
"""

from __future__ import annotations

import math
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


class CycleGANModel:
    """G, F, D_A and D_B with their Adam optimizers and linear-decay schedulers: the reference
    CycleGAN's model class, configured by a CycleConfig instead of global options.

    ``networks`` and ``training_states`` (the raw modules, optimizers and schedulers) are
    what a checkpoint holds; :meth:`prepare` wraps them for the accelerator (DDP)."""

    def __init__(self, cfg: CycleConfig, memory_format: torch.memory_format) -> None:
        self.cfg = cfg
        set_seed(cfg.seed)  # same initial weights on every process (DDP broadcasts rank 0's anyway)
        self.g_ab, self.g_ba = cfg.generator(), cfg.generator()
        self.d_a, self.d_b = cfg.discriminator(), cfg.discriminator()
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.to(memory_format=memory_format)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam([*self.g_ab.parameters(), *self.g_ba.parameters()], lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_a.parameters(), *self.d_b.parameters()], lr=cfg.lr, betas=betas)
        # Schedulers stay out of accelerator.prepare: accelerate would step them
        # once per process per call, but this schedule counts epochs.
        self.sched_g = linear_decay_scheduler(self.opt_g, cfg.n_epochs, cfg.n_epochs_decay)
        self.sched_d = linear_decay_scheduler(self.opt_d, cfg.n_epochs, cfg.n_epochs_decay)
        self.networks = {"G_AB": self.g_ab, "G_BA": self.g_ba, "D_A": self.d_a, "D_B": self.d_b}
        self.training_states = {"opt_G": self.opt_g, "opt_D": self.opt_d, "sched_G": self.sched_g,
                                "sched_D": self.sched_d}

    def prepare(self, accelerator: Accelerator) -> None:
        """Wrap the pairs and optimizers (after a resume loaded them: prepare moves them to the device)."""
        self.accelerator = accelerator
        self.gens, self.discs, self._opt_g, self._opt_d = accelerator.prepare(
            GeneratorPair(self.g_ab, self.g_ba), DiscriminatorPair(self.d_a, self.d_b), self.opt_g, self.opt_d)

    @property
    def lr(self) -> float:
        return self.sched_g.get_last_lr()[0]

    def end_epoch(self) -> None:
        self.sched_g.step()
        self.sched_d.step()

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor,
                   pools: tuple[ImagePool, ImagePool]) -> torch.Tensor:
        """One CycleGAN step; returns the detached loss parts in ``PARTS`` order."""
        cfg, accelerator = self.cfg, self.accelerator
        with_identity = cfg.lambda_identity > 0
        # 1) G and F. The raw (unwrapped) discriminators score the fakes: their
        # weights are frozen here, and going around DDP keeps its gradient
        # bookkeeping to the discriminator update below.
        _set_requires_grad(self.discs, False)
        with accelerator.autocast():
            out = self.gens(real_a, real_b, with_identity)
            adv = lsgan_g_loss(self.d_b(out["fake_b"])) + lsgan_g_loss(self.d_a(out["fake_a"]))
            cyc = cycle_loss(real_a, out["rec_a"]) + cycle_loss(real_b, out["rec_b"])
            if with_identity:
                idt = identity_loss(real_b, out["idt_b"]) + identity_loss(real_a, out["idt_a"])
            else:
                idt = torch.zeros((), device=real_a.device)
            loss_g = generator_loss(adv, cyc, idt, cfg.lambda_cyc, cfg.lambda_identity)
        self._opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss_g)
        self._opt_g.step()

        # 2) D_A and D_B on real vs pooled fakes; real and fake go through in one
        # batch per discriminator (instance norm is per image, so this is exact).
        _set_requires_grad(self.discs, True)
        fake_a = pools[0].query(out["fake_a"]).to(real_a.dtype)
        fake_b = pools[1].query(out["fake_b"]).to(real_b.dtype)
        with accelerator.autocast():
            pred_a, pred_b = self.discs(torch.cat([real_a, fake_a]), torch.cat([real_b, fake_b]))
            loss_d_a = lsgan_d_loss(*pred_a.split([real_a.shape[0], fake_a.shape[0]]))
            loss_d_b = lsgan_d_loss(*pred_b.split([real_b.shape[0], fake_b.shape[0]]))
            loss_d = loss_d_a + loss_d_b
        self._opt_d.zero_grad(set_to_none=True)
        accelerator.backward(loss_d)
        self._opt_d.step()

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


@dataclass
class _CycleProgress:
    """What a resumed run carries over besides weights, optimizer and scheduler states."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps in total
    history: list[dict[str, float]] = field(default_factory=list)
    initial_val: dict[str, float] = field(default_factory=dict)
    batches_done: int = 0  # batches of epoch ``epoch + 1`` already trained (after an interrupt)
    partial: dict[str, Any] = field(default_factory=dict)  # that epoch's loss sums and steps
    rng: dict[str, Any] | None = None
    pools: list[dict[str, Any]] | None = None

    @classmethod
    def resume(cls, checkpoints: RunCheckpoints, cfg: CycleConfig) -> _CycleProgress:
        """A fresh run's progress, or the one in ``checkpoints`` (whose weights it loads)."""
        if not checkpoints.exists():
            return cls()
        # Compare configs before loading weights, so a mismatch reads as one, not as a shape error.
        diff = config_differences(checkpoints.peek_extra().get("config", {}), cfg.to_dict())
        if diff:
            raise ValueError(
                f"checkpoint {checkpoints.last_dir} was written with a different config ({', '.join(diff)}); "
                "use a new checkpoint_dir or the same settings"
            )
        saved = checkpoints.load()
        extra = saved["extra"]
        return cls(epoch=saved["epoch"], step=saved["step"], history=list(extra.get("history", [])),
                   initial_val=dict(extra.get("initial_val", {})), batches_done=int(extra.get("batches_done", 0)),
                   partial=dict(extra.get("partial", {})), rng=extra.get(RNG_KEY), pools=extra.get("pools"))


class _CycleRun:
    """One call of :func:`train_cycle`: the model, its loaders, pools and checkpoints, the progress."""

    def __init__(self, cfg: CycleConfig, model: CycleGANModel, checkpoints: RunCheckpoints,
                 progress: _CycleProgress, loaders: tuple[Any, Any], val_a: Iterable[Any] | None,
                 memory_format: torch.memory_format) -> None:
        self.cfg, self.model, self.checkpoints, self.progress = cfg, model, checkpoints, progress
        self.accelerator = model.accelerator
        self.loader_a, self.loader_b = loaders
        self.val_a, self.memory_format = val_a, memory_format
        self.pools = (ImagePool(cfg.pool_size), ImagePool(cfg.pool_size))
        self.checked_range = False

    def load_pools(self) -> None:
        """The saved pools' fakes (they carry over epoch boundaries)."""
        for pool, state in zip(self.pools, self.progress.pools or []):
            pool.load_state_dict(state, self.accelerator.device)

    def validate(self) -> dict[str, float]:
        return validate_cycle(self.model.g_ab, self.model.g_ba, self.val_a, self.accelerator, self.memory_format)

    def save_last(self, epochs_done: int, in_epoch: int, sums: torch.Tensor | None, n_steps: int) -> None:
        progress = self.progress
        extra = {
            "config": self.cfg.to_dict(),
            "history": progress.history,
            "initial_val": progress.initial_val,
            "batches_done": in_epoch,
            # Loss sums of the interrupted epoch, averaged over processes: every
            # process resumes from them, so the epoch mean stays exact under DDP.
            "partial": {} if sums is None else {"sums": sums.cpu(), "steps": n_steps},
            "pools": [pool.state_dict() for pool in self.pools],
        }
        self.checkpoints.save_last(epoch=epochs_done, step=progress.step, extra=extra)

    def write_heads(self, which: str, record: Mapping[str, float]) -> None:
        training = {**self.cfg.to_dict(), "record": dict(record)}
        self.checkpoints.write_head(which, self.model.g_ab, name=self.cfg.variant, training=training)
        self.checkpoints.write_head(which + INVERSE, self.model.g_ba, name=self.cfg.variant + INVERSE,
                                    training=training)

    def _images(self, batch: Any, name: str) -> torch.Tensor:
        images = _images(batch, name).to(self.accelerator.device).contiguous(memory_format=self.memory_format)
        if not self.checked_range:  # one host sync per loader and run catches [0, 1] / [0, 255] inputs
            _check_range(images, name)
        return images

    def train_epoch(self, epoch: int, stop: StopRequest) -> dict[str, float]:
        """One epoch (the rest of it after an interrupt), its checkpoints, and its record."""
        cfg, accelerator, progress = self.cfg, self.accelerator, self.progress
        seed = harness.start_epoch(accelerator, cfg.seed, epoch, [self.loader_a, self.loader_b])
        self.pools[0].reseed(seed + 1)
        self.pools[1].reseed(seed + 2)
        skip = progress.batches_done
        if skip:  # resuming inside this epoch: pools and loss sums as they were
            self.load_pools()
            sums = progress.partial["sums"].to(accelerator.device)
            n_steps = int(progress.partial["steps"])
        else:
            sums = torch.zeros(len(PARTS), device=accelerator.device)
            n_steps = 0
        bar = tqdm(
            desc=f"epoch {epoch}/{cfg.total_epochs}",
            total=len(self.loader_a) if hasattr(self.loader_a, "__len__") else None,
            initial=skip,
            disable=not (accelerator.is_main_process and cfg.progress),
            leave=False,
        )
        batches = harness.resume_batches(zip(self.loader_a, self.loader_b), skip, progress.rng if skip else None)
        progress.batches_done, progress.rng = 0, None
        for index, (batch_a, batch_b) in batches:
            real_a, real_b = self._images(batch_a, "loader_a"), self._images(batch_b, "loader_b")
            self.checked_range = True
            sums += self.model.train_step(real_a, real_b, self.pools)
            n_steps += 1
            progress.step += 1
            bar.update(1)
            if bar.n % PROGRESS_EVERY == 0 and not bar.disable:
                running = dict(zip(PARTS, (sums / n_steps).tolist()))
                bar.set_postfix({k: f"{running[k]:.3f}" for k in ("loss_G", "loss_cycle", "loss_D")})
            if stop.requested(accelerator):
                bar.close()
                self.save_last(epoch - 1, index + 1, accelerator.reduce(sums, reduction="mean"), n_steps)
                raise TrainingInterrupted(f"interrupted in epoch {epoch}; checkpoint in {self.checkpoints.last_dir}")
        bar.close()
        if n_steps == 0:
            raise ValueError(f"epoch {epoch}: loader_a or loader_b yielded no batches")
        return self._end_epoch(epoch, sums, n_steps)

    def _end_epoch(self, epoch: int, sums: torch.Tensor, n_steps: int) -> dict[str, float]:
        means = self.accelerator.reduce(sums / n_steps, reduction="mean").tolist()
        if not all(math.isfinite(m) for m in means):
            # Raised before saving, so checkpoint_dir/last keeps the last finite epoch.
            raise FloatingPointError(f"epoch {epoch}: non-finite losses {dict(zip(PARTS, means))}")
        # steps: per process; the loss means are averaged over processes.
        record: dict[str, float] = {"epoch": epoch, "steps": n_steps, "lr": self.model.lr}
        record |= dict(zip(PARTS, means))
        if self.val_a is not None:
            record |= self.validate()
        history = self.progress.history
        improved = record[CRITERION] < best_of(history)[1]
        history.append(record)
        self.model.end_epoch()
        if improved:  # best before last: a kill in between redoes this epoch
            self.write_heads(BEST, record)
        self.save_last(epoch, 0, None, 0)
        return record


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
    model = CycleGANModel(cfg, memory_format)
    checkpoints = RunCheckpoints(checkpoint_dir, accelerator, model.networks, model.training_states)
    progress = _CycleProgress.resume(checkpoints, cfg)  # before prepare(), which moves the states to the device
    start = progress.epoch
    model.prepare(accelerator)
    run = _CycleRun(cfg, model, checkpoints, progress, accelerator.prepare(loader_a, loader_b), val_a, memory_format)
    run.load_pools()
    if val_a is not None and start == 0 and not progress.initial_val:
        # Baseline for the held-out metrics: what the untrained nets do.
        progress.initial_val = run.validate()
    harness.run_epochs(accelerator, range(start + 1, cfg.total_epochs + 1), run.train_epoch,
                       last_dir=checkpoints.last_dir, on_epoch_end=on_epoch_end)
    history = progress.history
    if history:
        run.write_heads(FINAL, history[-1])
    accelerator.wait_for_everyone()
    best_epoch, best_loss = best_of(history)
    return CycleResult(history=history, best_epoch=best_epoch, best_loss_G=best_loss, epochs_completed=len(history),
                       start_epoch=start, initial_val=progress.initial_val, g_ab=model.g_ab, g_ba=model.g_ba,
                       checkpoint_dir=checkpoint_dir)
