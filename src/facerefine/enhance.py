"""The head as a product: refine any image, folder or glob with a trained head.

The pieces are small and mostly pure, so each can be tested on its own:

- padding: heads need sizes that are multiples of ``size_multiple`` (and at
  least ``min_size`` for the ESA generator). Images are reflect-padded up to
  that and cropped back, so the output has the input's exact size.
- tiling: very large images are cut into overlapping tiles that are refined
  in batches and blended with linear ramps, so memory is bounded by the tile
  size, not the image size.
- image modes: EXIF orientation is applied first; alpha is split off and put
  back untouched; greyscale is refined as RGB and turned back into greyscale.
- files: discovery of an image, a folder (recursive) or a glob, and the
  output path that mirrors it.
- :class:`Enhancer` wraps a :class:`~facerefine.heads.HeadFolder` (device, dtype,
  channels_last, ``torch.compile`` by default on CUDA with size buckets: facerefine.compile);
  :func:`enhance_files` streams
  files through it: DataLoader workers decode while the model computes, equal
  sizes are batched, finished outputs are skipped, bad files are reported and
  skipped, and every output is written to a temp name and renamed.

FLUX.1-schnell text-to-image for ``facerefine generate`` is in ``generate.py``.
"""

from __future__ import annotations

import glob
import math
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from facerefine.data.datasets import to_tensor
from facerefine.heads import HeadFolder
from facerefine.io import temp_name

# Extension -> Pillow format of what we read from folders and globs and can write.
EXTENSION_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
# --format choice -> (Pillow format, extension of new outputs).
FORMAT_CHOICES: dict[str, tuple[str, str]] = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"),
                                              "webp": ("WEBP", ".webp")}
_GLOB_MAGIC = ("*", "?", "[")
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ICC_MODES = ("RGB", "RGBA", "L", "LA", "P")


# ----------------------------------------------------------------- padding


@dataclass(frozen=True)
class Padding:
    """Pixels added on each side; ``crop`` removes exactly these."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def is_zero(self) -> bool:
        return not (self.top or self.bottom or self.left or self.right)


def supported_size(size: int, multiple: int, minimum: int = 1) -> int:
    """Smallest length >= ``size`` and >= ``minimum`` that is a multiple of ``multiple``."""
    return max(math.ceil(size / multiple), math.ceil(minimum / multiple), 1) * multiple


def padding_for(height: int, width: int, multiple: int, minimum: int = 1) -> Padding:
    """Centre the image in the smallest supported canvas (odd extra pixel at the bottom/right)."""
    dh = supported_size(height, multiple, minimum) - height
    dw = supported_size(width, multiple, minimum) - width
    return Padding(dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)


def pad(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Reflect-pad the last two dims of a (N)CHW tensor.

    Reflection can add at most ``side - 1`` pixels at once, so bigger pads (a
    tiny image under the ESA generator's 60-pixel minimum) reflect repeatedly;
    a 1-pixel side has nothing to reflect and is replicated instead.
    """
    if padding.is_zero:
        return x
    batched = x if x.dim() == 4 else x.unsqueeze(0)
    top, bottom, left, right = padding.top, padding.bottom, padding.left, padding.right
    while top or bottom or left or right:
        h, w = batched.shape[-2:]
        if h == 1 or w == 1:
            batched = F.pad(batched, (left, right, top, bottom), mode="replicate")
            break
        t, b, l, r = min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1)
        batched = F.pad(batched, (l, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return batched if x.dim() == 4 else batched.squeeze(0)


def crop(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Undo :func:`pad`."""
    h, w = x.shape[-2:]
    return x[..., padding.top:h - padding.bottom, padding.left:w - padding.right]


# ------------------------------------------------------------------ tiling


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    height: int
    width: int


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` pixels.

    Neighbours overlap by at least ``overlap``; the last tile is shifted back
    to end at the border, so every tile has the full size (all tiles of an
    image batch together) unless the image is smaller than one tile.
    """
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, {tile}), got {overlap}")
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering a ``height`` x ``width`` image."""
    th, tw = min(tile, height), min(tile, width)
    return [Tile(top, left, th, tw)
            for top in tile_starts(height, tile, overlap)
            for left in tile_starts(width, tile, overlap)]


def _ramp(length: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D blend weights: a linear rise/fall over ``overlap`` pixels, never 0."""
    weights = torch.ones(length)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, length)
        if rise:
            weights[:n] = torch.minimum(weights[:n], ramp[:n])
        if fall:
            weights[length - n:] = torch.minimum(weights[length - n:], ramp[:n].flip(0))
    return weights


def blend_window(tile: Tile, height: int, width: int, overlap: int) -> torch.Tensor:
    """H x W weights of one tile: ramps only on the sides that face a neighbour,
    so the image borders keep full weight and seams fade over ``overlap`` pixels."""
    rows = _ramp(tile.height, overlap, tile.top > 0, tile.top + tile.height < height)
    cols = _ramp(tile.width, overlap, tile.left > 0, tile.left + tile.width < width)
    return rows[:, None] * cols[None, :]


# ------------------------------------------------------------- image modes


@dataclass
class Prepared:
    """An image ready for the head: RGB in [-1, 1] plus what is needed to restore its mode."""

    rgb: torch.Tensor                 # 3 x H x W float32 in [-1, 1]
    alpha: torch.Tensor | None        # H x W uint8, passed through untouched
    grey: bool                        # refine as RGB, then back to L
    icc_profile: bytes | None = None  # kept so colours mean the same after refinement


def _grey8(image: Image.Image) -> Image.Image:
    """16/32-bit greyscale -> 8-bit L (Pillow's own convert clips instead of scaling)."""
    array = np.asarray(image, dtype=np.float64) / 257.0
    return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """(N)CHW float in [-1, 1] -> (N)HWC uint8, rounded as data.datasets.to_image, but on
    x's device and batched: a GPU sends back a quarter of the bytes."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)


def prepare(image: Image.Image) -> Prepared:
    """Orient by EXIF and split the image into RGB for the head + alpha/greyscale to restore."""
    # An RGB/grey profile still describes the output; a CMYK/Lab one would not.
    icc = image.info.get("icc_profile") if image.mode in _ICC_MODES else None
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _SIXTEEN_BIT_GREY:
        image = _grey8(image)
    elif image.mode == "1":
        image = image.convert("L")
    alpha = None
    if image.mode in ("RGBA", "LA"):
        alpha = torch.from_numpy(np.array(image.getchannel("A"), dtype=np.uint8))
    grey = image.mode in ("L", "LA")
    base = image.convert("L") if grey else image
    return Prepared(to_tensor(base.convert("RGB")), alpha, grey, icc)


def restore(rgb: np.ndarray, prepared: Prepared) -> Image.Image:
    """H x W x 3 uint8 head output -> PIL in the input's mode (L/LA/RGB/RGBA)."""
    image = Image.fromarray(rgb)
    if prepared.grey:
        image = image.convert("L")
    if prepared.alpha is not None:
        image.putalpha(Image.fromarray(prepared.alpha.numpy()))
    if prepared.icc_profile:
        image.info["icc_profile"] = prepared.icc_profile
    return image


def load_image(path: str | Path) -> Prepared:
    """Decode fully now (``load``), so a truncated file fails here, not later."""
    with Image.open(path) as image:
        image.load()
        return prepare(image)


def save_atomic(image: Image.Image, path: Path, image_format: str, quality: int = 95) -> None:
    """Write to a temp name in the same folder, then rename: never a half-written output."""
    options: dict = {}
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    if image_format == "JPEG":
        options["subsampling"] = 0  # 4:4:4: chroma subsampling would blur the detail the head adds
        if image.mode in ("RGBA", "LA"):  # JPEG cannot store alpha
            image = image.convert("L" if image.mode == "LA" else "RGB")
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        image.save(tmp, format=image_format, **options)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------- files and outputs


@dataclass(frozen=True)
class Inputs:
    """What INPUT named: the images found and the root their outputs mirror."""

    root: Path
    files: list[Path]
    single: bool  # INPUT was one image file


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    image_format: str  # Pillow format name


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in _GLOB_MAGIC)


def _glob_root(pattern: str) -> Path:
    """The leading folders of a glob that hold no wildcard: outputs mirror from there."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if is_glob(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _is_candidate(path: Path, root: Path, exclude: Path | None) -> bool:
    """A visible image file (by extension) outside ``exclude``; temp files are hidden."""
    if path.suffix.lower() not in EXTENSION_FORMATS or not path.is_file():
        return False
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return False
    return exclude is None or not path.resolve().is_relative_to(exclude)


def find_images(input_spec: str | Path, exclude: Path | None = None) -> Inputs:
    """An image file, a folder (recursive) or a glob (``**`` recurses) -> sorted image files.

    ``exclude`` (resolved) keeps an output folder that sits inside the input
    folder from being read back as input.
    """
    spec = str(input_spec)
    path = Path(spec)
    if path.is_file():
        return Inputs(path.parent, [path], single=True)
    if path.is_dir():
        if exclude is not None and path.resolve() == exclude:
            raise ValueError(f"{spec}: OUTPUT must not be the INPUT folder (outputs never replace inputs)")
        files = (Path(dirpath) / name for dirpath, _, names in os.walk(path) for name in names)
        root = path
    elif is_glob(spec):
        root = _glob_root(spec)
        files = (Path(p) for p in glob.glob(spec, recursive=True))
    else:
        raise FileNotFoundError(f"{spec}: no such file, folder or glob match")
    return Inputs(root, sorted(p for p in files if _is_candidate(p, root, exclude)), single=False)


def output_format(source: Path, image_format: str | None) -> tuple[str, str]:
    """(Pillow format, extension) of an output: ``--format`` if given, else the source's
    (PNG for a source that is none of PNG/JPEG/WebP)."""
    if image_format:
        return FORMAT_CHOICES[image_format]
    known = EXTENSION_FORMATS.get(source.suffix.lower())
    return (known, source.suffix) if known else FORMAT_CHOICES["png"]


def output_is_folder(inputs: Inputs, output: str) -> bool:
    """OUTPUT is a folder unless INPUT is one image and OUTPUT is not an existing
    folder and does not end with a slash."""
    return not inputs.single or Path(output).is_dir() or output.endswith(("/", os.sep))


def plan_jobs(inputs: Inputs, output: str | Path, image_format: str | None = None) -> list[Job]:
    """Map every input to its output path, mirroring folders under OUTPUT."""
    output = str(output)
    if not output_is_folder(inputs, output):
        target = Path(output)
        suffix_format = EXTENSION_FORMATS.get(target.suffix.lower())
        chosen = FORMAT_CHOICES[image_format][0] if image_format else suffix_format
        if chosen is None:
            raise ValueError(f"{output}: cannot tell the output format from the extension; "
                             f"use .png/.jpg/.webp or --format")
        if suffix_format and chosen != suffix_format:
            raise ValueError(f"{output}: extension says {suffix_format} but --format says {chosen}")
        return [Job(inputs.files[0], target, chosen)]
    jobs = []
    for source in inputs.files:
        fmt, suffix = output_format(source, image_format)
        relative = source.relative_to(inputs.root)
        jobs.append(Job(source, Path(output) / relative.with_suffix(suffix), fmt))
    return jobs


def check_not_in_place(jobs: Sequence[Job]) -> None:
    """Refuse to write over an input: a refined image is not a substitute for its original."""
    for job in jobs:
        if job.target.resolve() == job.source.resolve():
            raise ValueError(f"{job.target}: output would overwrite its input; choose another OUTPUT")


# ---------------------------------------------------------------- enhancer


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Enhancer:
    """A head ready for inference on any image size.

    ``tile`` (pixels, rounded up to what the head supports) refines images
    larger than one tile in overlapping tiles, ``batch_size`` tiles at a time.
    The head's model is moved to ``device``, put in eval mode and frozen in place.
    """

    def __init__(self, head: HeadFolder, *, device: str | torch.device = "cpu", dtype: str = "float32",
                 batch_size: int = 1, tile: int | None = None, overlap: int = 32,
                 compile: str | bool | None = "auto", compile_mode: str | None = None,
                 compile_backend: Any = "inductor", bucket_cap: int | None = None) -> None:
        from facerefine.compile import BUCKET_CAP, HeadRunner

        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.head = head
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.multiple, self.min_size = head.size_multiple, head.min_size
        self.tile = supported_size(tile, self.multiple, self.min_size) if tile else None
        if self.tile and not 0 <= overlap < self.tile:
            raise ValueError(f"overlap must be in [0, {self.tile}) for tile {self.tile}, got {overlap}")
        self.overlap = overlap
        # Compiled: sizes go to buckets (facerefine.compile); a tile is padded to its bucket too.
        cap = bucket_cap or max(BUCKET_CAP, self.tile or 0)
        self.runner = HeadRunner(head.model, self.device, dtype=dtype, compile=compile, mode=compile_mode,
                                 backend=compile_backend, batch_size=batch_size, multiple=self.multiple,
                                 minimum=self.min_size, cap=cap)
        self.model = self.runner.eager

    @property
    def compiled(self) -> bool:
        return self.runner.compiled

    # -- sizes

    def padding(self, height: int, width: int) -> Padding:
        """Reflect padding to the head's smallest supported size, or, compiled, to the size's
        bucket (a bounded set of shapes: one graph each)."""
        if self.compiled:
            from facerefine.compile import bucket_side

            side_h = bucket_side(supported_size(height, self.multiple, self.min_size), self.runner.ladder)
            side_w = bucket_side(supported_size(width, self.multiple, self.min_size), self.runner.ladder)
            if side_h is not None and side_w is not None:
                dh, dw = side_h - height, side_w - width
                return Padding(dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        return padding_for(height, width, self.multiple, self.min_size)

    def needs_tiling(self, height: int, width: int) -> bool:
        return self.tile is not None and (height > self.tile or width > self.tile)

    def batch_key(self, height: int, width: int) -> tuple[int, int] | None:
        """Images with equal keys batch together; None: tiled on its own."""
        if self.needs_tiling(height, width):
            return None
        p = self.padding(height, width)
        return height + p.top + p.bottom, width + p.left + p.right

    # -- compute

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The head on a batch of supported size (N x 3 x H x W, on any device) -> float32 on
        ``self.device``."""
        return self.runner(batch)

    @torch.inference_mode()
    def enhance_batch(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Refine 3 x H x W images that share a ``batch_key``; outputs on ``self.device``."""
        paddings = [self.padding(*x.shape[-2:]) for x in images]
        batch = torch.stack([pad(x.to(self.device), p) for x, p in zip(images, paddings)])
        out = self.forward(batch)
        return [crop(y, p) for y, p in zip(out, paddings)]

    @torch.inference_mode()
    def enhance_tiled(self, image: torch.Tensor) -> torch.Tensor:
        """Refine one large 3 x H x W image tile by tile, blending the overlaps.

        The full-size accumulators stay on the CPU; only ``batch_size`` tiles
        at a time visit the device.
        """
        assert self.tile is not None
        height, width = image.shape[-2:]
        tiles = plan_tiles(height, width, self.tile, self.overlap)
        total = torch.zeros(3, height, width)
        weight = torch.zeros(1, height, width)
        for i in range(0, len(tiles), self.batch_size):
            chunk = tiles[i:i + self.batch_size]
            crops = [image[:, t.top:t.top + t.height, t.left:t.left + t.width] for t in chunk]
            for t, y in zip(chunk, self.enhance_batch(crops)):
                w = blend_window(t, height, width, self.overlap)
                total[:, t.top:t.top + t.height, t.left:t.left + t.width] += y.cpu() * w
                weight[:, t.top:t.top + t.height, t.left:t.left + t.width] += w
        return total / weight

    def enhance_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """One 3 x H x W image in [-1, 1] -> refined, same size; tiled (and returned on the
        CPU) when larger than the tile, else on ``self.device``."""
        if self.needs_tiling(*image.shape[-2:]):
            return self.enhance_tiled(image)
        return self.enhance_batch([image])[0]

    def enhance_image(self, image: Image.Image) -> Image.Image:
        """PIL in, PIL out: same size (after EXIF orientation), mode, alpha and ICC profile."""
        prepared = prepare(image)
        out = to_uint8(self.enhance_tensor(prepared.rgb)).cpu().numpy()
        return restore(out, prepared)


# -------------------------------------------------------- streaming folders


@dataclass
class Report:
    """What a run did: written outputs, skipped finished ones, and each failure with why."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.written)} written, {len(self.skipped)} skipped (already done), "
                 f"{len(self.failed)} failed"]
        lines += [f"  FAILED {path}: {why}" for path, why in self.failed]
        return "\n".join(lines)


@dataclass
class _Decoded:
    index: int
    prepared: Prepared | None
    error: str | None

    def pin_memory(self) -> _Decoded:
        """Called by the DataLoader's pinning thread (GPU runs): faster, async copies."""
        if self.prepared is not None:
            self.prepared.rgb = self.prepared.rgb.pin_memory()
        return self


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _as_is(item: _Decoded) -> _Decoded:
    """collate_fn: keep items whole (module level so spawned workers can pickle it)."""
    return item


class _DecodeJobs(Dataset):
    """Decodes one job's source per item (in DataLoader workers); errors become values,
    because an exception in a worker would end the whole run."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> _Decoded:
        try:
            return _Decoded(i, load_image(self.jobs[i].source), None)
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported, not fatal
            return _Decoded(i, None, _describe(err))


def pending_jobs(jobs: Sequence[Job], overwrite: bool) -> tuple[list[Job], list[Job]]:
    """(to do, already done): an existing output is finished work (it was written atomically)."""
    if overwrite:
        return list(jobs), []
    return [j for j in jobs if not j.target.exists()], [j for j in jobs if j.target.exists()]


def enhance_files(enhancer: Enhancer, jobs: Sequence[Job], *, overwrite: bool = False,
                  workers: int = 0, quality: int = 95, progress: bool = True) -> Report:
    """Refine every job's source into its target, streaming; never raises for one bad file.

    Consecutive images of equal padded size form a batch (at most one batch is
    held); an image to tile runs alone. Decoding happens in ``workers``
    DataLoader processes, PNG/JPEG encoding in a writer thread, so both
    overlap the model; the write queue is bounded, so memory stays constant.
    """
    from tqdm import tqdm

    todo, done = pending_jobs(jobs, overwrite)
    report = Report(skipped=[j.target for j in done])
    if not todo:
        return report
    loader = DataLoader(_DecodeJobs(todo), batch_size=None, num_workers=workers, collate_fn=_as_is,
                        pin_memory=enhancer.device.type == "cuda", prefetch_factor=2 if workers else None)
    writes: deque[tuple[Job, Future]] = deque()

    def collect(limit: int) -> None:
        while len(writes) > limit:
            job, future = writes.popleft()
            try:
                future.result()
                report.written.append(job.target)
            except Exception as err:  # noqa: BLE001 - one unwritable output must not stop the run
                report.failed.append((job.source, f"cannot write {job.target}: {_describe(err)}"))

    def write(job: Job, rgb: np.ndarray, prepared: Prepared) -> None:
        save_atomic(restore(rgb, prepared), job.target, job.image_format, quality)

    def run(group: list[_Decoded]) -> None:
        images = [item.prepared.rgb for item in group]  # type: ignore[union-attr]
        try:
            outputs = enhancer.enhance_batch(images) if len(images) > 1 else [enhancer.enhance_tensor(images[0])]
            arrays = [to_uint8(y).cpu().numpy() for y in outputs]
        except RuntimeError as err:  # e.g. out of memory: say so for each file and go on
            hint = " (try --tile or a smaller --batch-size)" if "memory" in str(err).lower() else ""
            report.failed.extend((todo[item.index].source, _describe(err) + hint) for item in group)
            return
        for item, rgb in zip(group, arrays):
            job = todo[item.index]
            writes.append((job, pool.submit(write, job, rgb, item.prepared)))
        collect(limit=2 * enhancer.batch_size)

    group: list[_Decoded] = []
    group_key: tuple[int, int] | None = None
    with ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=len(todo), unit="img", disable=not progress, desc="enhance") as bar:
        for item in loader:
            if item.prepared is None:
                report.failed.append((todo[item.index].source, item.error or "unreadable"))
                bar.update(1)
                continue
            key = enhancer.batch_key(*item.prepared.rgb.shape[-2:])
            if group and (key != group_key or key is None or len(group) >= enhancer.batch_size):
                run(group)
                bar.update(len(group))
                group = []
            group.append(item)
            group_key = key
        if group:
            run(group)
            bar.update(len(group))
        collect(limit=0)
    return report
