"""Prompt manifests: deterministic sampling, seeds and splits."""

import pytest
import yaml

from facerefine.config import ParamsError, parse_params
from facerefine.names import Person
from facerefine.prompts import baseline_manifest, distinct_seeds, enriched_manifest, sample_people, seed_for

PEOPLE = [Person(f"nm{i:07d}", f"Person {i}") for i in range(500)]


def params(**scale):
    raw = yaml.safe_load(open("params.yaml", encoding="utf-8"))
    raw["profiles"]["smoke"].update(scale)
    return parse_params(raw)


def test_manifest_is_deterministic_and_complete():
    p = params(num_names=100)
    a, b = enriched_manifest(PEOPLE, p), enriched_manifest(list(reversed(PEOPLE)), p)
    assert a.equals(b)  # input order does not matter
    assert list(a.columns) == ["id", "nconst", "name", "prompt", "seed", "split", "set"]
    assert a["id"].is_unique and a["id"].is_monotonic_increasing
    row = a.iloc[0]
    assert row["prompt"] == f"A professional portrait of {row['name']}"
    assert row["seed"] == seed_for(row["id"], p.seed)


def test_growing_n_keeps_earlier_choices():
    small = set(sample_people(PEOPLE, 50, 7))
    big = set(sample_people(PEOPLE, 200, 7))
    assert small < big
    assert set(sample_people(PEOPLE, 50, 8)) != small  # the seed matters


def test_split_fractions_roughly_hold():
    m = enriched_manifest(PEOPLE, params(num_names=500))
    counts = m["split"].value_counts(normalize=True)
    assert abs(counts["train"] - 0.8) < 0.06 and abs(counts["test"] - 0.1) < 0.04


def test_too_many_names_requested():
    with pytest.raises(ParamsError, match="num_names: asked for 501"):
        enriched_manifest(PEOPLE, params(num_names=501))


def test_baseline_has_distinct_seeds_and_one_prompt():
    m = baseline_manifest(params(num_baseline=300))
    assert m["seed"].is_unique and m["prompt"].nunique() == 1
    assert m["prompt"].iloc[0] == "A professional business portrait"


def test_distinct_seeds_resolves_collisions(monkeypatch):
    import facerefine.prompts as prompts

    fake = {"a": 1, "b": 1, "b#1": 1, "b#2": 2, "c": 2, "c#1": 3}  # b collides twice, c once
    monkeypatch.setattr(prompts, "seed_for", lambda item_id, base: fake[item_id])
    assert distinct_seeds(["a", "b", "c"], 0) == [1, 2, 3]
