"""IMDb name.basics parsing: real format, malformed and tricky rows."""

import gzip

import pytest

from facerefine.names import NamesFileError, normalize_name, read_actors

HEADER = "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles\n"


def row(nconst, name, prof="actor", birth="1970"):
    return f"{nconst}\t{name}\t{birth}\t\\N\t{prof}\ttt0000001\n"


def write(tmp_path, body, name="name.basics.tsv", header=HEADER):
    path = tmp_path / name
    text = header + body
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_keeps_actors_and_actresses_only(tmp_path):
    path = write(tmp_path, row("nm1", "Ann Actor") + row("nm2", "Bo Actress", "actress,producer")
                 + row("nm3", "Cy Composer", "composer") + row("nm4", "Di Null", "\\N"))
    people, stats = read_actors(path)
    assert [p.name for p in people] == ["Ann Actor", "Bo Actress"]
    assert stats.rows == 4 and stats.kept == 2 and stats.other_profession == 2


def test_malformed_rows_are_counted_not_fatal(tmp_path):
    body = (row("nm1", "Good One")
            + "nm2\tToo Few Columns\tactor\n"          # 3 columns
            + row("xx3", "Bad Id")                      # not an IMDb id
            + row("nm4", "\\N")                         # null name
            + row("nm5", "   ")                         # blank after normalisation
            + row("nm6", "x" * 500)                     # absurdly long
            + "\n"                                      # blank line: ignored
            + row("nm7", "Good Two"))
    people, stats = read_actors(write(tmp_path, body), max_name_chars=120)
    assert [p.nconst for p in people] == ["nm1", "nm7"]
    assert dict(stats.malformed) == {"column_count": 1, "bad_nconst": 1, "empty_name": 2, "name_too_long": 1}
    assert stats.as_dict()["malformed"] == 5


def test_tricky_names_survive_intact_or_normalised(tmp_path):
    names = ["AC/DC Fan", 'Dwayne "The Rock" Johnson', "Zoë O'Brien 🎬", "李小龍", "../../etc/passwd",
             "Tab\u0007Bell", "Zero\u200bWidth"]
    body = "".join(row(f"nm{i}", n) for i, n in enumerate(names, 1))
    people, _ = read_actors(write(tmp_path, body))
    got = [p.name for p in people]
    assert got[:5] == names[:5]  # kept verbatim: names never become file names
    assert got[5] == "Tab Bell" and got[6] == "Zero Width"  # control/format chars removed
    assert all(p.nconst.startswith("nm") for p in people)


def test_duplicate_names_are_dropped_case_insensitively(tmp_path):
    body = row("nm1", "John Smith") + row("nm2", "JOHN  smith") + row("nm3", "John Smith ")
    people, stats = read_actors(write(tmp_path, body))
    assert [p.nconst for p in people] == ["nm1"] and stats.duplicate_name == 2


def test_gzip_and_column_order(tmp_path):
    header = "primaryName\tnconst\tprimaryProfession\textra\n"
    path = write(tmp_path, "Ann\tnm1\tactress\tx\n", name="name.basics.tsv.gz", header=header)
    people, _ = read_actors(path)
    assert people[0].name == "Ann" and people[0].nconst == "nm1"


@pytest.mark.parametrize("name", ["name.basics.tsv", "name.basics.tsv.gz"])
def test_utf8_byte_order_mark_is_accepted(tmp_path, name):
    """Spreadsheet tools save UTF-8 with a BOM; it must not become part of the first column name."""
    path = write(tmp_path, row("nm1", "Zoë Actor"), name=name, header="\ufeff" + HEADER)
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf" or name.endswith(".gz")
    people, stats = read_actors(path)
    assert [(p.nconst, p.name) for p in people] == [("nm1", "Zoë Actor")] and stats.malformed_total == 0


def test_undecodable_bytes_leave_the_row_to_be_judged_on_its_content(tmp_path):
    path = tmp_path / "name.basics.tsv"
    path.write_bytes(HEADER.encode() + row("nm1", "Ann").encode()
                     + b"nm2\tBad\xff Byte\t1970\t\\N\tactor\ttt1\n"     # in the name: kept, replaced
                     + b"nm\xfe3\tBad Id\t1970\t\\N\tactor\ttt1\n")       # in the id: a bad nconst
    people, stats = read_actors(path)
    assert [p.name for p in people] == ["Ann", "Bad\ufffd Byte"]
    assert dict(stats.malformed) == {"bad_nconst": 1}


def test_missing_columns_is_a_clear_error(tmp_path):
    path = write(tmp_path, "a\tb\n", header="id\tname\n")
    with pytest.raises(NamesFileError, match=r"missing column\(s\) nconst, primaryName, primaryProfession"):
        read_actors(path)


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b\x08garbage"])
def test_empty_or_corrupt_file(tmp_path, content):
    path = tmp_path / ("x.tsv.gz" if content else "x.tsv")
    path.write_bytes(content)
    with pytest.raises(NamesFileError, match=str(path.name)):
        read_actors(path)


def test_missing_file(tmp_path):
    with pytest.raises(NamesFileError, match="not found"):
        read_actors(tmp_path / "nope.tsv")


def test_sample_file_shipped_with_the_repo():
    people, stats = read_actors("data/names/smoke/name.basics.tsv")
    assert stats.rows == 10177 and len(people) > 4000 and stats.malformed_total == 0


def test_normalize_name():
    assert normalize_name("  Ann\t\nLee  ") == "Ann Lee"
    assert normalize_name("Cafe\u0301") == "Café"  # NFC
