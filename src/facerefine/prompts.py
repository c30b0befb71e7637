"""Prompt manifests: who is portrayed, with which prompt, seed and split.

Every random choice here is a pure function of (base seed, item id) through a
stable hash, so a name keeps its seed and split when N changes, and results
never depend on ordering, batch size or the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from facerefine.config import Params, ParamsError
from facerefine.hashing import stable_hash
from facerefine.names import Person

MANIFEST_COLUMNS = ["id", "nconst", "name", "prompt", "seed", "split", "set"]
ENRICHED, BASELINE = "enriched", "baseline"
SPLITS = ("train", "val", "test")


def seed_for(item_id: str, base_seed: int) -> int:
    """The generation seed of one image (31 bits: safe for every RNG API)."""
    return stable_hash("seed", base_seed, item_id) % (2**31)


def split_for(item_id: str, base_seed: int, train: float, val: float) -> str:
    """Assign train/val/test by hashing the id into [0, 1)."""
    u = stable_hash("split", base_seed, item_id) / 2**64
    if u < train:
        return "train"
    return "val" if u < train + val else "test"


def sample_people(people: Sequence[Person], n: int, base_seed: int) -> list[Person]:
    """Pick n people deterministically; the sample for n is a subset of the one for n+1."""
    if n > len(people):
        raise ParamsError(
            f"num_names: asked for {n} names but the names file has only {len(people)} usable actors"
        )
    ranked = sorted(people, key=lambda p: stable_hash("sample", base_seed, p.nconst))
    return ranked[:n]


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    df["seed"] = df["seed"].astype("int64")
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def enriched_manifest(people: Sequence[Person], params: Params) -> pd.DataFrame:
    """One row per sampled actor: ``A professional portrait of {name}``."""
    cfg, seed = params.prompts, params.seed
    chosen = sample_people(people, params.scale.num_names, seed)
    return _frame([
        {
            "id": p.nconst,  # IMDb ids are unique and file-name safe (validated in names.py)
            "nconst": p.nconst,
            "name": p.name,
            "prompt": cfg.template.format(name=p.name),
            "seed": seed_for(p.nconst, seed),
            "split": split_for(p.nconst, seed, cfg.split.train, cfg.split.val),
            "set": ENRICHED,
        }
        for p in chosen
    ])


def distinct_seeds(ids: Sequence[str], base_seed: int) -> list[int]:
    """Seeds for items that share one prompt: rehash on the rare 31-bit collision,
    since two equal seeds would give two identical images."""
    used: set[int] = set()
    seeds = []
    for item_id in ids:
        attempt, s = 0, seed_for(item_id, base_seed)
        while s in used:
            attempt += 1
            s = seed_for(f"{item_id}#{attempt}", base_seed)
        used.add(s)
        seeds.append(s)
    return seeds


def baseline_manifest(params: Params) -> pd.DataFrame:
    """The paper's comparison set: one fixed prompt, distinct seeds."""
    ids = [f"bl{i:07d}" for i in range(params.scale.num_baseline)]
    return _frame([
        {"id": i, "nconst": "", "name": "", "prompt": params.prompts.baseline_prompt,
         "seed": s, "split": "", "set": BASELINE}
        for i, s in zip(ids, distinct_seeds(ids, params.seed))
    ])
