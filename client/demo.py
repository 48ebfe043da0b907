"""The demo network that ``make run`` seeds, through the real gRPC API.

:func:`seed_demo` plays a small supply chain on a fresh node, every step a
signed envelope submitted with :class:`~client.sdk.LedgerClient`:

- the registry authority (the genesis org of ``carbonledger init``) registers
  a steel maker, an auto-parts maker, a verification body, a GEC issuer, a
  CCER registry, an exchange and a wind-power company;
- the GEC issuer registers the wind farm (建档立卡) and issues last year's
  second-half generation; the wind company sells certificates through the
  exchange to both makers, who retire (核销) them for last year;
- a verification body validates (审定) an offshore wind CCER project, the
  registry registers it, the body verifies (核查) last year's reductions and
  the registry issues the vintage; credits go through the exchange to the
  parts maker, who cancels (注销) some;
- the steel maker publishes a PACT v3 footprint of hot-rolled coil, the
  parts maker a front door assembly built from it, both attested; the steel
  maker re-versions its footprint with its green electricity claim (the door
  goes stale), and the parts maker re-versions the door on the new steel with
  its own GEC and CCER claims.

Seeding is idempotent: keys are kept under ``DIR/keys/`` and the operation
time under ``DIR/keys/demo-seed.json``, so a re-run resubmits byte-identical
envelopes (the node answers their first index) and a finished seed is not
repeated at all.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client.sdk import LedgerClient
from ledger.envelope import parse_envelope
from ledger.errors import LedgerError, NotFound
from ledger.keys import Signer
from ledger.records.build import org_spec, signed_op

__all__ = ["DEMO_ORGS", "DemoOrg", "DemoResult", "seed_demo", "wait_for_node"]

_DAY = 86400
#: Envelopes are sequenced only while their time is within a week of the
#: block time; a stored seed time older than this is replaced.
_REUSE_TIME = 6 * _DAY


@dataclass(frozen=True, slots=True)
class DemoOrg:
    slug: str
    id: str
    name: str
    roles: tuple[str, ...]


DEMO_ORGS = (
    DemoOrg("steel", "91320582MA1W5HYS2K", "Jiangsu Huayang Special Steel Co., Ltd.", ("supplier",)),
    DemoOrg("parts", "91310114MA1K4ATP7X", "Shanghai Anting Auto Parts Co., Ltd.", ("supplier",)),
    DemoOrg("verifier", "91110108MA01ZZV93T", "Zhongzheng Carbon Verification (Beijing) Co., Ltd.", ("verifier",)),
    DemoOrg("gec-issuer", "12100000GEC000101A", "National Renewable Energy Information Center (demo)", ("gec_issuer",)),
    DemoOrg("ccer-registry", "12100000CCER00102B", "National CCER Registry (demo)", ("ccer_registry",)),
    DemoOrg("exchange", "91110000MA00BGEX2C", "Beijing Green Exchange (demo)", ("exchange",)),
    DemoOrg("wind", "91152500MA0NXLW39L", "Xilingol Beifeng Wind Power Co., Ltd.", ("supplier",)),
)
ORG = {o.slug: o for o in DEMO_ORGS}


@dataclass(frozen=True, slots=True)
class DemoResult:
    seeded: bool
    tree_size: int
    footprints: dict[str, str]
    orgs: dict[str, str]
    policy_file: str
    books_file: str
    gec: dict[str, tuple[int, int]]
    ccer: dict[str, tuple[int, int]]


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _year(y: int) -> int:
    return int(datetime(y, 1, 1, tzinfo=UTC).timestamp())


def _pf_id(seed: str, name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://demo.carbonledger.example/{seed}/{name}"))


def pact_footprint(
    *, pf_id: str, org: DemoOrg, product: str, description: str, gtin: str, cpc: str, unit: str,
    mass: str, pcf: str, fossil: str, ref: tuple[int, int], created: int, subdivision: str,
    boundary: str, primary_share: str, preceding: str | None = None, comment: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A PACT v3 ProductFootprint as a supplier's PACT system would emit it."""
    doc: dict[str, Any] = {
        "id": pf_id,
        "specVersion": "3.0.0",
        "created": _iso(created),
        "status": "Active",
        "validityPeriodStart": _iso(ref[1]),
        "validityPeriodEnd": _iso(ref[1] + 2 * 365 * _DAY),
        "companyName": org.name,
        "companyIds": [f"urn:uscc:{org.id}"],
        "productDescription": description,
        "productIds": [f"urn:gtin:{gtin}"],
        "productClassifications": [f"urn:pact:productclassification:cpc:{cpc}"],
        "productNameCompany": product,
        "pcf": {
            "declaredUnitOfMeasurement": unit,
            "declaredUnitAmount": "1",
            "productMassPerDeclaredUnit": mass,
            "referencePeriodStart": _iso(ref[0]),
            "referencePeriodEnd": _iso(ref[1]),
            "geographyCountry": "CN",
            "geographyCountrySubdivision": subdivision,
            "boundaryProcessesDescription": boundary,
            "pcfExcludingBiogenicUptake": pcf,
            "pcfIncludingBiogenicUptake": pcf,
            "fossilGhgEmissions": fossil,
            "fossilCarbonContent": "0.002",
            "biogenicCarbonContent": "0",
            "landUseChangeGhgEmissions": "0",
            "aircraftGhgEmissions": "0",
            "packagingEmissionsIncluded": False,
            "ipccCharacterizationFactors": ["AR6"],
            "crossSectoralStandards": ["ISO14067", "GHGP-Product", "PACT-3.0"],
            "exemptedEmissionsPercent": "0.6",
            "exemptedEmissionsDescription": "Office buildings and canteen",
            "allocationRulesDescription": "Mass allocation between co-products; slag by economic value",
            "secondaryEmissionFactorSources": [
                {"name": "ecoinvent", "version": "3.10"},
                {"name": "CLCD-China", "version": "0.8"},
            ],
            "primaryDataShare": primary_share,
            "dqi": {"technologicalDQR": "1.6", "geographicalDQR": "1.4", "temporalDQR": "1.2"},
        },
    }
    if preceding:
        doc["precedingPfIds"] = [preceding]
    if comment:
        doc["comment"] = comment
    return doc


class _Seeder:
    def __init__(self, client: LedgerClient, signers: dict[str, Signer], now: int, log: Callable[[str], None]):
        self.client = client
        self.signers = signers
        self.now = now
        self.log = log

    def op(self, slug: str, op: str, body: dict[str, Any], org_id: str | None = None) -> int:
        org = org_id or ORG[slug].id
        result = self.client.submit(signed_op(op, org, self.now, body, [self.signers[slug]]))
        self.log(f"  #{result.index:<3} {op:22} {org}{' (already in the log)' if result.duplicate else ''}")
        return result.index

    def batch_range(self, kind: str, batch_id: str) -> tuple[int, int]:
        b = self.client.batch(kind, batch_id)
        return b.start, b.end


def _load_or_make_keys(keys_dir: Path) -> dict[str, Signer]:
    keys_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for org in DEMO_ORGS:
        path = keys_dir / f"{org.slug}.key"
        if path.exists():
            out[org.slug] = Signer.from_key(path.read_text().strip())
            continue
        signer = Signer.generate(f"{org.slug}.demo.carbonledger.example")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(signer.skey + "\n")
        (keys_dir / f"{org.slug}.vkey").write_text(signer.vkey + "\n")
        out[org.slug] = signer
    return out


def _seed_time(keys_dir: Path) -> int:
    marker = keys_dir / "demo-seed.json"
    now = int(time.time())
    if marker.exists():
        try:
            stored = int(json.loads(marker.read_text())["time"])
            if 0 <= now - stored < _REUSE_TIME:
                return stored
        except (ValueError, KeyError, TypeError):
            pass
    marker.write_text(json.dumps({"time": now}) + "\n")
    return now


def wait_for_node(client: LedgerClient, seconds: float) -> str:
    """The node's latest checkpoint, polling until it answers or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return client.checkpoint()
        except LedgerError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def seed_demo(
    client: LedgerClient,
    *,
    authority: Signer,
    node_vkey: str,
    keys_dir: Path,
    out_dir: Path,
    log: Callable[[str], None] = lambda s: None,
) -> DemoResult:
    """Seed the demo network (see the module doc) unless it is there already.

    ``authority`` is a current key of the genesis authority (entry 0 names
    the org); ``node_vkey`` the node's log key, for the policy file written to
    ``out_dir/policy.txt`` with the PACT documents and an exchange's books.
    """
    from client.commands.labels import make_policy

    genesis = json.loads(parse_envelope(client.entry(0)).payload)
    auth_id = genesis["org"]
    signers = {**_load_or_make_keys(keys_dir), "authority": authority}
    now = _seed_time(keys_dir)
    seed = str(json.loads((keys_dir / "demo-seed.json").read_text())["time"])
    y = datetime.fromtimestamp(now, UTC).year - 1
    year = (_year(y), _year(y + 1))
    h2 = (int(datetime(y, 7, 1, tzinfo=UTC).timestamp()), year[1])
    pf = {
        "steel-v1": _pf_id(seed, "steel-v1"), "steel-v2": _pf_id(seed, "steel-v2"),
        "door-v1": _pf_id(seed, "door-v1"), "door-v2": _pf_id(seed, "door-v2"),
    }  # fmt: skip
    gec_batch, ccer_batch = f"GEC-{y}H2-XLG01", f"CCER-{y}-RD0001"
    out_dir.mkdir(parents=True, exist_ok=True)
    s = _Seeder(client, signers, now, log)
    try:
        # The last step of the seed is door v2's attestation.
        done = len(client.footprint(pf["door-v2"]).attestations) > 0
    except NotFound:
        done = False
    if not done:
        log(f"seeding the demo network through the gRPC API (reference year {y}):")
        _seed(s, auth_id, pf, y, year, h2, gec_batch, ccer_batch, out_dir)
    gs, _ = s.batch_range("gec", gec_batch)
    cs, _ = s.batch_range("ccer", ccer_batch)
    gec = {"exchange": (gs + 45_000, gs + 100_000), "steel-retired": (gs + 40_000 - 30_000, gs + 40_000),
           "parts-retired": (gs + 40_000, gs + 43_000)}  # fmt: skip
    ccer = {"exchange": (cs + 500, cs + 20_000), "parts-cancelled": (cs, cs + 500)}
    policy_file = out_dir / "policy.txt"
    policy_file.write_text(make_policy(node_vkey, [], None))
    books = out_dir / "exchange-books.csv"
    ex = ORG["exchange"].id
    books.write_text(
        "account,asset,batch,range,amount\n"
        f"{ex},gec,{gec_batch},{gec['exchange'][0]}-{gec['exchange'][1]},\n"
        # A deliberate error: the books still list the 500 t sold to the parts maker.
        f"{ex},ccer,{ccer_batch},{cs}-{cs + 20_000},\n"
    )
    return DemoResult(
        seeded=not done, tree_size=int(client.checkpoint().split("\n")[1]), footprints=pf,
        orgs={"authority": auth_id, **{o.slug: o.id for o in DEMO_ORGS}},
        policy_file=str(policy_file), books_file=str(books), gec=gec, ccer=ccer,
    )  # fmt: skip


def _seed(
    s: _Seeder, auth_id: str, pf: dict[str, str], y: int, year: tuple[int, int], h2: tuple[int, int],
    gec_batch: str, ccer_batch: str, out_dir: Path,
) -> None:  # fmt: skip
    o = ORG
    # (1) The authority registers every organization with its key.
    for org in DEMO_ORGS:
        s.op("authority", "org.register", org_spec(org.id, org.name, list(org.roles), [s.signers[org.slug]]), auth_id)

    # (2) GEC: the wind farm is registered (建档立卡) and H2 generation issued
    # to its owner, who sells 100,000 MWh to the exchange; the exchange sells
    # 40,000 to the steel maker and 5,000 to the parts maker.
    project = "GEC-NM-XLG-0001"
    s.op("gec-issuer", "gec.register_project", {
        "projectId": project, "name": "Xilingol Beifeng 200 MW wind farm", "technology": "wind",
        "capacityKw": 200_000, "location": "Xilingol League, Inner Mongolia", "owner": o["wind"].id,
    })  # fmt: skip
    s.op("gec-issuer", "gec.issue", {
        "batchId": gec_batch, "projectId": project, "periodStart": h2[0], "periodEnd": h2[1],
        "quantity": 240_000, "validityEnd": s.now + 2 * 365 * _DAY,
    })  # fmt: skip
    g, _ = s.batch_range("gec", gec_batch)
    s.op("wind", "gec.transfer", {"start": g, "end": g + 100_000, "to": o["exchange"].id})
    s.op("exchange", "gec.transfer", {"start": g, "end": g + 40_000, "to": o["steel"].id})
    s.op("exchange", "gec.transfer", {"start": g + 40_000, "end": g + 45_000, "to": o["parts"].id})
    retire = {"periodStart": year[0], "periodEnd": year[1]}
    s.op("steel", "gec.retire", {"start": g + 10_000, "end": g + 40_000, "beneficiary": "Huayang Zhangjiagang mill", **retire})
    s.op("parts", "gec.retire", {"start": g + 40_000, "end": g + 43_000, "beneficiary": "Anting stamping plant", **retire})

    # (3) CCER: validation (审定), registration, verification (核查), issuance;
    # 20,000 t through the exchange, 500 t to the parts maker, who cancels (注销) them.
    ccer_project = "CCER-01-002-RD0001"
    s.op("verifier", "ccer.validate_project", {
        "projectId": ccer_project, "name": "Rudong H8 300 MW offshore wind farm", "methodology": "CCER-01-002-V01",
        "proponent": o["wind"].id, "creditingStart": year[0], "creditingEnd": _year(y + 10),
        "statement": "Validated against CCER-01-002-V01 (grid-connected offshore wind); additionality demonstrated.",
    })  # fmt: skip
    s.op("ccer-registry", "ccer.register_project", {"projectId": ccer_project})
    report = f"MR-{ccer_project}-{y}"
    s.op("verifier", "ccer.verify_report", {
        "reportId": report, "projectId": ccer_project, "periodStart": year[0], "periodEnd": year[1],
        "reductions": 85_000, "statement": f"Monitoring report {y} verified; grid emission factor 0.5703 tCO2/MWh.",
    })  # fmt: skip
    s.op("ccer-registry", "ccer.issue", {"batchId": ccer_batch, "reportId": report, "quantity": 80_000})
    c, _ = s.batch_range("ccer", ccer_batch)
    s.op("wind", "ccer.transfer", {"start": c, "end": c + 20_000, "to": o["exchange"].id})
    s.op("exchange", "ccer.transfer", {"start": c, "end": c + 500, "to": o["parts"].id})
    s.op("parts", "ccer.cancel", {
        "start": c, "end": c + 500, "beneficiary": "Shanghai Anting Auto Parts Co., Ltd.",
        "purpose": "Offset of door assembly product footprint", **retire,
    })  # fmt: skip

    # (4) Footprints: steel v1 and the door on it, each attested; steel v2
    # (with its GEC claim) deprecates v1 and makes the door stale; door v2.
    steel = {
        "org": o["steel"], "product": "Hot-rolled steel coil Q235B", "gtin": "06921234500017", "cpc": "41231",
        "unit": "kilogram", "mass": "1", "ref": year, "created": s.now, "subdivision": "CN-JS", "primary_share": "74",
        "description": "Hot-rolled carbon steel coil, 2.0-12.7 mm, BF-BOF route, cradle-to-gate",
        "boundary": "Iron ore and coke supply, sintering, blast furnace, BOF, continuous casting, hot rolling",
    }  # fmt: skip
    door = {
        "org": o["parts"], "product": "Front door assembly, left (FD-L-2208)", "gtin": "06939876500024", "cpc": "49129",
        "unit": "piece", "mass": "21.4", "ref": year, "created": s.now, "subdivision": "CN-SH", "primary_share": "61",
        "description": "Front left door assembly: stamped steel inner/outer panels, hinge and lock reinforcements",
        "boundary": "Steel coil supply, blanking, stamping, welding, hemming, e-coat; excludes trim and glass",
    }  # fmt: skip
    docs = {
        "steel-v1": pact_footprint(pf_id=pf["steel-v1"], pcf="2.31", fossil="2.31", **steel),  # type: ignore[arg-type]
        "door-v1": pact_footprint(pf_id=pf["door-v1"], pcf="52.40", fossil="52.40", **door),  # type: ignore[arg-type]
        "steel-v2": pact_footprint(
            pf_id=pf["steel-v2"], pcf="2.12", fossil="2.12", preceding=pf["steel-v1"],
            comment="Recalculated: mill electricity backed by retired GEC.", **steel,  # type: ignore[arg-type]
        ),
        "door-v2": pact_footprint(
            pf_id=pf["door-v2"], pcf="47.85", fossil="47.85", preceding=pf["door-v1"],
            comment="Re-based on steel coil v2; plant electricity backed by retired GEC.", **door,  # type: ignore[arg-type]
        ),
    }
    for name, doc in docs.items():
        (out_dir / f"{name}.pact.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")

    def publish(slug: str, name: str, **extra: Any) -> None:
        s.op(slug, "pcf.publish", {"footprint": copy.deepcopy(docs[name]), **extra})

    def attest(name: str, assurance: str) -> None:
        digest = s.client.footprint(pf[name]).entry_digest
        s.op("verifier", "pcf.attest", {
            "pfId": pf[name], "footprintDigest": digest, "coverage": "product level", "assurance": assurance,
            "standardName": "ISO 14067:2018",
            "statement": f"Verified the {y} product carbon footprint against ISO 14067:2018 and PACT v3.",
        })  # fmt: skip

    comp = {"quantity": "18.5", "unit": "kilogram"}
    publish("steel", "steel-v1")
    attest("steel-v1", "limited")
    publish("parts", "door-v1", components=[{"pfId": pf["steel-v1"], **comp}])
    attest("door-v1", "limited")
    publish("steel", "steel-v2", claims={"gec": [{"start": g + 10_000, "end": g + 40_000}]})
    attest("steel-v2", "reasonable")
    publish("parts", "door-v2", components=[{"pfId": pf["steel-v2"], **comp}], claims={
        "gec": [{"start": g + 40_000, "end": g + 43_000}], "ccer": [{"start": c, "end": c + 500}],
    })  # fmt: skip
    attest("door-v2", "reasonable")
