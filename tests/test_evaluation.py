"""Table 4 metrics: FID/KID on the stand-in Inception, FID_diff, identity, the rendered table."""

import numpy as np
import pytest
import torch
from PIL import Image

from facerefine import banners
from facerefine.config import NETWORK_ROLES
from facerefine.evaluation import EvalSet, evaluate_sets, render_table
from facerefine.metrics import fidelity
from facerefine.metrics.identity import cosine_rows, identity_summary
from facerefine.weights import inception


def images(n, shift=0, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255).astype(np.uint8))
            for _ in range(n)]


@pytest.fixture(scope="module")
def extractor():
    return fidelity.inception_extractor(inception.inception_weights_path("smoke"))


def test_fid_is_zero_against_itself_and_grows_with_perturbation(extractor):
    base = fidelity.inception_features(images(10), extractor)
    fids = [fidelity.fid(base, fidelity.inception_features(images(10, shift=s), extractor)) for s in (0, 15, 45)]
    assert abs(fids[0]) < 1e-6
    assert 0 < fids[1] < fids[2]


def test_low_rank_fid_equals_torch_fidelity_formula():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    a = torch.rand(12, 64, generator=g, dtype=torch.float64)
    b = torch.rand(9, 64, generator=g, dtype=torch.float64) + 0.2
    reference = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
    assert fidelity.fid(a, b) == pytest.approx(reference["frechet_inception_distance"], rel=1e-6)


def test_fid_diff_sign():
    # closer to dev than to schnell -> positive, as in the paper's non-pairwise row (0.75 - 0.34)
    assert fidelity.fid_diff(0.75, 0.34) == pytest.approx(0.41)
    assert fidelity.fid_diff(0.32, 0.59) == pytest.approx(-0.27)


def test_kid_subset_is_clamped_to_the_smaller_set():
    assert fidelity.kid_subset_size(12, 30, 1000) == 12
    assert fidelity.kid_subset_size(5000, 3000, 1000) == 1000
    g = torch.Generator().manual_seed(0)
    k = fidelity.kid(torch.rand(7, 16, generator=g), torch.rand(9, 16, generator=g), subset_size=1000, subsets=5)
    assert k.subset_size == 7 and np.isfinite(k.mean)


def test_identity_similarity():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 512)).astype(np.float32)
    other = rng.normal(size=(4, 512)).astype(np.float32)
    assert np.allclose(cosine_rows(emb, emb), 1.0, atol=1e-6)
    assert np.all(cosine_rows(emb, other) < 0.5)
    lost = emb.copy()
    lost[1] = np.nan  # no face found in output 1
    summary = identity_summary(lost, emb)
    assert summary["face_fail"] == 1 and summary["pairs"] == 3 and summary["cos_mean"] == pytest.approx(1.0)


def fake_rows():
    schnell, dev = images(6, seed=1), images(6, shift=40, seed=1)
    half = images(6, shift=20, seed=1)
    sets = [EvalSet("schnell", schnell), EvalSet("dev", dev), EvalSet("esa", half)]
    def features(ims):  # mean colour plus a per-image offset: distinct, cheap, deterministic
        rgb = np.stack([np.asarray(i, dtype=np.float64).mean((0, 1)) for i in ims])
        return torch.from_numpy(rgb) + torch.arange(len(ims), dtype=torch.float64)[:, None]

    return evaluate_sets(
        sets, schnell, dev,
        features=features,
        clip_iqa=lambda ims: np.full(len(ims), 0.5),
        embed=lambda ims: np.stack([np.asarray(i, dtype=np.float32)[:4, :4].ravel() for i in ims]),
        kid_subset_size=1000, kid_subsets=3, seed=0)


def test_rows_have_every_metric_and_references_show_dashes():
    rows = fake_rows()
    assert rows["schnell"]["fid_schnell"] is None and rows["schnell"]["fid_dev"] > 0
    assert rows["dev"]["fid_dev"] is None and rows["dev"]["identity_cos_dev"] is None
    esa = rows["esa"]
    assert esa["fid_diff"] == pytest.approx(esa["fid_schnell"] - esa["fid_dev"])
    assert esa["kid_subset_size"] == 6 and esa["face_fail"] == 0 and esa["low_confidence"]
    assert {"kid_dev_mean", "kid_dev_std", "clip_iqa", "identity_cos_schnell", "ssim_dev", "psnr_dev"} <= set(esa)


def test_report_lists_every_row_and_marks_low_confidence():
    text = render_table(fake_rows(), provenance=provenance_for({"esa": head_config()}), standins=["schnell (smoke)"])
    for label in ("FLUX.1-schnell", "FLUX.1-dev", "ESA-CycleGAN (non-pairwise)"):
        assert label in text
    assert "†" in text and "low confidence: 6 images" in text and "Stand-in networks:** schnell (smoke)" in text
    assert "0.75 / 0.34 / 0.41 / 0.35" in text  # the paper's row alongside ours


def test_table4_notes_the_fid_scale_and_has_no_banner_without_standins():
    text = render_table(fake_rows(), provenance={})
    assert "not on the scale of the standard Inception FID that torch-fidelity computes" in text
    assert "Stand-in networks" not in text


def test_standin_banner_comes_from_the_networks_not_the_profile_name():
    import yaml

    from facerefine.config import parse_params

    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profile"] = "paper"
    raw["profiles"]["paper"]["models"]["clip_iqa"] = "random"  # one stand-in in a real profile
    params = parse_params(raw)
    found = banners.standin_networks(params, banners.REPORT_NETWORKS["evaluate"])
    assert found == ["clip_iqa (random)"]
    assert "clip_iqa (random)" in render_table(fake_rows(), provenance={}, standins=found).split("\n## ")[0]
    # a network that does not reach a report leaves it alone
    assert banners.standin_networks(params, banners.REPORT_NETWORKS["diversity"]) == []
    raw["profiles"]["paper"]["models"]["clip_iqa"] = "pretrained"
    assert banners.standin_networks(parse_params(raw)) == []
    smoke = parse_params({**raw, "profile": "smoke"})
    assert len(banners.standin_networks(smoke)) == len(NETWORK_ROLES)


# ------------------------------------------------------------------ Table 4 provenance (issue 21)

def head_config(**training) -> dict:
    base = {"variant": "esa", "esa_placement": "trunk", "lambda_cyc": 2.0, "lambda_identity": 0.0, "lr": 1e-4,
            "n_epochs": 95, "n_epochs_decay": 95, "image_size": 512, "data_fraction": 0.2}
    return {"training": {**base, **training}, "data": {"train_pairs": 28000, "dataset_pairs": 140000}}


UNET_FINAL_CONFIG = {"training": {"upsample": "transpose", "structure_loss": "grad", "lr": 5e-5, "image_size": 512,
                                  "data_fraction": 0.01, "max_epochs": 10, "patience": 3},
                     "data": {"train_pairs": 1400, "dataset_pairs": 140000}}
FLUX = "black-forest-labs/FLUX.1-schnell"


def provenance_for(heads, *, eval_size=512, data_models=FLUX, clip_iqa="original"):
    from facerefine.provenance import table4_provenance

    return table4_provenance(heads, eval_size=eval_size, data_models=data_models, clip_iqa=clip_iqa,
                             lora="hugovntr/flux-schnell-realism")


def test_paper_values_sit_beside_a_row_only_under_the_paper_final_configuration():
    final = provenance_for({"unet": UNET_FINAL_CONFIG, "esa": head_config()})
    assert all(not p.mismatches for p in final.values())
    text = render_table(fake_rows(), provenance=final)
    assert "| 0.75 / 0.34 / 0.41 / 0.35 |" in text.split("## Configuration")[0]  # beside our ESA row
    assert "apart: not the paper's configuration" not in text and "## The paper's Table 4 values, apart" not in text

    sweep = provenance_for({"unet": UNET_FINAL_CONFIG, "esa": head_config(image_size=256, data_fraction=0.02,
                                                                          n_epochs=10, n_epochs_decay=10)})
    text = render_table(fake_rows(), provenance=sweep)
    table, rest = text.split("## Configuration of each row")
    assert "0.75 / 0.34" not in table and "apart: not the paper's configuration" in table
    apart = rest.split("## The paper's Table 4 values, apart")[1]
    esa_line = next(line for line in apart.splitlines() if line.startswith("| ESA-CycleGAN"))
    assert "0.75 / 0.34 / 0.41 / 0.35" in esa_line
    for why in ("256² instead of 512²", "0.02 of the dataset instead of 0.2", "20 epochs instead of 190",
                "trained at 256², applied to the 512² test images (flagged, not resized)"):
        assert why in esa_line
    # the references still match, so their paper values stay beside them
    assert "| 0.37 / – / – / 0.36 |" in table


def test_each_row_states_its_options_and_stand_ins_or_another_clip_recipe_move_paper_values_apart():
    prov = provenance_for({"esa": head_config()}, data_models="smoke", clip_iqa="vit-b16")
    text = render_table(fake_rows(), provenance=prov, clip_iqa="vit-b16")
    assert "| CLIP-IQA (ViT-B/16) |" in text
    config = text.split("## Configuration of each row")[1].split("\n## ")[0]
    assert "esa, ESA `trunk`, λ_cyc 2, lr 0.0001, λ_id 0, 512², 0.2 of the dataset (28000 of 140000 pairs), " \
           "190 epochs (95 + 95 decay)" in config
    for name in ("schnell", "dev", "esa"):
        assert "stand-in networks (`smoke`)" in prov[name].mismatches[0]
        assert any("CLIP-IQA recipe `vit-b16`" in m for m in prov[name].mismatches)


def test_unet_rows_check_size_fraction_epochs_and_upsampling():
    from facerefine.provenance import head_mismatches

    def why(**changes):
        cfg = {"training": {**UNET_FINAL_CONFIG["training"], **changes}}
        return head_mismatches("unet", cfg, eval_size=512, data_models=FLUX)

    assert why() == []
    assert why(data_fraction=0.008) == ["0.008 of the dataset instead of 0.01"]
    assert why(max_epochs=2) == ["up to 2 epochs instead of 10"]
    assert why(upsample="nearest") == ["`nearest` upsampling instead of transposed convolutions "
                                       "(the paper's likely choice)"]
    assert "trained at 256², applied to the 512² test images (flagged, not resized)" in why(image_size=256)
