"""Reading actor names from IMDb's ``name.basics.tsv`` (plain or gzipped).

The real file has ~14M rows; we stream it line by line and keep only people
whose ``primaryProfession`` lists one of the wanted professions. Malformed rows
are counted by reason, never fatal; a file without the required columns is.

IMDb format: tab-separated, UTF-8 (a leading byte-order mark is accepted), a header row, ``\\N`` for null, no quoting.
"""

from __future__ import annotations

import gzip
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_COLUMNS = ("nconst", "primaryName", "primaryProfession")
NULL = "\\N"
_NCONST = re.compile(r"^nm\d{1,12}$")
_SPACES = re.compile(r"\s+")


class NamesFileError(ValueError):
    """The names file is missing, unreadable or lacks the required columns."""


@dataclass(frozen=True)
class Person:
    nconst: str
    name: str


@dataclass
class ReadStats:
    """What happened to every data row of the file."""

    rows: int = 0
    kept: int = 0
    other_profession: int = 0
    duplicate_name: int = 0
    malformed: Counter = field(default_factory=Counter)

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, int]:
        out = {
            "rows": self.rows,
            "kept": self.kept,
            "other_profession": self.other_profession,
            "duplicate_name": self.duplicate_name,
            "malformed": self.malformed_total,
        }
        out.update({f"malformed_{k}": v for k, v in sorted(self.malformed.items())})
        return out


def normalize_name(raw: str) -> str:
    """Canonical form of a display name: NFC, no control characters, single spaces.

    Emoji, quotes, slashes and non-Latin scripts are kept: the name only ever
    goes into a prompt and JSON metadata, never into a file name.
    """
    text = unicodedata.normalize("NFC", raw)
    # Cc (controls), Cf (format: zero-width, bidi overrides), Cs/Co/Cn (surrogates, private, unassigned)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACES.sub(" ", text).strip()


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    # utf-8-sig: spreadsheet tools save UTF-8 with a byte-order mark, which would otherwise
    # glue itself to the first column name ("\ufeffnconst"); without a BOM it is plain UTF-8.
    # errors="replace": one bad byte must not kill a 14M-row read; the row is then
    # judged on its content like any other.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="\n")


def _header_index(header: str, path: Path) -> dict[str, int]:
    cols = header.rstrip("\r\n").split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise NamesFileError(
            f"{path}: not an IMDb name.basics file: missing column(s) {', '.join(missing)} "
            f"in the header (found: {', '.join(cols[:10]) or 'nothing'})"
        )
    return {c: i for i, c in enumerate(cols)}


def parse_rows(lines: Iterable[str], professions: Iterable[str], max_name_chars: int,
               source: Path, stats: ReadStats) -> Iterator[Person]:
    """Yield the wanted people from the lines of a file; the first line is the header."""
    wanted = {p.strip().lower() for p in professions}
    seen_names: set[str] = set()
    index = None
    for line in lines:
        if index is None:
            index = _header_index(line, source)
            width = len(index)
            i_id, i_name, i_prof = (index[c] for c in REQUIRED_COLUMNS)
            continue
        if not line.strip():
            continue
        stats.rows += 1
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != width:
            stats.malformed["column_count"] += 1
            continue
        nconst, raw_name, prof = fields[i_id], fields[i_name], fields[i_prof]
        if not _NCONST.match(nconst):
            stats.malformed["bad_nconst"] += 1
            continue
        if prof == NULL or not wanted.intersection(p.strip().lower() for p in prof.split(",")):
            stats.other_profession += 1
            continue
        name = normalize_name(raw_name) if raw_name != NULL else ""
        if not name:
            stats.malformed["empty_name"] += 1
            continue
        if len(name) > max_name_chars:
            stats.malformed["name_too_long"] += 1
            continue
        key = name.casefold()
        if key in seen_names:
            stats.duplicate_name += 1
            continue
        seen_names.add(key)
        stats.kept += 1
        yield Person(nconst=nconst, name=name)
    if index is None:
        raise NamesFileError(f"{source}: file is empty (expected an IMDb name.basics header)")


def read_actors(path: str | Path, professions: Iterable[str] = ("actor", "actress"),
                max_name_chars: int = 120) -> tuple[list[Person], ReadStats]:
    """Read the people to portray from an IMDb ``name.basics.tsv(.gz)``.

    De-duplicates names case-insensitively (first occurrence wins, in file order)
    so that two IMDb entries called "John Smith" give one prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise NamesFileError(f"{path}: names file not found")
    stats = ReadStats()
    try:
        with _open_text(path) as fh:
            people = list(parse_rows(fh, professions, max_name_chars, path, stats))
    except (OSError, EOFError) as err:  # truncated gzip, permission, ...
        raise NamesFileError(f"{path}: cannot read: {err}") from err
    return people, stats
