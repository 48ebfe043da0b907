"""The node's c2sp.org/tlog-tiles endpoint over real HTTP: what it serves, with
which headers, and how it refuses."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.checkpoint import parse_checkpoint
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.note import parse_note
from ledger.tlog_tiles import TiledTree, decode_entry_bundle, verify_entry_from_tiles
from node.errors import CannotListen
from node.tiles_http import TilesHttpServer

SIGNER = Signer.from_seed("tiles.example/log", hashlib.sha256(b"tiles http").digest())


def entries(n: int, start: int = 0) -> list[bytes]:
    return [b"http entry %d" % i for i in range(start, start + n)]


class Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers


def get(url: str, method: str = "GET", accept: str | None = None) -> Response:
    headers = {"Accept-Encoding": accept} if accept is not None else {"Accept-Encoding": "identity"}
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), dict(err.headers))


def serving(led: Ledger, check: Callable[[str], None], checkpoint: Callable[[], str] | None = None) -> None:
    """Run ``check(base_url)`` in a thread while the endpoint serves ``led``."""

    async def run() -> None:
        server = TilesHttpServer(led, "127.0.0.1", 0, checkpoint)
        await server.start()
        try:
            await asyncio.to_thread(check, f"http://127.0.0.1:{server.port}")
        finally:
            await server.stop()

    asyncio.run(run())


def test_an_entry_is_proven_over_http_from_tiles_and_the_served_checkpoint(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l", signer=SIGNER, created_time=0) as led:
        data = entries(1_000)
        led.append(data[:600])
        led.append(data[600:])

        def check(base: str) -> None:
            r = get(f"{base}/checkpoint")
            assert r.status == 200 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert r.headers["Cache-Control"] == "public, max-age=2"
            assert r.body.decode() == led.checkpoint()
            note = parse_note(r.body.decode())
            cp = parse_checkpoint(note.text)

            def fetch(path: str) -> bytes:
                got = get(f"{base}/{path}")
                assert got.status == 200, (path, got.status, got.body)
                assert got.headers["Content-Type"] == "application/octet-stream"
                assert got.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                return got.body

            assert TiledTree(fetch, cp.size).root() == cp.root_hash
            for index in (0, 255, 256, 599, 999):
                assert verify_entry_from_tiles(fetch, cp.size, cp.root_hash, index) == data[index]
            # Tiles of the earlier checkpoint (size 600) are served too, for
            # clients still holding it.
            assert TiledTree(fetch, 600).root() == led.root(600)

        serving(led, check)


def test_entry_bundles_are_gzipped_when_the_client_accepts_it(tmp_path: Path) -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    data = entries(300)
    led.append(data)

    def check(base: str) -> None:
        zipped = get(f"{base}/tile/entries/000", accept="gzip, identity")
        assert zipped.headers.get("Content-Encoding") == "gzip"
        assert decode_entry_bundle(gzip.decompress(zipped.body), 256) == data[:256]
        plain = get(f"{base}/tile/entries/001.p/44")
        assert "Content-Encoding" not in plain.headers
        assert decode_entry_bundle(plain.body, 44) == data[256:]
        head = get(f"{base}/tile/0/000", method="HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["Content-Length"] == str(256 * 32)

    serving(led, check)


def test_refusals_name_the_problem_and_are_not_cached(tmp_path: Path) -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append([*entries(299), b"z" * 70_000])

    def check(base: str) -> None:
        cases = [
            ("tile/0/001.p/45", 404, "not in the tree of this log (yet)"),  # the tree holds 44 there
            ("tile/0/001", 404, "not in the tree"),
            ("tile/1/000.p/2", 404, "not in the tree"),  # needs 512 entries
            ("tile/entries/002.p/1", 404, "not in the tree"),
            ("tile/01/000", 400, "malformed tile path: level '01'"),
            ("tile/0/x000/001", 400, "leading zero group"),
            ("tile/0/000.p/256", 400, "partial width '256'"),
            ("tile/entries/1", 400, "3-digit groups"),
            ("tile/entries/001.p/44", 501, "entry 43 of the bundle is 70,000 bytes"),
            ("nothing/here", 404, ""),
        ]
        for path, status, says in cases:
            r = get(f"{base}/{path}")
            assert r.status == status, (path, r.status, r.body)
            assert says in r.body.decode(), (path, r.body)
            if path.startswith("tile/"):
                assert r.headers["Cache-Control"] == "no-store", path
        # The hash tile over that entry is served: the tree does not depend on the bundle format.
        assert get(f"{base}/tile/0/001.p/44").status == 200
        assert get(f"{base}/checkpoint", method="POST").status == 405

    serving(led, check)


def test_a_partial_tile_keeps_its_bytes_as_the_log_grows(tmp_path: Path) -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append(entries(100))

    def check(base: str) -> None:
        before = {p: get(f"{base}/{p}").body for p in ("tile/0/000.p/100", "tile/entries/000.p/100")}
        assert get(f"{base}/tile/0/000").status == 404
        led.append(entries(400, 100))
        for path, body in before.items():
            assert get(f"{base}/{path}").body == body, path
        full = get(f"{base}/tile/0/000").body
        assert full[: 100 * 32] == before["tile/0/000.p/100"]
        assert parse_checkpoint(parse_note(get(f"{base}/checkpoint").body.decode()).text).size == 500

    serving(led, check)


def test_the_checkpoint_served_is_the_one_given(tmp_path: Path) -> None:
    # A cluster node serves the newest checkpoint its witnesses cosigned,
    # which may be older than its own latest.
    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append(entries(10))
    published = led.checkpoint()
    led.append(entries(10, 10))

    def check(base: str) -> None:
        assert get(f"{base}/checkpoint").body.decode() == published
        fetch = lambda path: get(f"{base}/{path}").body
        assert TiledTree(fetch, 10).root() == parse_checkpoint(parse_note(published).text).root_hash

    serving(led, check, checkpoint=lambda: published)


def test_a_taken_port_is_refused_with_the_address() -> None:
    led = Ledger.memory(signer=SIGNER, created_time=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match=f"tlog-tiles on 127.0.0.1:{port}: Address already in use"):
            asyncio.run(TilesHttpServer(led, "127.0.0.1", port).start())



def test_a_damaged_store_is_a_500_naming_what_is_missing(tmp_path: Path) -> None:
    from ledger.storage import Table, u64

    led = Ledger.memory(signer=SIGNER, created_time=0)
    led.append(entries(300))

    def lose_entry(txn):  # type: ignore[no-untyped-def]
        txn.delete(Table.ENTRIES, u64(3))

    led.store.run_write(lose_entry)

    def check(base: str) -> None:
        r = get(f"{base}/tile/entries/000")
        assert r.status == 500 and r.headers["Cache-Control"] == "no-store"
        assert r.body.decode() == (
            "tile/entries/000: this node cannot read it from its store: entry 3 is missing from the store "
            "below the tree size\n"
        )
        assert get(f"{base}/tile/entries/001.p/44").status == 200

    serving(led, check)
