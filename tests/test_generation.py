"""Generation on the smoke FLUX stand-ins: loading, determinism, resume, pairing."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from facerefine.config import parse_params
from facerefine.data import shards
from facerefine.generation import runner
from facerefine.generation.flux import DevImageToImage, SchnellTextToImage
from facerefine.prompts import MANIFEST_COLUMNS, enriched_manifest
from facerefine.names import Person
from facerefine.paths import facerefine_home
from facerefine.weights import flux

SIZE = 32


@pytest.fixture(scope="module")
def params():
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profiles"]["smoke"].update(num_names=10, image_size=SIZE, shard_size=4, batch_size=2)
    return parse_params(raw)


@pytest.fixture(scope="module")
def manifest(params):
    people = [Person(f"nm{i:07d}", n) for i, n in enumerate(
        ["Ann Lee", "Bo Chen", "Zoë O'Brien 🎬", "AC/DC Fan", 'The "Rock"', "李小龍",
         "Ola Nordmann", "Kwame Mensah", "Priya Patel", "José Álvarez", "Extra One"])]
    return enriched_manifest(people, params)


@pytest.fixture(scope="module")
def schnell(params):
    return SchnellTextToImage(flux.load_flux("smoke", "schnell"), params.schnell, SIZE)


def run(manifest, out, generate, batch_size=2, shard_size=4, **kw):
    plan = runner.plan_shards(manifest, shard_size)
    stats = runner.generate_shards(plan, out, generate, job_fingerprint="job", batch_size=batch_size,
                                   sample_meta=lambda r: {c: r[c] for c in MANIFEST_COLUMNS}, **kw)
    runner.finalize(plan, out, MANIFEST_COLUMNS)
    return stats


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_standins_are_real_flux_components_loaded_from_a_local_dir():
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    for role, guidance in (("schnell", False), ("dev", True)):
        location = Path(flux.flux_location("smoke", role))
        assert location.is_relative_to(facerefine_home()) and (location / "model_index.json").is_file()
        pipe = FluxPipeline.from_pretrained(location, local_files_only=True)
        assert isinstance(pipe.transformer, FluxTransformer2DModel)
        assert isinstance(pipe.vae, AutoencoderKL) and pipe.vae.config.latent_channels == 16
        assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.text_encoder_2, T5EncoderModel)
        assert pipe.transformer.config.guidance_embeds is guidance
        assert pipe.tokenizer.model_max_length == 77
        assert not pipe.text_encoder_2.training  # dropout off: deterministic


def test_same_params_give_byte_identical_shards(tmp_path, manifest, schnell):
    run(manifest, tmp_path / "a", schnell)
    run(manifest, tmp_path / "b", schnell)
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a == b and len([n for n in a if n.endswith(".tar")]) == 3


def test_batch_size_changes_pixels_by_at_most_one_level(tmp_path, manifest, schnell):
    # Batched float kernels may round differently; the seeds (noise) are per image.
    run(manifest, tmp_path / "b1", schnell, batch_size=1)
    run(manifest, tmp_path / "b4", schnell, batch_size=4)
    for path in shards.list_shards(tmp_path / "b1"):
        for s1, s4 in zip(shards.iter_shard(path), shards.iter_shard(tmp_path / "b4" / path.name)):
            diff = np.abs(np.asarray(s1.image, dtype=int) - np.asarray(s4.image, dtype=int))
            assert s1.key == s4.key and diff.max() <= 1


def test_interrupted_run_resumes_to_the_same_output(tmp_path, manifest, schnell):
    run(manifest, tmp_path / "ref", schnell)
    calls = []

    def dies_on_fourth_batch(rows, k):
        calls.append(k)
        if len(calls) == 4:  # shard 0 complete, shard 1 half done
            raise KeyboardInterrupt
        return schnell(rows, k)

    with pytest.raises(KeyboardInterrupt):
        run(manifest, tmp_path / "out", dies_on_fourth_batch)
    assert [p.name for p in shards.list_shards(tmp_path / "out")] == ["shard-000000.tar"]

    calls.clear()
    stats = run(manifest, tmp_path / "out", lambda rows, k: calls.append(k) or schnell(rows, k))
    assert 0 not in calls and stats.shards_done_before == 1  # the finished shard is not redone
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "ref")
    for path in shards.list_shards(tmp_path / "out"):
        assert len(list(shards.iter_shard(path))) == len(shards.read_index(path)["keys"])


def test_changed_job_regenerates_and_shrunk_plan_drops_stale_shards(tmp_path, manifest, schnell):
    run(manifest, tmp_path / "out", schnell)
    stats = run(manifest.iloc[:5], tmp_path / "out", schnell)  # 2 shards now, shard 1 content changed
    assert stats.shards_done_before == 1 and stats.shards_written == 1
    assert [p.name for p in shards.list_shards(tmp_path / "out")] == ["shard-000000.tar", "shard-000001.tar"]


def test_dev_img2img_pairs_with_schnell_by_key(tmp_path, params, manifest, schnell):
    manifest = manifest.iloc[:6]  # 35 img2img steps per image: keep it small
    run(manifest, tmp_path / "schnell", schnell)
    dev = DevImageToImage(flux.load_flux("smoke", "dev", img2img=True), params.dev, SIZE, tmp_path / "schnell")
    run(manifest, tmp_path / "dev", dev)
    for path in shards.list_shards(tmp_path / "schnell"):
        src = list(shards.iter_shard(path))
        out = list(shards.iter_shard(tmp_path / "dev" / path.name))
        assert [s.key for s in src] == [s.key for s in out]
        assert all(out_s.image.size == (SIZE, SIZE) for out_s in out)
        assert any(not np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(src, out))
