"""Shared set-up of the node tests (no tests here): a small network of signed
operations, and a node running on port 0 in a thread of its own, so that the
blocking SDK can call it from the test's thread."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ledger.keys import Signer
from ledger.log import Ledger
from ledger.records.build import org_spec, signed_op
from ledger.state import StateMachine
from node import event_loop
from node.server import NodeServer, create_server
from tests.test_state_world import pact_doc, pf_uuid

__all__ = ["LOG_NAME", "Net", "RunningNode", "open_ledger", "pact_doc", "pf_uuid"]

LOG_NAME = "test.carbonledger.example/log"
H = 3600
ROLES = {
    "AUTH": ["authority"],
    "GECI": ["gec_issuer"],
    "VER": ["verifier"],
    "STEEL": ["supplier"],
    "PARTS": ["supplier"],
    "EXCH": ["exchange"],
}


def key(name: str, n: int = 0) -> Signer:
    return Signer.from_seed(name.lower(), hashlib.sha256(f"{name}/{n}".encode()).digest())


def open_ledger(path: Path) -> Ledger:
    return Ledger.open(path, signer=key("LOG"), machine=StateMachine())


class Net:
    """Keys of a few organizations and builders of their signed operations."""

    def __init__(self) -> None:
        self.keys = {org: key(org) for org in ROLES}
        self.now = int(time.time())

    def op(self, op: str, org: str, body: dict[str, Any], *, signer: Signer | None = None, nonce: str | None = None) -> bytes:
        return signed_op(op, org, self.now, body, [signer or self.keys[org]], nonce=nonce)

    def genesis(self) -> bytes:
        return self.op("genesis", "AUTH", {"authorities": [org_spec("AUTH", "Authority", ["authority"], [self.keys["AUTH"]])]})

    def register(self, org: str) -> bytes:
        return self.op("org.register", "AUTH", org_spec(org, f"{org} Co., Ltd.", ROLES[org], [self.keys[org]]))

    def setup(self) -> list[bytes]:
        """Genesis and every org."""
        return [self.genesis(), *(self.register(o) for o in ROLES if o != "AUTH")]

    def gec_project(self, project: str = "P1", owner: str = "STEEL") -> bytes:
        return self.op("gec.register_project", "GECI", {
            "projectId": project, "name": "Wind farm", "technology": "wind", "capacityKw": 10_000,
            "location": "Inner Mongolia", "owner": owner,
        })  # fmt: skip

    def gec_issue(self, batch: str = "B1", project: str = "P1", quantity: int = 100, days_ago: int = 3) -> bytes:
        end = self.now - days_ago * 86400
        return self.op("gec.issue", "GECI", {
            "batchId": batch, "projectId": project, "periodStart": end - 86400, "periodEnd": end,
            "quantity": quantity, "validityEnd": self.now + 365 * 86400,
        })  # fmt: skip

    def transfer(self, kind: str, org: str, start: int, end: int, to: str, nonce: str | None = None) -> bytes:
        return self.op(f"{kind}.transfer", org, {"start": start, "end": end, "to": to}, nonce=nonce)

    def retire(self, org: str, start: int, end: int, nonce: str | None = None) -> bytes:
        return self.op("gec.retire", org, {
            "start": start, "end": end, "beneficiary": f"{org} plant", "periodStart": 1_704_067_200,
            "periodEnd": 1_735_689_600,
        }, nonce=nonce)  # fmt: skip

    def publish(self, org: str, name: str, pcf: str, *, components: list[dict[str, Any]] = (), preceding: list[str] | None = None) -> bytes:  # type: ignore[assignment]
        return self.op("pcf.publish", org, {
            "footprint": pact_doc(name, pcf, preceding=preceding), "components": list(components),
        })  # fmt: skip

    def deprecate(self, org: str, name: str) -> bytes:
        return self.op("pcf.deprecate", org, {"pfId": pf_uuid(name), "reason": "recalculated"})


class RunningNode:
    """A node serving ``ledger`` on 127.0.0.1:0 from an event loop in a thread."""

    def __init__(self, ledger: Ledger, **kwargs: Any) -> None:
        self.ledger = ledger
        # The loop `carbonledger serve` runs on, so that the node tests run
        # on it too.
        self.loop = event_loop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="node-loop", daemon=True)
        self._thread.start()

        async def build() -> tuple[NodeServer, int]:
            server, port = create_server("127.0.0.1:0", ledger, **kwargs)
            await server.start()
            return server, port

        self.server, self.port = self.run(build())
        self.target = f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 2.0) -> None:
        if self.loop.is_closed():
            return
        self.run(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
