"""Signature checks in worker processes, off the node's GIL.

Ed25519 verification releases the GIL, so the committer used to run it in
threads beside the envelope parsing. On this machine that made two threads
slower than one: every signature is one GIL release and one re-acquisition,
and each re-acquisition waits for whichever thread holds the GIL (the writer
applying state, the event loop, another parser) and then forces a switch. On
2 cores, two threads preparing the bench workload spent 158 µs of CPU per
entry against 93 µs for one thread alone, and ingested fewer entries per
second.

A :class:`SignaturePool` sends chunks of envelope bytes to worker processes
(``python -m node.sigpool``), which parse each envelope and answer with the
keyids whose signatures verify (:func:`ledger.envelope.verified_keys`). Each
worker has a GIL of its own, so the node's threads never queue for theirs
once per signature; the bytes cross a pipe once each way. A worker parses
with the same code as the node, so the node's own parse of the same bytes
names the same signatures.

Why only the signatures, and not the whole ``prepare``: shipping each
:class:`~ledger.state.Prepared` back pickled was measured (bench workload, 2
cores). It cut the node's own CPU per entry from ~135 to ~121 µs, but
pickling and unpickling added ~45 µs per entry in all, and with both cores
busy the in-process ingest rate did not move (6,241 against 6,484
entries/s). Bytes in, keyids out keeps the pipes cheap.

Plain pipes rather than :mod:`multiprocessing`: a spawned multiprocessing
worker re-imports the parent's ``__main__`` (a script, a test runner, a
benchmark), and forking a process that runs gRPC's threads is unsafe.

The pool is an optimisation, never a dependency. A worker says when its
interpreter is up (one byte); until then its chunks are verified in the
calling thread, so a node's first submissions, or those after a restart, do
not wait for a Python to boot. If a worker dies (killed, out of memory) or
cannot start, its chunk is verified in the calling thread too,
and the worker is started again at most once per :data:`RESTART_INTERVAL`;
no submission fails or is lost because of it.

Wire format, each way, all integers big-endian: a request is the entry
count (u32), then per entry its length (u32) and bytes; the answer is, per
entry, the number of verifying keyids (u16, 0xFFFF for bytes that are not
an envelope) and each keyid as its length (u32) and UTF-8 text.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from ledger.envelope import MAX_ENVELOPE_SIGNATURES, parse_envelope, verified_keys
from ledger.errors import LedgerError

__all__ = ["RESTART_INTERVAL", "SignaturePool", "verify_entries"]

_log = logging.getLogger("carbonledger.node")

#: What a worker says of one envelope: the keyids that verify, or None for
#: bytes that are not an envelope (the node's own parse rejects them).
Verdict = frozenset[str] | None

#: Least time (seconds) between two starts of the same worker slot, so a
#: worker that cannot run does not cost a process start per chunk.
RESTART_INTERVAL = 1.0

_U32 = struct.Struct(">I")
#: What a worker writes once, when it is ready for requests.
_READY = b"R"
_U16 = struct.Struct(">H")
_NOT_ENVELOPE = 0xFFFF
assert MAX_ENVELOPE_SIGNATURES < _NOT_ENVELOPE
#: Where ``node`` is imported from, for the workers' ``sys.path``.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)


def verify_entries(entries: Sequence[bytes]) -> list[Verdict]:
    """The verdict on each envelope: in a worker, or in the caller as the fallback."""
    out: list[Verdict] = []
    for entry in entries:
        try:
            out.append(verified_keys(parse_envelope(entry)))
        except LedgerError:
            out.append(None)
    return out


def _encode_request(entries: Sequence[bytes]) -> bytes:
    parts = [_U32.pack(len(entries))]
    for entry in entries:
        parts.append(_U32.pack(len(entry)))
        parts.append(entry)
    return b"".join(parts)


def _encode_answer(verdicts: Sequence[Verdict]) -> bytes:
    parts = []
    for verdict in verdicts:
        if verdict is None:
            parts.append(_U16.pack(_NOT_ENVELOPE))
            continue
        parts.append(_U16.pack(len(verdict)))
        for key in verdict:
            raw = key.encode()
            parts.append(_U32.pack(len(raw)))
            parts.append(raw)
    return b"".join(parts)


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"pipe closed after {0 if data is None else len(data)} of {n} bytes")
    return data


def _decode_answer(stream: IO[bytes], count: int) -> list[Verdict]:
    out: list[Verdict] = []
    for _ in range(count):
        (n,) = _U16.unpack(_read_exactly(stream, 2))
        if n == _NOT_ENVELOPE:
            out.append(None)
            continue
        keys = []
        for _ in range(n):
            (size,) = _U32.unpack(_read_exactly(stream, 4))
            keys.append(_read_exactly(stream, size).decode())
        out.append(frozenset(keys))
    return out


def _serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """A worker's loop: answer requests until the parent closes the pipe."""
    while header := requests.read(4):
        if len(header) != 4:
            return
        (count,) = _U32.unpack(header)
        entries = [_read_exactly(requests, _U32.unpack(_read_exactly(requests, 4))[0]) for _ in range(count)]
        answers.write(_encode_answer(verify_entries(entries)))
        answers.flush()


class _Worker:
    """One worker process and its two pipes; used by one thread at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (_IMPORT_ROOT, env.get("PYTHONPATH"))))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.sigpool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.requests: IO[bytes] = self.proc.stdin
        self.answers: IO[bytes] = self.proc.stdout
        self.ready = False

    def is_ready(self, timeout: float = 0.0) -> bool:
        """Whether the worker has said it is up, waiting at most ``timeout``
        seconds for it. Raises EOFError if it died first."""
        if not self.ready and select.select([self.answers], [], [], timeout)[0]:
            if _read_exactly(self.answers, 1) != _READY:
                raise ValueError("a signature worker did not start with its ready byte")
            self.ready = True
        return self.ready

    def send(self, entries: Sequence[bytes]) -> None:
        self.requests.write(_encode_request(entries))
        self.requests.flush()

    def receive(self, count: int) -> list[Verdict]:
        return _decode_answer(self.answers, count)

    def stop(self) -> None:
        for stream in (self.requests, self.answers):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SignaturePool:
    """``processes`` worker processes verifying envelope signatures.

    :meth:`verify` is thread-safe: each call borrows a free worker (waiting
    for one if all are busy), so give it as many workers as threads that
    call it at once. Workers start in the background; chunks submitted
    before a worker is up are verified in the calling thread
    (:meth:`wait_ready` waits for them).
    """

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a signature pool needs at least one process")
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._slots = [_Slot() for _ in range(processes)]
        self._closed = False
        for slot in self._slots:
            slot.start()
            self._free.put(slot)

    @property
    def processes(self) -> int:
        return len(self._slots)

    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [s.worker.proc.pid for s in self._slots if s.worker is not None]

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every worker to be up; whether they are."""
        deadline = time.monotonic() + timeout
        return all(slot.wait_ready(max(0.0, deadline - time.monotonic())) for slot in self._slots)

    def submit(self, entries: Sequence[bytes]) -> Callable[[], list[Verdict]]:
        """Start verifying ``entries``; call what this returns, exactly once,
        for the verdicts (from a worker or, if none could answer, verified
        in that call). The caller works on in between: that is the overlap."""
        if self._closed:
            return functools.partial(verify_entries, entries)
        slot = self._free.get()
        try:
            sent = slot.send(entries)
        except BaseException:
            self._free.put(slot)
            raise

        def collect() -> list[Verdict]:
            try:
                verdicts = slot.receive(len(entries)) if sent else None
            finally:
                self._free.put(slot)
            return verdicts if verdicts is not None else verify_entries(entries)

        return collect

    def verify(self, entries: Sequence[bytes]) -> list[Verdict]:
        """The verdict on each of ``entries`` (:meth:`submit`, then wait)."""
        return self.submit(entries)()

    def close(self) -> None:
        """Stop the workers (each after the chunk it is on); later calls verify in-process."""
        self._closed = True
        for slot in self._slots:
            slot.stop()


T = TypeVar("T")

#: What talking to a dead or broken worker raises: a closed or broken pipe, a
#: short answer, or I/O on a pipe already closed.
_WORKER_FAILURES = (OSError, EOFError, ValueError)


class _Slot:
    """A place for one worker: restarted when its worker dies, not too often."""

    def __init__(self) -> None:
        self.worker: _Worker | None = None
        self._started = -RESTART_INTERVAL
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        self._started = time.monotonic()
        try:
            self.worker = _Worker()
        except OSError:  # cannot start a process now (limits, memory)
            _log.exception("cannot start a signature worker; verifying in-process")
            self.worker = None

    def send(self, entries: Sequence[bytes]) -> bool:
        """Hand ``entries`` to the worker; False if this slot has no working worker."""
        with self._lock:
            if self._stopped:
                return False
            if self.worker is None and time.monotonic() - self._started >= RESTART_INTERVAL:
                self.start()
            if self.worker is None:
                return False
            try:
                if not self.worker.is_ready():
                    return False
                self.worker.send(entries)
            except _WORKER_FAILURES as exc:
                self._failed(exc)
                return False
            return True

    def wait_ready(self, timeout: float) -> bool:
        """Whether this slot's worker is up, waiting at most ``timeout`` seconds."""
        return self._ask(lambda worker: worker.is_ready(timeout), False)

    def receive(self, count: int) -> list[Verdict] | None:
        """The verdicts on what :meth:`send` handed over; None if the worker failed."""
        return self._ask(lambda worker: worker.receive(count), None)

    def _ask(self, question: Callable[[_Worker], T], otherwise: T) -> T:
        """``question(worker)`` under the lock; ``otherwise`` if there is no
        worker (stopped meanwhile) or it fails, and then it is stopped."""
        with self._lock:
            if self.worker is None:
                return otherwise
            try:
                return question(self.worker)
            except _WORKER_FAILURES as exc:
                self._failed(exc)
                return otherwise

    def _failed(self, exc: BaseException) -> None:
        assert self.worker is not None
        _log.warning("a signature worker failed (%s); verifying in-process and restarting it", exc)
        self.worker.stop()
        self.worker = None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self.worker is not None:
                self.worker.stop()
                self.worker = None


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the node decides when to stop,
    # and a worker ends when the node closes its pipe (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stdout.buffer.write(_READY)
        sys.stdout.buffer.flush()
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, EOFError):
        # The node closed its ends mid-request, or before this worker was
        # even up (a pool closed at once): nobody is left to answer, and a
        # traceback on the node's stderr would only alarm its operator.
        # Python flushes stdout once more at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
