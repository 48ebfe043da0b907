"""Benchmark: state application vs. single-core Ed25519 verification.

``python -m loadtests.bench_state [--ops N]`` builds a deterministic workload
of N signed operations (GEC issue/transfer/retire, CCER transfer/cancel,
footprint publish with components and claims, verifier attestations), then
applies them to a MemoryKV with signatures already checked (``verified=``), as
the log does after its parallel verification stage. It prints ops/s per
operation type beside the single-core Ed25519 verification rate measured in
the same run, and their ratio. Target: every ratio >= 5.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

from ledger.envelope import pae, parse_envelope
from ledger.keys import Signer
from ledger.kv import MemoryKV
from ledger.records.build import org_spec, signed_op
from ledger.records.ops import PAYLOAD_TYPE
from ledger.state import StateMachine

T0 = 1_735_689_600
DAY = 86400
Y2024 = 1_704_067_200

_PACT: dict[str, Any] = {
    "specVersion": "3.0.0", "created": "2025-01-01T00:00:00Z", "status": "Active",
    "companyName": "Bench Co.", "companyIds": ["urn:company:bench:1"],
    "productDescription": "Bench product", "productIds": ["urn:gtin:5695872369587"],
    "productNameCompany": "Bench product",
    "pcf": {
        "declaredUnitOfMeasurement": "kilogram", "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "1", "referencePeriodStart": "2024-01-01T00:00:00Z",
        "referencePeriodEnd": "2025-01-01T00:00:00Z", "pcfExcludingBiogenicUptake": "10",
        "pcfIncludingBiogenicUptake": "10", "fossilGhgEmissions": "9", "fossilCarbonContent": "0",
        "ipccCharacterizationFactors": ["AR6"], "crossSectoralStandards": ["GHGP-Product"],
        "exemptedEmissionsPercent": "0",
    },
}  # fmt: skip


class Workload:
    """Generates a valid operation sequence, tracking just enough state."""

    def __init__(self, n_ops: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.n_ops = n_ops
        self.keys: dict[str, Signer] = {}
        self.entries: list[tuple[str, bytes]] = []
        self.suppliers = [f"SUP{i:03d}" for i in range(50)]
        self.gen_free: list[tuple[int, int]] = []  # GEN's untouched GEC ranges
        self.ccer_free: list[tuple[int, int]] = []
        self.held: dict[str, list[tuple[str, int, int]]] = defaultdict(list)  # org -> (kind, s, e)
        self.retired: dict[str, list[tuple[int, int]]] = defaultdict(list)  # org -> unclaimed GEC
        self.active_pf: list[str] = []
        self.unattested: list[tuple[str, str]] = []
        self.gec_next = 0
        self.ccer_next = 0
        self.projects = 0
        self.day = 0

    def key(self, org: str) -> Signer:
        if org not in self.keys:
            self.keys[org] = Signer.from_seed(org.lower(), hashlib.sha256(org.encode()).digest())
        return self.keys[org]

    def add(self, op: str, org: str, body: dict[str, Any]) -> bytes:
        entry = signed_op(op, org, T0, body, [self.key(org)], nonce=str(len(self.entries)))
        self.entries.append((op, entry))
        return entry

    def setup(self) -> None:
        self.add("genesis", "AUTH", {"authorities": [org_spec("AUTH", "Authority", ["authority"], [self.key("AUTH")])]})
        roles = {"GECI": ["gec_issuer"], "REG": ["ccer_registry"], "VER": ["verifier"], "GEN": ["supplier"]}
        roles.update({s: ["supplier"] for s in self.suppliers})
        for org, r in roles.items():
            self.add("org.register", "AUTH", org_spec(org, org, r, [self.key(org)]))
        self.add("ccer.validate_project", "VER", {"projectId": "C1", "name": "c", "methodology": "CCER-14-001-V01", "proponent": "GEN", "creditingStart": Y2024, "creditingEnd": T0, "statement": "ok"})
        self.add("ccer.register_project", "REG", {"projectId": "C1"})
        self.add("ccer.verify_report", "VER", {"reportId": "R1", "projectId": "C1", "periodStart": Y2024, "periodEnd": T0, "reductions": 10**9, "statement": "ok"})
        self.add("ccer.issue", "REG", {"batchId": "CB1", "reportId": "R1", "quantity": 10**9})
        self.ccer_free.append((0, 10**9))
        self.gec_issue()

    def gec_issue(self) -> None:
        if self.day % 366 == 0:
            self.projects += 1
            self.add("gec.register_project", "GECI", {"projectId": f"P{self.projects}", "name": "w", "technology": "wind", "capacityKw": 10**6, "location": "x", "owner": "GEN"})
        d = self.day % 366
        start = Y2024 + d * DAY
        self.add("gec.issue", "GECI", {"batchId": f"B{self.day}", "projectId": f"P{self.projects}", "periodStart": start, "periodEnd": start + DAY, "quantity": 20_000, "validityEnd": T0 + 700 * DAY})
        self.gen_free.append((self.gec_next, self.gec_next + 20_000))
        self.gec_next += 20_000
        self.day += 1

    def take(self, free: list[tuple[int, int]], n: int) -> tuple[int, int]:
        s, e = free[0]
        n = min(n, e - s)
        free[0] = (s + n, e)
        if s + n == e:
            free.pop(0)
        return s, s + n

    def step(self) -> None:
        r = self.rng.random()
        sup = self.rng.choice(self.suppliers)
        if r < 0.02 or not self.gen_free:
            self.gec_issue()
        elif r < 0.40:
            s, e = self.take(self.gen_free, self.rng.randint(1, 200))
            self.add("gec.transfer", "GEN", {"start": s, "end": e, "to": sup})
            self.held[sup].append(("gec", s, e))
        elif r < 0.50:
            s, e = self.take(self.ccer_free, self.rng.randint(1, 200))
            self.add("ccer.transfer", "GEN", {"start": s, "end": e, "to": sup})
            self.held[sup].append(("ccer", s, e))
        elif r < 0.75 and self.held[sup]:
            kind, s, e = self.held[sup].pop(0)
            mid = s + max(1, (e - s) // 2)  # retire part: ranges split
            if mid < e:
                self.held[sup].append((kind, mid, e))
            if kind == "gec":
                self.add("gec.retire", sup, {"start": s, "end": mid, "beneficiary": sup, "periodStart": Y2024, "periodEnd": T0})
                self.retired[sup].append((s, mid))
            else:
                self.add("ccer.cancel", sup, {"start": s, "end": mid, "beneficiary": sup, "purpose": "offset", "periodStart": Y2024, "periodEnd": T0})
        elif r < 0.90:
            pf = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            doc = copy.deepcopy(_PACT)
            doc["id"] = pf
            comps = []
            for up in self.rng.sample(self.active_pf, min(2, len(self.active_pf))):
                comps.append({"pfId": up, "quantity": "0.3", "unit": "kilogram"})
            doc["pcf"]["pcfExcludingBiogenicUptake"] = "10"
            claims = {"gec": [{"start": s, "end": e} for s, e in self.retired.pop(sup, [])[:4]]}
            entry = self.add("pcf.publish", sup, {"footprint": doc, "components": comps, "claims": claims})
            self.active_pf.append(pf)
            self.unattested.append((pf, hashlib.sha256(entry).hexdigest()))
        elif self.unattested:
            pf, digest = self.unattested.pop(0)
            self.add("pcf.attest", "VER", {"pfId": pf, "footprintDigest": digest, "coverage": "product level", "assurance": "limited", "standardName": "ISO 14067", "statement": "ok"})
        else:
            self.gec_issue()

    def build(self) -> list[tuple[str, bytes]]:
        self.setup()
        while len(self.entries) < self.n_ops:
            self.step()
        return self.entries


def ed25519_verify_rate(seconds: float = 1.0) -> float:
    """Single-core verifications per second of envelope-sized messages."""
    signer = Signer.from_seed("bench", bytes(32))
    verifier = signer.verifier()
    msg = pae(PAYLOAD_TYPE, b"x" * 300)
    sig = signer.sign(msg)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            verifier.verify(msg, sig)
        n += 200
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    entries = Workload(args.ops).build()
    print(f"built and signed {len(entries)} operations in {time.perf_counter() - t:.1f} s")
    # The log verifies signatures first (in parallel); hand their keyids over.
    prepared = [(op, e, frozenset(s.keyid for s in parse_envelope(e).signatures)) for op, e in entries]
    kv = MemoryKV()
    machine = StateMachine()
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    total_start = time.perf_counter()
    for index, (op, entry, verified) in enumerate(prepared):
        ctx = machine.context(index=index, time=T0)
        t0 = time.perf_counter()
        machine.apply(kv, entry, ctx, verified)
        spent[op] += time.perf_counter() - t0
        count[op] += 1
    total = time.perf_counter() - total_start
    verify = ed25519_verify_rate()
    print(f"Ed25519 verification, single core: {verify:,.0f} /s")
    print(f"{'operation':24} {'count':>7} {'ops/s':>10} {'x verify':>9}")
    worst = float("inf")
    for op in sorted(count):
        rate = count[op] / spent[op]
        worst = min(worst, rate / verify) if count[op] >= 100 else worst
        print(f"{op:24} {count[op]:7d} {rate:10,.0f} {rate / verify:9.2f}")
    overall = len(prepared) / total
    print(f"{'all':24} {len(prepared):7d} {overall:10,.0f} {overall / verify:9.2f}")
    print(f"target >= 5x: overall {'met' if overall / verify >= 5 else 'NOT met'}; worst type (n>=100) {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
