"""Backup: a consistent, audited copy of a ledger directory, taken while it runs.

LMDB copies an environment as of one read transaction, so a node keeps
committing while its ledger is copied, and the copy is the ledger at one
tree size. The copy is written into a hidden directory beside the
destination, synced, audited from its entries up (every hash, signature,
block link and state digest, as ``carbonledger audit`` does), and only then
renamed into place: a destination that exists is a whole, audited ledger,
never half of one.

A restored backup is the ledger at the backup's tree size. A log must never
go back on a checkpoint it published: a node restored alone has lost the
entries after the backup, and the next entry it accepts at their place forks
its log from every later checkpoint it signed (witnesses refuse it). In a
cluster, a restored node catches up from its peers instead.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ledger.audit import AuditReport, Progress, audit_store, stored_identity
from ledger.errors import LedgerError, StorageError
from ledger.keys import Verifier
from ledger.state_machines import machine_for
from ledger.storage import LmdbStore

__all__ = ["BackupReport", "backup_ledger"]

_DATA_FILE = "data.mdb"


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What the audited copy at ``path`` holds."""

    path: Path
    origin: str
    entries: int
    root: bytes
    state_digest: bytes
    bytes: int  # of the copy's data file


def backup_ledger(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    vkey: str | None = None,
    progress: Progress | None = None,
) -> BackupReport:
    """Copy the ledger in directory ``source`` to ``dest`` and audit the copy.

    ``dest`` must not exist, or be an empty directory; its parent must exist.
    ``vkey`` pins the log key the copy's checkpoints must verify under
    (default: the key the ledger recorded when it was created). Raises
    :class:`LedgerError` for a bad source or destination,
    :class:`StorageError` if the copy cannot be written, and
    :class:`~ledger.errors.AuditDiscrepancy` if the copy does not audit; in
    each of these cases nothing is left at ``dest``.
    """
    src, dst = Path(source), Path(dest)
    if not (src / _DATA_FILE).is_file():
        raise LedgerError(f"{src} holds no ledger (no {_DATA_FILE})")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise LedgerError(f"{dst} already exists and is not an empty directory; refusing to overwrite it")
    if not dst.parent.is_dir():
        raise LedgerError(f"{dst.parent} is not a directory")
    # Made as mkdir makes directories (the umask decides its mode), under a
    # name no other backup picks.
    staging = dst.parent / f".{dst.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        store = LmdbStore(src)
        try:
            _, stored_vkey, _ = stored_identity(store)
            store.copy_to(staging)
        finally:
            store.close()
        report = _audit_copy(staging, Verifier.from_vkey(vkey or stored_vkey), progress)
        os.replace(staging, dst)  # replaces an empty directory, never a full one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(dst.parent)  # the copy is whole and audited: make its name durable
    return BackupReport(dst, report.origin, report.entries, report.root, report.state_digest,
                        (dst / _DATA_FILE).stat().st_size)  # fmt: skip


def _audit_copy(path: Path, verifier: Verifier, progress: Progress | None) -> AuditReport:
    store = LmdbStore(path)
    try:
        _, _, machine_id = stored_identity(store)
        return audit_store(store, verifier=verifier, machine=machine_for(machine_id), progress=progress)
    finally:
        store.close()
        # The audit's read opened LMDB's lock file in the copy: not part of a backup.
        (path / "lock.mdb").unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise StorageError(f"cannot sync directory {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
