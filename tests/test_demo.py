"""`facerefine demo` without a browser: uploads under enhance's rules, the same Enhancer as the CLI,
the Space's requirements, lazy gradio. The page itself: tests/test_demo_browser.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from facerefine import cli, demo
from facerefine.backend import load_enhancer
from facerefine.head_folder import write_head_folder
from facerefine.models.resunet_cbam import ResUNetCBAM

REPO = Path(__file__).resolve().parents[1]


def _noise(size: tuple[int, int], channels: int, seed: int = 0) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return array.squeeze(-1) if channels == 1 else array


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory) -> Path:
    """A tiny U-Net whose last conv is randomised, so it is not the identity."""
    torch.manual_seed(0)
    unet = ResUNetCBAM(base_channels=4, depth=3)
    torch.nn.init.normal_(unet.head[-1].weight, std=0.1)
    return write_head_folder(tmp_path_factory.mktemp("heads") / "tiny", unet, name="tiny")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uploads")
    files = {"rgb": root / "odd.jpg", "rgba": root / "alpha.png", "grey": root / "grey.png",
             "grey16": root / "grey16.png", "corrupt": root / "corrupt.png", "truncated": root / "truncated.png",
             "tiff": root / "photo.png"}
    Image.fromarray(_noise((61, 45), 3)).save(files["rgb"], quality=95)
    Image.fromarray(_noise((40, 33), 4, 1)).save(files["rgba"])
    Image.fromarray(_noise((37, 29), 1, 2)).save(files["grey"])
    Image.fromarray((np.arange(30 * 20, dtype=np.uint16).reshape(20, 30) * 100)).save(files["grey16"])
    files["corrupt"].write_bytes(b"this is not an image")
    files["truncated"].write_bytes(files["rgba"].read_bytes()[:200])
    Image.fromarray(_noise((16, 16), 3)).save(files["tiff"], format="TIFF")  # a TIFF named .png
    return files


def test_read_upload_refuses_bad_files_with_a_message(uploads: dict[str, Path]) -> None:
    for key in ("corrupt", "truncated"):
        with pytest.raises(demo.UploadError, match=f"{uploads[key].name}: not a readable image"):
            demo.read_upload(uploads[key])
    with pytest.raises(demo.UploadError, match="TIFF images are not supported"):
        demo.read_upload(uploads["tiff"])
    with pytest.raises(demo.UploadError, match=r"odd.jpg: 61 x 45 is 0.0 MP, over this page's limit"):
        demo.read_upload(uploads["rgb"], max_pixels=61 * 45 - 1)
    assert demo.read_upload(uploads["rgb"], max_pixels=61 * 45)[0].size == (61, 45)


def test_read_upload_names_what_enhance_does_with_the_mode(uploads: dict[str, Path]) -> None:
    assert demo.read_upload(uploads["rgba"])[1] == "RGBA: alpha passed through"
    assert demo.read_upload(uploads["grey"])[1] == "L: greyscale, kept greyscale"
    assert "16-bit greyscale, scaled to 8 bits" in demo.read_upload(uploads["grey16"])[1]


def test_refine_files_keeps_sizes_and_modes_and_reports_bad_files(head_dir: Path, uploads: dict[str, Path],
                                                                   tmp_path: Path, one_thread) -> None:
    enhancer = load_enhancer(str(head_dir), "cpu", "float32", backend="torch")
    order = ["rgb", "corrupt", "rgba", "grey", "grey16", "tiff"]
    results = demo.refine_files(enhancer, [uploads[k] for k in order], tmp_path)
    assert [r.output is not None for r in results] == [True, False, True, True, True, False]
    assert results[1].message.startswith("✗ corrupt.png: not a readable image")
    assert "with head 'tiny' (torch on cpu)" in results[0].message
    expected = {"rgb": ((61, 45), "RGB"), "rgba": ((40, 33), "RGBA"), "grey": ((37, 29), "L"),
                "grey16": ((30, 20), "L")}
    for key, result in zip(order, results):
        if key in expected:
            with Image.open(result.output) as out:
                assert (out.size, out.mode) == expected[key], key
    # The input shown in the slider: the first good image only, as the head saw it.
    assert results[0].before is not None and all(r.before is None for r in results[1:])
    with Image.open(results[0].before) as before:
        assert before.size == (61, 45)


def test_the_page_refines_exactly_as_enhance_does(head_dir: Path, uploads: dict[str, Path], tmp_path: Path,
                                                  one_thread) -> None:
    enhancer = load_enhancer(str(head_dir), "cpu", "float32", backend="torch")
    [result] = demo.refine_files(enhancer, [uploads["rgba"]], tmp_path / "page")
    out = tmp_path / "cli.png"
    run = CliRunner().invoke(cli.main, ["enhance", str(uploads["rgba"]), str(out), "--head", str(head_dir),
                                        "--backend", "torch", "--device", "cpu", "--quiet"])
    assert run.exit_code == 0, run.output
    with Image.open(result.output) as page, Image.open(out) as from_cli:
        assert np.array_equal(np.asarray(page), np.asarray(from_cli))


def test_enhancers_keeps_one_head_and_explains_a_bad_one(head_dir: Path) -> None:
    enhancers = demo.Enhancers(demo.DemoConfig(backend="torch", device="cpu"))
    first = enhancers.get(str(head_dir))
    assert enhancers.get(str(head_dir)) is first
    with pytest.raises(demo.UploadError, match="head 'no-such-head'"):
        enhancers.get("no-such-head")
    with pytest.raises(demo.UploadError, match="choose a head"):
        enhancers.get("")


def test_generate_tab_labels_the_smoke_standins() -> None:
    assert not demo.flux_available("smoke")
    assert not demo.flux_available("no-such-owner/no-such-flux")  # not in the (offline) Hub cache
    settings, label = demo.flux_settings(demo.DemoConfig(device="cpu"))  # params.yaml: the smoke profile
    assert settings.model == "smoke" and label.startswith("**Smoke stand-ins**")
    settings, label = demo.flux_settings(demo.DemoConfig(device="cpu", model="no-such-owner/no-such-flux"))
    assert settings.model == "smoke" and "`no-such-owner/no-such-flux` are not on this machine" in label


def test_space_requirements_file_is_generated_from_pyproject() -> None:
    assert (REPO / "requirements.txt").read_text(encoding="utf-8") == demo.space_requirements(REPO / "pyproject.toml"), \
        "requirements.txt is stale: run `python app.py --requirements`"


@pytest.mark.slow
def test_space_requirements_cover_what_the_page_imports(head_dir: Path, uploads: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Build the page and refine an image in a fresh interpreter; every project dependency it
    imported must be in the Space's requirements."""
    script = f"""
import sys, importlib.metadata as md
from pathlib import Path
from facerefine import demo
from facerefine.backend import load_enhancer
demo.build_app(demo.DemoConfig(backend="torch", device="cpu"))
demo.refine_files(load_enhancer({str(head_dir)!r}, "cpu", "float32", backend="torch"), [{str(uploads["rgb"])!r}],
                  Path({str(tmp_path)!r}))
owners = md.packages_distributions()
print(" ".join(sorted({{d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])}})))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    imported = {demo.normalise(d) for d in run.stdout.split()}
    direct = set(demo.project_dependencies(REPO / "pyproject.toml"))
    missing = (imported & direct) - {demo.normalise(d) for d in demo.SPACE_DISTRIBUTIONS}
    assert not missing, f"the page imports {sorted(missing)}: add them to demo.SPACE_DISTRIBUTIONS"


def test_cli_help_does_not_import_gradio() -> None:
    script = ("import sys\nfrom facerefine import cli\n"
              "try:\n    cli.main(['demo', '--help'])\nexcept SystemExit:\n    pass\n"
              "assert 'gradio' not in sys.modules and 'torch' not in sys.modules, 'heavy import'\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--share" in run.stdout and "--max-pixels" in run.stdout


@pytest.mark.slow
def test_generate_tab_gives_schnell_and_schnell_plus_head(head_dir: Path, one_thread) -> None:
    config = demo.DemoConfig(device="cpu", backend="torch")
    settings, _ = demo.flux_settings(config)
    enhancer = demo.Enhancers(config).get(str(head_dir))
    raw, refined, message = demo.generate_pair("a portrait", 3, settings, enhancer, "cpu")
    assert raw.size == refined.size == (settings.size, settings.size)
    assert np.array_equal(np.asarray(refined), np.asarray(enhancer.enhance_image(raw)))
    assert message.startswith("schnell `smoke`") and "head 'tiny' (torch on cpu)" in message
