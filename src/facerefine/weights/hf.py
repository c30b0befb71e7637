"""Hugging Face loading switches shared by the FLUX, CLIP and LoRA loaders."""

from __future__ import annotations

import os


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set: load from local folders and the local Hugging Face cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def quiet_hf() -> None:
    """Errors only, no progress bars, from diffusers and transformers."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
