"""A load scenario of independent actors, shared by the gRPC benchmark and Locust.

The network: a registry authority (the genesis org), a GEC issuer, a CCER
registry, verification bodies, an exchange and ``holders`` supplier companies.
:meth:`Network.setup_ops` registers them, registers a wind farm, issues one
GEC batch and one CCER vintage to its owner and hands every holder its own
serial ranges. After that each holder is an independent stream of signed
operations (:class:`HolderStream`): it transfers some of its certificates to
another holder, retires (核销) some for its plant, cancels (注销) CCER credits,
and publishes PACT v3 footprints that claim exactly the units it retired.
Everything a holder spends comes from its own ranges, so holders never
depend on one another and any number of them can submit concurrently; each
one's own operations must be applied in the order it sends them, which a
client gets by waiting for each answer (as the SDK does).

Operations carry the wall-clock time of their signing, so a node sequencing
them with its own clock accepts them.
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ledger.keys import Signer
from ledger.records.build import org_spec, signed_op

__all__ = ["HolderStream", "Network", "Op", "pact_document"]

_DAY = 86400
#: Last calendar year, the period every retirement and footprint is for.
_YEAR_START, _YEAR_END = 1_704_067_200, 1_735_689_600  # 2024-01-01, 2025-01-01 UTC

_PACT: dict[str, Any] = {
    "specVersion": "3.0.0", "created": "2025-01-01T00:00:00Z", "status": "Active",
    "companyName": "Load Co.", "companyIds": ["urn:company:load:1"],
    "productDescription": "Cold-rolled steel coil", "productIds": ["urn:gtin:5695872369587"],
    "productNameCompany": "Steel coil",
    "pcf": {
        "declaredUnitOfMeasurement": "kilogram", "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": "1", "referencePeriodStart": "2024-01-01T00:00:00Z",
        "referencePeriodEnd": "2025-01-01T00:00:00Z", "pcfExcludingBiogenicUptake": "2.1",
        "pcfIncludingBiogenicUptake": "2.1", "fossilGhgEmissions": "2.0", "fossilCarbonContent": "0",
        "ipccCharacterizationFactors": ["AR6"], "crossSectoralStandards": ["GHGP-Product"],
        "exemptedEmissionsPercent": "0",
    },
}  # fmt: skip


def pact_document(pf_id: str, company: str, pcf: str) -> dict[str, Any]:
    """A PACT v3 ProductFootprint for 2024 with id ``pf_id``."""
    doc = copy.deepcopy(_PACT)
    doc["id"] = pf_id
    doc["companyName"] = company
    doc["companyIds"] = [f"urn:company:load:{company.lower()}"]
    doc["pcf"]["pcfExcludingBiogenicUptake"] = pcf
    doc["pcf"]["pcfIncludingBiogenicUptake"] = pcf
    return doc


def _key(name: str, salt: str) -> Signer:
    return Signer.from_seed(name.lower(), hashlib.sha256(f"{salt}/{name}".encode()).digest())


@dataclass(frozen=True, slots=True)
class Op:
    """One signed operation: its kind (for statistics) and envelope bytes."""

    kind: str
    entry: bytes


class Network:
    """Keys and set-up of the scenario's organizations.

    ``authority`` signs the registrations: for a fresh ``carbonledger init``
    node pass its generated authority key and id; by default the network
    brings its own and :meth:`setup_ops` starts with the genesis.
    """

    GEC_PER_HOLDER = 100_000
    CCER_PER_HOLDER = 100_000

    def __init__(
        self,
        holders: int,
        *,
        authority: Signer | None = None,
        authority_id: str = "AUTH",
        salt: str = "carbonledger-load",
        now: int | None = None,
    ) -> None:
        self.salt = salt
        self.now = int(time.time()) if now is None else now
        self.authority_id = authority_id
        self.authority = authority or _key(authority_id, salt)
        self._own_genesis = authority is None
        self.roles: dict[str, list[str]] = {
            "GECI": ["gec_issuer"],
            "REG": ["ccer_registry"],
            "VER1": ["verifier"],
            "VER2": ["verifier"],
            "EXCH": ["exchange"],
            "WIND": ["supplier"],
        }
        self.holders = [f"H{i:04d}" for i in range(holders)]
        self.roles.update({h: ["supplier"] for h in self.holders})
        self.keys = {org: _key(org, salt) for org in self.roles}
        self.keys[authority_id] = self.authority

    def op(self, kind: str, org: str, body: dict[str, Any], *, nonce: str | None = None, now: int | None = None) -> Op:
        t = self.now if now is None else now
        return Op(kind, signed_op(kind, org, t, body, [self.keys[org]], nonce=nonce))

    def setup_ops(self) -> list[Op]:
        """Every operation that must be applied, in order, before the holders start."""
        ops: list[Op] = []
        if self._own_genesis:
            auth = org_spec(self.authority_id, "Registry Authority", ["authority"], [self.authority])
            ops.append(self.op("genesis", self.authority_id, {"authorities": [auth]}))
        for org, roles in self.roles.items():
            ops.append(self.op("org.register", self.authority_id, org_spec(org, f"{org} Co., Ltd.", roles, [self.keys[org]])))
        n = len(self.holders)
        ops.append(self.op("gec.register_project", "GECI", {
            "projectId": "WF1", "name": "Wind farm", "technology": "wind",
            # Enough capacity for every holder's MWh in one year (8,784 hours).
            "capacityKw": n * self.GEC_PER_HOLDER * 1000 // 8000 + 1000,
            "location": "Inner Mongolia", "owner": "WIND",
        }))  # fmt: skip
        ops.append(self.op("gec.issue", "GECI", {
            "batchId": "WF1-2024", "projectId": "WF1", "periodStart": _YEAR_START, "periodEnd": _YEAR_END,
            "quantity": n * self.GEC_PER_HOLDER, "validityEnd": self.now + 2 * 365 * _DAY,
        }))  # fmt: skip
        ops.append(self.op("ccer.validate_project", "VER1", {
            "projectId": "CF1", "name": "Forest CCER", "methodology": "CCER-14-001-V01", "proponent": "WIND",
            "creditingStart": _YEAR_START, "creditingEnd": _YEAR_START + 10 * 365 * _DAY, "statement": "validated",
        }))  # fmt: skip
        ops.append(self.op("ccer.register_project", "REG", {"projectId": "CF1"}))
        ops.append(self.op("ccer.verify_report", "VER1", {
            "reportId": "CR1", "projectId": "CF1", "periodStart": _YEAR_START, "periodEnd": _YEAR_END,
            "reductions": n * self.CCER_PER_HOLDER, "statement": "verified",
        }))  # fmt: skip
        ops.append(self.op("ccer.issue", "REG", {"batchId": "CF1-2024", "reportId": "CR1", "quantity": n * self.CCER_PER_HOLDER}))
        for i, h in enumerate(self.holders):
            g, c = i * self.GEC_PER_HOLDER, i * self.CCER_PER_HOLDER
            ops.append(self.op("gec.transfer", "WIND", {"start": g, "end": g + self.GEC_PER_HOLDER, "to": h}))
            ops.append(self.op("ccer.transfer", "WIND", {"start": c, "end": c + self.CCER_PER_HOLDER, "to": h}))
        return ops

    def stream(self, holder: str, seed: int = 0) -> HolderStream:
        i = self.holders.index(holder)
        return HolderStream(self, holder, i * self.GEC_PER_HOLDER, i * self.CCER_PER_HOLDER, random.Random(f"{seed}/{holder}"))


@dataclass
class HolderStream:
    """One holder's own operations, each valid after the previous ones.

    The mix (per 10 operations, roughly): 4 GEC transfers, 3 GEC retirements,
    1 CCER cancellation, 2 footprint publications claiming what was retired.
    """

    net: Network
    holder: str
    gec_next: int
    ccer_next: int
    rng: random.Random
    retired_gec: list[tuple[int, int]] = field(default_factory=list)
    retired_ccer: list[tuple[int, int]] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    #: Footprints published without components: a new product is built on
    #: one of them, so supply chains stay two levels deep (a chain that grew
    #: with every publication would soon pass the label depth limit).
    materials: list[str] = field(default_factory=list)
    count: int = 0

    def _take(self, kind: str, n: int) -> tuple[int, int]:
        start = self.gec_next if kind == "gec" else self.ccer_next
        per = self.net.GEC_PER_HOLDER if kind == "gec" else self.net.CCER_PER_HOLDER
        limit = (start // per + 1) * per
        if start + n > limit:
            raise RuntimeError(f"{self.holder} ran out of {kind} units")
        if kind == "gec":
            self.gec_next += n
        else:
            self.ccer_next += n
        return start, start + n

    def transfer(self) -> Op:
        start, end = self._take("gec", self.rng.randint(1, 20))
        others = [h for h in self.net.holders if h != self.holder] or ["EXCH"]
        return self._op("gec.transfer", {"start": start, "end": end, "to": self.rng.choice(others)})

    def retire(self) -> Op:
        start, end = self._take("gec", self.rng.randint(1, 50))
        self.retired_gec.append((start, end))
        return self._op("gec.retire", {
            "start": start, "end": end, "beneficiary": f"{self.holder} plant",
            "periodStart": _YEAR_START, "periodEnd": _YEAR_END,
        })  # fmt: skip

    def cancel(self) -> Op:
        start, end = self._take("ccer", self.rng.randint(1, 10))
        self.retired_ccer.append((start, end))
        return self._op("ccer.cancel", {
            "start": start, "end": end, "beneficiary": f"{self.holder} plant", "purpose": "product offset",
            "periodStart": _YEAR_START, "periodEnd": _YEAR_END,
        })  # fmt: skip

    def publish(self) -> Op:
        pf_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        claims = {
            "gec": [{"start": s, "end": e} for s, e in self.retired_gec[:4]],
            "ccer": [{"start": s, "end": e} for s, e in self.retired_ccer[:2]],
        }
        del self.retired_gec[:4], self.retired_ccer[:2]
        components = []
        if self.materials and self.rng.random() < 0.7:
            components.append({"pfId": self.rng.choice(self.materials[-8:]), "quantity": "0.5", "unit": "kilogram"})
        pcf = f"{5 + self.rng.randint(0, 500) / 100:.2f}"
        op = self._op("pcf.publish", {"footprint": pact_document(pf_id, self.holder, pcf), "components": components, "claims": claims})
        self.published.append(pf_id)
        if not components:
            self.materials.append(pf_id)
        return op

    def next(self) -> Op:
        """The next operation of the mix."""
        r = self.rng.random()
        if r < 0.4:
            return self.transfer()
        if r < 0.7:
            return self.retire()
        if r < 0.8:
            return self.cancel()
        return self.publish()

    def _op(self, kind: str, body: dict[str, Any]) -> Op:
        self.count += 1
        # The nonce keeps two equal bodies (same range sizes by chance) distinct envelopes.
        return self.net.op(kind, self.holder, body, nonce=f"{self.holder}/{self.count}", now=int(time.time()))


def attest_op(net: Network, verifier: str, pf_id: str, footprint_entry: bytes) -> Op:
    """A verification body's attestation of a published footprint entry."""
    return net.op("pcf.attest", verifier, {
        "pfId": pf_id, "footprintDigest": hashlib.sha256(footprint_entry).hexdigest(), "coverage": "product level",
        "assurance": "limited", "standardName": "ISO 14067", "statement": "verified",
    }, now=int(time.time()))  # fmt: skip
