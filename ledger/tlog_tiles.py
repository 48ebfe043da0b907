"""C2SP tlog-tiles: the log as static resources any HTTP cache can serve.

c2sp.org/tlog-tiles names three kinds of resource under a URL prefix:

- ``checkpoint``: the latest signed checkpoint (mutable);
- ``tile/<L>/<N>[.p/<W>]``: the ``N``-th tile of level ``L``, the hashes of
  ``W`` (256 when full) consecutive perfect subtrees of ``256**L`` leaves,
  32 bytes each;
- ``tile/entries/<N>[.p/<W>]``: the entries under level-0 tile ``N``, each
  a big-endian uint16 length and the entry's bytes.

``<N>`` is written in 3-digit groups, all but the last prefixed with ``x``
(``1234067`` is ``x001/x234/067``); ``.p/<W>`` (1 to 255) marks a partial
tile, the rightmost of its level in a tree whose size is not a multiple of
its span. Full tiles never change; a partial tile of a given width never
changes either.

This module holds the pure part, shared by the node that serves the
resources and the clients that read them: the path grammar, the entry
bundle format, and :class:`TiledTree`, which answers ``read_node`` from
fetched tiles so that :mod:`ledger.merkle`'s proof functions compute RFC 9162
proofs and roots from tiles alone. A tile is checked for its exact length
when fetched; its hashes are trusted only once the root they give matches a
signed checkpoint's (see :func:`verify_entry_from_tiles` and
:func:`verify_consistency_from_tiles`).
"""

from __future__ import annotations

import hmac
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger.errors import InconsistencyError, InvalidProof, MalformedError, TooLarge
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.merkle.fetch import consistency_proof, inclusion_proof, root_at
from ledger.merkle.hashing import HASH_SIZE, node_hash

__all__ = [
    "MAX_BUNDLE_ENTRY_BYTES",
    "MAX_TILE_LEVEL",
    "TILE_WIDTH",
    "TileRef",
    "TiledTree",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entry_bundle_refs",
    "parse_tile_path",
    "tile_for",
    "unbundlable",
    "verify_consistency_from_tiles",
    "verify_entry_from_tiles",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
#: Highest level the path grammar admits. Level 8 would need 2**64 entries,
#: so levels 0 to 7 are the only ones a log can fill.
MAX_TILE_LEVEL = 63
#: Largest entry an entry bundle can carry (its length is a uint16).
MAX_BUNDLE_ENTRY_BYTES = 0xFFFF

_U16 = struct.Struct(">H")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"x[0-9]{3}")
_LAST_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class TileRef:
    """One resource: a hash tile (``level`` 0 to 63) or, with ``level`` None,
    an entry bundle; ``width`` is 256 for a full one."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        # Only what a path can name: a resource that no path names is a bug.
        if self.level is not None and not 0 <= self.level <= MAX_TILE_LEVEL:
            raise ValueError(f"tile level {self.level} is not 0 to {MAX_TILE_LEVEL}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile index {self.index} or width {self.width} out of range")

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        head = "entries" if self.level is None else str(self.level)
        groups = f"{self.index:03d}"
        # Pad to a multiple of 3 digits, then group from the left.
        groups = groups.zfill(-(-len(groups) // 3) * 3)
        parts = [groups[i : i + 3] for i in range(0, len(groups), 3)]
        n = "/".join([*(f"x{p}" for p in parts[:-1]), parts[-1]])
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{head}/{n}{suffix}"

    @property
    def span(self) -> int:
        """Leaves under one hash of this tile (entries: one each)."""
        return 1 << (TILE_HEIGHT * (self.level or 0))

    @property
    def end(self) -> int:
        """The tree size at which this resource's last hash is complete."""
        return (self.index * TILE_WIDTH + self.width) * self.span


def parse_tile_path(path: str) -> TileRef:
    """The resource a ``tile/...`` path names (no leading slash, no prefix).

    Strict, as the specification's grammar is: no leading zeros in ``L`` or
    ``W``, 3-digit groups with ``x`` on all but the last, no empty elements.
    Raises :class:`MalformedError` naming what is wrong.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise MalformedError("tile path", f"{path!r} is not tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")
    head, rest = parts[1], parts[2:]
    level: int | None
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= MAX_TILE_LEVEL:
        level = int(head)
    else:
        raise MalformedError(
            "tile path", f"level {head!r} is not 'entries' or 0 to {MAX_TILE_LEVEL} without leading zeros"
        )
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not _WIDTH.fullmatch(w) or int(w) >= TILE_WIDTH:
            raise MalformedError("tile path", f"partial width {w!r} is not 1 to 255 without leading zeros")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    *groups, last = rest
    if not _LAST_GROUP.fullmatch(last) or not all(_GROUP.fullmatch(g) for g in groups):
        raise MalformedError(
            "tile path", f"index {'/'.join(rest)!r} is not 3-digit groups, all but the last prefixed with 'x'"
        )
    if groups and groups[0] == "x000":
        # x000/001 would be a second name of 001: one resource, one path.
        raise MalformedError("tile path", f"index {'/'.join(rest)!r} has a leading zero group")
    index = int("".join(g[1:] for g in groups) + last)
    return TileRef(level, index, width)


def tile_for(level: int, index: int, size: int) -> TileRef:
    """The tile of ``level`` holding hash ``index`` (of that level) in the
    tree of ``size`` leaves: full if its span is complete, else the partial
    tile of the width the tree has there."""
    tile_index = index // TILE_WIDTH
    have = size // TILE_WIDTH**level - tile_index * TILE_WIDTH
    return TileRef(level, tile_index, min(have, TILE_WIDTH))


def unbundlable(position: int, size: int) -> TooLarge:
    """The error for entry ``position`` of a bundle, ``size`` bytes long,
    over the 65,535 bytes a bundle's uint16 lengths can carry."""
    return TooLarge(
        "entry for a tlog-tiles entry bundle",
        f"entry {position} of the bundle is {size:,} bytes; a bundle's uint16 lengths hold at most "
        f"{MAX_BUNDLE_ENTRY_BYTES:,}",
    )


def encode_entry_bundle(entries: Iterable[bytes]) -> bytes:
    """Entries as a bundle: each a big-endian uint16 length, then its bytes.

    Raises :class:`TooLarge` (:func:`unbundlable`) for an entry over 65,535
    bytes, which the format cannot carry."""
    parts: list[bytes] = []
    pack = _U16.pack
    for entry in entries:
        n = len(entry)
        if n > MAX_BUNDLE_ENTRY_BYTES:
            raise unbundlable(len(parts) // 2, n)
        parts.append(pack(n))
        parts.append(entry)
    return b"".join(parts)


def decode_entry_bundle(data: bytes, count: int) -> list[bytes]:
    """The ``count`` entries of a bundle; raises :class:`MalformedError` if
    it holds fewer, more, or ends inside one."""
    entries: list[bytes] = []
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if len(data) - pos < 2:
            raise MalformedError("entry bundle", f"a length prefix is cut off at byte {pos}")
        (n,) = _U16.unpack_from(data, pos)
        pos += 2
        if len(data) - pos < n:
            raise MalformedError(
                "entry bundle", f"entry {len(entries)} says {n} bytes, {len(data) - pos} remain"
            )
        entries.append(bytes(view[pos : pos + n]))
        pos += n
    if len(entries) != count:
        raise MalformedError("entry bundle", f"{len(entries)} entries where the tile holds {count}")
    return entries


class TiledTree:
    """``read_node(level, index)`` for the tree of ``size`` leaves, from
    tiles got through ``fetch(path) -> bytes``.

    A node of level ``8L + r`` is the hash of ``2**r`` consecutive hashes of
    one level-``L`` tile, recomputed here as the specification says. Each
    tile is fetched once and checked for its exact length
    (:class:`MalformedError` otherwise); whether its hashes are the log's is
    known only by comparing a root computed from them with a signed one.
    """

    def __init__(self, fetch: Callable[[str], bytes], size: int) -> None:
        if size < 0:
            raise InvalidProof(f"tree size must not be negative, got {size}")
        self.size = size
        self._fetch = fetch
        self._tiles: dict[TileRef, bytes] = {}

    def tile(self, ref: TileRef) -> bytes:
        data = self._tiles.get(ref)
        if data is None:
            data = self._fetch(ref.path)
            if len(data) != ref.width * HASH_SIZE:
                raise MalformedError(ref.path, f"{len(data)} bytes, not {ref.width} hashes of {HASH_SIZE}")
            self._tiles[ref] = data
        return data

    def read_node(self, level: int, index: int) -> bytes:
        tile_level, row = divmod(level, TILE_HEIGHT)
        first = index << row  # the first hash of tile_level under the node
        count = 1 << row
        if (first + count) * TILE_WIDTH**tile_level > self.size:
            raise InvalidProof(f"node {level}/{index} is not complete in a tree of {self.size}")
        ref = tile_for(tile_level, first, self.size)
        data = self.tile(ref)
        start = (first % TILE_WIDTH) * HASH_SIZE
        hashes = [data[p : p + HASH_SIZE] for p in range(start, start + count * HASH_SIZE, HASH_SIZE)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def root(self) -> bytes:
        return root_at(self.read_node, self.size)

    def inclusion_proof(self, index: int) -> list[bytes]:
        return inclusion_proof(self.read_node, index, self.size)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to this tree's size.
        Requires ``0 < old_size <= size``."""
        return consistency_proof(self.read_node, old_size, self.size)


def verify_entry_from_tiles(
    fetch: Callable[[str], bytes], size: int, root: bytes, index: int, entry: bytes | None = None
) -> bytes:
    """Prove entry ``index`` of the tree (``size``, ``root``) from tiles alone.

    ``root`` must come from a checkpoint whose signatures the caller has
    verified. The entry is taken from its bundle (or is ``entry``, if
    given, which then need not be fetched); its leaf hash must equal the
    level-0 tile's, and the inclusion proof computed from the tiles must
    lead to ``root``. Returns the entry's bytes. Raises
    :class:`~ledger.errors.RootMismatch` or :class:`InvalidProof` if the tiles do not
    prove it, :class:`MalformedError` for a tile or bundle that does not
    parse.
    """
    if not 0 <= index < size:
        raise InvalidProof(f"entry {index} is not in a tree of {size}")
    tree = TiledTree(fetch, size)
    if entry is None:
        ref = tile_for(0, index, size)
        bundle = decode_entry_bundle(fetch(TileRef(None, ref.index, ref.width).path), ref.width)
        entry = bundle[index % TILE_WIDTH]
    leaf = leaf_hash(entry)
    if leaf != tree.read_node(0, index):
        raise InvalidProof(f"entry {index}'s leaf hash is not the one its level-0 tile holds")
    verify_inclusion(leaf, index, size, tree.inclusion_proof(index), root)
    return entry


def verify_consistency_from_tiles(
    fetch: Callable[[str], bytes], old_size: int, old_root: bytes, new_size: int, new_root: bytes
) -> list[bytes]:
    """Prove from tiles alone that the tree (``new_size``, ``new_root``)
    extends the tree (``old_size``, ``old_root``) of the same log, and
    return the RFC 9162 consistency proof the tiles give.

    Both roots must come from checkpoints of one log whose signatures the
    caller has verified; the tiles are fetched for ``new_size``. Raises
    :class:`InconsistencyError`, with the sizes, roots (and proof) as its
    evidence, when the two trees cannot both be the log's: the new one is
    smaller, or of the same size with another root, or the tiles, once
    proven to be the new tree's, give another root at ``old_size``. Raises
    :class:`~ledger.errors.RootMismatch` or :class:`InvalidProof` when the
    tiles do not lead to ``new_root`` (they are not the log's, which says
    nothing about the log itself), :class:`MalformedError` for a tile that
    does not parse.
    """
    evidence: dict[str, object] = {
        "old_size": old_size,
        "old_root": old_root,
        "new_size": new_size,
        "new_root": new_root,
    }
    # (1) Sizes and roots alone: a log never shrinks, and one size has one root.
    if new_size < old_size:
        raise InconsistencyError(f"the log shrank: tree size {new_size} after {old_size}", evidence)
    if new_size == old_size:
        if not hmac.compare_digest(old_root, new_root):
            raise InconsistencyError(
                f"two roots at tree size {old_size}: {old_root.hex()} and {new_root.hex()}",
                evidence,
            )
        return []
    if old_size == 0:
        return []  # every tree extends the empty one: nothing to prove
    # (2) The proof and the old-size root, both read from the new tree's tiles.
    tree = TiledTree(fetch, new_size)
    proof = tree.consistency_proof(old_size)
    prefix_root = root_at(tree.read_node, old_size)
    # (3) The tiles must prove that the new tree extends the one whose root
    # they give at old_size; otherwise they are not the log's tiles, and a
    # mismatch with the old root would be no evidence against the log.
    verify_consistency(old_size, new_size, proof, prefix_root, new_root)
    # (4) Now that root is the new tree's at old_size: the old checkpoint
    # must have the same, or the log forked.
    if not hmac.compare_digest(prefix_root, old_root):
        raise InconsistencyError(
            f"the tree of size {new_size} (root {new_root.hex()}) holds root "
            f"{prefix_root.hex()} at size {old_size}, not the {old_root.hex()} signed for that "
            "size: the log forked",
            {**evidence, "root_at_old_size": prefix_root, "proof": proof},
        )
    verify_consistency(old_size, new_size, proof, old_root, new_root)
    return proof


def entry_bundle_refs(size: int) -> Sequence[TileRef]:
    """Every entry bundle of a tree of ``size`` leaves, in order."""
    full, rest = divmod(size, TILE_WIDTH)
    refs = [TileRef(None, i) for i in range(full)]
    if rest:
        refs.append(TileRef(None, full, rest))
    return refs
