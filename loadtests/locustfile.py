"""Locust gRPC users of a carbon ledger node (run by ``loadtests/run_locust.py``).

Follows Locust's documented gRPC pattern: gRPC is made gevent-aware with
``grpc.experimental.gevent.init_gevent()`` before any channel exists, and
every call fires one Locust ``request`` event (name = the RPC method,
failures = any RPC error). The event is fired by :meth:`LedgerUser.call`
rather than by a channel interceptor: Locust shares the node's two cores,
and the interceptor's wrapping cost a tenth of Locust's time per call.

The actors, in roughly the proportions of a live registry (``weight`` shares
the users among holders and suppliers; the others are a fixed few):

- :class:`HolderUser` (6): a company trading and using its certificates:
  transfers GEC to other companies, retires (核销) GEC and cancels (注销)
  CCER credits for its plant;
- :class:`SupplierUser` (3): a supplier that retires GEC and publishes PACT
  footprints claiming exactly what it retired, on its earlier footprints;
- :class:`VerifierUser` (4 users): a verification body attesting footprints that
  suppliers got acknowledged;
- :class:`BuyerUser` (4 users): fetches the carbon label of a published footprint
  and verifies it offline against the log's key, about once a second (a
  buyer scanning products, not a crawler);
- :class:`ExchangeUser` (1 user): reconciles its book of a holder's GEC
  against the ledger every 10 seconds (exchanges reconcile periodically;
  the node answers from its state's indexes and the entries that changed
  the units since its last reconciliation).

Holders and suppliers stand for the many organizations of a busy registry.
Each submits ``$LOAD_USER_RATE`` operations a second (Locust's
``constant_throughput``; ``run_locust --rate`` spreads a total rate over
them), or back to back when it is 0 or unset. Paced users make a nearly
open workload, whose latency is the node's; N back-to-back users keep a
queue of N full, so their mean latency is N divided by the rate whatever
the node does. Verifiers attest as footprints appear.

Each holder or supplier user signs as its own organization (seeded by
``run_locust``) and waits for every answer before its next operation, so its
own operations apply in order. Every acknowledged submission is recorded as
``index sha256`` in ``$LOAD_ACKS_DIR/acks-<pid>.txt`` for the after-run check.

Configuration comes from the JSON file named by ``$LOAD_SEED`` (written by
``run_locust``): holders, the key salt, the log's verifier key.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import hashlib
import itertools
import json
import os
import random
import time
from collections import deque
from pathlib import Path
from typing import Any

import grpc
from carbonledger.v1 import log_pb2, log_pb2_grpc, reconcile_pb2, reconcile_pb2_grpc
from locust import User, constant, constant_pacing, constant_throughput, events, task

from loadtests._scenario import HolderStream, Network, Op, attest_op

__all__ = ["BuyerUser", "ExchangeUser", "HolderUser", "SupplierUser", "VerifierUser"]

_TIMEOUT = 30.0
#: Operations per second of each holder and supplier user (0: back to back).
_USER_RATE = float(os.environ.get("LOAD_USER_RATE", "0") or 0)


class _Shared:
    """What the users of one Locust process share: the seed, the holders not
    yet taken, footprints waiting for attestation or readable as labels, and
    the file acknowledged entries go to."""

    def __init__(self) -> None:
        seed_path = os.environ.get("LOAD_SEED")
        self.seed: dict[str, Any] = json.loads(Path(seed_path).read_text()) if seed_path else {}
        self.net = Network(len(self.seed.get("holders", [])), salt=self.seed.get("salt", "carbonledger-load"))
        self.acks_dir = Path(os.environ.get("LOAD_ACKS_DIR", "."))
        self.to_attest: deque[tuple[str, bytes]] = deque(maxlen=10_000)
        self.labels: deque[str] = deque(maxlen=200)
        self.verifiers = itertools.cycle(["VER1", "VER2"])
        self._acks: Any = None
        self._policy: Any = None
        self._channels: list[Any] = []
        self._next_channel = itertools.count()

    def channel(self, target: str) -> Any:
        """One of a few channels the process's users share: HTTP/2 carries
        many concurrent calls per connection, and a channel per user would
        cost each its own connection and polling."""
        if not self._channels:
            count = int(os.environ.get("LOAD_CHANNELS", "4"))
            self._channels = [grpc.insecure_channel(target) for _ in range(count)]
        return self._channels[next(self._next_channel) % len(self._channels)]

    def claim_holder(self) -> str:
        """A seeded holder no other user (in any Locust process) has: each is
        claimed by creating its marker file exclusively."""
        claims = self.acks_dir / "claims"
        claims.mkdir(parents=True, exist_ok=True)
        for holder in self.net.holders:
            try:
                os.close(os.open(claims / holder, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            return holder
        raise RuntimeError("more holder and supplier users than seeded holders; seed more")

    def record(self, index: int, entry: bytes) -> None:
        if self._acks is None:
            self.acks_dir.mkdir(parents=True, exist_ok=True)
            self._acks = (self.acks_dir / f"acks-{os.getpid()}.txt").open("a", buffering=1 << 16)
        self._acks.write(f"{index} {hashlib.sha256(entry).hexdigest()}\n")

    def flush(self) -> None:
        if self._acks is not None:
            self._acks.flush()

    def policy(self) -> Any:
        if self._policy is None:
            from ledger.policy import parse_policy

            self._policy = parse_policy(f"log {self.seed['log_vkey']}\nquorum none\n")
        return self._policy


_shared: _Shared | None = None


def shared() -> _Shared:
    global _shared
    if _shared is None:
        _shared = _Shared()
    return _shared


@events.test_stop.add_listener
def _flush_acks(**_: Any) -> None:
    if _shared is not None:
        _shared.flush()


@events.quitting.add_listener
def _flush_on_quit(**_: Any) -> None:
    if _shared is not None:
        _shared.flush()


class LedgerUser(User):  # type: ignore[misc]
    """A user with a gevent-friendly channel to the node."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.shared = shared()
        channel = self.shared.channel(self.host)
        self.log = log_pb2_grpc.LogStub(channel)
        self.reconcile_stub = reconcile_pb2_grpc.ReconcileStub(channel)
        self._fire = self.environment.events.request.fire

    def on_stop(self) -> None:
        self.shared.flush()

    def call(self, name: str, method: Any, request: Any) -> Any:
        """Call a unary RPC and report it to Locust; None if it failed."""
        start = time.perf_counter()
        try:
            response = method(request, timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            self._fire(
                request_type="grpc", name=name, response_time=(time.perf_counter() - start) * 1000,
                response_length=0, response=None, context=None, exception=exc,
            )  # fmt: skip
            return None
        self._fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=response.ByteSize(), response=response, context=None, exception=None,
        )  # fmt: skip
        return response

    def submit(self, op: Op) -> log_pb2.SubmitResponse | None:
        response = self.call("Submit", self.log.Submit, log_pb2.SubmitRequest(envelope=op.entry))
        if response is not None:
            self.shared.record(response.index, op.entry)
        return response


class _StreamUser(LedgerUser):
    """A user that owns one seeded holder organization."""

    abstract = True
    wait_time = constant_throughput(_USER_RATE) if _USER_RATE > 0 else constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.stream: HolderStream = self.shared.net.stream(self.shared.claim_holder())


class HolderUser(_StreamUser):
    weight = 6

    @task(4)
    def transfer(self) -> None:
        self.submit(self.stream.transfer())

    @task(4)
    def retire(self) -> None:
        self.submit(self.stream.retire())

    @task(1)
    def cancel(self) -> None:
        self.submit(self.stream.cancel())


class SupplierUser(_StreamUser):
    weight = 3

    @task(2)
    def retire(self) -> None:
        self.submit(self.stream.retire())

    @task(1)
    def publish(self) -> None:
        op = self.stream.publish()
        if self.submit(op) is not None:
            pf_id = self.stream.published[-1]
            self.shared.to_attest.append((pf_id, op.entry))
            self.shared.labels.append(pf_id)


class VerifierUser(LedgerUser):
    fixed_count = 4

    @task
    def attest(self) -> None:
        if not self.shared.to_attest:
            time.sleep(0.05)  # gevent-patched: yields to the other users
            return
        pf_id, entry = self.shared.to_attest.popleft()
        self.submit(attest_op(self.shared.net, next(self.shared.verifiers), pf_id, entry))


class BuyerUser(LedgerUser):
    fixed_count = 4
    wait_time = constant_pacing(1.0)

    @task
    def fetch_and_verify_label(self) -> None:
        from client.label import verify_label

        if not self.shared.labels:
            time.sleep(0.05)
            return
        pf_id = random.choice(self.shared.labels)
        label = self.call("GetLabel", self.log.GetLabel, log_pb2.GetLabelRequest(footprint_id=pf_id))
        if label is None:
            return
        start = time.perf_counter()
        exception = None
        try:
            verify_label(label.data, self.shared.policy())
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a failed request
            exception = exc
        self._fire(
            request_type="offline", name="verify_label", response_time=(time.perf_counter() - start) * 1000,
            response_length=len(label.data), response=None, context=None, exception=exception,
        )  # fmt: skip


class ExchangeUser(LedgerUser):
    fixed_count = 1
    wait_time = constant_pacing(10.0)

    @task
    def reconcile(self) -> None:
        holders = self.shared.net.holders
        if not holders:
            return
        i = random.randrange(len(holders))
        per = Network.GEC_PER_HOLDER
        # The exchange's book: the first 1,000 units it recorded for the
        # holder (the ledger reports whatever moved since as mismatches,
        # with the entries that prove its side).
        row = reconcile_pb2.BookRow(account=holders[i], kind="gec", start=i * per, end=i * per + 1000)
        self.call("Reconcile", self.reconcile_stub.Reconcile, reconcile_pb2.ReconcileRequest(rows=[row], page_size=50))
