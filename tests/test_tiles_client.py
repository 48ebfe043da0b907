"""client.tiles and ``carbonledger tiles``: reading a log over c2sp.org/tlog-tiles.

Everything goes over real HTTP on 127.0.0.1: the node's TilesHttpServer over
an LMDB ledger, a static mirror of it (files copied with the reader's own
fetch and served by the standard library's http.server), and small
http.server handlers that misbehave on purpose (huge answers, gzip bombs,
slow answers, errors).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from client.cli import main
from client.tiles import (
    MalformedResource,
    TilesFetchError,
    TilesReader,
    TilesResponseTooLarge,
    resource_cap,
)
from ledger.checkpoint import Checkpoint, cosign_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.errors import (
    InconsistencyError,
    InvalidProof,
    InvalidSignature,
    MalformedError,
    NotFound,
    QuorumNotMet,
    RootMismatch,
    VerificationError,
)
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.note import MAX_NOTE_SIZE, parse_note
from ledger.policy import parse_policy
from ledger.tlog_tiles import TileRef, decode_entry_bundle, encode_entry_bundle, entry_bundle_refs
from node.tiles_http import TilesHttpServer

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "tiles-client.example/log"
SIGNER = Signer.from_seed(ORIGIN, hashlib.sha256(b"tiles client log").digest())
#: Same origin, another key: what an impostor or a stolen name would sign with.
IMPOSTOR = Signer.from_seed(ORIGIN, hashlib.sha256(b"not the log").digest())
W1 = Signer.from_seed("w1.example", hashlib.sha256(b"tiles client w1").digest(), cosigner=True)
SIZE = 2_000  # 7 full level-0 tiles and 007.p/208; level 1: 000.p/7
POLICY_TEXT = f"log {SIGNER.vkey}\nquorum none\n"
POLICY = parse_policy(POLICY_TEXT)
WITNESSED_TEXT = f"log {SIGNER.vkey}\nwitness W1 {W1.vkey}\nquorum W1\n"
WITNESSED = parse_policy(WITNESSED_TEXT)


def entries(n: int, start: int = 0, tag: bytes = b"entry") -> list[bytes]:
    # Lengths vary so that no two bundles look alike.
    return [b"%s %d " % (tag, i) + b"#" * (i % 13) for i in range(start, start + n)]


# -- servers --------------------------------------------------------------------


class TilesEndpoint:
    """A node's TilesHttpServer on 127.0.0.1:0, its event loop in a thread."""

    def __init__(self, ledger: Ledger, checkpoint: Callable[[], str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = TilesHttpServer(ledger, "127.0.0.1", 0, checkpoint)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.server.port}/"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpThread:
    """A stdlib ThreadingHTTPServer on 127.0.0.1:0 with ``handler``, in a thread."""

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("tiles") / "ledger", signer=SIGNER, created_time=0) as led:
        data = entries(SIZE)
        for i in range(0, SIZE, 300):  # several blocks, so several checkpoints
            led.append(data[i : i + 300])
        yield led


@pytest.fixture(scope="module")
def endpoint(ledger: Ledger) -> Iterator[TilesEndpoint]:
    ep = TilesEndpoint(ledger)
    yield ep
    ep.close()


def all_resources(size: int) -> list[str]:
    """Every path a tiled log of ``size`` serves: the checkpoint, each
    level's full tiles and its partial one, and every entry bundle."""
    paths = ["checkpoint"]
    level = 0
    while (hashes := size // 256**level) > 0:
        paths += [TileRef(level, i).path for i in range(hashes // 256)]
        if hashes % 256:
            paths.append(TileRef(level, hashes // 256, hashes % 256).path)
        level += 1
    return paths + [ref.path for ref in entry_bundle_refs(size)]


def copy_mirror(url: str, size: int, into: Path) -> None:
    """A static mirror of the log at ``url``, made with the reader's own fetch."""
    reader = TilesReader(url)
    for path in all_resources(size):
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(reader.fetch(path))


@pytest.fixture(scope="module")
def mirror_files(endpoint: TilesEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    copy_mirror(endpoint.url, SIZE, root / "log")
    return root


@pytest.fixture
def mirror(mirror_files: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A fresh copy of the mirror (a test may tamper with it) served by
    http.server under the prefix /log/: (its log directory, the prefix URL)."""
    root = tmp_path / "www"
    shutil.copytree(mirror_files, root)
    server = HttpThread(partial(Quiet, directory=str(root)))
    yield root / "log", server.url + "log/"
    server.close()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# -- the node's endpoint ------------------------------------------------------


def test_an_entry_is_proven_from_the_node_s_tiles(ledger: Ledger, endpoint: TilesEndpoint) -> None:
    reader = TilesReader(endpoint.url)
    cp, note = reader.checkpoint(POLICY)
    assert (cp.origin, cp.size, cp.root_hash) == (ORIGIN, SIZE, ledger.root())
    assert note == ledger.checkpoint()
    for index in (0, 255, 256, 1_000, 1_791, 1_792, SIZE - 1):
        proven = reader.prove_entry(index, POLICY)
        assert (proven.index, proven.entry) == (index, ledger.entry(index))
        assert (proven.checkpoint, proven.note, proven.witnesses) == (cp, note, ())
    # The entry in hand: proven without its bundle.
    assert reader.prove_entry(1_000, POLICY, entry=ledger.entry(1_000)).entry == ledger.entry(1_000)
    with pytest.raises(InvalidProof, match="leaf hash"):
        reader.prove_entry(1_000, POLICY, entry=ledger.entry(1_001))


def test_what_the_reader_fetches_is_what_the_ledger_holds(ledger: Ledger, endpoint: TilesEndpoint) -> None:
    reader = TilesReader(endpoint.url)
    assert reader.fetch("tile/0/003") == ledger.hash_tile(0, 3)
    assert reader.fetch("tile/1/000.p/7") == ledger.hash_tile(1, 0, 7)
    assert reader.fetch("tile/entries/007.p/208") == ledger.entry_bundle(7, 208)
    assert reader.fetch("checkpoint") == ledger.checkpoint().encode()


def test_the_node_gzips_bundles_for_who_accepts_it_and_tells_caches_so(
    ledger: Ledger, endpoint: TilesEndpoint
) -> None:
    # So the reader inflated the bundle above. The body depends on
    # Accept-Encoding: an HTTP cache in front must keep a copy per value.
    url = endpoint.url + "tile/entries/007.p/208"
    for accept, encoding in [("gzip, identity", "gzip"), ("identity", None)]:
        request = urllib.request.Request(url, headers={"Accept-Encoding": accept})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Encoding"] == encoding
            assert response.headers["Vary"] == "Accept-Encoding"
            body = response.read()
        assert (gzip.decompress(body) if encoding else body) == ledger.entry_bundle(7, 208)


def test_the_reader_asks_for_gzip_and_inflates_what_comes_compressed(ledger: Ledger) -> None:
    bundle = ledger.entry_bundle(2)
    asked: list[str | None] = []

    class AlwaysGzip(BaseHTTPRequestHandler):
        # tlog-tiles allows gzip "with no negotiation".
        def do_GET(self) -> None:
            asked.append(self.headers.get("Accept-Encoding"))
            body = gzip.compress(bundle)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HttpThread(AlwaysGzip)
    try:
        assert TilesReader(server.url).fetch("tile/entries/002") == bundle
    finally:
        server.close()
    assert asked == ["gzip, identity"]


def test_a_witnessed_checkpoint_names_its_witnesses_and_an_unwitnessed_one_fails_the_quorum(
    ledger: Ledger, endpoint: TilesEndpoint
) -> None:
    with pytest.raises(QuorumNotMet, match="W1"):
        TilesReader(endpoint.url).prove_entry(5, WITNESSED)
    cosigned = TilesEndpoint(ledger, lambda: cosign_checkpoint(ledger.checkpoint(), W1, 1_700_000_000))
    try:
        proven = TilesReader(cosigned.url).prove_entry(5, WITNESSED)
    finally:
        cosigned.close()
    assert proven.witnesses == ("W1",) and proven.entry == ledger.entry(5)


def test_an_index_beyond_the_tree_or_a_tile_it_does_not_hold_is_not_found(endpoint: TilesEndpoint) -> None:
    reader = TilesReader(endpoint.url)
    says = r"entry not found: 2000: the log's checkpoint holds entries 0 to 1999$"
    with pytest.raises(NotFound, match=says):
        reader.prove_entry(SIZE, POLICY)
    # The server's 404, for a tile past the tree.
    with pytest.raises(NotFound, match=rf"tlog-tiles resource not found: {endpoint.url}tile/0/008"):
        reader.fetch("tile/0/008")


def test_an_entry_no_bundle_can_carry_is_proven_from_the_bytes_in_hand() -> None:
    big = b"y" * 70_000
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append([b"small", big, b"small too"])
    ep = TilesEndpoint(led)
    try:
        reader = TilesReader(ep.url)
        with pytest.raises(TilesFetchError, match="HTTP 501") as err:
            reader.prove_entry(1, POLICY)
        assert err.value.status == 501 and "GetEntry" in err.value.text
        assert reader.prove_entry(1, POLICY, entry=big).entry == big
    finally:
        ep.close()


# -- a static mirror -------------------------------------------------------------


def test_a_static_mirror_proves_entries_like_the_node(ledger: Ledger, mirror: tuple[Path, str]) -> None:
    files, url = mirror
    assert sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()) == sorted(
        all_resources(SIZE)
    )
    reader = TilesReader(url)
    for index in (0, 999, 1_000, SIZE - 1):
        assert reader.prove_entry(index, POLICY).entry == ledger.entry(index)


def test_a_tampered_tile_in_the_mirror_is_a_root_mismatch(mirror: tuple[Path, str]) -> None:
    files, url = mirror
    tile = files / "tile/0/003"  # entries 768..1023; byte 40 is entry 769's leaf hash
    tile.write_bytes(flip(tile.read_bytes(), 40))
    reader = TilesReader(url)
    with pytest.raises(RootMismatch):
        reader.prove_entry(1_000, POLICY)
    # Entry 769 itself: its leaf hash no longer matches its entry.
    with pytest.raises(InvalidProof, match="leaf hash"):
        reader.prove_entry(769, POLICY)
    # Entries under other tiles do not depend on it.
    assert reader.prove_entry(500, POLICY).index == 500


def test_a_tampered_upper_tile_in_the_mirror_is_a_root_mismatch(mirror: tuple[Path, str]) -> None:
    files, url = mirror
    tile = files / "tile/1/000.p/7"
    tile.write_bytes(flip(tile.read_bytes(), 5))  # the hash of level-0 tile 0
    with pytest.raises(RootMismatch):
        TilesReader(url).prove_entry(1_000, POLICY)


def test_a_tampered_entry_in_the_mirror_is_caught(ledger: Ledger, mirror: tuple[Path, str]) -> None:
    files, url = mirror
    bundle_file = files / "tile/entries/003"
    bundle = decode_entry_bundle(bundle_file.read_bytes(), 256)
    bundle[1_000 - 768] = flip(bundle[1_000 - 768], 3)
    bundle_file.write_bytes(encode_entry_bundle(bundle))
    reader = TilesReader(url)
    with pytest.raises(InvalidProof, match="entry 1000's leaf hash"):
        reader.prove_entry(1_000, POLICY)
    # The bytes in hand are still proven: the tiles are intact.
    assert reader.prove_entry(1_000, POLICY, entry=ledger.entry(1_000)).index == 1_000


def test_a_malformed_tile_or_bundle_in_the_mirror_does_not_verify(mirror: tuple[Path, str]) -> None:
    files, url = mirror
    tile = files / "tile/0/003"
    tile.write_bytes(tile.read_bytes()[:-32])
    with pytest.raises(MalformedResource, match=r"malformed tile/0/003: 8160 bytes, not 256 hashes"):
        TilesReader(url).prove_entry(1_000, POLICY)
    bundle = files / "tile/entries/001"
    bundle.write_bytes(bundle.read_bytes()[:-1])
    with pytest.raises(MalformedResource, match="malformed entry bundle"):
        TilesReader(url).prove_entry(300, POLICY)


def test_a_checkpoint_the_policy_does_not_trust_fails(ledger: Ledger, mirror: tuple[Path, str]) -> None:
    files, url = mirror
    cp = parse_checkpoint(parse_note(ledger.checkpoint()).text)
    # The same tree head, signed with another key under the log's name.
    (files / "checkpoint").write_text(sign_checkpoint(cp, IMPOSTOR))
    with pytest.raises(InvalidSignature, match=ORIGIN):
        TilesReader(url).prove_entry(1_000, POLICY)
    # Another log's checkpoint.
    other = Signer.from_seed("other.example/log", bytes(32))
    other_cp = Checkpoint("other.example/log", cp.size, cp.root_hash)
    (files / "checkpoint").write_text(sign_checkpoint(other_cp, other))
    with pytest.raises(InvalidSignature, match="the policy has no log with this origin"):
        TilesReader(url).checkpoint(POLICY)
    # Not a note at all.
    (files / "checkpoint").write_text("hello\n")
    with pytest.raises(MalformedResource, match="malformed note"):
        TilesReader(url).checkpoint(POLICY)


def test_a_mirror_that_dropped_a_partial_tile_serves_it_from_the_full_one(
    ledger: Ledger, mirror: tuple[Path, str]
) -> None:
    # tlog-tiles lets a log delete a partial tile once the full one exists:
    # this mirror holds the tree of 2000 but serves the checkpoint of 1700,
    # whose partial level-0 tile and bundle 006.p/164 are gone.
    files, url = mirror
    (files / "checkpoint").write_text(ledger.checkpoint(1_700))
    level1 = files / "tile/1/000.p/6"
    level1.parent.mkdir(parents=True, exist_ok=True)
    level1.write_bytes(ledger.hash_tile(1, 0, 6))
    assert not (files / "tile/0/006.p/164").exists() and not (files / "tile/entries/006.p/164").exists()
    proven = TilesReader(url).prove_entry(1_650, POLICY)
    assert (proven.checkpoint.size, proven.entry) == (1_700, ledger.entry(1_650))


def test_a_mirror_missing_a_tile_says_which(mirror: tuple[Path, str]) -> None:
    files, url = mirror
    (files / "tile/0/003").unlink()
    with pytest.raises(NotFound, match=rf"{url}tile/0/003"):
        TilesReader(url).prove_entry(1_000, POLICY)


# -- consistency -----------------------------------------------------------------


@pytest.fixture
def growing(tmp_path: Path) -> Iterator[tuple[Ledger, TilesEndpoint]]:
    with Ledger.open(tmp_path / "growing", signer=SIGNER, created_time=0) as led:
        led.append(entries(600))
        ep = TilesEndpoint(led)
        yield led, ep
        ep.close()


def test_a_monitor_proves_the_log_grew_consistently(growing: tuple[Ledger, TilesEndpoint]) -> None:
    led, ep = growing
    reader = TilesReader(ep.url)
    _, old_note = reader.checkpoint(POLICY)
    led.append(entries(900, 600))
    cp, note = reader.prove_consistency(old_note, POLICY)
    assert (cp.size, cp.root_hash, note) == (1_500, led.root(), led.checkpoint())
    # From a power of two, from the same size, and from the empty tree.
    for size in (256, 1_500, 0):
        assert reader.prove_consistency(led.checkpoint(size), POLICY)[0] == cp


def test_a_forked_or_shrunk_log_is_an_inconsistency(growing: tuple[Ledger, TilesEndpoint]) -> None:
    led, ep = growing
    reader = TilesReader(ep.url)
    # The same key signed other entries from 400 on: a checkpoint of that fork.
    fork = Ledger.memory(signer=SIGNER, created_time=0)
    fork.append(entries(400) + entries(100, 400, tag=b"forked"))
    with pytest.raises(InconsistencyError, match="the log forked") as err:
        reader.prove_consistency(fork.checkpoint(), POLICY)
    assert err.value.evidence["old_note"] == fork.checkpoint()
    assert err.value.evidence["new_note"] == led.checkpoint()
    # Before the fork point the two agree.
    assert reader.prove_consistency(fork.checkpoint(400), POLICY)[0].size == 600
    # The served log is shorter than a checkpoint the same key signed before.
    longer = Ledger.memory(signer=SIGNER, created_time=0)
    longer.append(entries(800))
    with pytest.raises(InconsistencyError, match="shrank: tree size 600 after 800"):
        reader.prove_consistency(longer.checkpoint(), POLICY)
    # One size, two roots.
    with pytest.raises(InconsistencyError, match="two roots at tree size 600"):
        reader.prove_consistency(ledger_of(entries(599) + [b"other"]).checkpoint(), POLICY)


def ledger_of(data: list[bytes]) -> Ledger:
    """A ledger in memory under the log's key holding ``data``."""
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append(data)
    return led


def test_the_old_checkpoint_must_meet_the_policy_too(growing: tuple[Ledger, TilesEndpoint]) -> None:
    led, ep = growing
    cp = parse_checkpoint(parse_note(led.checkpoint(300)).text)
    with pytest.raises(InvalidSignature):
        TilesReader(ep.url).prove_consistency(sign_checkpoint(cp, IMPOSTOR), POLICY)


def test_an_old_checkpoint_of_another_log_proves_nothing(growing: tuple[Ledger, TilesEndpoint]) -> None:
    # Both logs are trusted, but a checkpoint of one says nothing of the other's history.
    _, ep = growing
    other = Ledger.memory(signer=Signer.from_seed("other.example/log", bytes(32)), created_time=0)
    other.append(entries(10))
    both = parse_policy(f"log {SIGNER.vkey}\nlog {other.vkey}\nquorum none\n")
    with pytest.raises(VerificationError, match="the old checkpoint is of log 'other.example/log'"):
        TilesReader(ep.url).prove_consistency(other.checkpoint(), both)


def test_a_tampered_mirror_is_no_evidence_of_a_fork(ledger: Ledger, mirror: tuple[Path, str]) -> None:
    files, url = mirror
    tile = files / "tile/0/003"
    tile.write_bytes(flip(tile.read_bytes(), 40))
    with pytest.raises(RootMismatch) as err:
        TilesReader(url).prove_consistency(ledger.checkpoint(900), POLICY)
    assert not isinstance(err.value, InconsistencyError)
    assert TilesReader(url).prove_consistency(ledger.checkpoint(700), POLICY)[0].size == SIZE


# -- transport errors and caps ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_is_a_fetch_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(TilesFetchError, match=rf"GET {url}checkpoint: cannot connect: .*refused") as err:
        TilesReader(url).checkpoint(POLICY)
    assert (err.value.url, err.value.status) == (url + "checkpoint", None)


def test_a_url_that_is_not_http_is_malformed() -> None:
    for url in ("ftp://example.org/log", "file:///etc", "example.org/log", "http:///x", "http://h/?q=1"):
        with pytest.raises(MalformedError, match="tiles URL"):
            TilesReader(url)


class Misbehaving(BaseHTTPRequestHandler):
    """Answers every GET with ``self.server.answer(handler)``."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.server.answer(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    servers: list[HttpThread] = []

    def start(answer: Callable[[BaseHTTPRequestHandler], None]) -> str:
        server = HttpThread(Misbehaving)
        server.httpd.answer = answer  # type: ignore[attr-defined]
        servers.append(server)
        return server.url

    yield start
    for s in servers:
        s.close()


def send(
    h: BaseHTTPRequestHandler, body: bytes, *, length: bool = True, status: int = 200, **headers: str
) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    if length:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def test_a_huge_checkpoint_is_refused_at_the_cap(misbehaving: Any) -> None:
    huge = b"x" * (MAX_NOTE_SIZE + 1)
    # Told in advance by Content-Length, or only found out while reading.
    for length in (True, False):
        url = misbehaving(lambda h, length=length: send(h, huge, length=length))
        with pytest.raises(TilesResponseTooLarge, match=f"larger than {MAX_NOTE_SIZE:,} bytes") as err:
            TilesReader(url).checkpoint(POLICY)
        assert err.value.limit == MAX_NOTE_SIZE and err.value.url == url + "checkpoint"
    # A Content-Length over the cap is refused before any of the body is read.
    url = misbehaving(lambda h: send(h, b"short", length=False, Content_Length=str(10**9)))
    with pytest.raises(TilesResponseTooLarge, match=f"larger than {MAX_NOTE_SIZE:,} bytes"):
        TilesReader(url).fetch("checkpoint")
    # At the cap exactly it is read (and then fails as the bad note it is).
    url = misbehaving(lambda h: send(h, huge[:-1], length=False))
    assert TilesReader(url).fetch("checkpoint") == huge[:-1]


def test_a_tile_over_its_size_is_refused_at_the_cap(misbehaving: Any) -> None:
    url = misbehaving(lambda h: send(h, bytes(256 * 32 + 1), length=False))
    with pytest.raises(TilesResponseTooLarge, match="larger than 8,192 bytes"):
        TilesReader(url).fetch("tile/0/000")
    assert resource_cap("tile/0/000.p/3") == 96
    assert resource_cap("tile/entries/000") == 256 * (2 + 65_535)


def test_a_gzip_bomb_is_refused_after_inflating_no_more_than_the_cap(misbehaving: Any) -> None:
    bomb = gzip.compress(bytes(50 << 20))  # 50 MiB of zeros in about 50 KiB
    assert len(bomb) < 100_000
    url = misbehaving(lambda h: send(h, bomb, Content_Encoding="gzip"))
    with pytest.raises(TilesResponseTooLarge, match=f"larger than {256 * 65_537:,} bytes"):
        TilesReader(url).fetch("tile/entries/000")
    # A hash tile's cap is smaller: the bomb is refused before inflating it...
    with pytest.raises(TilesResponseTooLarge, match="compressed body larger than 9,224 bytes"):
        TilesReader(url).fetch("tile/0/000")
    # ...and a smaller one (1 MiB in about 1 KiB) once 8,192 bytes are out.
    url = misbehaving(lambda h: send(h, gzip.compress(bytes(1 << 20)), Content_Encoding="gzip"))
    with pytest.raises(TilesResponseTooLarge, match="body larger than 8,192 bytes") as err:
        TilesReader(url).fetch("tile/0/000")
    assert not err.value.compressed


def test_bad_gzip_and_other_encodings_are_fetch_errors(misbehaving: Any) -> None:
    url = misbehaving(lambda h: send(h, b"\x1f\x8b not gzip at all", Content_Encoding="gzip"))
    with pytest.raises(TilesFetchError, match="does not inflate"):
        TilesReader(url).fetch("tile/entries/000")
    url = misbehaving(lambda h: send(h, gzip.compress(b"abc" * 1000)[:-20], Content_Encoding="gzip"))
    with pytest.raises(TilesFetchError, match="cut off"):
        TilesReader(url).fetch("tile/entries/000")
    url = misbehaving(lambda h: send(h, b"xyz", Content_Encoding="br"))
    with pytest.raises(TilesFetchError, match="Content-Encoding 'br'"):
        TilesReader(url).fetch("tile/entries/000")


def test_an_error_status_is_a_fetch_error_with_the_server_s_words(misbehaving: Any) -> None:
    url = misbehaving(lambda h: send(h, b"the disk\nis on fire\n", status=503))
    says = r"checkpoint: HTTP 503 Service Unavailable: the disk is on fire$"
    with pytest.raises(TilesFetchError, match=says) as err:
        TilesReader(url).checkpoint(POLICY)
    assert err.value.status == 503
    url = misbehaving(lambda h: send(h, b"", status=204))
    with pytest.raises(TilesFetchError, match="HTTP 204, not 200"):
        TilesReader(url).fetch("checkpoint")


def test_a_server_that_hangs_or_trickles_is_a_fetch_error(misbehaving: Any) -> None:
    def hang(h: BaseHTTPRequestHandler) -> None:
        time.sleep(3)

    url = misbehaving(hang)
    with pytest.raises(TilesFetchError, match=r"checkpoint: no answer within 0.5 s$"):
        TilesReader(url, timeout=0.5).fetch("checkpoint")

    hung_up = threading.Event()

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(200):  # each byte well within the socket timeout, for 10 s in all
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            hung_up.set()

    url = misbehaving(trickle)
    with pytest.raises(TilesFetchError, match="the answer took longer than 0.5 s"):
        TilesReader(url, timeout=0.5).fetch("checkpoint")
    # The reader hung up while the server was still sending, not once it had done.
    assert hung_up.wait(10)


def test_the_reader_needs_neither_grpc_nor_lmdb() -> None:
    code = (
        "import sys; sys.modules['grpc'] = None; sys.modules['lmdb'] = None; sys.modules['aiohttp'] = None\n"
        "import client.tiles\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": "proto"})


# -- the CLI ------------------------------------------------------------------------


class TilesCli:
    """``carbonledger tiles VERB ... --policy FILE`` in-process: (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path, policy_text: str = POLICY_TEXT) -> None:
        self.capsys = capsys
        self.policy = tmp / "policy.txt"
        self.policy.write_text(policy_text)

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["tiles", *argv, "--policy", str(self.policy)])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> TilesCli:
    return TilesCli(capsys, tmp_path)


def test_cli_tiles_verify_prints_what_was_proven(
    ledger: Ledger, endpoint: TilesEndpoint, cli: TilesCli, tmp_path: Path
) -> None:
    entry = ledger.entry(1_000)
    sha256 = hashlib.sha256(entry).hexdigest()
    code, out, err = cli("verify", endpoint.url, "1000")
    assert (code, err) == (0, "")
    assert f"ENTRY OK: entry 1000 is in {ORIGIN} at tree size {SIZE}" in out
    assert ledger.root().hex() in out
    assert f"{len(entry):,} bytes, sha256 {sha256}" in out
    assert f"signed by log {ORIGIN}; no witness cosignatures" in out
    out_file = tmp_path / "entry.bin"
    code, out, _ = cli("verify", endpoint.url, "1000", "--out", str(out_file), "--json")
    data = json.loads(out)
    assert code == 0 and out_file.read_bytes() == entry
    assert {k: data[k] for k in ("ok", "index", "tree_size", "root_hash", "entry_bytes", "entry_sha256")} == {
        "ok": True, "index": 1_000, "tree_size": SIZE, "root_hash": ledger.root().hex(),
        "entry_bytes": len(entry), "entry_sha256": sha256,
    }  # fmt: skip
    assert (data["log"], data["witnesses"]) == (ORIGIN, [])
    # --entry: these bytes are entry 1000; other bytes are not.
    assert cli("verify", endpoint.url, "1000", "--entry", str(out_file))[0] == 0
    out_file.write_bytes(ledger.entry(999))
    code, _, err = cli("verify", endpoint.url, "1000", "--entry", str(out_file))
    assert code == 1 and err == "carbonledger: entry 1000's leaf hash is not the one its level-0 tile holds\n"


def test_cli_tiles_verify_names_the_witnesses(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = TilesCli(capsys, tmp_path, WITNESSED_TEXT)
    ep = TilesEndpoint(ledger, lambda: cosign_checkpoint(ledger.checkpoint(), W1, 1_700_000_000))
    try:
        code, out, _ = cli("verify", ep.url, "7")
    finally:
        ep.close()
    assert code == 0 and f"signed by log {ORIGIN}; cosigned by W1" in out


def test_cli_tiles_verify_fails_closed_on_a_tampered_mirror(mirror: tuple[Path, str], cli: TilesCli) -> None:
    files, url = mirror
    code, out, _ = cli("verify", url, "1000")
    assert code == 0 and "ENTRY OK" in out
    tile = files / "tile/0/003"
    tile.write_bytes(flip(tile.read_bytes(), 40))
    code, out, err = cli("verify", url, "1000")
    assert (code, out) == (1, "") and err.startswith("carbonledger: root mismatch: expected ")
    code, out, err = cli("verify", url, "1000", "--json")
    assert code == 1 and json.loads(out)["error"]["type"] == "RootMismatch"


def test_cli_tiles_exit_codes_of_other_failures(
    endpoint: TilesEndpoint, cli: TilesCli, tmp_path: Path
) -> None:
    code, _, err = cli("verify", endpoint.url, "2000")
    assert code == 1
    assert err == "carbonledger: entry not found: 2000: the log's checkpoint holds entries 0 to 1999\n"
    url = f"http://127.0.0.1:{free_port()}/"
    code, _, err = cli("verify", url, "0")
    assert code == 3 and err.startswith(f"carbonledger: GET {url}checkpoint: cannot connect: ")
    code, out, _ = cli("checkpoint", url, "--json")
    assert code == 3 and json.loads(out)["error"]["url"] == url + "checkpoint"
    assert cli("verify", "ftp://example.org/", "0")[0] == 2
    assert cli("verify", endpoint.url, "0", "--entry", str(tmp_path / "missing"))[0] == 2
    cli.policy.write_text("log nonsense\n")
    code, _, err = cli("verify", endpoint.url, "0")
    assert code == 2 and f"policy file {cli.policy}" in err


def test_cli_tiles_checkpoint_and_since(
    growing: tuple[Ledger, TilesEndpoint], cli: TilesCli, tmp_path: Path
) -> None:
    led, ep = growing
    seen = tmp_path / "seen.note"
    code, out, _ = cli("checkpoint", ep.url, "--out", str(seen))
    assert code == 0 and f"CHECKPOINT OK: {ORIGIN} at tree size 600" in out
    assert led.checkpoint() in out and seen.read_text() == led.checkpoint()
    led.append(entries(400, 600))
    code, out, _ = cli("checkpoint", ep.url, "--since", str(seen))
    assert code == 0 and "tree size 1000" in out
    root = led.root(600).hex()
    assert f"consistent with {seen} (tree size 600, root {root}): 400 entries appended since" in out
    code, out, _ = cli("checkpoint", ep.url, "--since", str(seen), "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["tree_size"], data["since"]["tree_size"], data["note"]) == (1_000, 600, led.checkpoint())
    # A fork of the log: exit 1, saying so.
    seen.write_text(ledger_of(entries(300) + entries(500, 300, tag=b"forked")).checkpoint())
    code, _, err = cli("checkpoint", ep.url, "--since", str(seen))
    assert code == 1 and "the log forked" in err
    # An old note the policy does not trust, or that is not a note.
    seen.write_text(sign_checkpoint(parse_checkpoint(parse_note(led.checkpoint(600)).text), IMPOSTOR))
    code, _, err = cli("checkpoint", ep.url, "--since", str(seen))
    assert code == 1 and err.startswith(f"carbonledger: --since {seen}: invalid or missing signature")
    seen.write_text("not a note\n")
    code, _, err = cli("checkpoint", ep.url, "--since", str(seen))
    assert code == 2 and err.startswith(f"carbonledger: --since {seen}: ")


def test_cli_tiles_checkpoint_refuses_a_checkpoint_the_policy_does_not_trust(
    ledger: Ledger, mirror: tuple[Path, str], cli: TilesCli
) -> None:
    files, url = mirror
    cp = parse_checkpoint(parse_note(ledger.checkpoint()).text)
    (files / "checkpoint").write_text(sign_checkpoint(cp, IMPOSTOR))
    code, out, err = cli("checkpoint", url)
    assert (code, out) == (1, "")
    assert err.startswith(f"carbonledger: invalid or missing signature by {ORIGIN}")
