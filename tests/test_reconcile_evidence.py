"""``carbonledger reconcile --policy``: the exchange checks the node's answer.

A real node on port 0, serving a real ledger, answers the reconciliation;
to play a lying or broken node, one answer of it is altered: the node's own
``Reconciler`` is swapped for a subclass that changes its result or its
checkpoint, or the SDK's entry or inclusion-proof call is wrapped. Each lie
must end in exit 4 (not 1, "mismatches found"), naming the check and the
entry; honest answers verify and keep exit 0 and 1.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.servicers
from client.reconcile_evidence import AnswerNotVerified, check_entry_touches
from client.sdk import LedgerClient
from ledger.checkpoint import Checkpoint, cosign_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.envelope import parse_envelope
from ledger.keys import Signer
from ledger.log import Ledger
from ledger.note import parse_note
from ledger.policy import parse_policy
from ledger.records.ops import parse_operation
from ledger.tlog_proof import parse_tlog_proof, verify_tlog_proof
from node.reconcile import BookRow, Mismatch, Reconciler, reconcile
from tests.test_cli import Cli
from tests.test_node_support import Net, RunningNode, key, open_ledger, pact_doc
from tests.test_reconcile import counted_once, drive, new_world, row_strategy

EXIT_MISMATCHES, EXIT_UNVERIFIED = 1, 4
WITNESS = Signer.from_seed("witness.example/w1", b"w" * 32, cosigner=True)


class Exchange:
    """A ledger where STEEL was issued B1 (gec 0-100), sent 0-50 to EXCH and
    retired 90-100; the exchange's books, policies, and the CLI."""

    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.ledger = open_ledger(tmp / "ledger")
        net = Net()
        self.submit(*net.setup(), net.gec_project(), net.gec_issue())
        self.register = 1  # GECI's registration, after the genesis
        self.issue = self.ledger.size - 1
        self.transfer = self.submit(net.transfer("gec", "STEEL", 0, 50, "EXCH"))
        self.retire = self.submit(net.retire("STEEL", 90, 100))
        self.clean = self.books("clean.csv", "account,asset,batch,range\nEXCH,gec,B1,0-50\n")
        # EXCH 50-60 is STEEL's (proved by the issue), STEEL's 90-100 retired
        # (by the retirement), STEEL's 50-80 missing from the books.
        self.mismatched = self.books(
            "mismatched.csv", "account,asset,batch,range\nEXCH,gec,B1,0-60\nSTEEL,gec,B1,80-100\n"
        )
        self.policy = tmp / "policy.txt"
        self.policy.write_text(f"log {self.ledger.vkey}\nquorum none\n")
        self.running: RunningNode | None = None

    def submit(self, *entries: bytes) -> int:
        """Append ``entries``; the index of the last."""
        results = self.ledger.submit(list(entries))
        assert not any(isinstance(r, Exception) for r in results), results
        return self.ledger.size - 1

    def books(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def serve(self, reconciler: type[Reconciler] = Reconciler) -> Cli:
        """Start the node, its reconciliation answered by ``reconciler``."""
        self.monkeypatch.setattr(node.servicers, "Reconciler", reconciler)
        self.running = RunningNode(self.ledger)
        return Cli(self.capsys, self.running.target, self.tmp)

    def close(self) -> None:
        if self.running is not None:
            self.running.stop()
        self.ledger.close()


@pytest.fixture
def exchange(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    got = Exchange(tmp_path, capsys, monkeypatch)
    yield got
    got.close()


def _error(cli: Cli, *args: str) -> dict[str, Any]:
    """The JSON error of a reconcile that must not verify (exit 4)."""
    got = cli.json("reconcile", *args, code=EXIT_UNVERIFIED)
    assert got["ok"] is False and got["error"]["type"] == "AnswerNotVerified"
    return got["error"]  # type: ignore[no-any-return]


# -- an honest node ---------------------------------------------------------------------


def test_an_honest_answer_verifies_with_the_exit_codes_of_before(exchange: Exchange) -> None:
    cli = exchange.serve()
    policy = str(exchange.policy)
    # Clean books: exit 0, and the signed checkpoint is kept as the evidence.
    got = cli.json("reconcile", str(exchange.clean), "--policy", policy)
    assert got["ok"] and got["verified"] is True and got["mismatches"] == []
    assert got["checkpoint"] == exchange.ledger.checkpoint(got["tree_size"])
    out, _ = cli("reconcile", str(exchange.clean), "--policy", policy)
    assert f"verified with policy {policy}" in out and "NOT VERIFIED" not in out
    # Mismatches: exit 1, each proving entry checked, the proofs written.
    proofs = exchange.tmp / "proofs"
    got = cli.json("reconcile", str(exchange.mismatched), "--policy", policy, "--proofs", str(proofs),
                   code=EXIT_MISMATCHES)  # fmt: skip
    assert got["verified"] is True
    assert [(m["kind"], m["start"], m["end"], m["proving_indexes"]) for m in got["mismatches"]] == [
        ("NOT_HELD_ON_LEDGER", 50, 60, [exchange.issue]),
        ("STATUS_DIFFERS", 90, 100, [exchange.retire]),
        ("MISSING_FROM_BOOKS", 50, 80, [exchange.issue]),
    ]
    # Each written proof verifies offline under the policy, against the very
    # checkpoint of the answer.
    written = sorted(proofs.iterdir())
    assert [p.name for p in written] == [f"entry-{i}.tlog-proof" for i in sorted({exchange.issue, exchange.retire})]
    policy_obj = parse_policy(exchange.policy.read_text())
    for path in written:
        proof = parse_tlog_proof(path.read_text())
        assert proof.checkpoint_note == got["checkpoint"]
        cp = verify_tlog_proof(path.read_text(), exchange.ledger.entry(proof.index), policy_obj)
        assert cp.size == got["tree_size"]
    # Without --policy: as before, but it says nothing was verified.
    got = cli.json("reconcile", str(exchange.mismatched), code=EXIT_MISMATCHES)
    assert got["verified"] is False and len(got["mismatches"]) == 3
    out, _ = cli("reconcile", str(exchange.clean))
    assert "NOT VERIFIED" in out and "--policy" in out


def _witnessed(reconciler: type[Reconciler]) -> type[Reconciler]:
    class Witnessed(reconciler):  # type: ignore[valid-type,misc]
        """A node whose reconciliation checkpoints carry a witness's cosignature."""

        def checkpoint(self, size: int) -> str:
            return cosign_checkpoint(super().checkpoint(size), WITNESS, 1_700_000_000)

    return Witnessed


def test_a_witness_quorum_is_checked_on_the_answer_and_carried_by_the_proofs(exchange: Exchange) -> None:
    cli = exchange.serve(_witnessed(Reconciler))
    policy = exchange.books("witnessed.txt", f"log {exchange.ledger.vkey}\nwitness w1 {WITNESS.vkey}\nquorum w1\n")
    proofs = exchange.tmp / "proofs"
    got = cli.json("reconcile", str(exchange.mismatched), "--policy", str(policy), "--proofs", str(proofs),
                   code=EXIT_MISMATCHES)  # fmt: skip
    assert got["verified"] is True
    # The node's own tlog-proofs carry no cosignature; the written ones carry
    # the answer's cosigned checkpoint, so they meet the witness quorum.
    for path in proofs.iterdir():
        proof = parse_tlog_proof(path.read_text())
        verify_tlog_proof(path.read_text(), exchange.ledger.entry(proof.index), parse_policy(policy.read_text()))


# -- a checkpoint that does not meet the policy ---------------------------------------------


def test_a_checkpoint_not_meeting_the_policy_is_refused_with_exit_4(exchange: Exchange) -> None:
    cli = exchange.serve()
    other_log = Signer.from_seed(exchange.ledger.origin, b"o" * 32)  # the log's name, another key
    cases = [
        (f"log {other_log.vkey}\nquorum none\n", "invalid or missing signature by " + exchange.ledger.origin),
        (f"log {key('STEEL').vkey}\nquorum none\n", "the policy has no log with this origin"),
        (f"log {exchange.ledger.vkey}\nwitness w1 {WITNESS.vkey}\nquorum w1\n",
         "quorum 'w1' not met: no valid cosignature by witness 'w1'"),
    ]  # fmt: skip
    for i, (text, message) in enumerate(cases):
        policy = exchange.books(f"policy{i}.txt", text)
        for books in (exchange.clean, exchange.mismatched):  # a clean answer is refused just the same
            err = _error(cli, str(books), "--policy", str(policy))
            assert err["check"] == "checkpoint" and "index" not in err and message in err["message"], err
        _, stderr = cli("reconcile", str(exchange.clean), "--policy", str(policy), code=EXIT_UNVERIFIED)
        assert stderr.startswith("carbonledger: the node's answer does not verify: checkpoint: ") and message in stderr
        assert stderr.count("\n") == 1
    # A policy file that does not parse is bad input, as for label verify.
    bad = exchange.books("bad-policy.txt", "not a policy\n")
    _, stderr = cli("reconcile", str(exchange.clean), "--policy", str(bad), code=2)
    assert stderr.startswith(f"carbonledger: policy file {bad}: ")


# -- a lying node ---------------------------------------------------------------------------------


def _naming(change: Callable[[Mismatch], tuple[int, ...]]) -> type[Reconciler]:
    class Lying(Reconciler):
        """The node's reconciler, with the proving indexes of its answer replaced."""

        def reconcile(self, rows: Sequence[BookRow], tree_size: int = 0) -> tuple[int, list[Mismatch]]:
            size, out = super().reconcile(rows, tree_size)
            return size, [dataclasses.replace(m, proving_indexes=change(m)) for m in out]

    return Lying


def _checkpoint(change: Callable[[Ledger, int], str]) -> type[Reconciler]:
    class Lying(Reconciler):
        """The node's reconciler, with the checkpoint of its answer replaced."""

        def checkpoint(self, size: int) -> str:
            return change(self._ledger, size)

    return Lying


def _forged_root(ledger: Ledger, size: int) -> str:
    # Signed by the log's own key: only the tree behind it is false.
    cp = parse_checkpoint(parse_note(ledger.checkpoint(size)).text)
    return sign_checkpoint(Checkpoint(cp.origin, cp.size, bytes(32)), key("LOG"))


LIES = {
    "an entry that moves no units": (
        lambda x: _naming(lambda m: (x.register,)),
        lambda x: ("units", x.register, "is a org.register entry, which changes no gec units"),
    ),
    "a transfer of other units": (
        lambda x: _naming(lambda m: (x.transfer,) if m.start >= 50 else m.proving_indexes),
        lambda x: ("units", x.transfer, "gec.transfer of gec:0-50 does not touch gec:50-60"),
    ),
    "an entry past the checkpoint": (
        lambda x: _naming(lambda m: (x.ledger.size + 5,)),
        lambda x: ("inclusion", x.ledger.size + 5, f"not below the checkpoint's tree size {x.ledger.size}"),
    ),
    "an older checkpoint": (
        lambda x: _checkpoint(lambda led, size: led.checkpoint(size - 1)),
        lambda x: ("checkpoint", None, f"the checkpoint is of tree size {x.ledger.size - 1}, the answer says {x.ledger.size}"),
    ),
    "a checkpoint of a forged tree": (
        lambda x: _checkpoint(_forged_root),
        lambda x: ("inclusion", x.issue, "root mismatch"),
    ),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_node_is_refused_naming_the_check_and_the_entry(exchange: Exchange, lie: str) -> None:
    make, expect = LIES[lie]
    cli = exchange.serve(make(exchange))
    check, index, message = expect(exchange)
    proofs = exchange.tmp / "proofs"
    err = _error(cli, str(exchange.mismatched), "--policy", str(exchange.policy), "--proofs", str(proofs))
    assert (err["check"], err.get("index")) == (check, index) and message in err["message"], err
    if index is not None:
        assert f"proving entry {index}: {check}: " in err["message"]
    assert not proofs.exists() or list(proofs.iterdir()) == []  # no evidence of a refused answer
    # Without --policy the lie goes through, as it did before: exit 1.
    cli.json("reconcile", str(exchange.mismatched), code=EXIT_MISMATCHES)


@pytest.mark.parametrize("call", ["entry", "inclusion_proof"])
def test_an_altered_entry_or_inclusion_proof_is_refused(exchange: Exchange, call: str) -> None:
    cli = exchange.serve()
    real = getattr(LedgerClient, call)

    def entry(self: LedgerClient, index: int) -> bytes:
        # Another entry's bytes, which do touch the units: only the hash tells.
        return real(self, exchange.transfer if index == exchange.issue else index)  # type: ignore[no-any-return]

    def inclusion_proof(self: LedgerClient, index: int, tree_size: int = 0) -> Any:
        proof = real(self, index, tree_size)
        if index == exchange.retire:
            proof.hashes[0] = bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:]
        return proof

    exchange.monkeypatch.setattr(LedgerClient, call, entry if call == "entry" else inclusion_proof)
    bad = exchange.issue if call == "entry" else exchange.retire
    err = _error(cli, str(exchange.mismatched), "--policy", str(exchange.policy))
    assert (err["check"], err["index"]) == ("inclusion", bad) and "root mismatch" in err["message"], err



# -- step (3) on its own: which entries act on which units ---------------------------------------


def _entries() -> dict[str, bytes]:
    net = Net()
    claims = {"claims": {"gec": [{"start": 0, "end": 10}, {"start": 30, "end": 40}]}}
    publish = pact_doc("steel", "2.0")
    return {
        "gec.transfer": net.transfer("gec", "STEEL", 0, 50, "EXCH"),
        "ccer.transfer": net.transfer("ccer", "STEEL", 0, 50, "EXCH"),
        "gec.retire": net.retire("STEEL", 90, 100),
        "ccer.cancel": net.op("ccer.cancel", "STEEL", {"start": 5, "end": 6, "beneficiary": "b", "purpose": "p",
                                                       "periodStart": 1_704_067_200, "periodEnd": 1_735_689_600}),
        "claim": net.op("pcf.publish", "STEEL", {"footprint": publish, **claims}),
        "pcf.publish": net.op("pcf.publish", "STEEL", {"footprint": publish}),
        "gec.issue": net.gec_issue("B1"),
        "ccer.register_project": net.op("ccer.register_project", "REG", {"projectId": "C1"}, signer=key("REG")),
        "org.register": net.register("STEEL"),
    }


TOUCHES = [
    # (entry, asset, batch, start, end, refusal or None)
    ("gec.transfer", "gec", "B1", 40, 60, None),
    ("gec.transfer", "gec", "", 0, 0, None),  # a total: the asset is what can be checked
    ("gec.transfer", "gec", "B1", 50, 60, "gec.transfer of gec:0-50 does not touch gec:50-60"),
    ("gec.transfer", "ccer", "", 0, 10, "is a gec.transfer entry, which changes no ccer units"),
    ("ccer.transfer", "ccer", "", 49, 50, None),
    ("gec.retire", "gec", "", 95, 96, None),
    ("gec.retire", "gec", "", 80, 90, "gec.retire of gec:90-100 does not touch gec:80-90"),
    ("ccer.cancel", "ccer", "", 0, 6, None),
    ("ccer.cancel", "gec", "", 0, 6, "is a ccer.cancel entry, which changes no gec units"),
    ("claim", "gec", "", 35, 36, None),
    ("claim", "gec", "", 10, 30, "pcf.publish of gec:0-10, gec:30-40 does not touch gec:10-30"),
    ("claim", "ccer", "", 0, 10, "is a pcf.publish entry, which changes no ccer units"),
    ("pcf.publish", "gec", "", 0, 10, "is a pcf.publish entry, which changes no gec units"),
    ("gec.issue", "gec", "B1", 0, 10, None),
    ("gec.issue", "gec", "", 0, 0, None),
    ("gec.issue", "gec", "B2", 0, 10, "gec.issue of batch B1, not of batch B2"),
    ("gec.issue", "ccer", "B1", 0, 10, "is a gec.issue entry, which changes no ccer units"),
    ("ccer.register_project", "gec", "B1", 0, 10, None),  # it froze the project's GEC
    ("ccer.register_project", "ccer", "", 0, 10, "is a ccer.register_project entry"),
    ("org.register", "gec", "", 0, 10, "is a org.register entry, which changes no gec units"),
]


@pytest.mark.parametrize(("name", "asset", "batch", "start", "end", "refusal"), TOUCHES)
def test_which_entries_act_on_the_units_of_a_mismatch(
    name: str, asset: str, batch: str, start: int, end: int, refusal: str | None
) -> None:
    entry = _entries()[name]
    if refusal is None:
        assert check_entry_touches(7, entry, asset=asset, batch=batch, start=start, end=end) == parse_operation(
            parse_envelope(entry).payload
        ).op
        return
    with pytest.raises(AnswerNotVerified) as err:
        check_entry_touches(7, entry, asset=asset, batch=batch, start=start, end=end)
    assert (err.value.check, err.value.index) == ("units", 7) and refusal in err.value.detail


@pytest.mark.parametrize("asset", ["xyz", "", "__class__", "model_fields", "GEC"])
def test_a_mismatch_of_no_known_asset_is_refused_not_a_crash(asset: str) -> None:
    # The asset is the node's word. One that is no asset (a lying or broken
    # node) must end in exit 4, not an AttributeError out of the CLI, whose
    # exit status 1 would read as "mismatches found".
    for name in ("claim", "gec.transfer"):
        with pytest.raises(AnswerNotVerified) as err:
            check_entry_touches(7, _entries()[name], asset=asset, batch="", start=0, end=10)
        assert (err.value.check, err.value.index) == ("units", 7)


def test_an_entry_that_is_no_operation_is_refused() -> None:
    for entry in (b"not json", b'{"payload":"","payloadType":"text/plain","signatures":[]}'):
        with pytest.raises(AnswerNotVerified, match=r"proving entry 3: units: not an operation entry: malformed "):
            check_entry_touches(3, entry, asset="gec", batch="", start=0, end=1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(0, 80), st.lists(row_strategy, min_size=1, max_size=12))
def test_every_proving_entry_of_an_honest_answer_acts_on_its_units(seed: int, ops: int, rows: list[BookRow]) -> None:
    # Step (3) must never refuse what the node honestly names: on random
    # ledgers (transfers, retirements, claims, issues, the freeze of a CCER
    # registration) and random books, at the latest size and an older one.
    w = new_world()
    drive(w, random.Random(seed), ops, "e")
    rows = counted_once(rows)
    entries = {index: entry for entry, index, _ in w.entries}
    for size in (w.index, max(1, w.index - ops // 2)):
        for m in reconcile(w.kv, rows, size):
            for index in m.proving_indexes:
                assert index < size
                check_entry_touches(index, entries[index], asset=m.asset, batch=m.batch, start=m.start, end=m.end)
