"""Storage: LMDB (the embedded default) and its in-memory twin, behind one interface."""

from ledger.storage.base import ReadTxn, Store, Table, WriteTxn, from_u64, u64
from ledger.storage.lmdb_store import LmdbStore
from ledger.storage.memory import MemoryStore
from ledger.storage.writer_lock import LedgerInUse, WriterLock

__all__ = ["LedgerInUse", "LmdbStore", "MemoryStore", "ReadTxn", "Store", "Table", "WriteTxn", "WriterLock", "from_u64", "u64"]
