"""Text corpora: the Debian split by source package, and the pair / label file readers."""

import gzip
import json
import zlib

import numpy as np
import pytest

from mrl.data.text import (
    DEBIAN_DEFAULT,
    DEBIAN_ENV,
    PackageRecord,
    TextPair,
    debian_split,
    load_debian_packages,
    read_labelled_texts,
    read_pairs,
)
from mrl.errors import FormatError, InputError, MissingPathError, PathError


@pytest.fixture(scope="module")
def debian():
    try:
        return load_debian_packages()
    except MissingPathError:
        pytest.skip(f"the shared Debian records are not at {DEBIAN_DEFAULT} (or ${DEBIAN_ENV})")


def _record(source, section="libs", summary="s", description="d"):
    return PackageRecord(source + "-bin", source, section, summary, description, ())


def test_debian_split_by_source_about_20_percent_test(debian):
    train, test = debian_split(debian, "train"), debian_split(debian, "test")
    assert len(debian) == 63_664
    assert len(train.records) + len(test.records) == len(debian) - 1  # one has no description
    assert not {r.source for r in train.records} & {r.source for r in test.records}
    assert 0.19 < len(test.records) / len(debian) < 0.21
    assert all(zlib.crc32(r.source.encode()) % 10 < 2 for r in test.records)
    assert len(train.classes) == 58 and train.classes == test.classes
    assert list(train.classes) == sorted(train.classes)
    for side in (train, test):
        assert len(side.pairs) == len(side.labels) == len(side.records)
        assert side.labels.dtype == np.int64
        r, pair, label = side.records[7], side.pairs[7], side.labels[7]
        assert pair == TextPair(r.summary, r.description)
        assert side.classes[label] == r.section


def test_debian_split_is_deterministic_and_ids_come_from_the_whole_corpus():
    records = [_record(f"src{i}", section=f"sec{i % 3}") for i in range(200)]
    a, b = debian_split(records, "test"), debian_split(records[::-1], "test")
    assert a.records == debian_split(records, "test").records
    assert sorted(a.records, key=str) == sorted(b.records, key=str)  # by source, not position
    assert a.classes == ("sec0", "sec1", "sec2")
    # the ids do not depend on which sections a side happens to hold
    assert debian_split(records, "train").classes == a.classes
    assert {a.classes[i] for i in a.labels} <= set(a.classes)
    only = [r for r in records if r.section == "sec2"]
    assert set(debian_split(only, "train").labels) == {0}  # ids follow the records passed in


def test_debian_split_names_a_bad_split():
    with pytest.raises(InputError, match="split must be one of train, test, got 'val'"):
        debian_split([_record("a")], "val")


def test_debian_default_path_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv(DEBIAN_ENV, str(tmp_path / "nope.jsonl.gz"))
    with pytest.raises(MissingPathError, match=f"expected at .*nope.jsonl.gz .*{DEBIAN_ENV}"):
        load_debian_packages()


def test_debian_reads_a_path(tmp_path):
    row = dict(package="p", source="s", section="x", summary="a", description="b", tags=["t"])
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    assert load_debian_packages(path) == [PackageRecord("p", "s", "x", "a", "b", ("t",))]


def test_read_pairs_jsonl_and_csv_agree(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"query": "q1", "positive": "p1"}\n\n{"query": "q2", "positive": "p2", "negative": "n2"}\n'
    )
    csv = tmp_path / "p.csv"
    csv.write_text('query,positive,negative\nq1,p1,\n"q2","p2",n2\n')
    expected = [TextPair("q1", "p1"), TextPair("q2", "p2", "n2")]
    assert read_pairs(jsonl) == expected
    # an empty CSV cell is a missing optional field only for the optional column
    with pytest.raises(InputError, match="p.csv:2: field 'negative' is empty"):
        read_pairs(csv)
    csv.write_text('query,positive\nq1,p1\n"q2","p2"\n')
    assert read_pairs(csv) == [TextPair("q1", "p1"), TextPair("q2", "p2")]
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    assert read_pairs(gz) == expected


def test_read_labelled_texts_ids_and_shared_classes(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": 10}\n{"text": "b", "label": 2}\n')
    got = read_labelled_texts(train)
    assert got.classes == ("2", "10") and got.labels.tolist() == [1, 0]
    test = tmp_path / "test.csv"
    test.write_text("text,label\nc,2\nd,7\n")
    with pytest.raises(InputError, match=r"test.csv:3: label '7' is not one of the 2 known"):
        read_labelled_texts(test, classes=got.classes)
    test.write_text("text,label\nc,2\n")
    assert read_labelled_texts(test, classes=got.classes).labels.tolist() == [0]


BAD_PAIRS = {
    "not-utf8": ("p.jsonl", b'{"query": "q", "positive": "p"}\n{"query": "\xff"}\n', FormatError,
                 r"p.jsonl:2: not valid UTF-8 \(byte 0xff\)"),
    "bad-json": ("p.jsonl", b'{"query": "q", "positive": "p"}\n{"query": \n', FormatError,
                 r"p.jsonl:2: invalid JSON"),
    "not-object": ("p.jsonl", b'["q", "p"]\n', FormatError, r"p.jsonl:1: expected a JSON object"),
    "missing-field": ("p.jsonl", b'{"query": "q"}\n', InputError,
                      r"p.jsonl:1: missing field 'positive'"),
    "empty-string": ("p.jsonl", b'{"query": " ", "positive": "p"}\n', InputError,
                     r"p.jsonl:1: field 'query' is empty"),
    "not-string": ("p.jsonl", b'{"query": 3, "positive": "p"}\n', InputError,
                   r"p.jsonl:1: field 'query' must be a string, got int"),
    "empty-file": ("p.jsonl", b"\n", InputError, r"p.jsonl holds no records"),
    "csv-missing-column": ("p.csv", b"query\nq\n", InputError,
                           r"p.csv:2: missing field 'positive'"),
    "csv-short-row": ("p.csv", b"query,positive\nq,p\nq2\n", InputError,
                      r"p.csv:3: missing field 'positive'"),
    "csv-not-utf8": ("p.csv", b"query,positive\nq,p\nq,\xe9t\xe9\n", FormatError,
                     r"p.csv:3: not valid UTF-8"),
    "csv-empty": ("p.csv", b"", InputError, r"p.csv holds no records"),
    "unknown-extension": ("p.txt", b"q\tp\n", FormatError, r"p.txt: unknown extension"),
    "bad-gzip": ("p.jsonl.gz", b"not gzip", FormatError, r"p.jsonl.gz is not a whole gzip"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_PAIRS)
def test_bad_pair_files_are_named_by_file_and_line(tmp_path, name):
    filename, data, error, message = BAD_PAIRS[name]
    (tmp_path / filename).write_bytes(data)
    with pytest.raises(error, match=message):
        read_pairs(tmp_path / filename)


BAD_LABELS = {
    "missing-label": (b'{"text": "a"}\n', r"t.jsonl:1: missing field 'label'"),
    "float-label": (b'{"text": "a", "label": 1.5}\n', r"t.jsonl:1: field 'label' must be a str"),
    "empty-label": (b'{"text": "a", "label": ""}\n', r"t.jsonl:1: field 'label' is empty"),
    "empty-text": (b'{"text": "a", "label": 1}\n{"text": "", "label": 1}\n',
                   r"t.jsonl:2: field 'text' is empty"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_LABELS)
def test_bad_label_files_are_named_by_file_and_line(tmp_path, name):
    data, message = BAD_LABELS[name]
    (tmp_path / "t.jsonl").write_bytes(data)
    with pytest.raises(InputError, match=message):
        read_labelled_texts(tmp_path / "t.jsonl")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MissingPathError, match="nope.jsonl does not exist"):
        read_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(PathError, match="dir.csv is a folder"):
        read_pairs(tmp_path / "dir.csv")
