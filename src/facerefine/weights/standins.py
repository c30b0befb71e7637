"""Stand-ins are built once: the build-once folder under ``$FACEREFINE_HOME/standins`` and
the tokenizers every text stand-in (FLUX, CLIP) shares.

Stand-ins are deterministic (seeded), so every machine builds identical ones.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from filelock import FileLock

from facerefine.paths import facerefine_home

# Bump when a stand-in builder changes so stale stand-ins are rebuilt.
STANDIN_VERSION = 2


def build_once(name: str, builder) -> Path:
    """Build a stand-in into ``$FACEREFINE_HOME/standins/<name>-v<N>`` exactly once.

    The build goes to a temp dir that is renamed when complete, under a file
    lock so that several processes (``accelerate launch``) can race safely.
    """
    root = facerefine_home() / "standins"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-v{STANDIN_VERSION}"
    with FileLock(str(root / f".{name}.lock")):
        if final.is_dir():
            return final
        tmp = root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        builder(tmp)
        os.replace(tmp, final)
    return final


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def write_clip_tokenizer(path: Path) -> int:
    """A byte-level BPE CLIP tokenizer with no merges (one token per character)."""
    path.mkdir(parents=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # model_max_length=77 is what FluxPipeline pads CLIP prompts to.
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}), encoding="utf-8")
    return len(tokens)


def write_t5_tokenizer(path: Path) -> int:
    """A character-level Unigram tokenizer in T5's format (``tokenizer.json``)."""
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    path.mkdir(parents=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(c, -2.0) for c in string.printable.strip()]
    pieces += [("▁" + c, -1.5) for c in string.ascii_letters]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.save(str(path / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
              "pad_token": "<pad>", "extra_ids": 0, "model_max_length": 512}
    (path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(pieces)
