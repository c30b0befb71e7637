"""`facerefine enhance` / `generate` and the pieces under them (facerefine.enhance)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from facerefine import cli, enhance, precision
from facerefine.enhance import (Enhancer, Inputs, Padding, blend_window, crop, find_images, pad, padding_for,
                                plan_jobs, plan_tiles, supported_size)
from facerefine.head_folder import write_head_folder
from facerefine.heads import HeadFolder, read_head_folder
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM

OLD = 1_000_000_000  # an mtime long ago: a rewritten file gets a new one


def _random_image(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """size is PIL's (width, height)."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array)


def _array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _enhance(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["enhance", *args, "--quiet"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    """Tiny random heads saved as head directories: a CycleGAN generator, an ESA one
    (60-pixel minimum) and a U-Net whose last conv is randomised (so it is not the identity)."""
    root = tmp_path_factory.mktemp("heads")
    torch.manual_seed(0)
    unet = ResUNetCBAM(base_channels=4, depth=3)
    torch.nn.init.normal_(unet.head[-1].weight, std=0.1)
    return {
        "cyclegan": write_head_folder(root / "cyclegan", ResnetGenerator(ngf=4, n_blocks=1), name="cyclegan"),
        "esa": write_head_folder(root / "esa", ResnetGenerator(ngf=4, n_blocks=1, esa="blocks"), name="esa"),
        "unet": write_head_folder(root / "unet", unet, name="unet"),
    }


def _identity_head() -> HeadFolder:
    """A fresh ResUNet-CBAM is the identity up to its ±(1 - 1e-3) clamp (zero-init last conv)."""
    return HeadFolder(ResUNetCBAM(base_channels=4, depth=3), {"name": "identity"}, Path("identity"))


# ------------------------------------------------------------------ padding and tiling


@pytest.mark.parametrize(("height", "width"), [(333, 517), (1, 1), (2, 7), (64, 64), (59, 61)])
@pytest.mark.parametrize(("multiple", "minimum"), [(4, 8), (4, 60), (32, 1)])
def test_pad_then_crop_is_exact(height: int, width: int, multiple: int, minimum: int) -> None:
    x = torch.rand(2, 3, height, width)
    p = padding_for(height, width, multiple, minimum)
    padded = pad(x, p)
    h, w = padded.shape[-2:]
    assert h % multiple == 0 and w % multiple == 0 and min(h, w) >= minimum
    assert (h, w) == (supported_size(height, multiple, minimum), supported_size(width, multiple, minimum))
    assert torch.equal(crop(padded, p), x)
    assert torch.equal(crop(pad(x[0], p), p), x[0])  # unbatched CHW too


def test_pad_reflects() -> None:
    x = torch.arange(12.0).reshape(1, 3, 4)
    padded = pad(x, Padding(top=1, bottom=0, left=2, right=1))
    assert padded.shape == (1, 4, 7)
    assert padded[0, 0].tolist() == [6.0, 5.0, 4.0, 5.0, 6.0, 7.0, 6.0]  # row 1 mirrored above row 0
    assert supported_size(333, 4) == 336 and supported_size(20, 4, 60) == 60 and supported_size(64, 32) == 64


def test_tiles_cover_the_image_with_overlap() -> None:
    tiles = plan_tiles(100, 130, tile=32, overlap=8)
    assert {(t.height, t.width) for t in tiles} == {(32, 32)}  # all tiles batch together
    covered = torch.zeros(100, 130)
    for t in tiles:
        covered[t.top:t.top + t.height, t.left:t.left + t.width] += 1
    assert covered.min() >= 1
    tops = sorted({t.top for t in tiles})
    assert all(b - a <= 32 - 8 for a, b in zip(tops, tops[1:]))  # neighbours overlap >= 8
    assert plan_tiles(20, 50, tile=32, overlap=8)[0].height == 20  # smaller than a tile


def test_blending_reassembles_the_image_exactly() -> None:
    x = torch.rand(3, 70, 90)
    total, weight = torch.zeros_like(x), torch.zeros(1, 70, 90)
    for t in plan_tiles(70, 90, tile=32, overlap=12):
        w = blend_window(t, 70, 90, overlap=12)
        assert w.min() > 0
        total[:, t.top:t.top + t.height, t.left:t.left + t.width] += x[:, t.top:t.top + t.height,
                                                                     t.left:t.left + t.width] * w
        weight[:, t.top:t.top + t.height, t.left:t.left + t.width] += w
    torch.testing.assert_close(total / weight, x)


def test_tiled_identity_head_reproduces_the_input() -> None:
    image = _random_image((90, 70), seed=1)
    tiled = Enhancer(_identity_head(), tile=32, overlap=8, batch_size=4)
    assert tiled.needs_tiling(70, 90)
    out = np.asarray(tiled.enhance_image(image)).astype(int)
    assert out.shape == (70, 90, 3)
    assert np.abs(out - np.asarray(image)).max() <= 1  # within 1/255


def test_tiling_a_real_head_is_seamless_enough() -> None:
    """A trained-like head tiled with overlap stays close to the whole-image result (instance
    norm statistics differ per tile, so not equal)."""
    torch.manual_seed(0)
    head = HeadFolder(ResnetGenerator(ngf=4, n_blocks=1), {}, Path("g"))
    x = torch.rand(3, 96, 96) * 2 - 1
    whole = Enhancer(head).enhance_tensor(x)
    tiled = Enhancer(head, tile=64, overlap=16).enhance_tensor(x)
    assert tiled.shape == whole.shape == x.shape
    assert (tiled - whole).abs().mean() < 0.05


# ------------------------------------------------------------------------- heads


def test_loaded_head_reproduces_the_in_memory_head(heads: dict[str, Path]) -> None:
    torch.manual_seed(0)
    unet = ResUNetCBAM(base_channels=4, depth=3)
    torch.nn.init.normal_(unet.head[-1].weight, std=0.1)
    image = _random_image((101, 77), seed=2)
    for name, model in (("cyclegan", ResnetGenerator(ngf=4, n_blocks=1)), ("unet", unet)):
        in_memory = Enhancer(HeadFolder(model, {}, Path(name))).enhance_image(image)
        loaded = Enhancer(read_head_folder(heads[name])).enhance_image(image)
        assert np.array_equal(np.asarray(in_memory), np.asarray(loaded)), name
        assert not np.array_equal(np.asarray(loaded), np.asarray(image))  # the head did something


def test_enhancer_equals_the_model_on_supported_sizes(heads: dict[str, Path]) -> None:
    head = read_head_folder(heads["cyclegan"])
    x = torch.rand(3, 64, 48) * 2 - 1
    with torch.inference_mode():
        expected = head.model(x[None])[0]
    assert torch.equal(Enhancer(head).enhance_tensor(x), expected)


def test_esa_head_takes_images_below_its_minimum(heads: dict[str, Path]) -> None:
    head = read_head_folder(heads["esa"])
    assert head.min_size == 60
    out = Enhancer(head).enhance_image(_random_image((30, 20)))
    assert out.size == (30, 20)


# -------------------------------------------------------------------- files and CLI


def test_output_paths_mirror_the_input(tmp_path: Path) -> None:
    root = tmp_path / "in"
    files = [root / "a.png", root / "sub" / "b.JPG"]
    folder = Inputs(root, files, single=False)
    assert [j.target for j in plan_jobs(folder, "out")] == [Path("out/a.png"), Path("out/sub/b.JPG")]
    assert [j.image_format for j in plan_jobs(folder, "out", "webp")] == ["WEBP", "WEBP"]
    assert plan_jobs(folder, "out", "webp")[1].target == Path("out/sub/b.webp")
    single = Inputs(root, files[:1], single=True)
    assert plan_jobs(single, str(tmp_path / "x.jpg"))[0].image_format == "JPEG"
    assert plan_jobs(single, "res/")[0].target == Path("res/a.png")
    with pytest.raises(ValueError, match="extension"):
        plan_jobs(single, "x.bmp")
    with pytest.raises(ValueError, match="--format"):
        plan_jobs(single, "x.png", "jpeg")


def test_folder_is_mirrored_with_exact_sizes(tmp_path: Path, heads: dict[str, Path]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    images = {"a.png": _random_image((517, 333)), "b.png": _random_image((517, 333), seed=1),
              "sub/c.jpg": _random_image((35, 17), seed=2), "sub/deeper/d.webp": _random_image((64, 48), seed=3)}
    for rel, image in images.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(src / rel)
    (src / "notes.txt").write_text("not an image")
    code, output = _enhance(str(src), str(out), "--head", str(heads["unet"]), "--batch-size", "2")
    assert code == 0, output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(images)  # same tree, no temp files, nothing else
    for rel, image in images.items():
        with Image.open(out / rel) as result:
            assert result.size == image.size and result.format == Image.open(src / rel).format


def test_glob_and_single_file(tmp_path: Path, heads: dict[str, Path]) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _random_image((40, 30)).save(src / "sub" / "x.png")
    _random_image((40, 30)).save(src / "y.jpg")
    code, output = _enhance(f"{src}/**/*.png", str(tmp_path / "g"), "--head", str(heads["cyclegan"]))
    assert code == 0, output
    assert [p.relative_to(tmp_path / "g") for p in (tmp_path / "g").rglob("*.*")] == [Path("sub/x.png")]
    code, output = _enhance(str(src / "y.jpg"), str(tmp_path / "single.webp"), "--head", str(heads["cyclegan"]))
    assert code == 0, output
    with Image.open(tmp_path / "single.webp") as result:
        assert result.format == "WEBP" and result.size == (40, 30)


def test_exif_orientation_is_applied(tmp_path: Path, heads: dict[str, Path]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    _random_image((40, 24)).save(tmp_path / "photo.jpg", exif=exif)
    code, output = _enhance(str(tmp_path / "photo.jpg"), str(tmp_path / "out.png"), "--head", str(heads["unet"]))
    assert code == 0, output
    with Image.open(tmp_path / "out.png") as result:
        assert result.size == (24, 40)  # the displayed (rotated) size
        assert result.getexif().get(0x0112) in (None, 1)  # and no rotation left to apply


def test_alpha_passes_through_and_grey_stays_grey(tmp_path: Path, heads: dict[str, Path]) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rgba, grey = _random_image((45, 31), "RGBA", seed=4), _random_image((33, 29), "L", seed=5)
    rgba.save(src / "rgba.png")
    grey.save(src / "grey.png")
    code, output = _enhance(str(src), str(tmp_path / "out"), "--head", str(heads["cyclegan"]))
    assert code == 0, output
    with Image.open(tmp_path / "out" / "rgba.png") as result:
        assert result.mode == "RGBA" and result.size == rgba.size
        assert np.array_equal(np.asarray(result)[..., 3], np.asarray(rgba)[..., 3])
        assert not np.array_equal(np.asarray(result)[..., :3], np.asarray(rgba)[..., :3])
    with Image.open(tmp_path / "out" / "grey.png") as result:
        assert result.mode == "L" and result.size == grey.size


def test_bad_files_are_reported_and_the_rest_is_done(tmp_path: Path, heads: dict[str, Path]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    _random_image((40, 40)).save(src / "good.png")
    (src / "garbage.png").write_bytes(b"this is not a png")
    whole = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(whole[: len(whole) // 2])
    # one decoding worker process: a decoder error there must not end the run either
    code, output = _enhance(str(src), str(out), "--head", str(heads["cyclegan"]), "--workers", "1")
    assert code == 1
    assert "1 written" in output and "2 failed" in output
    assert "garbage.png" in output and "truncated.png" in output
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # no partial or temp files


def test_resume_skips_finished_outputs_and_overwrite_recomputes(tmp_path: Path, heads: dict[str, Path]) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        _random_image((36, 28), seed=i).save(src / f"{i}.png")
    head = ["--head", str(heads["cyclegan"])]
    assert _enhance(str(src), str(out), *head)[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "1.png").unlink()  # as if the run had been killed before this one
    for p in out.iterdir():
        os.utime(p, (OLD, OLD))
    code, output = _enhance(str(src), str(out), *head)
    assert code == 0 and "1 written, 2 skipped" in output
    assert {p.name: p.stat().st_mtime for p in out.iterdir() if p.name != "1.png"} == {"0.png": OLD, "2.png": OLD}
    assert (out / "1.png").read_bytes() == first["1.png"]  # deterministic
    code, output = _enhance(str(src), str(out), *head, "--overwrite")
    assert code == 0 and "3 written, 0 skipped" in output
    assert all(p.stat().st_mtime > OLD for p in out.iterdir())


def test_refuses_to_write_over_inputs(tmp_path: Path, heads: dict[str, Path]) -> None:
    _random_image((20, 20)).save(tmp_path / "a.png")
    code, output = _enhance(str(tmp_path), str(tmp_path), "--head", str(heads["cyclegan"]))
    assert code == 1 and "must not be the INPUT folder" in output
    code, output = _enhance(str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--head", str(heads["cyclegan"]),
                            "--overwrite")
    assert code == 1 and "overwrite its input" in output


def test_output_inside_input_is_not_read_back(tmp_path: Path, heads: dict[str, Path]) -> None:
    _random_image((20, 20)).save(tmp_path / "a.png")
    for _ in range(2):
        code, output = _enhance(str(tmp_path), str(tmp_path / "refined"), "--head", str(heads["cyclegan"]))
        assert code == 0, output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png")) == ["a.png", "refined/a.png"]


def test_find_images_reports_missing_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_images(tmp_path / "missing")


def test_cli_choices_match_the_module() -> None:
    assert cli.DTYPES is precision.DTYPES and set(cli.FORMATS) == set(enhance.FORMAT_CHOICES)


# ---------------------------------------------------------------------- generate


def test_generate_with_smoke_standins(tmp_path: Path, heads: dict[str, Path]) -> None:
    out = tmp_path / "portrait.png"
    args = ["generate", "A professional portrait of Ada Lovelace", "-o", str(out), "--size", "32",
            "--steps", "1", "--seed", "7", "--head", str(heads["cyclegan"]), "--keep-raw"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    raw = tmp_path / "portrait_raw.png"
    with Image.open(out) as refined, Image.open(raw) as schnell:
        assert refined.format == "PNG" and refined.size == schnell.size == (32, 32)
        assert not np.array_equal(np.asarray(refined), np.asarray(schnell))  # the head ran
    assert "smoke" in result.output  # says which weights it used (params.yaml's smoke profile)


def test_generate_passes_flux_compile_to_the_loader(tmp_path: Path, monkeypatch) -> None:
    """--flux-compile reaches facerefine.weights.flux.compile_flux (tests/test_flux_compile.py checks
    what that does); without it the profile's `compile` (smoke: none) is used."""
    from facerefine import generate as generate_module
    from facerefine.weights import flux

    monkeypatch.setattr(generate_module, "_LAST_PIPELINE", {})  # nothing loaded before, nothing kept after
    seen: list[str] = []
    monkeypatch.setattr(flux, "compile_flux", lambda pipe, how: seen.append(how) or pipe)
    base = ["generate", "A portrait", "--size", "32", "--steps", "1"]
    for extra, name in ((["--flux-compile", "blocks"], "a.png"), ([], "b.png")):
        result = CliRunner().invoke(cli.main, [*base, "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    assert seen == ["blocks", "none"]
    bad = CliRunner().invoke(cli.main, [*base, "-o", str(tmp_path / "c.png"), "--flux-compile", "fast"])
    assert bad.exit_code == 2 and "'fast' is not one of 'none', 'blocks', 'full'" in bad.output


def test_repeated_generate_calls_load_schnell_once(monkeypatch) -> None:
    """The demo's Generate button calls generate() per click: the pipeline is loaded once per
    settings, and a cached pipeline gives the image a fresh one gives."""
    from facerefine import generate as generate_module
    from facerefine.generate import generate, generate_settings
    from facerefine.weights import flux

    monkeypatch.setattr(generate_module, "_LAST_PIPELINE", {})
    loads: list[int] = []
    real = flux.load_flux
    monkeypatch.setattr(flux, "load_flux", lambda *a, **k: loads.append(k["image_size"]) or real(*a, **k))
    settings = generate_settings(size=32, steps=1)
    first, _ = generate("A portrait", settings, seed=3)
    again, _ = generate("A portrait", settings, seed=3)
    other, _ = generate("A portrait", settings, seed=4)
    assert loads == [32]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    generate("A portrait", generate_settings(size=48, steps=1), seed=3)  # other settings: loaded anew
    assert loads == [32, 48] and len(generate_module._LAST_PIPELINE) == 1  # one pipeline held at a time
