"""An append-only write-ahead log of checksummed records, fsynced before a write is acknowledged.

File layout: an 8-byte magic, then records framed as `<u32 length><u32 crc32>` + `length`
bytes of body. A body is a JSON header line (with the record's log sequence number `lsn`,
increasing by one per record) followed by an optional binary blob (ids, vectors).

On open the log is scanned: a torn or corrupt LAST record (a kill -9 or power loss mid-write)
is dropped with a warning and cut off the file, so it is never replayed nor served; a corrupt
record followed by more data is not a torn tail but damage, and opening fails with a
`FormatError` rather than silently losing the acknowledged records after it.

Commits are grouped: `append` writes a record to the OS, `sync(lsn)` fsyncs unless another
thread's fsync already covered `lsn`, so concurrent writers to different collections share one
fsync.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from mrl.errors import FormatError, UnavailableError

logger = logging.getLogger(__name__)

MAGIC = b"MRLWAL1\n"
_FRAME = struct.Struct("<II")  # body length, crc32 of the body
MAX_RECORD_BYTES = 1 << 31  # a length above this is not one we wrote


@dataclass(frozen=True)
class Record:
    """One logged write: its header (always holding `lsn` and `op`) and binary blob."""

    header: dict
    blob: bytes

    @property
    def lsn(self) -> int:
        return int(self.header["lsn"])


def encode(header: dict, blob: bytes = b"") -> bytes:
    """The framed bytes of one record (header must be JSON-serialisable, without newlines)."""
    body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + blob
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes, path: Path, offset: int) -> Record:
    line, _, blob = body.partition(b"\n")
    try:
        header = json.loads(line)
        int(header["lsn"]), header["op"]  # noqa: B018 - present and well-typed
    except (ValueError, KeyError, TypeError):
        raise FormatError(
            f"{path}: the record at byte {offset} has a valid checksum but no readable header; "
            "the log was not written by mrl serve (move it aside to start empty)"
        ) from None
    return Record(header, blob)


def scan(path: Path) -> tuple[list[Record], int]:
    """Every intact record of the log at `path` and the byte offset where they end.

    A torn/corrupt last record is reported with a warning and excluded (the caller truncates
    the file to the returned offset).

    Raises:
        FormatError: not a log of ours, or a corrupt record with more records after it.
    """
    data = path.read_bytes()
    if not data:
        return [], 0
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):  # killed while writing the magic of a new log
            return [], 0
        raise FormatError(
            f"{path} is not an mrl write-ahead log (no {MAGIC!r} magic); move it aside or "
            "give another --data-dir"
        )
    records, offset = [], len(MAGIC)
    while offset < len(data):
        end = offset + _FRAME.size
        problem = None
        if end > len(data):
            problem = f"a torn frame header ({len(data) - offset} of {_FRAME.size} bytes)"
        else:
            length, crc = _FRAME.unpack_from(data, offset)
            if end + length > len(data):
                problem = f"a torn record ({len(data) - end} of {length} bytes written)"
            elif zlib.crc32(data[end : end + length]) != crc:
                problem = "a record whose checksum does not match"
                if end + length < len(data):
                    raise FormatError(
                        f"{path}: the record at byte {offset} is corrupt (bad checksum) and "
                        f"{len(data) - end - length} bytes of records follow it; this is damage, "
                        "not a torn write: restore the data folder from a backup"
                    )
        if problem:
            logger.warning(
                "%s: dropping %s at byte %d (an interrupted write that was never acknowledged)",
                path,
                problem,
                offset,
            )
            break
        records.append(_decode(data[end : end + length], path, offset))
        offset = end + length
    return records, offset


class WriteAheadLog:
    """The open log of one data folder: scan on open, append + group fsync, truncate.

    Args:
        path: the log file (created if missing).

    Attributes:
        records: the intact records found on open (replay them, then drop the list).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.touch(exist_ok=True)
        self.records, end = scan(self.path)
        self._fd = os.open(self.path, os.O_RDWR)
        if end < len(MAGIC):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            end = len(MAGIC)
        else:
            os.ftruncate(self._fd, end)  # cut a torn tail off, so appends follow good records
        os.fsync(self._fd)
        self._end = end
        self.last_lsn = self.records[-1].lsn if self.records else 0
        self._synced_lsn = self.last_lsn
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._failed: str | None = None  # why writes are refused after a failed write/fsync

    @property
    def size(self) -> int:
        """Bytes in the log (records since the last truncation, plus the magic)."""
        return self._end

    def append(self, header: dict, blob: bytes = b"") -> int:
        """Write one record (not yet durable: call `sync`); returns its lsn.

        A failed write is cut off again, so the log never keeps part of a refused record.
        """
        with self._append_lock:
            self._check_healthy()
            lsn = self.last_lsn + 1
            frame = encode({**header, "lsn": lsn}, blob)
            try:
                os.pwrite(self._fd, frame, self._end)
            except OSError as e:  # disk full, I/O error: nothing of this record may stay
                try:
                    os.ftruncate(self._fd, self._end)
                except OSError:
                    self._failed = f"{e}; the log could not be cut back"
                raise UnavailableError(
                    f"cannot write the log {self.path} ({e}); nothing was stored: free disk "
                    "space or fix the disk, then retry"
                ) from None
            self._end += len(frame)
            self.last_lsn = lsn
            return lsn

    def _check_healthy(self) -> None:
        if self._failed:
            raise UnavailableError(
                f"the log {self.path} failed earlier ({self._failed}); writes are refused "
                "until the server restarts (it replays what reached the disk)"
            )

    def sync(self, lsn: int) -> None:
        """Return once record `lsn` is on disk (one fsync covers every record written before)."""
        with self._sync_lock:
            self._check_healthy()
            if self._synced_lsn >= lsn:
                return
            covered = self.last_lsn
            try:
                os.fsync(self._fd)
            except OSError as e:
                # After a failed fsync the kernel may have dropped the dirty pages: what is on
                # disk is unknown, so memory and log could disagree. Stop taking writes.
                self._failed = f"fsync: {e}"
                raise UnavailableError(
                    f"cannot flush the log {self.path} ({e}); restart the server"
                ) from None
            self._synced_lsn = covered

    def advance(self, lsn: int) -> None:
        """Continue numbering after `lsn` (a snapshot's, when the log holds nothing newer)."""
        with self._append_lock:
            self.last_lsn = max(self.last_lsn, lsn)
            self._synced_lsn = max(self._synced_lsn, lsn)

    def truncate(self) -> None:
        """Drop every record (a snapshot covers them); lsns keep increasing from `last_lsn`."""
        with self._append_lock, self._sync_lock:
            os.ftruncate(self._fd, len(MAGIC))
            os.fsync(self._fd)
            self._end = len(MAGIC)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
