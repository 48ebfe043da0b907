"""Locust gRPC users of a carbon ledger node (run by ``loadtests/run_locust.py``).

Follows Locust's documented gRPC pattern: gRPC is made gevent-aware with
``grpc.experimental.gevent.init_gevent()`` before any channel exists, and
every call goes through an interceptor that fires one Locust ``request``
event per call (name = the RPC method, failures = any RPC error).

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
  against the ledger every 10 seconds (exchanges reconcile periodically; a
  reconciliation replays the unit history of the kind, so it is the
  heaviest read the node serves).

Holders, suppliers and verifiers submit back to back (no think time): they
stand for the many organizations of a busy registry.

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
from locust import User, constant, constant_pacing, events, task
from locust.env import Environment

from loadtests._scenario import HolderStream, Network, Op, attest_op

__all__ = ["BuyerUser", "ExchangeUser", "HolderUser", "LocustInterceptor", "SupplierUser", "VerifierUser"]

_TIMEOUT = 30.0


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Fires one Locust request event per unary call, failed or not."""

    def __init__(self, environment: Environment) -> None:
        self._env = environment

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        start = time.perf_counter()
        call = continuation(details, request)
        exception = None
        length = 0
        try:
            response = call.result()
            length = response.ByteSize()
        except grpc.RpcError as exc:
            exception = exc
            response = None
        self._env.events.request.fire(
            request_type="grpc",
            name=details.method.rsplit("/", 1)[-1],
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            response=response,
            context=None,
            exception=exception,
        )
        return call


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

    def channel(self, target: str, environment: Environment) -> Any:
        """One of a few channels the process's users share: HTTP/2 carries
        many concurrent calls per connection, and a channel per user would
        cost each its own connection and polling."""
        if not self._channels:
            count = int(os.environ.get("LOAD_CHANNELS", "4"))
            self._channels = [
                grpc.intercept_channel(grpc.insecure_channel(target), LocustInterceptor(environment))
                for _ in range(count)
            ]
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
    """A user with a gevent-friendly channel to the node behind the interceptor."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.shared = shared()
        channel = self.shared.channel(self.host, self.environment)
        self.log = log_pb2_grpc.LogStub(channel)
        self.reconcile_stub = reconcile_pb2_grpc.ReconcileStub(channel)

    def on_stop(self) -> None:
        self.shared.flush()

    def submit(self, op: Op) -> log_pb2.SubmitResponse | None:
        try:
            response = self.log.Submit(log_pb2.SubmitRequest(envelope=op.entry), timeout=_TIMEOUT)
        except grpc.RpcError:
            return None  # counted as a failure by the interceptor
        self.shared.record(response.index, op.entry)
        return response


class _StreamUser(LedgerUser):
    """A user that owns one seeded holder organization."""

    abstract = True

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
        try:
            label = self.log.GetLabel(log_pb2.GetLabelRequest(footprint_id=pf_id), timeout=_TIMEOUT)
        except grpc.RpcError:
            return
        start = time.perf_counter()
        exception = None
        try:
            verify_label(label.data, self.shared.policy())
        except Exception as exc:  # noqa: BLE001 - any failure to verify is a failed request
            exception = exc
        self.environment.events.request.fire(
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
        try:
            self.reconcile_stub.Reconcile(reconcile_pb2.ReconcileRequest(rows=[row], page_size=50), timeout=_TIMEOUT)
        except grpc.RpcError:
            pass
