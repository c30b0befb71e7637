"""Sharing heads: save/load round trips (folder, name, Hub cache), model cards that match the
metrics, the Python API on PIL/numpy/torch, push without leaking the token."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch
from PIL import Image

from facerefine import hub
from facerefine.config import load_params
from facerefine.card import _num, card_info, card_weights_sha256, front_matter, weights_sha256, write_model_card
from facerefine.enhance import Enhancer
from facerefine.api import Head, load_head
from facerefine.head_folder import write_head_folder
from facerefine.models.cyclegan import ResnetGenerator
from facerefine.models.resunet_cbam import ResUNetCBAM

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["schnell (smoke)", "dev (smoke)"]


def tiny_heads(root: Path) -> dict[str, Path]:
    """A tiny U-Net and ESA head with non-trivial weights (the U-Net's last conv is zero-initialised)."""
    torch.manual_seed(0)
    unet = ResUNetCBAM(base_channels=8, depth=3)
    torch.nn.init.normal_(unet.head[-1].weight, std=0.05)
    esa = ResnetGenerator(ngf=4, n_blocks=1, esa="blocks")
    return {"unet": write_head_folder(root / "unet", unet, name="unet", training={"lr": 5e-5, "seed": 0},
                                      data={"fingerprint": "abc123", "train_pairs": 47, "val_pairs": 5}),
            "esa": write_head_folder(root / "esa", esa, name="esa", training={"lr": 1e-4, "lambda_cyc": 2.0},
                                     data={"fingerprint": "abc123"})}


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_save_pretrained_round_trip_gives_identical_outputs(tmp_path, one_thread):
    for name, path in tiny_heads(tmp_path / "heads").items():
        write_model_card(path, profile="smoke", standins=SMOKE)
        head = Head.from_pretrained(path)
        copy = head.save_pretrained(tmp_path / "copy" / name)
        assert sorted(p.name for p in copy.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        # the source card describes these exact weights, so it travels unchanged
        assert (copy / "README.md").read_text() == (path / "README.md").read_text()
        again = Head.from_pretrained(copy)
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.inference_mode():
            assert torch.equal(head.model(x), again.model(x))
        assert again.config == head.config
        # changed weights get a fresh card that describes them, never the old one
        with torch.no_grad():
            next(head.model.parameters()).add_(0.01)
        changed = head.save_pretrained(tmp_path / "changed" / name)
        text = (changed / "README.md").read_text()
        assert card_weights_sha256(text) == weights_sha256(changed / "model.safetensors")
        assert card_weights_sha256(text) != card_weights_sha256((path / "README.md").read_text())
        assert card_info(text)["profile"] == "smoke" and card_info(text)["standins"] == SMOKE


def test_from_pretrained_finds_a_name_in_models_heads(tmp_path, monkeypatch, one_thread):
    tiny_heads(tmp_path / "models" / "heads")
    monkeypatch.chdir(tmp_path)
    assert load_head("esa").path == Path("models/heads/esa")
    with pytest.raises(FileNotFoundError, match="not a Hub repo id"):
        load_head("no-such-head")


def test_from_pretrained_reads_a_hub_repo_from_the_cache_offline(tmp_path, monkeypatch, one_thread):
    """A repo id resolves through huggingface_hub's cache layout with HF_HUB_OFFLINE set;
    only the Hub files are read (a pickle next to them is never touched)."""
    from huggingface_hub import constants

    source = tiny_heads(tmp_path / "heads")["esa"]
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--facerefine-esa"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (snapshot / "pytorch_model.bin").write_bytes(b"not a pickle you want to load")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    head = Head.from_pretrained("someone/facerefine-esa", cache_dir=tmp_path / "hub")
    assert head.path == snapshot
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(head.model(x), load_head(source).model(x))
    with pytest.raises(FileNotFoundError, match="not in the Hub cache"):
        Head.from_pretrained("someone/not-cached", cache_dir=tmp_path / "hub")


# ------------------------------------------------------------- model cards


def _headline_latency(heads):
    """metrics/latency.json as the benchmark stage writes it (bench.derived.latency_headline)."""
    return {"mode": "smoke", "meaningful": False, "dev_steps": 50,
            "saving_vs_dev": {"mean": {**{h: 0.8812 + i / 100 for i, h in enumerate(heads)}, "schnell": 0.905},
                              "32": {h: 0.877 for h in heads}, "64": {h: 0.8854 for h in heads}},
            "head_images_per_second": {"resolution": 64, **{h: 10.7755 + i for i, h in enumerate(heads)}}}


def _full_quality(heads):
    """reports/quality.json as the evaluate stage writes it: every Table 4 column of every row
    (the committed file may predate the headline split, so the tests build their own)."""
    def row(i, ref):
        return {"clip_iqa": 0.51 + i / 100, "face_fail": i % 2, "fid_dev": None if ref == "dev" else 58.19 + i,
                "fid_diff": None if ref == "dev" else -31.91 + i, "fid_schnell": 26.28 + i,
                "identity_cos_dev": None if ref == "dev" else 0.957 - i / 100,
                "identity_cos_schnell": 0.961 - i / 100, "images": 12,
                "kid_dev_mean": None if ref == "dev" else 0.129 + i / 100, "kid_dev_std": 3.6e-16,
                "kid_schnell_mean": 0.054 + i / 100, "kid_schnell_std": 3.7e-16, "kid_subset_size": 12,
                "low_confidence": True, "psnr_dev": None if ref == "dev" else 13.96 + i,
                "ssim_dev": None if ref == "dev" else 0.0404 + i / 100}
    return {name: row(i, name) for i, name in enumerate(["schnell", "dev", "lora", *heads])}


def test_model_cards_stage_numbers_equal_the_metrics(tmp_path, monkeypatch, one_thread):
    heads = tiny_heads(tmp_path / "models" / "heads")
    for path in heads.values():
        write_model_card(path, load_params(REPO / "params.yaml"))  # what the train stages do after write_head_folder
    (tmp_path / "metrics").mkdir()
    (tmp_path / "reports").mkdir()
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "reports" / "quality.json").write_text(json.dumps(_full_quality(sorted(heads))))
    (tmp_path / "metrics" / "latency.json").write_text(json.dumps(_headline_latency(sorted(heads))))
    Image.fromarray(random_image(8, 24)).save(tmp_path / "reports" / "quality_samples.png")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(REPO / "stages" / "model_cards.py"), run_name="__main__")

    quality = json.loads((tmp_path / "reports" / "quality.json").read_text())
    latency = json.loads((tmp_path / "metrics" / "latency.json").read_text())
    for name in heads:
        card_dir = tmp_path / "models" / "cards" / name
        text = (card_dir / "README.md").read_text()
        assert (card_dir / "samples.png").is_file() and "](samples.png)" in text
        meta = front_matter(text)
        assert meta["base_model"] == "black-forest-labs/FLUX.1-schnell"
        assert meta["pipeline_tag"] == "image-to-image" and meta["license"] == "other"
        assert "facerefine" in meta["tags"]
        reported = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        row = quality[name]
        for key in ("fid_schnell", "fid_dev", "fid_diff", "clip_iqa", "kid_dev_mean", "identity_cos_schnell",
                    "face_fail"):
            assert reported[key] == row[key], key            # exact, in the machine-readable metadata
            assert _num(row[key]) in text, key               # and as printed in the Table 4 row
        assert reported["saving_vs_dev"] == latency["saving_vs_dev"]["mean"][name]
        assert reported["images_per_second"] == latency["head_images_per_second"][name]
        assert f"{latency['saving_vs_dev']['mean'][name]:.1%}" in text
        assert f"{latency['saving_vs_dev']['32'][name]:.1%}" in text
        # training facts from config.json, provenance and the stand-in banner
        config = json.loads((heads[name] / "config.json").read_text())
        assert config["data"]["fingerprint"] in text
        assert f"{sum(p.numel() for p in load_head(heads[name]).model.parameters()):,}" in text
        assert "FLUX.1 [dev] Non-Commercial License" in text and "IMDb" in text and "commercial use" in text
        assert "Not a usable model" in text and "schnell (smoke)" in text and card_info(text)["profile"] == "smoke"
        # the published card is what push uploads, as long as it describes the same weights
        assert hub.card_for(heads[name], tmp_path / "models" / "cards") == card_dir / "README.md"
        staged = hub.assemble(heads[name], tmp_path / "staged" / name, cards_dir=tmp_path / "models" / "cards")
        assert staged.files == ["model.safetensors", "config.json", "README.md", "samples.png"]
        assert (staged.folder / "README.md").read_text() == text
    # retrained weights: the metrics card is stale, push falls back to the head's own card
    write_head_folder(heads["esa"], ResnetGenerator(ngf=4, n_blocks=1, esa="blocks"), name="esa")
    write_model_card(heads["esa"], profile="smoke")
    assert hub.card_for(heads["esa"], tmp_path / "models" / "cards") == heads["esa"] / "README.md"


def test_head_card_without_metrics_points_to_the_published_card(tmp_path, one_thread):
    path = tiny_heads(tmp_path)["unet"]
    text = (write_model_card(path, profile="paper", standins=[])).read_text()
    assert "model-index" not in front_matter(text)
    assert "models/cards/unet/README.md" in text and "Not a usable model" not in text


# ------------------------------------------------------------------- push


def test_push_uploads_the_assembled_head_and_never_prints_the_token(tmp_path, monkeypatch, capsys, one_thread):
    path = tiny_heads(tmp_path)["esa"]
    write_model_card(path, profile="smoke", standins=SMOKE)
    secret = "hf_thisIsASecretToken123"
    monkeypatch.setenv("HF_TOKEN", secret)
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["token"]))

        def upload_folder(self, *, repo_id, folder_path, token, **kw):
            calls.append(("upload", repo_id, token, sorted(p.name for p in Path(folder_path).iterdir())))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    url = hub.push(path, "someone/esa", api=FakeApi(), cards_dir=tmp_path / "none")
    assert url.endswith("/commit/1")
    assert calls[0] == ("create", "someone/esa", secret)
    assert calls[1][:3] == ("upload", "someone/esa", secret)
    assert calls[1][3] == ["README.md", "config.json", "model.safetensors"]
    assert secret not in capsys.readouterr().out
    from click.testing import CliRunner

    from facerefine.cli import main

    result = CliRunner().invoke(main, ["push", str(path), "someone/esa", "--dry-run", str(tmp_path / "dry")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "dry").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert secret not in result.output
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(hub, "hub_token", lambda: None)
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        hub.push(path, "someone/esa", api=FakeApi())


# ------------------------------------------------------------- Python API


def test_python_api_returns_the_same_kind_as_it_gets(tmp_path, one_thread):
    head = load_head(tiny_heads(tmp_path)["esa"])
    array = random_image(61, 83)
    pil = Image.fromarray(array)
    reference = np.array(Enhancer(head).enhance_image(pil))  # what `facerefine enhance` computes

    out = head(pil)
    assert isinstance(out, Image.Image) and out.size == pil.size and np.array_equal(np.asarray(out), reference)
    out = head(array)
    assert out.dtype == np.uint8 and out.shape == array.shape and np.array_equal(out, reference)
    batch = head(np.stack([array, array[::-1].copy()]))
    # batched convs may round differently in the last bit, as with `facerefine enhance --batch-size`
    assert batch.shape == (2, 61, 83, 3) and np.abs(batch[0].astype(int) - reference).max() <= 1
    floats = head(array.astype(np.float32) / 255)
    assert floats.dtype == np.float32 and floats.shape == array.shape
    assert np.abs(floats * 255 - reference).max() <= 1.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    out = head(tensor)
    assert out.dtype == torch.uint8 and torch.equal(out.permute(1, 2, 0), torch.from_numpy(reference))
    out = head(tensor.unsqueeze(0).float() / 255)
    assert out.shape == (1, 3, 61, 83) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    images = head.refine([pil, pil])  # e.g. pipe(prompt).images
    assert isinstance(images, list) and all(np.array_equal(np.asarray(im), reference) for im in images)
    tiled = head(array, tile=64, overlap=8)  # tiling as `facerefine enhance --tile`
    assert np.array_equal(tiled, np.asarray(Enhancer(head, tile=64, overlap=8).enhance_image(pil)))
    with pytest.raises(TypeError, match="cannot refine"):
        head("portrait.png")


def test_import_facerefine_stays_light():
    code = "import sys, facerefine; assert 'torch' not in sys.modules; print(facerefine.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "load_head" in out.stdout


def test_fresh_repro_check_ignores_only_the_cards_latency(tmp_path, monkeypatch, one_thread):
    """.ci/check_clean.py lets a published card differ in its timings (a fresh repro re-times the
    benchmark) and in nothing else; the models/cards hash in dvc.lock may follow."""
    import importlib.util
    import subprocess

    from facerefine.card import write_published_cards

    spec = importlib.util.spec_from_file_location("check_clean", REPO / ".ci" / "check_clean.py")
    cc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cc)
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "ci@example.com")
    repo = tmp_path / "repo"
    heads = tiny_heads(tmp_path / "heads")
    quality = _full_quality(sorted(heads))
    latency = _headline_latency(sorted(heads))

    def cards(quality, latency, lock_md5):
        write_published_cards(tmp_path / "heads", repo / "models" / "cards", profile="smoke", standins=SMOKE,
                              quality=quality, latency=latency)
        lock = {"schema": "2.0", "stages": {"model_cards": {
            "cmd": "python stages/model_cards.py", "outs": [{"path": "models/cards", "md5": lock_md5}]}}}
        (repo / "dvc.lock").write_text(yaml.safe_dump(lock))

    repo.mkdir()
    cards(quality, latency, "c1.dir")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "cards"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    assert cc.check(repo) == ([], [], [])
    retimed = json.loads(json.dumps(latency))
    retimed["saving_vs_dev"]["mean"]["esa"] = 0.5
    retimed["head_images_per_second"]["esa"] = 3.0
    cards(quality, retimed, "c2.dir")
    problems, allowed, drifted = cc.check(repo)
    assert problems == [] and drifted == []
    assert "models/cards/esa/README.md (section ## Latency, latency model-index metrics only)" in allowed
    assert "dvc.lock (hashes of timing or tolerated files only)" in allowed
    changed = json.loads(json.dumps(quality))
    changed["esa"]["fid_dev"] *= 1.001  # another CPU's last bits: drift, not a problem unless --exact
    cards(changed, retimed, "c3.dir")
    problems, _, drifted = cc.check(repo)
    assert problems == [] and [d.split(":")[0] for d in drifted] == ["models/cards/esa/README.md"]
    assert cc.check(repo, exact=True)[0]
    changed["esa"]["fid_dev"] = 2 * changed["esa"]["fid_dev"] + 10  # far beyond drift tolerance
    cards(changed, retimed, "c3.dir")
    (problem,) = cc.check(repo)[0]
    assert problem.startswith("models/cards/esa/README.md: ## Results, front matter")
