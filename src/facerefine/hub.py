"""Publishing heads on the Hugging Face Hub (loading one by repo id is ``heads.resolve_pretrained``).

A head folder already follows the Hub's layout for small PyTorch models:
``model.safetensors`` (weights only), ``config.json`` and a ``README.md`` model card.

``push`` uploads a folder assembled by :func:`assemble`: the head's weights and
config, and the richest model card that describes exactly these weights (the
``model_cards`` stage's card with the metrics, else the head's own card).
The token comes from the environment only (``HF_TOKEN``, or the token a previous
``hf auth login`` stored); it is never printed, logged or written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from facerefine.card import CARDS_DIR
from facerefine.heads import CONFIG, HUB_FILES, WEIGHTS, looks_like_repo_id, resolve_pretrained

CARD = "README.md"
__all__ = ["CARDS_DIR", "HUB_FILES", "assemble", "card_for", "looks_like_repo_id", "push", "resolve_pretrained",
           "write_card"]


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
        info = card_info(own.read_text(encoding="utf-8")) if own.is_file() else {}
        text = render_card(out_dir, profile=info.get("profile"), standins=info.get("standins"))
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
