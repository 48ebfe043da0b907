"""What every CLI verb shares: node and signer options, input parsing, output
and the mapping from errors to exit codes.

Exit codes of every verb:

- 0: done;
- 1: the ledger said no: a rejected operation (the rule and field are
  printed), an unknown id, a label or proof that does not verify (a label
  file that was read but is malformed included: see commands/labels.py), a
  reconciliation with mismatches;
- 2: bad input: a missing or unreadable file, bad JSON, a bad range or date,
  or a request the node refused as malformed;
- 3: the node could not be reached or failed (UNAVAILABLE, deadline, INTERNAL),
  or a tlog-tiles server did not answer with the resource (``tiles``);
- 4: ``reconcile --policy`` only: the node's answer did not verify (its
  checkpoint, or a proving entry's inclusion or relevance), so no verdict on
  the books is given: it must not read as 1, "mismatches found".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, MalformedError, NotFound, StateRuleError, VerificationError

__all__ = [
    "DEFAULT_NODE",
    "EXIT_BAD_INPUT",
    "EXIT_NO",
    "EXIT_NODE",
    "EXIT_UNVERIFIED",
    "UsageError",
    "add_node_options",
    "add_signer_options",
    "connect",
    "emit",
    "exit_code",
    "index_or_size",
    "load_policy",
    "load_signer",
    "parse_range",
    "parse_time",
    "read_json",
    "read_text",
    "report_error",
    "submit",
]

#: The node a verb talks to unless ``--node`` or ``CARBONLEDGER_NODE`` says
#: otherwise: the address ``carbonledger serve`` listens on by default.
DEFAULT_NODE = "127.0.0.1:7400"

EXIT_NO = 1
EXIT_BAD_INPUT = 2
EXIT_NODE = 3
EXIT_UNVERIFIED = 4


class UsageError(LedgerError):
    """Bad input given to the CLI itself (a file, a range, a date): exit 2."""


# -- options ------------------------------------------------------------------


def seconds(text: str) -> float:
    """An argparse type for ``--timeout``: a positive, finite number of
    seconds (0, -1 or nan made every call fail with DEADLINE_EXCEEDED)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def node_address(text: str) -> str:
    """An argparse type for ``--node``: ``HOST:PORT`` (``[v6]:PORT``) with a
    port from 1 to 65535. grpc dials a port past 65535 wrapped round (99999
    as 34463), so a typo could reach another service."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with a port from 1 to 65535")
    return text


def _whole_number(text: str, what: str) -> int:
    """``text`` as a whole number the wire's uint64 fields can carry, or an
    argparse error naming ``what`` it should have been."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{value} is not {what} (0 or more)")
    return value


def index_or_size(text: str) -> int:
    """An argparse type for tree sizes and entry indexes, refused here with
    the option's name (protobuf raised a ValueError for -1)."""
    return _whole_number(text, "a tree size or an entry index")


def count(text: str) -> int:
    """An argparse type for a number of things, such as events to wait for."""
    return _whole_number(text, "a count")


def add_node_options(p: argparse.ArgumentParser) -> None:
    """``--node``, TLS files, ``--timeout`` and ``--json``."""
    g = p.add_argument_group("node")
    g.add_argument("--node", type=node_address, default=os.environ.get("CARBONLEDGER_NODE", DEFAULT_NODE),
                   help=f"HOST:PORT of the node (env CARBONLEDGER_NODE; default {DEFAULT_NODE})")
    g.add_argument("--tls-ca", metavar="PEM", help="CA certificates that signed the node's certificate (TLS)")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate chain (mTLS)")
    g.add_argument("--tls-key", metavar="PEM", help="client private key (mTLS)")
    g.add_argument("--timeout", type=seconds, default=30.0, help="deadline of each call, seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_signer_options(p: argparse.ArgumentParser) -> None:
    """``--org`` and ``--key``: who acts, and the key that signs for it."""
    g = p.add_argument_group("signer")
    g.add_argument("--org", required=True, metavar="ORG_ID", help="the organization acting")
    g.add_argument("--key", required=True, metavar="KEYFILE",
                   help="the org's signed-note private key file (from carbonledger keygen)")
    g.add_argument("--nonce", help="makes an otherwise identical operation distinct")


# -- input ----------------------------------------------------------------------


#: The most any input file is read into memory unless its reader says less:
#: far above a footprint, key or policy, and enough for a large book of holdings.
MAX_INPUT_BYTES = 64 << 20


def read_bytes(path: str, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The file's bytes; a UsageError naming the file if it cannot be read or
    is larger than ``max_bytes`` (read no further, so ``/dev/zero`` or a
    runaway file cannot exhaust memory)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UsageError(f"{what} {path}: larger than {max_bytes} bytes")
    return data


def read_text(path: str, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The file as UTF-8 text; see :func:`read_bytes`."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: cannot read: {exc}") from None


def read_json(path: str, what: str = "JSON file") -> Any:
    return parse_json(read_text(path, what), f"{what} {path}")


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a UsageError naming ``what`` and where it fails."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # the decoder recurses per nesting level
        raise UsageError(f"{what}: not valid JSON: nested too deeply") from None


def load_signer(path: str) -> Any:
    from ledger.keys import Signer

    text = read_text(path, "key file").strip()
    if not text.startswith("PRIVATE+KEY+"):
        raise UsageError(f"key file {path}: not a signed-note private key (PRIVATE+KEY+...)")
    try:
        return Signer.from_key(text)
    except MalformedError as exc:
        raise UsageError(f"key file {path}: {exc.reason}") from None


def load_policy(path: str) -> Any:
    """The C2SP tlog-policy in file ``path`` (a ``ledger.policy.Policy``); a
    UsageError naming the file and line if it cannot be read or parsed."""
    from ledger.policy import MAX_POLICY_SIZE, parse_policy

    try:
        return parse_policy(read_text(path, "policy file", MAX_POLICY_SIZE))
    except MalformedError as exc:
        raise UsageError(f"policy file {path}: {exc.what}: {exc.reason}") from None


def load_vkey(text_or_path: str) -> str:
    """A verifier key given inline or as a file holding one."""
    from ledger.keys import Verifier

    text = text_or_path
    if "+" not in text_or_path or Path(text_or_path).is_file():
        text = read_text(text_or_path, "verifier key file").strip()
    if text.startswith("PRIVATE+KEY+"):
        from ledger.keys import Signer

        try:
            return str(Signer.from_key(text).vkey)
        except MalformedError as exc:
            raise UsageError(f"key {text_or_path}: {exc.reason}") from None
    try:
        return str(Verifier.from_vkey(text).vkey)
    except MalformedError as exc:
        raise UsageError(f"verifier key {text_or_path}: {exc.reason}") from None


def parse_range(text: str) -> tuple[int, int]:
    """``START-END``: the serials ``[START, END)``, as the ledger prints them
    (``gec:1000-2000``). A ``gec:``/``ccer:`` prefix is allowed."""
    body = text.split(":", 1)[1] if ":" in text else text
    parts = body.split("-")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"bad range {text!r}: write START-END, e.g. 1000-2000 (END exclusive)")
    start, end = int(parts[0]), int(parts[1])
    if not start < end:
        raise UsageError(f"bad range {text!r}: END must be greater than START")
    check_serial(end, f"bad range {text!r}")
    return start, end


def check_serial(value: int, what: str) -> None:
    """Serials and amounts stay below 2**53, as the ledger's records do, so
    that a number past it is refused here rather than by the wire format."""
    from ledger.records import MAX_SERIAL

    if value > MAX_SERIAL:
        raise UsageError(f"{what}: {value} is past the largest serial or amount, {MAX_SERIAL}")


def parse_time(text: str) -> int:
    """Unix seconds from ``YYYY-MM-DD`` (UTC midnight), an RFC 3339 date-time,
    or a plain integer of seconds."""
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            dt = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(f"bad date {text!r}: write YYYY-MM-DD, an RFC 3339 date-time or unix seconds") from None
    return int(dt.timestamp())


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the node -----------------------------------------------------------------


def connect(args: argparse.Namespace) -> Any:
    """A LedgerClient for ``args.node`` with the TLS files given."""
    import grpc

    from client.sdk import LedgerClient

    credentials = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        def pem(path: str | None, what: str) -> bytes | None:
            # Checked here: grpc takes any bytes, logs its own errors and
            # fails every call later with no reason.
            if not path:
                return None
            data = read_text(path, "PEM file").encode()
            try:
                if what == "private key":
                    serialization.load_pem_private_key(data, password=None)
                else:
                    x509.load_pem_x509_certificates(data)
            except ValueError:
                raise UsageError(f"{path}: not a PEM {what}") from None
            except TypeError as exc:  # an encrypted key: grpc takes none
                raise UsageError(f"{path}: {exc}") from None
            return data

        credentials = grpc.ssl_channel_credentials(
            root_certificates=pem(args.tls_ca, "certificate"),
            private_key=pem(args.tls_key, "private key"),
            certificate_chain=pem(args.tls_cert, "certificate"),
        )
    return LedgerClient(args.node, credentials=credentials, timeout=args.timeout, retries=2)


def submit(args: argparse.Namespace, op: str, body: dict[str, Any], *, what: str = "") -> Any:
    """Sign ``op`` for ``args.org`` with ``args.key``, submit it and print
    the receipt. Returns the SubmitResult."""
    from ledger.records.build import signed_op

    signer = load_signer(args.key)
    envelope = signed_op(op, args.org, int(time.time()), body, [signer], nonce=args.nonce)
    with connect(args) as client:
        result = client.submit(envelope)
    events = [{"kind": e.kind, "subject": e.subject, "refs": list(e.refs)} for e in result.events]
    lines = [
        f"already in the log at index {result.index}" if result.duplicate
        else f"accepted: {result.op} at index {result.index} (tree size {result.tree_size})"
    ]  # fmt: skip
    if what:
        lines.append(f"  {what}")
    lines += [f"  {e['kind']}: {e['subject']}" + (f" -> {', '.join(e['refs'])}" if e["refs"] else "") for e in events]
    emit(args, "\n".join(lines), {
        "index": result.index, "duplicate": result.duplicate, "op": result.op or op,
        "tree_size": result.tree_size, "events": events,
    })  # fmt: skip
    return result


# -- output -------------------------------------------------------------------


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        print(human)


@contextmanager
def progress(args: argparse.Namespace, *, total: int | None = None, unit: str = "it", desc: str = "") -> Iterator[Any]:
    """A tqdm bar on stderr, silent under ``--json`` or ``--quiet`` or when
    stderr is not a terminal (unless ``--progress``)."""
    from tqdm import tqdm

    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    disable = quiet or not (sys.stderr.isatty() or getattr(args, "progress", False))
    bar = tqdm(total=total, unit=unit, desc=desc, disable=disable, file=sys.stderr, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def exit_code(exc: LedgerError) -> int:
    from client.errors import RpcFailure
    from client.reconcile_evidence import AnswerNotVerified
    from client.tiles import TilesFetchError

    if isinstance(exc, AnswerNotVerified):
        return EXIT_UNVERIFIED
    if isinstance(exc, (UsageError, MalformedError)):
        return EXIT_BAD_INPUT
    if isinstance(exc, (RpcFailure, TilesFetchError)):
        return EXIT_NODE
    if isinstance(exc, (StateRuleError, NotFound, VerificationError)):
        return EXIT_NO
    return EXIT_BAD_INPUT


def describe(exc: LedgerError) -> str:
    """One line naming the rule and field of a rejection, the field and
    reason of malformed input, or what failed."""
    from client.errors import RpcFailure

    if isinstance(exc, StateRuleError):
        field = f", field {exc.field}" if exc.field else ""
        return f"rejected by rule {exc.rule}{field}: {exc.detail}"
    if isinstance(exc, MalformedError):
        return f"bad input: {exc.what}: {exc.reason}"
    if isinstance(exc, RpcFailure):
        return f"node failed: {exc}"
    return str(exc)


def report_error(exc: LedgerError, *, json_output: bool = False) -> int:
    """Print ``exc`` as one line on stderr (and as JSON on stdout under
    ``--json``) and return its exit code."""
    line = describe(exc)
    print(f"carbonledger: {line}", file=sys.stderr)
    if json_output:
        err: dict[str, Any] = {"type": type(exc).__name__, "message": line}
        for attr in ("rule", "field", "detail", "what", "reason", "kind", "key", "check", "index", "url", "status"):
            value = getattr(exc, attr, None)
            if isinstance(value, (str, int)):
                err[attr] = value
        print(json.dumps({"ok": False, "error": err}, indent=2, sort_keys=True))
    return exit_code(exc)
