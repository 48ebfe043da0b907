"""Reading a log over c2sp.org/tlog-tiles: a checkpoint, an entry, or a
monitor's consistency check, from HTTP alone.

The resources (``checkpoint``, hash tiles, entry bundles; see
:mod:`ledger.tlog_tiles`) may come from the node's ``--tiles-http`` endpoint
or from any static mirror or HTTP cache of it: nothing served is trusted.
:class:`TilesReader` verifies the checkpoint against a C2SP tlog-policy (the
log's signature and the witness quorum) and then proves what it is asked
from the tiles against that checkpoint's root. Only the standard library
speaks HTTP here; no gRPC, no LMDB.

Every resource is read up to a cap of its kind (a checkpoint: a note's
:data:`~ledger.note.MAX_NOTE_SIZE`; a tile: its hashes; an entry bundle: its
entries at their largest), before and after gzip, so that neither a huge
answer nor a gzip bomb can exhaust memory. Failures are typed:

- :class:`~ledger.errors.NotFound`: the server answered 404;
- :class:`TilesFetchError`: any other status, no answer, a cut-off or
  oversized answer (:class:`TilesResponseTooLarge`), bad gzip;
- :class:`MalformedResource`: an answer that does not parse (a tile of the
  wrong length, a bundle that ends inside an entry, a checkpoint that is not
  a signed note): the server's content does not verify;
- the verifiers' own: :class:`~ledger.errors.InvalidSignature` and
  :class:`~ledger.errors.QuorumNotMet` for the checkpoint,
  :class:`~ledger.errors.RootMismatch` and :class:`~ledger.errors.InvalidProof`
  for tiles and entries that do not lead to its root, and
  :class:`~ledger.errors.InconsistencyError` for a log that shrank or forked.
"""

from __future__ import annotations

import http.client
import math
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint
from ledger.errors import (
    InconsistencyError,
    LedgerError,
    MalformedError,
    NotFound,
    VerificationError,
)
from ledger.merkle import HASH_SIZE
from ledger.note import MAX_NOTE_SIZE, parse_note
from ledger.policy import Policy, verify_checkpoint_policy
from ledger.tlog_tiles import (
    MAX_BUNDLE_ENTRY_BYTES,
    TILE_WIDTH,
    TileRef,
    decode_entry_bundle,
    encode_entry_bundle,
    parse_tile_path,
    verify_consistency_from_tiles,
    verify_entry_from_tiles,
)

__all__ = [
    "MalformedResource",
    "ProvenEntry",
    "TilesFetchError",
    "TilesReader",
    "TilesResponseTooLarge",
    "resource_cap",
    "witnesses_on",
]

#: The most of a refusal's body (a 4xx or 5xx answer) kept for the error.
MAX_ERROR_TEXT = 1024
_CHUNK = 1 << 16


class TilesFetchError(LedgerError):
    """``GET url`` did not give the resource: ``status`` is the HTTP status
    (None when there was no answer: no connection, a timeout, a cut-off
    answer), ``reason`` what went wrong, ``text`` the start of the server's
    own words, if it said any."""

    def __init__(self, url: str, status: int | None, reason: str, text: str = "") -> None:
        message = f"GET {url}: {reason}"
        super().__init__(f"{message}: {text}" if text else message)
        self.url = url
        self.status = status
        self.reason = reason
        self.text = text


class TilesResponseTooLarge(TilesFetchError):
    """The answer to ``GET url`` is larger than ``limit`` bytes, the most a
    resource of its kind can be (``compressed``: before gzip, else after)."""

    def __init__(self, url: str, status: int | None, limit: int, *, compressed: bool = False) -> None:
        what = "compressed body" if compressed else "body"
        super().__init__(url, status, f"{what} larger than {limit:,} bytes, the most this resource can be")
        self.limit = limit
        self.compressed = compressed


class MalformedResource(VerificationError):
    """A resource of the log at ``prefix`` does not parse (``what``: the
    resource or field; ``reason``). It came from the server, not from the
    caller: whatever it is, it does not verify."""

    def __init__(self, prefix: str, what: str, reason: str) -> None:
        super().__init__(f"the log's resources at {prefix} do not verify: malformed {what}: {reason}")
        self.prefix = prefix
        self.what = what
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """Entry ``index`` (its exact ``entry`` bytes) is in the tree of
    ``checkpoint``, whose ``note`` met the policy; ``witnesses`` are the
    policy's witnesses that cosigned it."""

    index: int
    entry: bytes
    checkpoint: Checkpoint
    note: str
    witnesses: tuple[str, ...] = ()


def resource_cap(path: str) -> int:
    """The most bytes resource ``path`` (``checkpoint`` or ``tile/...``) can
    hold: a note's cap, a tile's hashes, or a bundle's entries at 65,535
    bytes each. Raises :class:`MalformedError` for any other path."""
    if path == "checkpoint":
        return MAX_NOTE_SIZE
    ref = parse_tile_path(path)
    if ref.level is None:
        return ref.width * (2 + MAX_BUNDLE_ENTRY_BYTES)
    return ref.width * HASH_SIZE


def witnesses_on(note: str, policy: Policy) -> tuple[str, ...]:
    """The names of ``policy``'s witnesses whose cosignature ``note``
    carries. Use only on a note :func:`verify_checkpoint_policy` accepted:
    it verified each of them."""
    present = {(s.name, s.keyid) for s in parse_note(note).signatures}
    return tuple(w.name for w in policy.witnesses if (w.verifier.name, w.verifier.keyid) in present)


class TilesReader:
    """The tlog-tiles resources under ``prefix_url`` (``http://`` or
    ``https://``; ``checkpoint`` is at ``<prefix>/checkpoint``). Each request
    must be answered within ``timeout`` seconds, the whole body included.

    Raises :class:`MalformedError` for a URL that is not http(s) with a host.
    """

    def __init__(self, prefix_url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(prefix_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MalformedError("tiles URL", f"{prefix_url!r} is not an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise MalformedError("tiles URL", f"{prefix_url!r}: a prefix has no query or fragment")
        if not 0 < timeout < math.inf:
            raise MalformedError("timeout", f"{timeout} is not a positive number of seconds")
        self.prefix = prefix_url.rstrip("/") + "/"
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    # -- fetching -------------------------------------------------------

    def url(self, path: str) -> str:
        return self.prefix + path

    def fetch(self, path: str) -> bytes:
        """The body of ``GET <prefix>/<path>``, gunzipped if it came
        compressed, and at most :func:`resource_cap` bytes (before and after
        gzip). Raises :class:`NotFound` for a 404, :class:`TilesFetchError`
        (:class:`TilesResponseTooLarge` for the cap) for anything else that
        is not a 200 with a whole body."""
        cap = resource_cap(path)
        url = self.url(path)
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip, identity"})
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                if status != 200:
                    raise TilesFetchError(url, status, f"HTTP {status}, not 200")
                encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
                if encoding not in ("identity", "gzip", "x-gzip"):
                    reason = f"Content-Encoding {encoding!r}: only gzip was asked for"
                    raise TilesFetchError(url, status, reason)
                gzipped = encoding != "identity"
                # Deflate adds a few bytes per 64 KiB to data it cannot compress.
                limit = cap + cap // 1024 + 1024 if gzipped else cap
                length = response.headers.get("Content-Length")
                if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
                    raise TilesResponseTooLarge(url, status, limit, compressed=gzipped)
                body = self._read(response, url, limit, gzipped, deadline)
        except urllib.error.HTTPError as exc:
            with exc:
                text = _refusal_text(exc)
            if exc.code == 404:
                raise NotFound("tlog-tiles resource", url) from None
            raise TilesFetchError(url, exc.code, f"HTTP {exc.code} {exc.reason}", text) from None
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, TimeoutError):
                raise TilesFetchError(url, None, f"cannot connect: {_os_reason(exc.reason)}") from None
            raise TilesFetchError(url, None, f"no answer within {self.timeout:g} s") from None
        except TimeoutError:
            raise TilesFetchError(url, None, f"no answer within {self.timeout:g} s") from None
        except (http.client.HTTPException, OSError) as exc:
            raise TilesFetchError(url, None, f"the answer broke off: {_os_reason(exc)}") from None
        return _gunzip(body, cap, url, status) if gzipped else body

    def _read(
        self, response: http.client.HTTPResponse, url: str, limit: int, gzipped: bool, deadline: float
    ) -> bytes:
        chunks: list[bytes] = []
        total = 0
        # read1: one socket read at a time, so that a server sending a byte
        # now and then cannot keep one read() call waiting past the deadline.
        while chunk := response.read1(min(_CHUNK, limit + 1 - total)):
            total += len(chunk)
            if total > limit:
                raise TilesResponseTooLarge(url, response.status, limit, compressed=gzipped)
            if time.monotonic() > deadline:
                raise TilesFetchError(url, response.status, f"the answer took longer than {self.timeout:g} s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _fetch_tile(self, path: str) -> bytes:
        """``fetch(path)`` of a tile or bundle; a partial one the server no
        longer has is cut from the full one, as tlog-tiles allows (a log may
        delete a partial tile once the full tile exists)."""
        try:
            return self.fetch(path)
        except NotFound:
            ref = parse_tile_path(path)
            if not ref.partial:
                raise
            try:
                full = self.fetch(TileRef(ref.level, ref.index).path)
            except NotFound:
                pass
            else:
                return _cut(full, ref)
            raise

    @contextmanager
    def _served(self) -> Iterator[None]:
        # What fails to parse here came from the server: it does not verify.
        try:
            yield
        except MalformedError as exc:
            raise MalformedResource(self.prefix, exc.what, exc.reason) from None

    # -- verifying ------------------------------------------------------

    def checkpoint(self, policy: Policy) -> tuple[Checkpoint, str]:
        """The served checkpoint and its note, once (1) a log of ``policy``
        signed it and (2) its witnesses meet the quorum
        (:func:`~ledger.policy.verify_checkpoint_policy`)."""
        data = self.fetch("checkpoint")
        with self._served():
            cp = verify_checkpoint_policy(data, policy)
        return cp, data.decode("utf-8")

    def prove_entry(self, index: int, policy: Policy, entry: bytes | None = None) -> ProvenEntry:
        """Prove entry ``index`` in the tree of the served checkpoint.

        (1) The checkpoint must meet ``policy``; (2) ``index`` must be in its
        tree (:class:`NotFound` otherwise); (3) the entry, from its bundle or
        ``entry`` if given (then no bundle is fetched: an entry over 65,535
        bytes has none), must hash to its level-0 tile's leaf, and the
        inclusion proof computed from the tiles must lead to the
        checkpoint's root (:func:`~ledger.tlog_tiles.verify_entry_from_tiles`).
        """
        # (1) A checkpoint the policy trusts.
        cp, note = self.checkpoint(policy)
        # (2) An entry of its tree.
        if not 0 <= index < cp.size:
            raise NotFound("entry", f"{index}: the log's checkpoint holds entries 0 to {cp.size - 1}")
        # (3) The entry, its leaf and its inclusion, from tiles.
        with self._served():
            proven = verify_entry_from_tiles(self._fetch_tile, cp.size, cp.root_hash, index, entry)
        return ProvenEntry(index, proven, cp, note, witnesses_on(note, policy))

    def prove_consistency(self, old_note: str | bytes, policy: Policy) -> tuple[Checkpoint, str]:
        """The served checkpoint and its note, proven to extend ``old_note``.

        (1) The old checkpoint must meet ``policy`` (its errors are raised
        as they are: the caller gave it); (2) so must the served one, and be
        of the same log; (3) the consistency proof computed from the tiles
        must lead from the old root to the new one
        (:func:`~ledger.tlog_tiles.verify_consistency_from_tiles`). A log
        that shrank or forked raises :class:`InconsistencyError` whose
        evidence holds both notes.
        """
        # (1) The checkpoint the monitor had.
        old = verify_checkpoint_policy(old_note, policy)
        old_text = old_note.decode("utf-8") if isinstance(old_note, bytes) else old_note
        # (2) The one served now.
        cp, note = self.checkpoint(policy)
        if cp.origin != old.origin:
            raise VerificationError(
                f"the old checkpoint is of log {old.origin!r}; {self.prefix} serves {cp.origin!r}"
            )
        # (3) One history.
        try:
            with self._served():
                verify_consistency_from_tiles(
                    self._fetch_tile, old.size, old.root_hash, cp.size, cp.root_hash
                )
        except InconsistencyError as exc:
            exc.evidence.update(old_note=old_text, new_note=note)
            raise
        return cp, note


def _cut(full: bytes, ref: TileRef) -> bytes:
    """Partial resource ``ref`` from the full one of its index."""
    if ref.level is None:
        return encode_entry_bundle(decode_entry_bundle(full, TILE_WIDTH)[: ref.width])
    if len(full) != TILE_WIDTH * HASH_SIZE:
        full_path = TileRef(ref.level, ref.index).path
        raise MalformedError(full_path, f"{len(full)} bytes, not {TILE_WIDTH} hashes of {HASH_SIZE}")
    return full[: ref.width * HASH_SIZE]


def _gunzip(data: bytes, cap: int, url: str, status: int) -> bytes:
    """``data`` gunzipped (every member), or an error once it passes ``cap``
    bytes: at most ``cap + 1`` bytes are ever inflated."""
    out = bytearray()
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while not inflater.eof:
                chunk = inflater.decompress(pending, cap + 1 - len(out))
                out += chunk
                if len(out) > cap:
                    raise TilesResponseTooLarge(url, status, cap)
                pending = inflater.unconsumed_tail
                if not chunk and not pending:
                    raise TilesFetchError(url, status, "the gzip body is cut off")
            rest = inflater.unused_data
    except zlib.error as exc:
        raise TilesFetchError(url, status, f"the gzip body does not inflate: {exc}") from None
    return bytes(out)


def _refusal_text(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(MAX_ERROR_TEXT)
    except (http.client.HTTPException, OSError):
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())


def _os_reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
