"""C2SP tlog-policy: which logs and witnesses a verifier trusts, and the quorum.

The policy text (c2sp.org/tlog-policy) is line based::

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>|none

Items are separated by spaces or tabs; empty lines and ``#`` comments are
ignored. A group or the quorum may only name witnesses and groups defined on
earlier lines, which rules out cycles. A checkpoint satisfies the policy when
one of the logs signed it and the witness cosignatures satisfy the quorum.

Log keys must be type 0x01 note keys whose name is the log's origin; witness
keys must be type 0x04 cosignature keys. :func:`parse_policy` follows the
specification's leniency about spacing and comments (policies are written by
people), and :func:`format_policy` writes one canonical form, with numeric
thresholds, that parses back to an equal :class:`Policy`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint, parse_checkpoint, verify_cosignature
from ledger.errors import InvalidSignature, MalformedError, QuorumNotMet
from ledger.keys import Verifier
from ledger.note import open_note, parse_note

__all__ = [
    "MAX_POLICY_ITEMS",
    "MAX_POLICY_SIZE",
    "QUORUM_NONE",
    "Policy",
    "PolicyGroup",
    "PolicyLog",
    "PolicyWitness",
    "format_policy",
    "parse_policy",
    "quorum_size",
    "verify_checkpoint_policy",
]

#: Largest policy text accepted, in bytes.
MAX_POLICY_SIZE = 1 << 16
#: Most logs, witnesses or groups in one policy; tlog-policy asks for at least 32.
MAX_POLICY_ITEMS = 256
#: The predefined quorum name meaning "no cosignatures needed".
QUORUM_NONE = "none"

_WS_RE = re.compile(r"[ \t]+")
_DECIMAL_RE = re.compile(r"[1-9][0-9]{0,3}")


@dataclass(frozen=True, slots=True)
class PolicyLog:
    """A trusted log: its key (type 0x01; the key name is the origin) and an
    optional URL."""

    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyWitness:
    """A trusted witness: its policy-local ``name``, key (type 0x04) and
    optional URL."""

    name: str
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyGroup:
    """A group that has witnessed a checkpoint when at least ``threshold`` of
    its ``members`` (witness or group names) have."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed tlog-policy. ``quorum`` names a witness, a group, or ``none``.

    Construction checks the structural rules (unique names, members defined
    before use, thresholds in range, unique keys) and raises
    :class:`MalformedError`, so a ``Policy`` always formats and evaluates.
    """

    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[PolicyGroup, ...]
    quorum: str

    def __post_init__(self) -> None:
        if max(len(self.logs), len(self.witnesses), len(self.groups)) > MAX_POLICY_ITEMS:
            raise MalformedError(
                "policy", f"more than {MAX_POLICY_ITEMS} logs, witnesses or groups"
            )
        log_keys = [log.verifier.public_key for log in self.logs]
        if len(set(log_keys)) != len(log_keys):
            raise MalformedError("policy", "duplicate log key")
        for log in self.logs:
            if log.verifier.cosigner:
                raise MalformedError("policy log", f"{log.verifier.name} must be a type 0x01 key")
            _check_token(log.url, "log URL", optional=True)
        wit_keys = [w.verifier.public_key for w in self.witnesses]
        if len(set(wit_keys)) != len(wit_keys):
            raise MalformedError("policy", "duplicate witness key")
        defined: set[str] = set()
        for w in self.witnesses:
            _check_name(w.name, defined)
            if not w.verifier.cosigner:
                raise MalformedError("policy witness", f"{w.name} must be a type 0x04 key")
            _check_token(w.url, "witness URL", optional=True)
            defined.add(w.name)
        # Groups may only use names defined before them; witnesses count as
        # defined first, which is always a valid order to write them in.
        for g in self.groups:
            _check_name(g.name, defined)
            if not g.members:
                raise MalformedError("policy group", f"{g.name} has no members")
            if len(set(g.members)) != len(g.members):
                raise MalformedError("policy group", f"{g.name} lists a member twice")
            for m in g.members:
                if m not in defined:
                    raise MalformedError("policy group", f"{g.name}: {m!r} is not defined before")
            if type(g.threshold) is not int or not 1 <= g.threshold <= len(g.members):
                raise MalformedError("policy group", f"{g.name}: threshold must be in 1..n")
            defined.add(g.name)
        if self.quorum != QUORUM_NONE and self.quorum not in defined:
            raise MalformedError("policy quorum", f"{self.quorum!r} is not defined")


def _check_token(token: str | None, what: str, *, optional: bool = False) -> None:
    if token is None and optional:
        return
    if not isinstance(token, str) or token == "" or _WS_RE.search(token) or _bad_chars(token):
        raise MalformedError(what, "must be a non-empty token without spaces")


def _check_name(name: str, defined: set[str]) -> None:
    _check_token(name, "policy name")
    if name == QUORUM_NONE:
        raise MalformedError("policy name", "'none' is reserved")
    if name in defined:
        raise MalformedError("policy name", f"{name!r} defined twice")


def _bad_chars(text: str) -> bool:
    # tlog-policy allows tab, newline, 0x20-0x7E and any non-ASCII; strings
    # here are Unicode, so 0x7F and other controls are what is left to refuse.
    return any((ord(c) < 0x20 and c not in "\t\n") or ord(c) == 0x7F for c in text)


def parse_policy(data: str | bytes) -> Policy:
    """Parse tlog-policy text.

    The text must be UTF-8 (the specification allows opaque non-ASCII octets;
    this ledger's names and keys are UTF-8 strings) and at most
    :data:`MAX_POLICY_SIZE` bytes. Raises :class:`MalformedError` naming the
    line on any error.
    """
    text = _decode(data)
    logs: list[PolicyLog] = []
    witnesses: list[PolicyWitness] = []
    groups: list[PolicyGroup] = []
    quorum: str | None = None
    defined: set[str] = set()
    for lineno, raw_line in enumerate(text.split("\n"), start=1):
        fields = _WS_RE.split(raw_line.strip(" \t"))
        if fields == [""] or fields[0].startswith("#"):
            continue
        keyword, args = fields[0], fields[1:]
        where = f"policy line {lineno}"
        if keyword == "log":
            if len(args) not in (1, 2):
                raise MalformedError(where, "expected: log <vkey> [<url>]")
            logs.append(PolicyLog(Verifier.from_vkey(args[0]), args[1] if len(args) == 2 else None))
        elif keyword == "witness":
            if len(args) not in (2, 3):
                raise MalformedError(where, "expected: witness <name> <vkey> [<url>]")
            _check_name(args[0], defined)
            url = args[2] if len(args) == 3 else None
            witnesses.append(PolicyWitness(args[0], Verifier.from_vkey(args[1]), url))
            defined.add(args[0])
        elif keyword == "group":
            if len(args) < 3:
                raise MalformedError(where, "expected: group <name> all|any|<k> <member>...")
            name, k_text, members = args[0], args[1], tuple(args[2:])
            _check_name(name, defined)
            for m in members:
                if m not in defined:
                    raise MalformedError(where, f"member {m!r} is not defined on an earlier line")
            if k_text == "all":
                k = len(members)
            elif k_text == "any":
                k = 1
            elif _DECIMAL_RE.fullmatch(k_text):
                k = int(k_text)
            else:
                raise MalformedError(where, "threshold must be all, any or a decimal number")
            groups.append(PolicyGroup(name, k, members))
            defined.add(name)
        elif keyword == "quorum":
            if len(args) != 1:
                raise MalformedError(where, "expected: quorum <name>")
            if quorum is not None:
                raise MalformedError(where, "more than one quorum line")
            if args[0] != QUORUM_NONE and args[0] not in defined:
                raise MalformedError(where, f"quorum {args[0]!r} is not defined on an earlier line")
            quorum = args[0]
        else:
            raise MalformedError(where, f"unknown keyword {keyword!r}")
    if quorum is None:
        raise MalformedError("policy", "missing quorum line")
    return Policy(tuple(logs), tuple(witnesses), tuple(groups), quorum)


def _decode(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_POLICY_SIZE:
            raise MalformedError("policy", f"larger than {MAX_POLICY_SIZE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError("policy", "not valid UTF-8") from None
    elif isinstance(data, str):
        if len(data) > MAX_POLICY_SIZE:
            raise MalformedError("policy", f"larger than {MAX_POLICY_SIZE} bytes")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedError("policy", "not encodable as UTF-8") from None
        text = data
    else:
        raise MalformedError("policy", "must be str or bytes")
    if _bad_chars(text):
        raise MalformedError("policy", "control characters other than tab and newline")
    return text


def format_policy(policy: Policy) -> str:
    """Return the canonical policy text: logs, witnesses, groups, quorum."""
    out: list[str] = []
    for log in policy.logs:
        out.append(" ".join(["log", log.verifier.vkey, *([log.url] if log.url else [])]))
    for w in policy.witnesses:
        out.append(" ".join(["witness", w.name, w.verifier.vkey, *([w.url] if w.url else [])]))
    for g in policy.groups:
        out.append(" ".join(["group", g.name, str(g.threshold), *g.members]))
    out.append(f"quorum {policy.quorum}")
    return "".join(line + "\n" for line in out)


def verify_checkpoint_policy(note_text: str | bytes, policy: Policy) -> Checkpoint:
    """Verify a checkpoint note against a policy and return the checkpoint.

    (1) One of the policy's logs must have signed it, with the checkpoint's
    origin equal to that log key's name; (2) every cosignature present by a
    policy witness must verify; (3) the witnesses that cosigned must satisfy
    the quorum.

    Raises :class:`InvalidSignature` for (1) and (2), :class:`QuorumNotMet`
    naming the unsatisfied groups for (3), :class:`MalformedError` for bad
    input.
    """
    # (1) The log signature, by a policy log whose key name is the origin.
    signed = parse_note(note_text)
    cp = parse_checkpoint(signed.text)
    logs = [log.verifier for log in policy.logs if log.verifier.name == cp.origin]
    if not logs:
        raise InvalidSignature(cp.origin, None, "the policy has no log with this origin")
    open_note(note_text, logs)

    # (2) Cosignatures by known witnesses. A present but bad cosignature by a
    # trusted witness rejects the note, as signed-note asks for known keys.
    present = {(s.name, s.keyid) for s in signed.signatures}
    cosigned: set[str] = set()
    for w in policy.witnesses:
        if (w.verifier.name, w.verifier.keyid) in present:
            verify_cosignature(signed, w.verifier)
            cosigned.add(w.name)

    # (3) The quorum.
    if policy.quorum == QUORUM_NONE:
        return cp
    groups = {g.name: g for g in policy.groups}
    memo: dict[str, bool] = {}
    if not _witnessed(policy.quorum, groups, cosigned, memo):
        raise QuorumNotMet(_explain(policy.quorum, groups, cosigned, memo))
    return cp


def quorum_size(policy: Policy) -> int:
    """The fewest witnesses whose cosignatures meet the policy's quorum (0
    for ``none``): how many independent parties the policy asks to vouch.

    A group of threshold k needs its k cheapest members. That is exact when no
    witness sits in two groups under the quorum (a k-of-n group of witnesses,
    or groups of disjoint groups, as clusters write them). When groups share
    a witness, the sum counts it once per group and may come out larger than
    the true minimum, never smaller; it is capped at the number of distinct
    witnesses under the quorum, which all together always meet it.
    """
    if policy.quorum == QUORUM_NONE:
        return 0
    groups = {g.name: g for g in policy.groups}
    memo: dict[str, int] = {}

    def cheapest(name: str) -> int:
        if name not in groups:
            return 1
        if name not in memo:
            g = groups[name]
            memo[name] = sum(sorted(cheapest(m) for m in g.members)[: g.threshold])
        return memo[name]

    under: dict[str, frozenset[str]] = {}

    def leaves(name: str) -> frozenset[str]:
        if name not in groups:
            return frozenset((name,))
        if name not in under:
            under[name] = frozenset().union(*(leaves(m) for m in groups[name].members))
        return under[name]

    return min(cheapest(policy.quorum), len(leaves(policy.quorum)))


def _witnessed(
    name: str, groups: Mapping[str, PolicyGroup], cosigned: set[str], memo: dict[str, bool]
) -> bool:
    if name not in groups:
        return name in cosigned
    if name not in memo:
        g = groups[name]
        count = sum(1 for m in g.members if _witnessed(m, groups, cosigned, memo))
        memo[name] = count >= g.threshold
    return memo[name]


def _explain(
    name: str, groups: Mapping[str, PolicyGroup], cosigned: set[str], memo: dict[str, bool]
) -> str:
    if name not in groups:
        return f"quorum {name!r} not met: no valid cosignature by witness {name!r}"
    unmet: list[str] = []

    def walk(group: PolicyGroup) -> None:
        have = [m for m in group.members if _witnessed(m, groups, cosigned, memo)]
        missing = [m for m in group.members if m not in have]
        unmet.append(
            f"group {group.name!r} needs {group.threshold} of {len(group.members)}, "
            f"has {len(have)} ({', '.join(have) or 'none'}); missing {', '.join(missing)}"
        )
        for m in missing:
            if m in groups:
                walk(groups[m])

    walk(groups[name])
    return f"quorum {name!r} not met: " + "; ".join(unmet)
