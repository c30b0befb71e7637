"""Stage `model_cards`: the published model card of every head, with the pipeline's own numbers.

`models/cards/<head>/README.md` (+ `samples.png`) = the head card of `models/heads/<head>/`
plus its Table 4 row (`reports/quality.json`, every column), its latency (`metrics/latency.json`) and the
report's sample grid. A separate output because the head folders belong to the train stages
(DVC lets one stage only write its own outputs); `facerefine push` uploads this card with
the head when it describes the same weights (sha256).
"""

import json

from facerefine import paths
from facerefine.banners import standin_networks
from facerefine.card import CARDS_DIR, write_published_cards
from facerefine.config import load_params
from facerefine.stagekit import run_stage
from facerefine.tracking import stage_run


def _read(path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main() -> None:
    params = load_params()
    with stage_run("model_cards", profile=params.profile) as run:
        # the card carries metrics, which every network feeds: the banner counts them all
        written = write_published_cards(paths.HEADS, CARDS_DIR, profile=params.profile,
                                        standins=standin_networks(params),
                                        quality=_read(paths.REPORTS / "quality.json"),
                                        latency=_read(paths.METRICS / "latency.json"),
                                        samples=paths.REPORTS / "quality_samples.png")
        for card in written:
            run.log_artifact(card)


if __name__ == "__main__":
    run_stage(main)
