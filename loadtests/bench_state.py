"""Benchmark: state application vs. single-core Ed25519 verification.

``python -m loadtests.bench_state [--ops N] [--no-lmdb]`` builds a
deterministic workload of N signed operations (GEC issue/transfer/retire, CCER
transfer/cancel, footprint publish with components and claims, verifier
attestations) and measures, each beside the single-core Ed25519 verification
rate of the same run:

1. **prepare** -- :meth:`StateMachine.prepare`: DSSE envelope and payload
   parsing and validation. Stateless, so a node runs it in its parallel stage
   next to signature verification; shown per core.
2. **state application** -- :meth:`StateMachine.apply` on prepared operations
   with signatures already checked (``verified=``) into a MemoryKV through a
   :class:`Journal` per block of 1000 entries with a savepoint per entry,
   exactly as the log does. This is the serial stage, and the figure the
   target (>= 5x) is about. Run twice from cold caches: once with the clock
   read around every entry (the table by operation type), once timed as a
   whole (the overall figure, without the per-entry clock reads).
3. **end-to-end, memory** -- ``apply`` on entry bytes (prepare + state).
4. **LMDB** -- ``Ledger.submit`` in batches of 1000 on a real LMDB ledger,
   once with entry bytes (prepare + state + log) and once with ``prepared=``
   (the node's path: state + log): entries, tree tiles, blocks, a signed
   checkpoint and an fsync per batch. Each state digest must equal the
   memory run's.

The baseline is Ed25519 verification as the node does it
(:func:`ledger.envelope.verified_keys`, libsodium), best of several samples;
the OpenSSL rate is printed beside it for reference. Rates are in process CPU
time unless ``--wall``. The workload's own objects (entries, prepared
operations) are frozen out of the garbage collector before the timed phases.
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ledger.envelope import pae, parse_envelope, sign_envelope, verified_keys
from ledger.keys import Signer
from ledger.kv import EMPTY_STATE_DIGEST, Journal, MemoryKV, fold_state_digest
from ledger.log import Ledger
from ledger.records.build import org_spec, signed_op
from ledger.records.ops import PAYLOAD_TYPE
from ledger.state import Prepared, StateMachine
from ledger.state._codec import drop_caches

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
    """Single-core Ed25519 verifications per second, as the node checks an
    envelope's signature: :func:`ledger.envelope.verified_keys` on a parsed
    one-signature envelope of a typical payload size."""
    signer = Signer.from_seed("bench", bytes(32))
    env = sign_envelope(PAYLOAD_TYPE, b"x" * 300, [signer])
    assert verified_keys(env)
    n = 0
    clock = _CLOCK
    start = clock()
    while clock() - start < seconds:
        for _ in range(200):
            verified_keys(env)
        n += 200
    return n / (clock() - start)


def openssl_verify_rate(seconds: float = 1.0) -> float:
    """The same with ``cryptography`` (OpenSSL) through :mod:`ledger.keys`,
    for reference: the baseline this benchmark used before the node moved
    envelope verification to libsodium."""
    signer = Signer.from_seed("bench", bytes(32))
    verifier = signer.verifier()
    msg = pae(PAYLOAD_TYPE, b"x" * 300)
    sig = signer.sign(msg)
    n = 0
    clock = _CLOCK
    start = clock()
    while clock() - start < seconds:
        for _ in range(200):
            verifier.verify(msg, sig)
        n += 200
    return n / (clock() - start)


BATCH = 1000
# Every rate but the LMDB wall figure is timed in this process's CPU time by
# default: on a shared machine, other processes then slow neither side of a
# ratio. Reading the CPU clock costs ~0.4 us, charged to the operations.
_CLOCK = time.process_time


class _FixedClockLedger(Ledger):
    """A Ledger whose block time is the workload's time, so that operations
    signed at T0 are neither too old nor in the future when sequenced."""

    def _load_or_create(self) -> Any:
        self._clock = lambda: float(T0)
        return super()._load_or_create()


Rates = dict[str, tuple[int, float]]  # op -> (count, seconds)


def _time_prepare(machine: StateMachine, entries: list[tuple[str, bytes]]) -> tuple[Rates, list[Prepared]]:
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    out: list[Prepared] = []
    clock = _CLOCK
    for op, entry in entries:
        t0 = clock()
        out.append(machine.prepare(entry))
        spent[op] += clock() - t0
        count[op] += 1
    return {op: (count[op], spent[op]) for op in count}, out


def _time_apply(
    machine: StateMachine,
    entries: list[tuple[str, bytes]],
    items: Sequence[bytes | Prepared],
    verified: list[frozenset[str]],
    *,
    per_op: bool = True,
) -> tuple[Rates, float, bytes]:
    """Apply ``items`` as the log does (a Journal per block of :data:`BATCH`
    entries over the state, a savepoint per entry); return per-op timings,
    total seconds and the chained state digest.

    With ``per_op`` the clock is read around every entry, for the table by
    operation type; without, only around the whole run (no timings by type),
    so the total carries no clock reads.
    """
    drop_caches()  # start cold: an earlier run must not warm this one
    kv = MemoryKV()
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    digest = EMPTY_STATE_DIGEST
    clock = _CLOCK
    apply = machine.apply
    total_start = clock()
    for lo in range(0, len(items), BATCH):
        journal = Journal(kv)
        for index in range(lo, min(lo + BATCH, len(items))):
            ctx = machine.context(index=index, time=T0)
            t0 = clock() if per_op else 0.0
            savepoint = journal.savepoint()
            try:
                apply(journal, items[index], ctx, verified[index])
            except Exception:
                journal.rollback(savepoint)
                raise
            if per_op:
                op = entries[index][0]
                spent[op] += clock() - t0
                count[op] += 1
        digest = fold_state_digest(digest, journal.writes)
    total = clock() - total_start
    return {op: (count[op], spent[op]) for op in count}, total, digest


def _time_lmdb(
    entries: list[tuple[str, bytes]],
    verified: list[frozenset[str]],
    prepared: list[Prepared] | None = None,
) -> tuple[float, float, bytes]:
    """Wall and CPU seconds of the LMDB run (wall includes the fsyncs), and its
    digest. With ``prepared``, the log is handed the Prepared ops (the node's
    path) and parses nothing."""
    drop_caches()
    with tempfile.TemporaryDirectory(prefix="bench_state_") as tmp:
        signer = Signer.from_seed("bench.log", hashlib.sha256(b"bench.log").digest())
        ledger = _FixedClockLedger.open(tmp, signer=signer, machine=StateMachine())
        try:
            start, cpu_start = time.perf_counter(), time.process_time()
            for lo in range(0, len(entries), BATCH):
                batch = [e for _, e in entries[lo : lo + BATCH]]
                results = ledger.submit(
                    batch,
                    verified=verified[lo : lo + BATCH],
                    prepared=None if prepared is None else prepared[lo : lo + BATCH],
                )
                rejected = [r for r in results if isinstance(r, Exception)]
                if rejected:
                    raise SystemExit(f"LMDB run rejected an entry: {rejected[0]!r}")
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            return wall, cpu, ledger.head.state_digest
        finally:
            ledger.close()


def _table(title: str, rates: Rates, verify: float, note: str) -> None:
    print(f"\n{title}")
    print(f"  ({note})")
    print(f"  {'operation':24} {'count':>7} {'ops/s':>10} {'us/op':>8} {'x verify':>9}")
    for op in sorted(rates):
        n, secs = rates[op]
        rate = n / secs
        print(f"  {op:24} {n:7d} {rate:10,.0f} {1e6 / rate:8.1f} {rate / verify:9.2f}")
    n = sum(c for c, _ in rates.values())
    secs = sum(t for _, t in rates.values())
    print(f"  {'all (time in op only)':24} {n:7d} {n / secs:10,.0f} {1e6 * secs / n:8.1f} {n / secs / verify:9.2f}")


def _worst(rates: Rates, verify: float) -> tuple[str, float]:
    frequent = {op: n / secs / verify for op, (n, secs) in rates.items() if n >= 100}
    op = min(frequent, key=lambda o: frequent[o])
    return op, frequent[op]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--no-lmdb", action="store_true", help="skip the LMDB end-to-end run")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock, not CPU time")
    args = parser.parse_args(argv)
    global _CLOCK
    _CLOCK = time.perf_counter if args.wall else time.process_time
    print(f"clock: {'wall (perf_counter)' if args.wall else 'CPU time of this process (process_time)'}")
    t = time.perf_counter()
    entries = Workload(args.ops).build()
    print(f"built and signed {len(entries)} operations in {time.perf_counter() - t:.1f} s")
    # The node verifies signatures in its parallel stage; hand their keyids over.
    verified = [frozenset(s.keyid for s in parse_envelope(e).signatures) for _, e in entries]
    machine = StateMachine()
    # The workload's own objects (entries, keys, and the prepared operations
    # below) stay alive for the whole run. Frozen, the collector stops
    # re-scanning them, so that its cost during a timed phase comes from what
    # that phase allocates, as in a node that holds one batch at a time.
    gc.collect()
    gc.freeze()
    # Other work on the machine moves both rates; sample verification between
    # phases and divide by the best sample, which only makes ratios smaller.
    samples = [ed25519_verify_rate()]
    prep_rates, prepared = _time_prepare(machine, entries)
    gc.freeze()
    samples.append(ed25519_verify_rate())
    state_rates, _, digest = _time_apply(machine, entries, prepared, verified)
    _, state_total, untimed_digest = _time_apply(machine, entries, prepared, verified, per_op=False)
    if untimed_digest != digest:
        raise SystemExit("state digest differs between two runs of the same operations")
    samples.append(ed25519_verify_rate())
    e2e_rates, e2e_total, e2e_digest = _time_apply(machine, entries, [e for _, e in entries], verified)
    if e2e_digest != digest:
        raise SystemExit("state digest differs between prepared and bytes runs")
    lmdb: tuple[float, float, bytes] | None = None
    lmdb_prepared: tuple[float, float, bytes] | None = None
    if not args.no_lmdb:
        samples.append(ed25519_verify_rate())
        lmdb = _time_lmdb(entries, verified)
        samples.append(ed25519_verify_rate())
        lmdb_prepared = _time_lmdb(entries, verified, prepared)
    samples.append(ed25519_verify_rate())
    verify = max(samples)
    print(f"Ed25519 verification, single core, as the node does it (ledger.envelope.verified_keys,"
          f" libsodium): {verify:,.0f} /s, the best of {len(samples)} samples taken between phases"
          f" ({', '.join(f'{x:,.0f}' for x in samples)}); the baseline of every ratio")
    print(f"  (for reference, OpenSSL via ledger.keys: {openssl_verify_rate():,.0f} /s)")

    _table("1. prepare (stateless: envelope + payload parsing; parallel stage, per core)", prep_rates, verify,
           "not part of the serial stage; scales with cores like verification")
    _table("2. state application on prepared ops (serial stage; THE TARGET FIGURE)", state_rates, verify,
           "apply(Journal(MemoryKV), Prepared, verified=...), a savepoint per entry, as the log does;"
           " each entry timed on its own, clock reads included")
    _table("3. end-to-end in memory: apply on entry bytes (prepare + state, one core)", e2e_rates, verify,
           "what one core does if prepare is not moved to the parallel stage")

    n = len(entries)
    prep_rate = n / sum(t for _, t in prep_rates.values())
    print("\nsummary (ops/s, ratio to single-core Ed25519 verification)")
    print(f"  {'prepare, per core':44} {prep_rate:10,.0f} {prep_rate / verify:7.2f}x")
    print(f"  {'state application (prepared), whole run':44} {n / state_total:10,.0f} {n / state_total / verify:7.2f}x")
    print(f"  {'end-to-end memory (bytes)':44} {n / e2e_total:10,.0f} {n / e2e_total / verify:7.2f}x")
    for label, run in (("bytes", lmdb), ("prepared", lmdb_prepared)):
        if run is None:
            continue
        lmdb_wall, lmdb_cpu, lmdb_digest = run
        same = "same state digest as memory" if lmdb_digest == digest else "STATE DIGEST DIFFERS"
        print(f"  {f'LMDB submit of {label}, batches of 1000, CPU':44} {n / lmdb_cpu:10,.0f}"
              f" {n / lmdb_cpu / verify:7.2f}x  ({same})")
        print(f"  {f'LMDB submit of {label}, wall (incl. fsync)':44} {n / lmdb_wall:10,.0f}"
              f" {n / lmdb_wall / verify:7.2f}x")
        if lmdb_digest != digest:
            return 1
    worst_op, worst = _worst(state_rates, verify)
    overall = n / state_total / verify
    print(f"\ntarget >= 5x on state application (prepared): overall {overall:.2f}x "
          f"{'met' if overall >= 5 else 'NOT met'}; worst type (n>=100) {worst_op} {worst:.2f}x "
          f"{'met' if worst >= 5 else 'NOT met'}")
    print(f"state digest {digest.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
