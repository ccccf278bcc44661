"""Text training sets: the Debian corpus and user files, as aligned columns per split.

`load_text_splits(name, root)` returns the (train, test) `TextSplit`s that `mrl train` reads
for a text backbone:

    debian       pairs summary -> long description, labels = section (58 classes), split by
                 source package with `debian_split` (the one split). `root`: the
                 debian-packages.jsonl.gz file or a folder holding it; default: where
                 `load_debian_packages` looks.
    text-pairs   root/train.<ext> and root/test.<ext> of (query, positive[, negative]) records
                 (`read_pairs`); no labels, so contrastive training only.
    text-labels  root/train.<ext> and root/test.<ext> of (text, label) records
                 (`read_labelled_texts`, the test file mapped to the train file's classes);
                 no pairs, so classification only.

<ext> is one of .jsonl, .csv, .jsonl.gz, .csv.gz.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mrl.checks import check_int
from mrl.data.text import (
    CORPUS_SUFFIXES,
    debian_split,
    load_debian_packages,
    read_labelled_texts,
    read_pairs,
)
from mrl.errors import ConfigError, InputError, MissingPathError, PathError

DEBIAN_FILE = "debian-packages.jsonl.gz"
# Each text set, and what it holds: pairs (for a contrastive loss) and/or labels (for heads).
TEXT_DATASETS = {
    "debian": ("pairs", "labels"),
    "text-pairs": ("pairs",),
    "text-labels": ("labels",),
}


@dataclass(frozen=True)
class TextSplit:
    """One split of a text set, aligned row by row.

    Attributes:
        name, split: for messages ("debian", "train").
        texts: N documents: the positives of pairs, or the labelled texts; the classification
            head reads these, and `mrl embed` of the run embeds them.
        queries: N queries (the anchors of pairs), or None for a set without pairs.
        negatives: N hard negatives (one per query), or None.
        labels: [N] int64 class ids, or None for a set without labels.
        classes: class names (id i is classes[i]), or None.
    """

    name: str
    split: str
    texts: list[str]
    queries: list[str] | None = None
    negatives: list[str] | None = None
    labels: np.ndarray | None = None
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    def columns(self) -> dict[str, list[str]]:
        """The text columns present, by name: "query", "text", "negative"."""
        cols = {"query": self.queries, "text": self.texts, "negative": self.negatives}
        return {k: v for k, v in cols.items() if v is not None}

    def subset(self, rows: Sequence[int] | np.ndarray) -> TextSplit:
        """The rows `rows`, in that order (every column and the labels)."""
        rows = np.asarray(rows, dtype=np.int64)

        def pick(column):
            return None if column is None else [column[i] for i in rows]

        return replace(
            self,
            texts=pick(self.texts),
            queries=pick(self.queries),
            negatives=pick(self.negatives),
            labels=None if self.labels is None else self.labels[rows],
        )


def sample_rows(n: int, cap: int | None, seed: int) -> np.ndarray:
    """`cap` of `n` row ids drawn without replacement by `seed`, in ascending order (all if
    `cap` is None or >= n): the same rows for every run with this seed, whatever it trains."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).choice(n, cap, replace=False))


def load_text_splits(
    name: str,
    root: str | os.PathLike | None = None,
    max_train_examples: int | None = None,
    seed: int = 0,
) -> tuple[TextSplit, TextSplit]:
    """The (train, test) splits of text set `name` (see the module docstring).

    Args:
        name: one of `TEXT_DATASETS`.
        root: where the set is (see the module docstring).
        max_train_examples: keep this many training rows, drawn by `seed` (`sample_rows`),
            so runs that share the seed train on the same pairs; None keeps all.
        seed: the draw's seed.

    Raises:
        ConfigError: an unknown name, or a user set without `root`.
        MissingPathError, PathError: a missing file or folder.
        FormatError, InputError: a damaged file (named by line), as `read_pairs` raises.
    """
    if name not in TEXT_DATASETS:
        choices = ", ".join(TEXT_DATASETS)
        raise ConfigError(f"unknown text dataset {name!r}; choose one of {choices}")
    if max_train_examples is not None:
        check_int("max_train_examples", max_train_examples)
    if name == "debian":
        train, test = _debian(root)
    else:
        if root is None:
            raise ConfigError(
                f"dataset {name} needs data_root: a folder holding train.jsonl and test.jsonl "
                f"(or {', '.join(s for s in CORPUS_SUFFIXES if s != '.jsonl')})"
            )
        read = _pairs if name == "text-pairs" else _labelled
        train, test = read(Path(root))
    return train.subset(sample_rows(len(train), max_train_examples, seed)), test


def _debian(root: str | os.PathLike | None) -> tuple[TextSplit, TextSplit]:
    path = None
    if root is not None:
        path = Path(root)
        if path.is_dir():
            path = path / DEBIAN_FILE
        if not path.is_file():
            raise MissingPathError(
                f"data_root {root}: no {DEBIAN_FILE} there; give the file or its folder"
            )
    records = load_debian_packages(path)
    splits = []
    for split in ("train", "test"):
        side = debian_split(records, split)
        splits.append(
            TextSplit(
                "debian",
                split,
                texts=[p.positive for p in side.pairs],
                queries=[p.query for p in side.pairs],
                labels=side.labels,
                classes=side.classes,
            )
        )
    return splits[0], splits[1]


def _split_file(root: Path, split: str) -> Path:
    if not root.exists():
        raise MissingPathError(f"data_root {root} does not exist")
    if not root.is_dir():
        raise PathError(f"data_root {root} is a file; give the folder holding train.* and test.*")
    found = [root / f"{split}{s}" for s in CORPUS_SUFFIXES if (root / f"{split}{s}").is_file()]
    if len(found) != 1:
        error = MissingPathError if not found else PathError  # several: which one is meant?
        what = f"no {split} file" if not found else f"several {split} files"
        raise error(
            f"data_root {root}: {what}; expected exactly one of "
            f"{', '.join(split + s for s in CORPUS_SUFFIXES)}"
        )
    return found[0]


def _pairs(root: Path) -> tuple[TextSplit, TextSplit]:
    splits = []
    for split in ("train", "test"):
        path = _split_file(root, split)
        pairs = read_pairs(path)
        with_negative = [p.negative is not None for p in pairs]
        if any(with_negative) and not all(with_negative):
            line = with_negative.index(not with_negative[0]) + 1
            raise InputError(
                f"{path}: some records have a negative and some do not (record {line} differs "
                "from the first); give every record a negative or none"
            )
        splits.append(
            TextSplit(
                "text-pairs",
                split,
                texts=[p.positive for p in pairs],
                queries=[p.query for p in pairs],
                negatives=[p.negative for p in pairs] if with_negative[0] else None,
            )
        )
    return splits[0], splits[1]


def _labelled(root: Path) -> tuple[TextSplit, TextSplit]:
    train = read_labelled_texts(_split_file(root, "train"))
    test = read_labelled_texts(_split_file(root, "test"), classes=train.classes)
    return tuple(
        TextSplit("text-labels", split, texts=s.texts, labels=s.labels, classes=s.classes)
        for split, s in (("train", train), ("test", test))
    )
