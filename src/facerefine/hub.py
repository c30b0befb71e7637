"""Heads on the Hugging Face Hub: resolve a local folder, a name or a repo id; push one.

A head folder already follows the Hub's layout for small PyTorch models:
``model.safetensors`` (weights only), ``config.json`` and a ``README.md``
model card. ``from_pretrained`` accepts, in this order:

1. a folder that exists;
2. a name in ``models/heads/`` (``unet``, ``cyclegan``, ``esa``);
3. a Hub repo id (``owner/name``, optionally ``owner/name@revision``), fetched with
   ``huggingface_hub.snapshot_download`` into the Hub cache (so ``HF_HUB_OFFLINE=1``,
   ``HF_HUB_CACHE``/``HF_HOME`` and ``hf auth login`` work as everywhere else). Only
   :data:`HUB_FILES` are downloaded: a repo holding a pickle gets it ignored.

``push`` uploads a folder assembled by :func:`assemble`: the head's weights and
config, and the richest model card that describes exactly these weights (the
``model_cards`` stage's card with the metrics, else the head's own card).
The token comes from the environment only (``HF_TOKEN``, or the token a previous
``hf auth login`` stored); it is never printed, logged or written.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from facerefine import paths

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
HUB_FILES = (WEIGHTS, CONFIG, CARD)
CARDS_DIR = Path("models/cards")  # the model_cards stage's output: one folder per head
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(@[\w./-]+)?$")


def looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def resolve_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, local_files_only: bool = False) -> Path:
    """The local folder of a head: an existing folder, ``models/heads/<name>``, or a Hub snapshot."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    named = paths.HEADS / str(name_or_path)
    if named.is_dir():
        return named
    text = str(name_or_path)
    if not looks_like_repo_id(text):
        known = sorted(p.name for p in paths.HEADS.iterdir() if p.is_dir()) if paths.HEADS.is_dir() else []
        raise FileNotFoundError(f"no head at '{text}', no head of that name in {paths.HEADS}/ "
                                f"(known: {', '.join(known) or 'none; run dvc repro first'}), "
                                "and it is not a Hub repo id (owner/name)")
    repo_id, _, at = text.partition("@")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, revision=revision or at or None, cache_dir=cache_dir,
                                   local_files_only=local_files_only, allow_patterns=list(HUB_FILES))
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(f"head '{text}' is not in the Hub cache and the Hub cannot be reached "
                                f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {err}") from None
    except HfHubHTTPError as err:
        raise FileNotFoundError(f"head '{text}' could not be fetched from the Hub: {err}") from None
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"Hub repo '{repo_id}' has no {WEIGHTS} + {CONFIG}: not a facerefine head")
    return folder


# ------------------------------------------------------------------ pushing


def card_for(head_dir: Path, cards_dir: Path = CARDS_DIR) -> Path | None:
    """The model card to publish with ``head_dir``: ``models/cards/<name>/README.md`` when it
    describes these very weights (same sha256), else the head's own README.md, else None."""
    from facerefine.card import card_weights_sha256, weights_sha256

    own = head_dir / CARD
    name = head_dir.name
    try:
        import json
        name = json.loads((head_dir / CONFIG).read_text(encoding="utf-8")).get("name", name)
    except (OSError, ValueError):
        pass
    staged = cards_dir / name / CARD
    if staged.is_file() and card_weights_sha256(staged.read_text(encoding="utf-8")) == weights_sha256(head_dir / WEIGHTS):
        return staged
    return own if own.is_file() else None


@dataclass(frozen=True)
class Assembled:
    folder: Path
    files: list[str]
    card: Path | None


def assemble(head: str | os.PathLike, out_dir: str | os.PathLike, *, cards_dir: Path = CARDS_DIR) -> Assembled:
    """Copy what gets uploaded into ``out_dir``: weights, config, the card and the card's images."""
    head_dir = resolve_pretrained(head, local_files_only=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name in (WEIGHTS, CONFIG):
        if not (head_dir / name).is_file():
            raise FileNotFoundError(f"{head_dir}/{name} is missing: not a head folder")
        shutil.copyfile(head_dir / name, out / name)
        files.append(name)
    card = card_for(head_dir, cards_dir)
    if card is not None:
        shutil.copyfile(card, out / CARD)
        files.append(CARD)
        for image in sorted(card.parent.glob("*.png")):  # sample images the card links to
            shutil.copyfile(image, out / image.name)
            files.append(image.name)
    return Assembled(out, files, card)


def hub_token() -> str | None:
    """HF_TOKEN, else what ``hf auth login`` stored; never an argument, never printed."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def push(head: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
         commit_message: str | None = None, api=None, cards_dir: Path = CARDS_DIR) -> str:
    """Create ``repo_id`` if needed and upload the assembled head; returns the commit URL."""
    import tempfile

    if not looks_like_repo_id(repo_id) or "@" in repo_id:
        raise ValueError(f"not a Hub repo id (owner/name): {repo_id!r}")
    token = hub_token()
    if not token:
        raise PermissionError("no Hugging Face token: set HF_TOKEN in the environment (or run `hf auth login`)")
    if api is None:
        from huggingface_hub import HfApi
        api = HfApi()
    with tempfile.TemporaryDirectory(prefix="facerefine-push-") as tmp:
        staged = assemble(head, tmp, cards_dir=cards_dir)
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(staged.folder), token=token,
                                 revision=revision, commit_message=commit_message or f"Upload facerefine head {Path(str(head)).name}")
    return str(getattr(info, "commit_url", info))
