"""Locust gRPC users of a carbon ledger node (run by ``loadtests/run_locust.py``).

Follows Locust's documented gRPC pattern: gRPC is made gevent-aware with
``grpc.experimental.gevent.init_gevent()`` before any channel exists, and
every call goes through an interceptor that fires one Locust ``request``
event per call (name = the RPC method, failures = any RPC error).

The actors, in roughly the proportions of a live registry (``weight``):

- :class:`HolderUser` (6): a company trading and using its certificates:
  transfers GEC to other companies, retires (核销) GEC and cancels (注销)
  CCER credits for its plant;
- :class:`SupplierUser` (3): a supplier that retires GEC and publishes PACT
  footprints claiming exactly what it retired, on its earlier footprints;
- :class:`VerifierUser` (1): a verification body attesting footprints that
  suppliers got acknowledged;
- :class:`BuyerUser` (1): fetches the carbon label of a published footprint
  and verifies it offline against the log's key;
- :class:`ExchangeUser` (1): reconciles its book of a holder's GEC against
  the ledger.

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
from locust import User, constant, events, task
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
        # Holders are dealt out per process: with several processes, each
        # takes the slice named by LOAD_PROCESS / LOAD_PROCESSES.
        index, count = int(os.environ.get("LOAD_PROCESS", "0")), int(os.environ.get("LOAD_PROCESSES", "1"))
        self.free = deque(self.net.holders[index::count])
        self.to_attest: deque[tuple[str, bytes]] = deque(maxlen=10_000)
        self.labels: deque[str] = deque(maxlen=200)
        self.verifiers = itertools.cycle(["VER1", "VER2"])
        self._acks: Any = None
        self._policy: Any = None

    def record(self, index: int, entry: bytes) -> None:
        if self._acks is None:
            acks_dir = Path(os.environ.get("LOAD_ACKS_DIR", "."))
            acks_dir.mkdir(parents=True, exist_ok=True)
            self._acks = (acks_dir / f"acks-{os.getpid()}.txt").open("a", buffering=1 << 16)
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
        self._channel = grpc.intercept_channel(
            grpc.insecure_channel(self.host), LocustInterceptor(self.environment)
        )
        self.log = log_pb2_grpc.LogStub(self._channel)
        self.reconcile_stub = reconcile_pb2_grpc.ReconcileStub(self._channel)
        self.shared = shared()

    def on_stop(self) -> None:
        self._channel.close()
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
        if not self.shared.free:
            raise RuntimeError("more holder and supplier users than seeded holders; seed more")
        self.stream: HolderStream = self.shared.net.stream(self.shared.free.popleft())


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
    weight = 1

    @task
    def attest(self) -> None:
        if not self.shared.to_attest:
            time.sleep(0.05)  # gevent-patched: yields to the other users
            return
        pf_id, entry = self.shared.to_attest.popleft()
        self.submit(attest_op(self.shared.net, next(self.shared.verifiers), pf_id, entry))


class BuyerUser(LedgerUser):
    weight = 1

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
    weight = 1

    @task
    def reconcile(self) -> None:
        holders = self.shared.net.holders
        if not holders:
            return
        i = random.randrange(len(holders))
        per = Network.GEC_PER_HOLDER
        # The exchange's book: the holder's whole seeded range (the ledger
        # reports whatever moved since as mismatches, with proving entries).
        row = reconcile_pb2.BookRow(account=holders[i], kind="gec", start=i * per, end=(i + 1) * per)
        try:
            self.reconcile_stub.Reconcile(reconcile_pb2.ReconcileRequest(rows=[row], page_size=50), timeout=_TIMEOUT)
        except grpc.RpcError:
            pass
