"""Seeded, shardable batches: whole-tensor slicing for in-memory sets, DataLoader otherwise.

The order of epoch e is a pure function of (seed, e), as with `DistributedSampler.set_epoch`,
so resuming needs only the epoch and the number of batches already taken, and every
process of a distributed run agrees on it without communicating.

Sharding: each global batch of `batch_size` indices is split across the `world_size`
processes (rank r takes every world_size-th index, starting at r), so the union of the
ranks' batches is exactly the single-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from mrl.checks import check_int
from mrl.data.datasets import InMemoryDataset, LabeledDataset
from mrl.errors import ConfigError, MrlError


class BatchLoader:
    """Batches of a `LabeledDataset` in a seeded per-epoch order, sharded across processes.

    Args:
        dataset: the split to iterate.
        batch_size: the GLOBAL batch: each of `world_size` processes gets 1/world_size of it.
        shuffle: a fresh permutation per epoch (else the dataset's order).
        drop_last: skip the final partial batch (training: keeps every step's batch equal,
            and the ranks' shards equal, so DDP's gradient mean is the global mean).
        seed: with the epoch, fixes the order.
        rank, world_size: this process's shard.
        num_workers: DataLoader workers for lazily read sets (ImageFolder); in-memory sets
            are sliced in the calling process, which is faster than any worker pool.

    Example:
        >>> from mrl.data import load_dataset
        >>> loader = BatchLoader(load_dataset("digits", "train"), 256, shuffle=True)
        >>> x, y = next(loader.iter_batches(epoch=0))
        >>> x.shape, y.dtype
        (torch.Size([256, 1, 8, 8]), torch.int64)
    """

    def __init__(
        self,
        dataset: LabeledDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        batch_size = check_int("batch_size", batch_size)
        world_size = check_int("world_size", world_size)
        rank = check_int("rank", rank, 0, world_size - 1)
        num_workers = check_int("num_workers", num_workers, 0)
        if drop_last and batch_size % world_size:
            raise ConfigError(
                f"batch_size {batch_size} (the global batch) must be divisible by the "
                f"{world_size} processes"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers

    def __len__(self) -> int:
        """Number of global batches per epoch."""
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> torch.Tensor:
        """All N indices in epoch `epoch`'s order, [N] int64 (the same on every rank)."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        return torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(n))

    def iter_batches(
        self, epoch: int = 0, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's (x [b, *in_shape] float32, y [b] int64) batches of an epoch.

        Args:
            epoch: selects the permutation.
            start: global batches to skip (to resume mid-epoch).
        """
        order = self.order(epoch)
        shards = [
            order[i * self.batch_size : (i + 1) * self.batch_size][self.rank :: self.world_size]
            for i in range(start, len(self))
        ]
        if isinstance(self.dataset, InMemoryDataset):
            x, y = self.dataset.x, self.dataset.y
            for idx in shards:
                yield x[idx], y[idx]
            return
        # A rank's shard of a final partial batch can be empty; DataLoader wants none.
        shards = [idx.tolist() for idx in shards if len(idx)]
        try:
            yield from DataLoader(self.dataset, batch_sampler=shards, num_workers=self.num_workers)
        except MrlError as e:
            raise _without_worker_traceback(e) from None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_batches(0)


def _without_worker_traceback(error: MrlError) -> MrlError:
    """`error` as the dataset raised it, without the traceback a DataLoader worker adds.

    A worker process re-raises a dataset's error in the main process with the message
    "Caught FormatError in DataLoader worker process 0. Original Traceback ...", ending in
    the original "mrl.errors.FormatError: <message>" line; keep only that message.
    """
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    for line in reversed(str(error).splitlines()):
        if line.startswith(prefix):
            return type(error)(line[len(prefix) :])
    return error


def columns_sort_key(lengths: list[np.ndarray]) -> np.ndarray:
    """[N] int64 sort key of rows made of several columns, each padded on its own.

    A batch's padded size is the sum over its columns of (rows x that column's longest
    text), so one key must order rows by every column at once. Sorting by the column with
    the most tokens first, then by the next (a lexicographic key), groups rows of equal long
    texts -- many share the cap, max_seq_length -- and orders their short columns within
    the group. On 16,000 Debian (summary, description) pairs at max_seq_length 64 (MiniLM
    tokenizer, batch 32, chunks of 16 batches) random batches hold 1.368M token slots, the
    sum of the columns' lengths as key 1.218M, this key 1.162M.

    Args:
        lengths: one [N] array of non-negative token counts per column.
    """
    if not lengths:
        raise ConfigError("columns_sort_key needs at least one column of lengths")
    columns = [np.asarray(c, dtype=np.int64) for c in lengths]
    base = 1 + max(int(c.max(initial=0)) for c in columns)
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in sorted(columns, key=lambda c: -int(c.sum())):  # the most tokens first
        key = key * base + column
    return key


class LengthSortedBatches:
    """Seeded, shardable batches of row ids that group rows of similar length (less padding).

    Epoch e: a permutation of the N rows by (seed, e); its first `len(self) * batch_size`
    rows (drop_last) are cut into chunks of `chunk_batches` batches, each chunk sorted by
    length and cut into batches; then the batch order is shuffled (by (seed, e) too), so long
    and short batches alternate instead of the epoch running from long to short. A pure
    function of (seed, epoch), like `BatchLoader`: resuming needs the epoch and the batches
    taken, and every rank agrees without communicating. Rank r takes every world_size-th id
    of each global batch, so the ranks' shards have similar lengths too.

    Args:
        lengths: [N] a length per row (e.g. token counts); only their order matters.
        batch_size: the GLOBAL batch.
        chunk_batches: batches per sorted chunk; 1 sorts within each batch only (no gain),
            larger cuts more padding but makes batches less random.
        shuffle: a fresh permutation per epoch; False keeps row order (no sorting: evaluation).
        drop_last: skip the final partial batch (training: equal batches on every rank).
        seed, rank, world_size: as `BatchLoader`.

    Example:
        >>> batches = LengthSortedBatches(np.array([5, 1, 9, 3]), 2, shuffle=True)
        >>> sorted(int(i) for b in batches.iter_batches(0) for i in b)
        [0, 1, 2, 3]
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        *,
        chunk_batches: int = 16,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size)
        self.chunk_batches = check_int("chunk_batches", chunk_batches)
        world_size = check_int("world_size", world_size)
        self.rank = check_int("rank", rank, 0, world_size - 1)
        if drop_last and batch_size % world_size:
            raise ConfigError(
                f"batch_size {batch_size} (the global batch) must be divisible by the "
                f"{world_size} processes"
            )
        self.lengths = np.asarray(lengths)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.world_size = seed, world_size

    def __len__(self) -> int:
        """Number of global batches per epoch."""
        n, b = len(self.lengths), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """Every global batch of epoch `epoch`, in the order they are taken (all ranks)."""
        n, b = len(self.lengths), self.batch_size
        if not self.shuffle:
            return [np.arange(i, min(i + b, n)) for i in range(0, len(self) * b, b)]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)[: len(self) * b if self.drop_last else n]
        chunk = b * self.chunk_batches
        batches = []
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            batches += [rows[i : i + b] for i in range(0, len(rows), b)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def iter_batches(self, epoch: int = 0, start: int = 0) -> Iterator[np.ndarray]:
        """This rank's row ids [b / world_size] int64 of each batch of `epoch`, from `start`."""
        for rows in self.global_batches(epoch)[start:]:
            yield rows[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_batches(0)
