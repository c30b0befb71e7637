"""`data_fraction` is a fraction of the WHOLE dataset, drawn from the train split (issue 21):
the paper's "a 20% subset of the entire dataset" and "a fraction (1%) of the dataset"."""

import pandas as pd
import pytest
import yaml

from facerefine import cost
from facerefine.config import ParamsError, parse_params
from facerefine.data.datasets import select_subset, subset_counts


def manifest(n: int = 1000, train: float = 0.8, val: float = 0.1) -> pd.DataFrame:
    k_train, k_val = round(n * train), round(n * val)
    splits = ["train"] * k_train + ["val"] * k_val + ["test"] * (n - k_train - k_val)
    return pd.DataFrame({"id": [f"nm{i:07d}" for i in range(n)], "split": splits})


def test_a_fraction_counts_subjects_of_the_whole_dataset_not_of_the_train_split():
    m = manifest()
    sub = select_subset(m, 0.2, seed=1)
    assert len(sub.train) == 200  # 20% of 1000, not 20% of the 800 train subjects (160)
    train_ids = set(m.loc[m.split == "train", "id"])
    assert set(sub.train) <= train_ids  # drawn from the train split only
    assert len(sub.val) == 25 and set(sub.val) <= set(m.loc[m.split == "val", "id"])  # 200/800 of val
    assert sub.record() == {"data_fraction": 0.2, "dataset_pairs": 1000, "train_pairs": 200, "val_pairs": 25}
    assert len(select_subset(m, 0.01, seed=1).train) == 10  # the U-Net's 1%, not 0.8%


def test_subsets_are_nested_and_deterministic_and_capped_at_the_train_split():
    m = manifest()
    small, large = select_subset(m, 0.05, seed=3), select_subset(m, 0.2, seed=3)
    assert set(small.train) <= set(large.train) and small == select_subset(m, 0.05, seed=3)
    assert subset_counts(1000, 800, 100, 0.8) == (800, 100)
    assert subset_counts(1000, 800, 100, 0.9) == (800, 100)  # capped (params refuse it, below)
    assert subset_counts(10, 8, 1, 0.001) == (1, 1)  # never empty


def test_params_refuse_a_fraction_larger_than_the_train_split_share():
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profiles"]["smoke"]["cyclegan"]["data_fraction"] = 0.9
    with pytest.raises(ParamsError, match=r"profiles.smoke.cyclegan.data_fraction 0.9: a fraction of the whole "
                                          r"dataset.*prompts.split.train = 0.8"):
        parse_params(raw)


def test_the_cost_model_counts_the_same_pairs():
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    params = parse_params({**raw, "profile": "paper"})
    n = cost.counts(params, params.scale)
    assert n.cyclegan_train == round(140_000 * 0.02) and n.unet_train == 1_400  # not 0.8 x those
    assert n.unet_val == round(n.val * 1_400 / n.train)
