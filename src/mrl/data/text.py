"""Text corpora: the Debian package records with their one split, and readers for user files.

Debian (`load_debian_packages`, `debian_split`): 63,664 real package records; pairs are
(summary -> long description) and labels are `section` (58 classes). The split is by
*source* package (a library and its -dev/-doc packages share text), so no source is on both
sides: test = records whose `zlib.crc32(source.encode()) % 10 < 2` (about 20%).

User corpora (`read_pairs`, `read_labelled_texts`): JSONL (one object a line) or CSV (a
header row naming the columns), optionally gzipped (`.jsonl.gz`, `.csv.gz`), of
`(query, positive[, negative])` pairs or `(text, label)` rows. Extra fields are ignored.
Every problem names the file and the line: bytes that are not UTF-8, invalid JSON, a missing
field, an empty string, an empty file, an unknown extension.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrl.errors import FormatError, InputError, MissingPathError, PathError

logger = logging.getLogger(__name__)

DEBIAN_ENV = "MRL_DEBIAN_PACKAGES"
# Relative to the working directory: the layout of this project's checkouts (repo beside shared/).
DEBIAN_DEFAULT = Path("../shared/data/debian-packages.jsonl.gz")
DEBIAN_FIELDS = ("package", "source", "section", "summary", "description", "tags")
SPLITS = ("train", "test")
CORPUS_SUFFIXES = (".jsonl", ".csv", ".jsonl.gz", ".csv.gz")
_TXT_SUFFIXES = (".txt", ".txt.gz", *CORPUS_SUFFIXES)  # what `read_texts` takes


@dataclass(frozen=True)
class PackageRecord:
    """One Debian binary package: its source package, section label and English texts."""

    package: str
    source: str
    section: str
    summary: str  # one line: the query side of a pair
    description: str  # the long description: the positive side
    tags: tuple[str, ...]  # debtags (empty for about half the records)


@dataclass(frozen=True)
class TextPair:
    """A query, a text relevant to it, and optionally a hard negative (a text that is not)."""

    query: str
    positive: str
    negative: str | None = None


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with int64 class ids; `classes[i]` is the name of class id i.

    Attributes:
        texts: N strings.
        labels: [N] int64 class ids in 0..len(classes)-1.
        classes: the class names, sorted (numerically when every name is an integer).
    """

    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class DebianSplit:
    """One side of the Debian split, aligned row by row.

    Attributes:
        records: the side's records (those with a non-empty summary and description).
        pairs: (summary -> description) per record.
        labels: [N] int64 section ids per record.
        classes: the 58 section names of the whole corpus, sorted: the same ids on both sides.
    """

    records: list[PackageRecord]
    pairs: list[TextPair]
    labels: np.ndarray
    classes: tuple[str, ...]


def load_debian_packages(path: str | os.PathLike | None = None) -> list[PackageRecord]:
    """The Debian package records, in file order.

    Args:
        path: the `debian-packages.jsonl.gz` file; default: the environment variable
            `MRL_DEBIAN_PACKAGES`, else `../shared/data/debian-packages.jsonl.gz` relative to
            the working directory.

    Raises:
        MissingPathError: the file is not there (the message says where it was expected).
        FormatError, InputError: a damaged line (named by line), as for `read_pairs`.
    """
    if path is None:
        path = os.environ.get(DEBIAN_ENV) or DEBIAN_DEFAULT
        if not Path(path).is_file():
            raise MissingPathError(
                f"the Debian package records are expected at {Path(path).resolve()} (set "
                f"{DEBIAN_ENV} or pass path=...); it is the shared data file "
                "debian-packages.jsonl.gz"
            )
    records = []
    for where, row in _rows(Path(path), ("package", "source", "section", "summary")):
        tags = row.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InputError(f"{where}: field 'tags' must be a list of strings, got {tags!r}")
        description = row.get("description", "")
        if not isinstance(description, str):
            raise InputError(f"{where}: field 'description' must be a string")
        records.append(
            PackageRecord(
                row["package"],
                row["source"],
                row["section"],
                row["summary"],
                description,
                tuple(tags),
            )
        )
    return records


def debian_split(records: Sequence[PackageRecord], split: str) -> DebianSplit:
    """THE train/test split of the Debian records: by source package, about 20% test.

    Test = records whose `zlib.crc32(source.encode()) % 10 < 2`; train = the rest, so no
    source package is on both sides. Records with an empty summary or description (one in
    the corpus) are left out of both sides, since they make no pair.

    Args:
        records: the whole corpus (`load_debian_packages()`); the class ids come from the
            sorted section names of all of it, so both sides share them.
        split: "train" or "test".

    Returns:
        A `DebianSplit` (records, pairs, labels, classes) of that side.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    classes = tuple(sorted({r.section for r in records}))
    class_id = {name: i for i, name in enumerate(classes)}
    want_test = split == "test"
    side = [
        r
        for r in records
        if (zlib.crc32(r.source.encode()) % 10 < 2) == want_test
        and r.summary.strip()
        and r.description.strip()
    ]
    return DebianSplit(
        records=side,
        pairs=[TextPair(r.summary, r.description) for r in side],
        labels=np.array([class_id[r.section] for r in side], dtype=np.int64),
        classes=classes,
    )


def read_pairs(path: str | os.PathLike) -> list[TextPair]:
    """(query, positive[, negative]) pairs from a JSONL or CSV file (optionally gzipped).

    Raises:
        MissingPathError, PathError: no such file, or a folder.
        FormatError: unknown extension, bytes that are not UTF-8, invalid JSON (by line).
        InputError: an empty file, a missing or non-string field, an empty string (by line).
    """
    pairs = []
    for _, row in _rows(Path(path), ("query", "positive"), optional=("negative",)):
        pairs.append(TextPair(row["query"], row["positive"], row.get("negative")))
    return pairs


def read_labelled_texts(
    path: str | os.PathLike, classes: Sequence[str] | None = None
) -> LabelledTexts:
    """(text, label) rows from a JSONL or CSV file (optionally gzipped) as class ids.

    Args:
        path: the file; JSON labels may be strings or integers (read as their names).
        classes: the class names to map labels to (e.g. the training file's `classes`, so a
            test file gets the same ids); default: the sorted labels of this file.

    Raises:
        as `read_pairs`; and InputError for a label not in `classes` (by line).
    """
    path = Path(path)
    texts, names, lines = [], [], []
    for where, row in _rows(path, ("text",), labels=("label",)):
        texts.append(row["text"])
        names.append(row["label"])
        lines.append(where)
    if classes is None:
        unique = set(names)
        numeric = all(n.lstrip("-").isdigit() for n in unique)
        classes = sorted(unique, key=int) if numeric else sorted(unique)
    class_id = {name: i for i, name in enumerate(classes)}
    for where, name in zip(lines, names, strict=True):
        if name not in class_id:
            raise InputError(
                f"{where}: label {name!r} is not one of the {len(class_id)} known classes "
                f"({', '.join(list(class_id)[:5])}, ...); use the classes of the training file"
            )
    labels = np.array([class_id[n] for n in names], dtype=np.int64)
    return LabelledTexts(texts, labels, tuple(classes))


def read_texts(path: str | os.PathLike) -> list[str]:
    """The texts of a file to embed: a .txt (one text a line) or JSONL/CSV with a "text" field.

    Raises:
        as `read_pairs`; an empty line of a .txt file is named by its line.
    """
    path = Path(path)
    if not path.name.endswith(_TXT_SUFFIXES):
        return [row["text"] for _, row in _rows(path, ("text",))]
    texts = _read_text(path, _TXT_SUFFIXES).splitlines()
    while texts and not texts[-1].strip():
        texts.pop()  # trailing newlines hold no text
    for line, text in enumerate(texts, start=1):
        if not text.strip():
            raise InputError(f"{path}:{line}: empty line; a .txt file holds one text a line")
    if not texts:
        raise InputError(f"{path} holds no texts; expected one text a line")
    return texts


def read_texts_and_labels(
    path: str | os.PathLike,
) -> tuple[list[str], np.ndarray | None, tuple[str, ...] | None]:
    """(texts, labels, classes) of a file to embed; labels when its records have a "label".

    A .txt file, or JSONL/CSV whose first record has no "label" field, gives (texts, None,
    None); otherwise every record needs a label (`read_labelled_texts`).
    """
    path = Path(path)
    if not path.name.endswith(CORPUS_SUFFIXES):
        return read_texts(path), None, None
    _, first = next(_rows(path, ("text",)))
    if "label" not in first:
        return read_texts(path), None, None
    labelled = read_labelled_texts(path)
    return labelled.texts, labelled.labels, labelled.classes


def _rows(
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
) -> Iterator[tuple[str, dict]]:
    """("file:line", row) for every record of a JSONL/CSV file, each field checked.

    `required` and `optional` fields must be non-empty strings; `labels` fields are required
    and may be JSON strings or integers, yielded as non-empty strings.
    """
    text = _read_text(path)
    if path.name.endswith((".csv", ".csv.gz")):
        records = _csv_records(path, text)
    else:
        records = _jsonl_records(path, text)
    count = 0
    for line, row in records:
        where = f"{path}:{line}"
        for field in (*required, *optional, *labels):
            if field not in row or row[field] is None:
                if field in optional:
                    row.pop(field, None)
                    continue
                raise InputError(
                    f"{where}: missing field {field!r}; each record needs "
                    f"{', '.join(required + labels)}"
                )
            value = row[field]
            if field in labels and isinstance(value, int) and not isinstance(value, bool):
                value = row[field] = str(value)
            if not isinstance(value, str):
                raise InputError(
                    f"{where}: field {field!r} must be a string, got {type(value).__name__}"
                )
            if not value.strip():
                raise InputError(f"{where}: field {field!r} is empty; drop or fill that record")
        count += 1
        yield where, row
    if count == 0:
        raise InputError(f"{path} holds no records; expected {', '.join(required + labels)}")


def _read_text(path: Path, suffixes: tuple[str, ...] = CORPUS_SUFFIXES) -> str:
    """The whole file as text (gunzipped if .gz), refusing bytes that are not UTF-8 by line."""
    if not path.name.endswith(suffixes):
        raise FormatError(
            f"{path}: unknown extension; text corpora are {', '.join(suffixes)} files"
        )
    if path.is_dir():
        raise PathError(f"{path} is a folder; expected a {', '.join(suffixes)} file")
    if not path.exists():
        raise MissingPathError(f"{path} does not exist")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise FormatError(f"{path} is not a whole gzip file ({e}); compress it again") from None
    try:
        return data.decode("utf-8-sig")  # a BOM, as Excel writes, is not part of the text
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise FormatError(
            f"{path}:{line}: not valid UTF-8 (byte {data[e.start]:#04x}); save the file as UTF-8"
        ) from None


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():  # blank lines (a trailing newline) hold no record
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise FormatError(
                f"{path}:{line}: invalid JSON ({e.msg} at column {e.colno}); "
                "JSONL holds one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise FormatError(
                f"{path}:{line}: expected a JSON object, got {type(row).__name__}; "
                "JSONL holds one JSON object a line"
            )
        yield line, row


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restval=None)
    try:
        for row in reader:
            # DictReader counts physical lines, so a quoted multi-line field keeps them right
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}
    except csv.Error as e:
        raise FormatError(f"{path}:{reader.line_num}: bad CSV ({e})") from None
