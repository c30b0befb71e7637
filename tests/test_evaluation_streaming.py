"""Streamed evaluation equals the in-memory evaluation it replaced, whatever the batch size.

The oracle below is the pre-streaming ``evaluate_sets`` and ``pixel_metrics``, copied
verbatim (every set held in memory, one feature call per set, pixel metrics on one stacked
tensor), so the streamed numbers are checked against what the project reported before.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from facerefine.analysis.embeddings import arcface_embeddings
from facerefine.data import shards
from facerefine.data.datasets import to_tensor
from facerefine.evaluation import (EvalSet, Extractors, evaluate_sets, evaluate_stream, head_set,
                                   memory_batches, pair_batches, shard_set)
from facerefine.metrics import fidelity
from facerefine.metrics.identity import identity_summary
from facerefine.metrics.image import psnr, ssim
from facerefine.weights import inception

SCHNELL, DEV = "schnell", "dev"
COMPARED = ("fid_schnell", "fid_dev", "fid_diff", "kid_schnell_mean", "kid_schnell_std", "kid_dev_mean",
            "kid_dev_std", "clip_iqa", "identity_cos_schnell", "identity_cos_dev", "face_fail", "ssim_dev",
            "psnr_dev", "images")


# ---------------------------------------------------------------- the oracle: today's in-memory code
def oracle_pixel_metrics(images, targets):
    x = torch.stack([to_tensor(im) for im in images])
    y = torch.stack([to_tensor(im) for im in targets])
    return {"ssim_dev": float(ssim(x, y).mean()), "psnr_dev": float(psnr(x, y).mean())}


def oracle_evaluate_sets(sets, schnell, dev, *, features, clip_iqa, embed, kid_subset_size, kid_subsets, seed):
    feats = {SCHNELL: features(schnell), DEV: features(dev)}
    emb = {SCHNELL: embed(schnell), DEV: embed(dev)}
    rows = {}
    for s in sets:
        f = feats.get(s.name) if s.name in (SCHNELL, DEV) else features(s.images)
        e = emb.get(s.name) if s.name in (SCHNELL, DEV) else embed(s.images)
        row = {"images": len(s.images), "low_confidence": len(s.images) < fidelity.FID_MIN_RELIABLE}
        for ref in (SCHNELL, DEV):
            if s.name == ref:
                row[f"fid_{ref}"] = row[f"kid_{ref}_mean"] = row[f"kid_{ref}_std"] = None
                continue
            row[f"fid_{ref}"] = fidelity.fid(f, feats[ref])
            k = fidelity.kid(f, feats[ref], subset_size=kid_subset_size, subsets=kid_subsets, seed=seed)
            row[f"kid_{ref}_mean"], row[f"kid_{ref}_std"] = k.mean, k.std
            row["kid_subset_size"] = k.subset_size
        both = row["fid_schnell"] is not None and row["fid_dev"] is not None
        row["fid_diff"] = fidelity.fid_diff(row["fid_schnell"], row["fid_dev"]) if both else None
        row["clip_iqa"] = float(np.mean(clip_iqa(s.images)))
        for ref in (SCHNELL, DEV):
            ident = identity_summary(e, emb[ref]) if s.name != ref else {"cos_mean": None, "pairs": 0}
            row[f"identity_cos_{ref}"] = ident["cos_mean"]
        row["face_fail"] = int((~np.isfinite(e).all(axis=1)).sum())
        row.update(oracle_pixel_metrics(s.images, dev) if s.name != DEV else {"ssim_dev": None, "psnr_dev": None})
        rows[s.name] = row
    return rows


# ---------------------------------------------------------------- small data and per-image fakes
def images(n, shift=0, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255).astype(np.uint8))
            for _ in range(n)]


def fake_features(ims):
    """Per-image statistics (mean, std, quartiles per channel): each row depends on its image only."""
    rows = []
    for im in ims:
        a = np.asarray(im, dtype=np.float64).reshape(-1, 3)
        rows.append(np.concatenate([a.mean(0), a.std(0), *np.quantile(a, [0.25, 0.75], axis=0)]))
    return torch.from_numpy(np.stack(rows))


def fake_clip(ims):
    return np.array([np.asarray(im, dtype=np.float64).mean() / 255 for im in ims])


def fake_embed(ims):
    """A per-image vector, NaN (no face) where the top-left pixel is a multiple of 7."""
    out = np.stack([np.asarray(im, dtype=np.float32)[:4, :4].ravel() for im in ims])
    lost = [int(np.asarray(im)[0, 0, 0]) % 7 == 0 for im in ims]
    out[lost] = np.nan
    return out


FAKES = Extractors(fake_features, fake_clip, fake_embed)


@pytest.fixture(scope="module")
def data():
    schnell, dev = images(11, seed=1), images(11, shift=40, seed=2)
    sets = [EvalSet("schnell", schnell), EvalSet("dev", dev), EvalSet("esa", images(11, shift=20, seed=3)),
            EvalSet("lora", images(11, shift=-10, seed=4))]
    return schnell, dev, sets


def assert_rows_equal(got, want):
    assert list(got) == list(want)
    for name in want:
        for key in COMPARED:
            if want[name][key] is None:
                assert got[name][key] is None, (name, key)
            else:
                assert got[name][key] == pytest.approx(want[name][key], rel=1e-6, abs=1e-6), (name, key)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 11, 64])
def test_streamed_rows_equal_the_in_memory_oracle(data, batch_size):
    schnell, dev, sets = data
    kw = dict(kid_subset_size=1000, kid_subsets=5, seed=3)
    want = oracle_evaluate_sets(sets, schnell, dev, features=fake_features, clip_iqa=fake_clip, embed=fake_embed, **kw)
    assert any(r["face_fail"] for r in want.values())  # the NaN path is exercised
    got = evaluate_sets(sets, schnell, dev, features=fake_features, clip_iqa=fake_clip, embed=fake_embed,
                        batch_size=batch_size, **kw)
    assert_rows_equal(got, want)


def test_real_inception_and_arcface_stream_like_the_oracle(data):
    """With the networks themselves (smoke stand-ins: full-size Inception and ArcFace), a feature
    does not depend on its batch: streamed FID/KID/identity equal the whole-set calls."""
    schnell, dev = data[0][:6], data[1][:6]  # six subjects: a full-size Inception costs seconds per image
    sets = [EvalSet(s.name, s.images[:6]) for s in data[2][:3]]
    extractor = fidelity.inception_extractor(inception.inception_weights_path("smoke"))

    def features(ims):
        return fidelity.inception_features(ims, extractor, batch_size=32)

    def embed(ims):
        return arcface_embeddings(ims, "smoke", "skip")

    kw = dict(kid_subset_size=1000, kid_subsets=5, seed=3)
    want = oracle_evaluate_sets(sets, schnell, dev, features=features, clip_iqa=fake_clip, embed=embed, **kw)
    got = evaluate_sets(sets, schnell, dev, features=features, clip_iqa=fake_clip, embed=embed,
                        batch_size=4, **kw)
    assert_rows_equal(got, want)


def write_set(directory, keys, ims, shard_size=4):
    for k, start in enumerate(range(0, len(keys), shard_size)):
        samples = [shards.Sample(key, im, {"id": key}) for key, im in zip(keys[start:start + shard_size],
                                                                         ims[start:start + shard_size])]
        shards.write_shard(directory / shards.shard_name(k), samples, "test")


def test_stage_streaming_reads_shards_lazily_and_matches(tmp_path, data):
    """What the stage does: schnell/dev from shards by id, LoRA from its own shards, a head on
    each schnell batch; the sample grid keeps only the first images."""
    schnell, dev, sets = data
    keys = [f"en{i:07d}" for i in range(len(schnell))]
    for name, ims in (("schnell", schnell), ("dev", dev), ("lora", sets[3].images)):
        write_set(tmp_path / name, keys, ims)
    head = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3)[:, :, None, None] * 0.8)
        head.bias.fill_(0.1)
    from facerefine.evaluation import apply_head
    headed = apply_head(head, schnell, batch_size=5)
    kw = dict(kid_subset_size=1000, kid_subsets=5, seed=3)
    # The oracle sees what went through the PNG shards (lossless, so the same pixels).
    want = oracle_evaluate_sets([*sets[:2], EvalSet("lora", sets[3].images), EvalSet("unet", headed)],
                                schnell, dev, features=fake_features, clip_iqa=fake_clip, embed=fake_embed, **kw)
    rows = [{"id": k} for k in keys]
    result = evaluate_stream(pair_batches(tmp_path / "schnell", tmp_path / "dev", rows, batch_size=3),
                             {"lora": shard_set(tmp_path / "lora"), "unet": head_set(head, batch_size=2)},
                             extract=FAKES, keep=2, **kw)
    assert_rows_equal(result.rows, want)
    assert {n: len(s) for n, s in result.samples.items()} == {"schnell": 2, "dev": 2, "lora": 2, "unet": 2}
    assert np.array_equal(np.asarray(result.samples["lora"][1]), np.asarray(sets[3].images[1]))


def test_missing_test_image_fails_before_any_work(tmp_path, data):
    schnell, dev, _ = data
    keys = [f"en{i:07d}" for i in range(4)]
    write_set(tmp_path / "schnell", keys, schnell[:4])
    write_set(tmp_path / "dev", keys[:3], dev[:3])
    with pytest.raises(shards.ShardError, match="en0000003"):
        next(pair_batches(tmp_path / "schnell", tmp_path / "dev", [{"id": k} for k in keys], batch_size=2))


def test_a_row_with_the_wrong_number_of_images_is_an_error(data):
    schnell, dev, _ = data
    with pytest.raises(ValueError, match="'broken': 1 images for a batch of 3"):
        evaluate_stream(memory_batches(schnell, dev, 3), {"broken": lambda b: b.schnell[:1]}, extract=FAKES,
                        kid_subset_size=10, kid_subsets=2, seed=0)
