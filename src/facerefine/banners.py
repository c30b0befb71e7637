"""Stand-in banners: which networks reach each report, and the banner a report carries when
any of them is a random stand-in. Report code imports this, never the weight loaders, so
rewording a banner re-runs the reports and not generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from facerefine.config import NETWORK_ROLES, standin_specs

if TYPE_CHECKING:
    from facerefine.config import Params

# The networks whose outputs reach each stage's report (its data's lineage and its own models).
# Narrower than "all" so that, e.g., changing the LoRA does not rerun the diversity analysis.
REPORT_NETWORKS: dict[str, tuple[str, ...]] = {
    "diversity": ("schnell", "deepface"),              # schnell images, DeepFace attributes
    "select_cyclegan": ("schnell", "dev"),             # heads trained on schnell and dev images
    "evaluate": NETWORK_ROLES,                         # every network feeds Table 4
    "report": NETWORK_ROLES,                           # inlines every report
}


def standin_networks(params: Params, roles: Sequence[str] = NETWORK_ROLES) -> list[str]:
    """The networks among ``roles`` that are random stand-ins (``smoke`` or ``random`` specs)
    in the active profile, as ``role (spec)``. The one rule behind every stand-in banner: a
    non-empty list means the report these networks touch shows noise, whatever the profile is
    called. Stages pass ``REPORT_NETWORKS[stage]``."""
    return standin_specs(params.scale.models.model_dump(), roles)


def standin_banner(networks: Sequence[str]) -> str:
    """The markdown banner of a report made with stand-in networks ('' when there are none)."""
    if not networks:
        return ""
    return ("> **Stand-in networks:** " + ", ".join(networks) + ": randomly initialised, not the "
            "published weights. These numbers only show that the pipeline runs end to end and mean "
            "nothing; `dvc exp run -S profile=paper` gives real ones.")
