"""One writer per ledger directory, across processes.

A :class:`~ledger.log.Ledger` keeps its head (tree size, right edge, last
block) in memory and writes the next entry at that size. LMDB serialises
write transactions between processes, but it cannot know that a second
ledger's head is stale. Two nodes serving one directory both start and
look healthy; once one of them commits, every batch of the other fails
(its entries' keys are not past the last one: the store refuses the
append), so half the clients get internal errors for as long as both run.
So the ledger holds an exclusive ``flock`` on a file beside the data while
open for writing, and the second node does not start.

The kernel drops the lock when its holder exits, however it exits (a node
killed with SIGKILL leaves no stale lock). Readers (``carbonledger audit``,
tools that open the store alone) take no lock and run beside a writer.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ledger.errors import StorageError

__all__ = ["LOCK_FILE", "LedgerInUse", "WriterLock"]

#: The lock file, in the ledger's directory next to LMDB's own files.
LOCK_FILE = "writer.lock"


class LedgerInUse(StorageError):
    """The ledger directory is open for writing elsewhere (``holder``: the
    process id that holds it, as it wrote it, if known)."""

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"ledger at {path} is already open for writing by {who}; one node per ledger directory")
        self.path = path
        self.holder = holder


class WriterLock:
    """Holds the exclusive writer lock of directory ``path`` until :meth:`release`.

    Raises :class:`LedgerInUse` at once (never waits) if another open file
    holds it, in this process or another.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LedgerInUse(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # For the message a second opener shows; the lock is the flock, not this.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (closing the file drops it); idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isascii() and text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None
