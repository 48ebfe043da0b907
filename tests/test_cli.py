"""Every CLI verb against a node on port 0: the supplier, verifier, issuer,
holder, buyer and exchange flows with human and ``--json`` output, the exit
codes of bad input and of rejections, and the demo seed followed by
``label get`` and ``label verify``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.cli import main
from client.sdk import LedgerClient
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.records.build import org_spec, signed_op
from ledger.state import StateMachine
from tests.test_node_support import Net, RunningNode, key, open_ledger
from tests.test_state_world import pact_doc, pf_uuid

ROOT = Path(__file__).resolve().parents[1]

try:  # The node's label builder, passed explicitly until create_server defaults to it.
    from node.label_builder import label_builder

    _LABELS: dict[str, Any] = {"label_builder": label_builder}
except ImportError:  # pragma: no cover
    _LABELS = {}
Y2024 = ("2024-01-01", "2025-01-01")


class Cli:
    """Runs ``carbonledger`` in-process against one node and returns what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str], target: str, tmp: Path) -> None:
        self.capsys = capsys
        self.target = target
        self.tmp = tmp

    def __call__(self, *args: str, code: int = 0, node: bool = True) -> tuple[str, str]:
        argv = [*args, "--node", self.target, "--timeout", "10"] if node else list(args)
        self.capsys.readouterr()
        got = main(argv)
        out, err = self.capsys.readouterr()
        assert got == code, f"carbonledger {' '.join(argv)} -> {got}\nstdout: {out}\nstderr: {err}"
        return out, err

    def json(self, *args: str, code: int = 0, node: bool = True) -> Any:
        return json.loads(self(*args, "--json", code=code, node=node)[0])

    def as_org(self, org: str, *args: str, code: int = 0, json_out: bool = True) -> Any:
        argv = [*args, "--org", org, "--key", str(self.tmp / "keys" / f"{org.lower()}.key")]
        return self.json(*argv, code=code) if json_out else self(*argv, code=code)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    led = open_ledger(tmp_path / "ledger")
    running = RunningNode(led, **_LABELS)
    yield running
    running.stop()
    led.close()


@pytest.fixture
def cli(node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    """A node whose genesis names AUTH, with AUTH's key in tmp/keys/auth.key."""
    keys = tmp_path / "keys"
    keys.mkdir()
    auth = key("AUTH")
    (keys / "auth.key").write_text(auth.skey + "\n")
    (tmp_path / "node.vkey").write_text(key("LOG").vkey + "\n")
    genesis = signed_op("genesis", "AUTH", int(time.time()),
                        {"authorities": [org_spec("AUTH", "Authority", ["authority"], [auth])]}, [auth])
    with LedgerClient(node.target, timeout=10) as client:
        client.submit(genesis)
    return Cli(capsys, node.target, tmp_path)


ORGS = {
    "STEEL": ["supplier"], "PARTS": ["supplier"], "VER": ["verifier"], "GECI": ["gec_issuer"],
    "REG": ["ccer_registry"], "EXCH": ["exchange"], "WIND": ["supplier"],
}  # fmt: skip


def register_orgs(cli: Cli) -> None:
    for org, roles in ORGS.items():
        cli("keygen", org.lower(), "--out", str(cli.tmp / "keys"), node=False)
        role_args = [a for r in roles for a in ("--role", r)]
        got = cli.as_org("AUTH", "org", "register", org, "--name", f"{org} Co., Ltd.", *role_args,
                         "--vkey", str(cli.tmp / "keys" / f"{org.lower()}.vkey"))
        assert got["op"] == "org.register" and got["events"][0]["kind"] == "org.registered"


def test_org_verbs(cli: Cli) -> None:
    register_orgs(cli)
    shown = cli.json("org", "show", "STEEL")
    assert shown["roles"] == ["supplier"] and shown["keys"][0]["status"] == "current"
    out, _ = cli("org", "show", "STEEL")
    assert "STEEL  STEEL Co., Ltd." in out and "current" in out
    assert [o["id"] for o in cli.json("org", "list", "--role", "verifier")] == ["VER"]
    # A second key, a rotation by the org itself, and a revocation by the authority.
    keys = cli.tmp / "keys"
    cli("keygen", "steel2", "--out", str(keys), node=False)
    cli("keygen", "steel3", "--out", str(keys), node=False)
    cli.as_org("STEEL", "org", "rotate-key", "STEEL", "--old", str(keys / "steel.vkey"), "--new", str(keys / "steel2.vkey"))
    statuses = {k["vkey"]: k["status"] for k in cli.json("org", "show", "STEEL")["keys"]}
    assert statuses[(keys / "steel2.vkey").read_text().strip()] == "current"
    assert statuses[(keys / "steel.vkey").read_text().strip()] == "rotated"
    # The rotated-out key no longer signs for STEEL.
    _, err = cli.as_org("STEEL", "org", "rotate-key", "STEEL", "--old", str(keys / "steel2.vkey"),
                        "--new", str(keys / "steel3.vkey"), code=1, json_out=False)
    assert "not_signed_by_org" in err and "field signatures" in err
    cli("org", "rotate-key", "STEEL", "--old", str(keys / "steel2.vkey"), "--new", str(keys / "steel3.vkey"),
        "--org", "AUTH", "--key", str(keys / "auth.key"))
    shown = cli.json("org", "show", "STEEL")
    assert shown["past_keys"] == 2 and [k["status"] for k in shown["keys"]] == ["current", "rotated", "rotated"]
    _, err = cli.as_org("AUTH", "org", "revoke-key", "STEEL", "--vkey", str(keys / "steel3.vkey"),
                        "--reason", "laptop lost", code=1, json_out=False)
    assert "rejected by rule last_key, field body.key" in err
    # Wrong role; an org that exists.
    err_json = cli.as_org("VER", "org", "register", "X1", "--name", "X", "--role", "supplier",
                          "--vkey", str(keys / "steel.vkey"), code=1)
    assert err_json["error"]["rule"] == "missing_role" and err_json["error"]["field"] == "org"
    _, err = cli.as_org("AUTH", "org", "register", "VER", "--name", "V", "--role", "verifier",
                        "--vkey", str(keys / "steel.vkey"), code=1, json_out=False)
    assert "org_exists" in err and "body.id" in err
    _, err = cli("org", "show", "NOBODY", code=1)
    assert "not found" in err


def test_org_show_says_how_many_past_keys_it_leaves_out() -> None:
    from client.commands.orgs import _org_lines

    keys = [{"vkey": "k-now", "status": "current", "added": 900}]
    keys += [{"vkey": f"k{i}", "status": "rotated", "added": i, "removed": i + 1} for i in range(64)]
    org = {"id": "TWO", "name": "Two", "roles": ["supplier"], "registered": 1, "registered_by": "AUTH",
           "past_keys": 100, "keys": keys}  # fmt: skip
    assert "(36 earlier keys not listed)" in _org_lines(org)
    assert "not listed" not in _org_lines({**org, "past_keys": 64})


def test_footprint_show_says_when_staleness_was_not_fully_checked() -> None:
    from carbonledger.v1 import query_pb2

    from client.commands.footprints import footprint_dict, footprint_lines

    f = query_pb2.Footprint(id="x", owner="STEEL", status="Active", product_name="coil", unit="kilogram",
                            unit_amount="1", pcf="1.5", stale_incomplete=True)  # fmt: skip
    shown = footprint_dict(f)
    assert shown["stale_incomplete"] is True and shown["stale"] is False
    assert "staleness not fully checked" in footprint_lines(shown)
    assert "not fully checked" not in footprint_lines({**shown, "stale_incomplete": False})


def test_supplier_verifier_issuer_holder_buyer_exchange_flows(cli: Cli) -> None:
    register_orgs(cli)
    now = int(time.time())
    keys, tmp = cli.tmp / "keys", cli.tmp
    # Issuer: a wind farm, and a batch of 1000 MWh generated in the last two days.
    got = cli.as_org("GECI", "gec", "project", "P1", "--name", "Wind farm", "--technology", "wind",
                     "--capacity-kw", "50000", "--location", "Inner Mongolia", "--owner", "WIND")
    assert got["op"] == "gec.register_project"
    got = cli.as_org("GECI", "gec", "issue", "B1", "--project", "P1", "--period", str(now - 2 * 86400),
                     str(now - 86400), "--quantity", "1000", "--validity-end", str(now + 365 * 86400))
    assert [e["subject"] for e in got["events"] if e["subject"].startswith("gec:")] == ["gec:0-1000"]
    # Holders: the wind farm sells through the exchange; steel retires (核销) for 2024.
    cli.as_org("WIND", "gec", "transfer", "0-600", "--to", "EXCH")
    out, _ = cli.as_org("EXCH", "gec", "transfer", "gec:0-200", "--to", "STEEL", json_out=False)
    assert "accepted: gec.transfer" in out and "gec:0-200 (200 MWh) to STEEL" in out
    cli.as_org("STEEL", "gec", "retire", "0-100", "--beneficiary", "Mill", "--period", *Y2024)
    # Double retirement is refused with the rule and field.
    err = cli.as_org("STEEL", "gec", "retire", "50-60", "--beneficiary", "Mill", "--period", *Y2024, code=1)
    assert (err["error"]["rule"], err["error"]["field"]) == ("units_retired", "body.start")
    # CCER: validate, register, verify, issue, transfer, cancel.
    cli.as_org("VER", "ccer", "validate", "C1", "--name", "Offshore wind", "--methodology", "CCER-01-002-V01",
               "--proponent", "WIND", "--crediting", "2024-01-01", "2034-01-01", "--statement", "validated")
    cli.as_org("REG", "ccer", "register", "C1")
    cli.as_org("VER", "ccer", "verify", "R1", "--project", "C1", "--period", *Y2024, "--reductions", "900",
               "--statement", "verified")
    got = cli.as_org("REG", "ccer", "issue", "CB1", "--report", "R1", "--quantity", "800")
    assert any(e["subject"] == "ccer:0-800" for e in got["events"])
    cli.as_org("WIND", "ccer", "transfer", "0-300", "--to", "EXCH")
    cli.as_org("EXCH", "ccer", "transfer", "0-50", "--to", "STEEL")
    cli.as_org("STEEL", "ccer", "cancel", "0-50", "--beneficiary", "Steel", "--purpose", "offset",
               "--period", *Y2024)
    # Supplier: publish steel with its claims; verifier attests; parts builds on it.
    steel_file = tmp / "steel.json"
    steel_file.write_text(json.dumps(pact_doc("steel", "2.0")))
    got = cli.as_org("STEEL", "footprint", "publish", str(steel_file), "--claim", "gec:0-100", "--claim", "ccer:0-50")
    assert got["events"][0]["kind"] == "footprint.published"
    out, _ = cli.as_org("VER", "footprint", "attest", pf_uuid("steel"), "--assurance", "reasonable",
                        "--statement", "ok", json_out=False)
    assert "attested" in out
    part = tmp / "door.json"
    part.write_text(json.dumps({"data": pact_doc("door", "25", unit="piece")}))  # a PACT API response
    ext = tmp / "ext.json"
    ext.write_text(json.dumps({"components": [{"pfId": pf_uuid("steel"), "quantity": "10", "unit": "kilogram"}]}))
    cli.as_org("PARTS", "footprint", "publish", str(part), "--extensions", str(ext))
    shown = cli.json("footprint", "show", pf_uuid("steel"))
    assert shown["gec_claims"] == [[0, 100]] and shown["ccer_claims"] == [[0, 50]]
    assert shown["attestations"][0]["verifier"] == "VER" and shown["attestations"][0]["assurance"] == "reasonable"
    # A new steel version deprecates v1; the door goes stale.
    v2 = tmp / "steel2.json"
    v2.write_text(json.dumps(pact_doc("steel-v2", "1.9", preceding=["steel"])))
    got = cli.as_org("STEEL", "footprint", "publish", str(v2))
    assert any(e["kind"] == "footprint.stale" for e in got["events"])
    door = cli.json("footprint", "show", pf_uuid("door"))
    assert door["stale"] and door["components"][0]["footprint_id"] == pf_uuid("steel")
    out, _ = cli("footprint", "show", pf_uuid("door"))
    assert "stale" in out and "10 kilogram of" in out
    assert cli.json("footprint", "show", pf_uuid("steel-v2"))["versions"] == [pf_uuid("steel"), pf_uuid("steel-v2")]
    out, _ = cli("footprint", "show", pf_uuid("steel"))
    assert f"versions:   {pf_uuid('steel')} (this), {pf_uuid('steel-v2')}" in out
    cli.as_org("PARTS", "footprint", "deprecate", pf_uuid("door"), "--reason", "recalculating")
    assert cli.json("footprint", "show", pf_uuid("door"))["status"] == "Deprecated"
    assert len(cli.json("footprint", "list", "STEEL")) == 2
    # Holder queries.
    rows = cli.json("holdings", "STEEL")
    assert {(r["kind"], r["start"], r["end"], r["status"]) for r in rows} == {
        ("gec", 0, 100, "retired"), ("gec", 100, 200, "held"), ("ccer", 0, 50, "retired")}
    out, _ = cli("holdings", "STEEL", "--kind", "gec")
    assert "STEEL: gec 100 held" in out and "backs footprint" in out
    history = cli.json("history", "gec", "0-200")
    assert [e["op"] for e in history][:3] == ["issue", "transfer", "transfer"]
    # Buyer: checkpoint, proof and policy, verified offline with ledger code.
    cp = cli.json("checkpoint")
    assert cp["origin"] == key("LOG").name and cp["tree_size"] > 20
    proof_file, entry_file = tmp / "p.txt", tmp / "e.bin"
    cli("proof", "3", "--out", str(proof_file), "--entry-out", str(entry_file))
    policy_file = tmp / "policy.txt"
    out, _ = cli("policy", "--log-vkey", str(tmp / "node.vkey"), "--out", str(policy_file), "--check")
    assert "verifies with this log key" in out
    from ledger.policy import parse_policy
    from ledger.tlog_proof import verify_tlog_proof

    verify_tlog_proof(proof_file.read_text(), entry_file.read_bytes(), parse_policy(policy_file.read_text()))
    assert cli.json("proof", "3")["proof"].startswith("c2sp.org/tlog-proof@v1\nindex 3\n")
    # A policy with witnesses and a quorum.
    cli("keygen", "w1", "--witness", "--out", str(keys), node=False)
    text = cli.json("policy", "--log-vkey", key("LOG").vkey, "--witness", f"w1={keys / 'w1.vkey'}")["policy"]
    assert "witness w1 " in text and "quorum witnesses" in text
    # Watch: the history from an index, bounded by --count.
    out, _ = cli("watch", "--from", "2", "--count", "4", "--json", "--kind", "entry")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["index"] for e in events] == [2, 3, 4, 5] and all(e["kind"] == "entry" for e in events)
    out, _ = cli("watch", "--from", "0", "--count", "1")
    assert out.startswith("#0 ") and "genesis" in out
    # Buyer: the label of the steel footprint, and tampering with it.
    label_file = tmp / "steel.label.json"
    cli("label", "get", pf_uuid("steel"), "--out", str(label_file))
    out, _ = cli("label", "verify", str(label_file), "--policy", str(policy_file), node=False)
    assert out.startswith("LABEL OK") and "VER (reasonable assurance" in out and "Renewable:    100 MWh" in out
    report = cli.json("label", "verify", str(label_file), "--policy", str(policy_file), node=False)
    assert report["ok"] and report["report"]["offsets_tco2e"] == 50
    out, _ = cli("label", "get", pf_uuid("steel"), "--out", str(label_file), "--policy", str(policy_file))
    assert "LABEL OK" in out
    label = json.loads(label_file.read_text())
    label["attestations"] = []
    tampered = tmp / "tampered.json"
    tampered.write_text(json.dumps(label, sort_keys=True, separators=(",", ":")))
    _, err = cli("label", "verify", str(tampered), "--policy", str(policy_file), "--require-attestation",
                 code=1, node=False)
    assert "attest" in err
    # Exchange: books that match, then books with mismatches.
    books = tmp / "books.csv"
    books.write_text("account,asset,batch,range,amount\nEXCH,gec,B1,200-600,\nEXCH,ccer,,,250\n")
    got = cli.json("reconcile", str(books))
    assert got["ok"] and got["mismatches"] == []
    books_json = tmp / "books.json"
    books_json.write_text(json.dumps({"rows": [
        {"account": "EXCH", "asset": "gec", "batch": "B1", "start": 100, "end": 600},
        {"account": "EXCH", "asset": "ccer", "amount": 300},
    ]}))  # fmt: skip
    size = cp["tree_size"]
    got = cli.json("reconcile", str(books_json), "--size", str(size), "--proofs", str(tmp / "proofs"), code=1)
    kinds = {(m["kind"], m["start"], m["end"]) for m in got["mismatches"]}
    assert ("NOT_HELD_ON_LEDGER", 100, 200) in kinds and ("AMOUNT_DIFFERS", 0, 0) in kinds
    assert got["tree_size"] == size and all(m["proving_indexes"] for m in got["mismatches"])
    assert sorted(p.name for p in (tmp / "proofs").iterdir())
    out, _ = cli("reconcile", str(books_json), code=1)
    assert "(held by STEEL); proving entries: " in out and "2 mismatch(es) in 2 rows" in out
    assert "NOT VERIFIED" in out
    # The same, checked against the buyer's policy: the same answer, verified.
    checked = cli.json("reconcile", str(books_json), "--size", str(size), "--policy", str(policy_file), code=1)
    assert checked["verified"] is True and checked["mismatches"] == got["mismatches"]
    assert cli.json("reconcile", str(books), "--policy", str(policy_file))["verified"] is True


def test_holdings_shows_expired_units_apart_from_held(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_node_support import Net

    net = Net()
    with LedgerClient(node.target, timeout=10) as client:
        for e in [*net.setup(), net.gec_project(), net.gec_issue(), net.transfer("gec", "STEEL", 0, 40, "EXCH")]:
            client.submit(e)
        # A year and a day on, a new batch: the ledger's time passes B1's
        # validity end (a year after issue). The node's clock is set, not read.
        net.now += 366 * 86400
        node.ledger._clock = lambda: float(net.now)  # type: ignore[attr-defined]
        client.submit(net.gec_issue("B2", quantity=10))
    cli = Cli(capsys, node.target, tmp_path)
    rows = cli.json("holdings", "STEEL")
    assert [(r["batch"], r["start"], r["end"], r["status"]) for r in rows] == [("B1", 40, 100, "expired"), ("B2", 100, 110, "held")]
    out, _ = cli("holdings", "STEEL")
    assert "STEEL: gec 10 held; gec 60 expired (past validity end" in out
    out, _ = cli("holdings", "EXCH")
    assert "EXCH: nothing held; gec 40 expired" in out


def test_bad_input_exits_2_with_one_line(cli: Cli) -> None:
    register_orgs(cli)
    key_args = ["--org", "STEEL", "--key", str(cli.tmp / "keys" / "steel.key")]
    cases = [
        (["footprint", "publish", str(cli.tmp / "missing.json"), *key_args], "no such file"),
        (["gec", "transfer", "10-5", "--to", "EXCH", *key_args], "END must be greater"),
        (["gec", "transfer", "ten", "--to", "EXCH", *key_args], "bad range"),
        (["gec", "retire", "0-5", "--beneficiary", "x", "--period", "2024-13-01", "2025-01-01", *key_args], "bad date"),
        (["gec", "transfer", "0-5", "--to", "EXCH", "--org", "STEEL", "--key", str(cli.tmp / "keys" / "steel.vkey")],
         "not a signed-note private key"),
        (["reconcile", str(cli.tmp / "keys" / "steel.vkey")], "header row"),
        (["policy", "--log-vkey", "nonsense"], "verifier key"),
        (["checkpoint", "--tls-ca", str(cli.tmp / "keys" / "steel.vkey")], "steel.vkey: not a PEM certificate"),
        # Digits of other scripts: int() refuses "²" and reads "١" as 1.
        (["gec", "transfer", "²-³", "--to", "EXCH", *key_args], "bad range"),
        (["gec", "transfer", "١-٢", "--to", "EXCH", *key_args], "bad range"),
        (["gec", "retire", "0-5", "--beneficiary", "x", "--period", "²", "5", *key_args], "bad date"),
    ]
    bad_json = cli.tmp / "bad.json"
    bad_json.write_text("{not json")
    cases.append((["footprint", "publish", str(bad_json), *key_args], "not valid JSON"))
    not_pact = cli.tmp / "notpact.json"
    not_pact.write_text('{"id": 1}')
    cases.append((["footprint", "publish", str(not_pact), *key_args], "not a PACT v3 ProductFootprint"))
    books_ok = cli.tmp / "books-ok.csv"
    books_ok.write_text("account,asset,range\nEXCH,gec,0-5\n")
    books = cli.tmp / "books.csv"
    books.write_text("account,asset,range,amount\nEXCH,gec,1-2,5\n")
    cases.append((["reconcile", str(books)], "either a serial range or a positive amount"))
    # Each rule names its line once; numbers past 2**53 - 1 and fields past
    # the csv module's limit are refused here, not by the wire format.
    for name, text, message in [
        ("order", "account,asset,start,end\nEXCH,gec,5,3\n",
         "books.order.csv: line 2: bad range 5-3: END must be greater than START\n"),
        ("huge", "account,asset,start,end\nEXCH,gec,0,99999999999999999999\n",
         "line 2: end: 99999999999999999999 is past the largest serial or amount, 9007199254740991\n"),
        ("amount", "account,asset,amount\nEXCH,gec,99999999999999999999\n",
         "line 2: amount: 99999999999999999999 is past the largest serial or amount"),
        ("field", "account,asset,range\nEXCH,gec,1-2\n" + "a" * 200_000 + ",gec,1-2\n",
         "line 3: not CSV: field larger than field limit"),
    ]:
        path = cli.tmp / f"books.{name}.csv"
        path.write_text(text)
        cases.append((["reconcile", str(path)], message))
    cases.append((["gec", "transfer", "0-99999999999999999999", "--to", "EXCH", *key_args], "past the largest serial"))
    deep = cli.tmp / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # past the decoder's recursion limit
    cases.append((["footprint", "publish", str(deep), *key_args], f"footprint file {deep}: not valid JSON: nested too deeply"))
    cases.append((["reconcile", str(deep)], f"books file {deep}: not valid JSON: nested too deeply"))
    # Files past what a reader takes are refused without reading them whole.
    policy = cli.tmp / "policy.txt"
    policy.write_text(f"log {key('LOG').vkey}\nquorum none\n")
    cases.append((["footprint", "publish", "/dev/zero", *key_args], "footprint file /dev/zero: larger than 67108864 bytes"))
    for argv, message in [
        (["label", "verify", "/dev/zero", "--policy", str(policy)], "label file /dev/zero: larger than 4194304 bytes"),
        (["label", "verify", str(policy), "--policy", "/dev/zero"], "policy file /dev/zero: larger than 65536 bytes"),
    ]:
        _, err = cli(*argv, code=2, node=False)  # offline: no node
        assert message in err and err.count("\n") == 1, (argv, err)
    # Files the command is told to write, where they cannot be.
    a_file = cli.tmp / "a-file"
    a_file.write_text("x")
    missing_dir = cli.tmp / "no-such-dir"
    cases += [
        (["checkpoint", "--out", str(missing_dir / "cp")], f"{missing_dir}/cp: No such file or directory"),
        (["proof", "0", "--out", str(missing_dir / "p")], f"{missing_dir}/p: No such file or directory"),
        (["reconcile", str(books_ok), "--proofs", str(a_file)], f"{a_file}: File exists"),
    ]
    for argv, message in cases:
        _, err = cli(*argv, code=2)
        assert message in err and err.count("\n") == 1, (argv, err)
    # Sizes and indexes the wire's uint64 cannot carry: refused by the parser.
    for argv in (["proof", "-5"], ["checkpoint", "--size", "-1"], ["watch", "--from", str(2**64)]):
        with pytest.raises(SystemExit) as exit_:
            cli(*argv)
        assert exit_.value.code == 2
        assert "is not a tree size or an entry index" in cli.capsys.readouterr().err
    # A port grpc would wrap round (99999 dials 34463), or none at all.
    for node in ("127.0.0.1:99999", "", "127.0.0.1"):
        with pytest.raises(SystemExit) as exit_:
            main(["checkpoint", "--node", node])
        assert exit_.value.code == 2
        assert f"argument --node: {node!r} is not HOST:PORT with a port from 1 to 65535" in cli.capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli("watch", "--count", "-1")
    assert exit_.value.code == 2
    assert "argument --count: -1 is not a count (0 or more)" in cli.capsys.readouterr().err
    for duration in ("-1", "nan"):  # a watch that ends before it starts, silently
        with pytest.raises(SystemExit) as exit_:
            cli("watch", "--duration", duration)
        assert exit_.value.code == 2
        assert f"argument --duration: {duration} is not a positive number of seconds" in cli.capsys.readouterr().err
    # A deadline that no call could meet.
    for timeout in ("0", "-1", "nan", "inf"):
        with pytest.raises(SystemExit) as exit_:
            main(["checkpoint", "--node", cli.target, "--timeout", timeout])
        assert exit_.value.code == 2
        assert f"argument --timeout: {timeout} is not a positive number of seconds" in cli.capsys.readouterr().err
    # Input the node refuses as malformed: a PACT document breaking a schema rule.
    doc = pact_doc("x", "1")
    doc["pcf"]["declaredUnitOfMeasurement"] = "bushel"
    bad_doc = cli.tmp / "bad-doc.json"
    bad_doc.write_text(json.dumps(doc))
    err_json = cli.json("footprint", "publish", str(bad_doc), *key_args, code=2)
    assert err_json["error"]["what"] == "body.footprint.pcf.declaredUnitOfMeasurement"
    _, err = cli("label", "verify", str(cli.tmp / "none.json"), "--policy", str(books), code=2, node=False)
    assert "none.json: no such file" in err
    # Unknown ids answer 1; an unreachable node 3.
    _, err = cli("footprint", "show", pf_uuid("nothing"), code=1)
    assert "not found" in err
    _, err = cli("label", "get", pf_uuid("nothing"), "--out", str(cli.tmp / "l.json"), code=1)
    assert "not found" in err
    main_args = ["checkpoint", "--node", "127.0.0.1:1", "--timeout", "2"]
    assert main(main_args) == 3


def test_demo_seed_then_label_get_and_verify(cli: Cli, node: RunningNode) -> None:
    node_dir = cli.tmp
    (node_dir / "authority.key").write_text(key("AUTH").skey + "\n")
    got = cli.json("demo-seed", "--dir", str(node_dir))
    assert got["seeded"] and got["tree_size"] == node.ledger.size
    assert set(got["orgs"]) >= {"authority", "steel", "parts", "verifier", "gec-issuer", "ccer-registry", "exchange"}
    assert (node_dir / "keys" / "steel.key").stat().st_mode & 0o777 == 0o600
    door = got["footprints"]["door-v2"]
    steel_v1 = cli.json("footprint", "show", got["footprints"]["steel-v1"])
    assert steel_v1["status"] == "Deprecated" and cli.json("footprint", "show", got["footprints"]["door-v1"])["stale"]
    label_file = node_dir / "door.label.json"
    cli("label", "get", door, "--out", str(label_file))
    out, _ = cli("label", "verify", str(label_file), "--policy", got["policy_file"], "--require-attestation",
                 node=False)
    assert "LABEL OK" in out and "Front door assembly" in out and "Renewable:    3000 MWh" in out
    assert "Offsets:      500 tCO2e" in out and "Hot-rolled steel coil" in out
    # The exchange's demo books carry one deliberate mismatch.
    recon = cli.json("reconcile", got["books_file"], code=1)
    assert [m["kind"] for m in recon["mismatches"]] == ["NOT_HELD_ON_LEDGER"] and recon["verified"] is False
    # With the demo's policy, as the hint printed by demo-seed runs it.
    verified = cli.json("reconcile", got["books_file"], "--policy", got["policy_file"], code=1)
    assert verified["verified"] is True and verified["mismatches"] == recon["mismatches"]
    # Re-running is idempotent and prints the label commands again.
    size = node.ledger.size
    out, _ = cli("demo-seed", "--dir", str(node_dir), "--cli", ".venv/bin/carbonledger", "--check-label")
    assert out.startswith("already seeded") and node.ledger.size == size
    assert f".venv/bin/carbonledger label get {door}" in out and "label check: ok" in out
    assert f"reconcile {got['books_file']} --policy {got['policy_file']} --node" in out


def test_console_script_dispatches_client_verbs(cli: Cli) -> None:
    """The real ``carbonledger`` entry point (node.main) reaches the client verbs."""
    run = subprocess.run(
        [sys.executable, "-m", "node.main", "checkpoint", "--node", cli.target, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["tree_size"] == 1
    run = subprocess.run(
        [sys.executable, "-m", "node.main", "label", "verify", "nope.json", "--policy", "nope.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (run.returncode, run.stderr) == (2, "carbonledger: label file nope.json: no such file\n")


def test_signer_key_name_is_free(tmp_path: Path) -> None:
    """Keys from keygen load as org signers whatever their name."""
    from client.commands._common import load_signer

    signer = Signer.generate("any.name/for-the-key")
    path = tmp_path / "k.key"
    path.write_text(signer.skey + "\n")
    assert load_signer(str(path)).vkey == signer.vkey


# -- label verify, offline: a label built on an in-memory ledger -------------------------


class Offline:
    """A ledger in memory with STEEL's footprint, its policy file, and the CLI
    with no node: what a buyer holds when running ``label verify``."""

    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path) -> None:
        self.net = Net()
        self.ledger = Ledger.memory(signer=key("LOG"), machine=StateMachine())
        self.ledger.append(self.net.setup())
        self.ledger.append([self.net.publish("STEEL", "steel", "2.0")])
        self.tmp = tmp
        self.policy = tmp / "policy.txt"
        self.policy.write_text(f"log {self.ledger.vkey}\nquorum none\n")
        self.cli = Cli(capsys, "", tmp)

    def label(self, name: str = "steel", *, text: bytes | None = None, file: str = "") -> Path:
        """A label file: the node's label of footprint ``name``, or ``text``."""
        from node.label_builder import build_label

        path = self.tmp / (file or f"{name}.label.json")
        path.write_bytes(build_label(self.ledger, pf_uuid(name)) if text is None else text)
        return path

    def verify(self, path: Path, *args: str, code: int = 0) -> tuple[str, str]:
        return self.cli("label", "verify", str(path), "--policy", str(self.policy), *args, code=code, node=False)


@pytest.fixture
def offline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Offline]:
    got = Offline(capsys, tmp_path)
    yield got
    got.ledger.close()


def _relabel(label: bytes, change: Any) -> bytes:
    doc = json.loads(label)
    change(doc)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_a_malformed_label_fails_verification_with_exit_1(offline: Offline) -> None:
    """A label that was read but does not parse is a label that does not
    verify (exit 1), not a misuse of the CLI (exit 2)."""
    good = offline.label().read_bytes()
    out, _ = offline.verify(offline.label())
    assert out.startswith("LABEL OK")
    cases = [
        (_relabel(good, lambda d: d["footprint"].update(entry="not base64!")), "malformed footprint.entry"),
        (_relabel(good, lambda d: d["footprint"].update(proof="nope")), "malformed footprint.proof"),
        (_relabel(good, lambda d: d.update(version=2)), "malformed label.version"),
        (b"<html>not found</html>", "malformed label"),
    ]
    for i, (text, message) in enumerate(cases):
        path = offline.label(text=text, file=f"bad{i}.json")
        _, err = offline.verify(path, code=1)
        assert err.startswith("carbonledger: label does not verify: ") and message in err, err
        assert err.count("\n") == 1, err
    got = json.loads(offline.verify(offline.label(text=cases[0][0], file="bad.json"), "--json", code=1)[0])
    assert got["error"]["type"] == "MalformedLabel" and got["error"]["what"] == "footprint.entry"
    # What stays bad input: a label file that cannot be read, a bad policy.
    _, err = offline.verify(offline.tmp / "missing.json", code=2)
    assert "label file" in err and "no such file" in err
    offline.policy.write_text("not a policy\n")
    _, err = offline.verify(offline.label(), code=2)
    assert err.startswith("carbonledger: policy file ") and err.count("\n") == 1


def test_the_report_does_not_claim_currency_it_cannot_prove(offline: Offline) -> None:
    out, _ = offline.verify(offline.label())
    assert "current as of" not in out
    assert "no deprecation or newer version is included in this label" in out
    assert "check the ledger for currency" in out


def test_expect_pf_id_fails_a_valid_label_of_another_product(offline: Offline) -> None:
    offline.ledger.append([offline.net.publish("STEEL", "plate", "3.0")])
    steel = offline.label()
    out, _ = offline.verify(steel, "--expect-pf-id", pf_uuid("steel").upper())
    assert out.startswith("LABEL OK")
    _, err = offline.verify(steel, "--expect-pf-id", pf_uuid("plate"), code=1)
    assert err == (f"carbonledger: label is of footprint {pf_uuid('steel')} (steel), "
                   f"not of the expected {pf_uuid('plate')}\n")  # fmt: skip
    got = json.loads(offline.verify(steel, "--expect-pf-id", pf_uuid("plate"), "--json", code=1)[0])
    assert got["error"]["type"] == "UnexpectedFootprint"
    # An id that is no PACT id is bad input, refused before the label is read.
    with pytest.raises(SystemExit) as exit_:
        offline.verify(steel, "--expect-pf-id", "steel")
    assert exit_.value.code == 2
    assert "'steel' is not a PACT footprint id" in offline.cli.capsys.readouterr().err


def test_refuse_stale_fails_a_label_carrying_a_deprecation(offline: Offline) -> None:
    steel = offline.label()
    # No deprecation in the label: it passes, and the report claims no currency.
    out, _ = offline.verify(steel, "--refuse-stale")
    assert "LABEL OK" in out and "current as of" not in out
    # A label that carries the deprecation is refused, naming it.
    offline.ledger.append([offline.net.publish("STEEL", "steel-v2", "1.9", preceding=["steel"])])
    deprecated = offline.label(file="steel-deprecated.json")
    out, _ = offline.verify(deprecated)
    assert "DEPRECATED" in out
    _, err = offline.verify(deprecated, "--refuse-stale", code=1)
    assert err == (f"carbonledger: footprint {pf_uuid('steel')} is not current: "
                   "the label carries its deprecation or a newer version of it\n")  # fmt: skip
    # A broken label is reported as broken, before any requirement.
    broken = offline.label(text=_relabel(steel.read_bytes(), lambda d: d["footprint"].update(proof="x")), file="b.json")
    _, err = offline.verify(broken, "--refuse-stale", "--expect-pf-id", pf_uuid("plate"), code=1)
    assert "malformed footprint.proof" in err


def test_label_get_checks_the_label_is_of_the_footprint_asked_for(offline: Offline) -> None:
    """A node that answers with the label of another footprint is caught."""
    from client.label import LABEL_MEDIA_TYPE
    from node.label_builder import build_label

    offline.ledger.append([offline.net.publish("STEEL", "plate", "3.0")])

    def always_steel(ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
        return build_label(ledger, pf_uuid("steel"), tree_size), LABEL_MEDIA_TYPE

    running = RunningNode(offline.ledger, label_builder=always_steel)
    try:
        cli = Cli(offline.cli.capsys, running.target, offline.tmp)
        out, _ = cli("label", "get", pf_uuid("steel"), "--out", str(offline.tmp / "s.json"), "--policy", str(offline.policy))
        assert "LABEL OK" in out
        _, err = cli("label", "get", pf_uuid("plate"), "--out", str(offline.tmp / "p.json"),
                     "--policy", str(offline.policy), code=1)  # fmt: skip
        assert f"label is of footprint {pf_uuid('steel')} (steel), not of the expected {pf_uuid('plate')}" in err
        out, _ = cli("label", "get", pf_uuid("steel"), "--out", str(offline.tmp / "s.json"),
                     "--policy", str(offline.policy), "--refuse-stale")  # fmt: skip
        assert "LABEL OK" in out
    finally:
        running.stop()


def test_label_verify_shows_tlog_proof_extra_data(offline: Offline) -> None:
    from ledger.tlog_proof import format_tlog_proof, parse_tlog_proof

    def add_extra(doc: dict[str, Any]) -> None:
        p = parse_tlog_proof(doc["footprint"]["proof"])
        doc["footprint"]["proof"] = format_tlog_proof(type(p)(p.index, p.proof, p.checkpoint_note, b"hello"))

    path = offline.label(text=_relabel(offline.label().read_bytes(), add_extra), file="extra.json")
    out, _ = offline.verify(path)
    assert out.startswith("LABEL OK") and "1 proof(s) carry tlog-proof extra data" in out
    assert "footprint entry (entry 6): 5 bytes, aGVsbG8=" in out
    got = offline.cli.json("label", "verify", str(path), "--policy", str(offline.policy), node=False)
    assert got["report"]["proof_extras"] == [{"where": "footprint entry", "index": 6, "data": b"hello".hex()}]
