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


def card_for(head_dir: Path, cards_dir: Path = CARDS_DIR, sha: str | None = None) -> Path | None:
    """The model card that describes the weights in ``head_dir`` (same sha256): the ``model_cards``
    stage's ``models/cards/<name>/README.md`` (with metrics) first, else the head's own README.md;
    None when neither matches (e.g. the weights changed after the card was written)."""
    import json

    from facerefine.card import card_weights_sha256, weights_sha256

    name = head_dir.name
    try:
        name = json.loads((head_dir / CONFIG).read_text(encoding="utf-8")).get("name", name)
    except (OSError, ValueError):
        pass
    sha = sha or weights_sha256(head_dir / WEIGHTS)
    for card in (cards_dir / name / CARD, head_dir / CARD):
        if card.is_file() and card_weights_sha256(card.read_text(encoding="utf-8")) == sha:
            return card
    return None


def write_card(source_dir: Path, out_dir: Path, cards_dir: Path = CARDS_DIR) -> list[str]:
    """Give the head in ``out_dir`` (weights and config already there) the card of ``source_dir``
    that describes exactly those weights, with the images it links to; with none, render a fresh
    card from ``out_dir`` (training facts, no metrics). Returns the file names written."""
    from facerefine.card import card_info, render_card, weights_sha256

    card = card_for(source_dir, cards_dir, sha=weights_sha256(out_dir / WEIGHTS))
    if card is None:
        own = source_dir / CARD
        profile = card_info(own.read_text(encoding="utf-8")).get("profile") if own.is_file() else None
        text = render_card(out_dir, profile=profile)
        (out_dir / CARD).write_text(text, encoding="utf-8")
        return [CARD]
    files = [CARD]
    if card.resolve() != (out_dir / CARD).resolve():
        shutil.copyfile(card, out_dir / CARD)
    for image in sorted(card.parent.glob("*.png")):  # sample images the card links to
        if image.resolve() != (out_dir / image.name).resolve():
            shutil.copyfile(image, out_dir / image.name)
        files.append(image.name)
    return files


@dataclass(frozen=True)
class Assembled:
    folder: Path
    files: list[str]
    card: Path | None  # the card copied, or None: a fresh one was rendered


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
    files += write_card(head_dir, out, cards_dir)
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
        message = commit_message or f"Upload facerefine head {Path(str(head)).name}"
        info = api.upload_folder(repo_id=repo_id, folder_path=str(staged.folder), token=token,
                                 revision=revision, commit_message=message)
    return str(getattr(info, "commit_url", info))
