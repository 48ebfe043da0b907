"""Helpers that make operation payloads and sign them into DSSE envelopes.

The node's seeding, the CLI, the demo and the tests all build operations the
same way: a compact, sorted-key JSON payload (:func:`op_payload`) wrapped in a
DSSE envelope signed by one or more org keys (:func:`signed_op`). Sorting is
not required by the parser (any valid JSON is accepted) but makes the bytes
reproducible, so an idempotent resubmission really is byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.envelope import encode_envelope, sign_envelope
from ledger.keys import Signer
from ledger.records.ops import PAYLOAD_TYPE, PAYLOAD_VERSION

__all__ = [
    "op_payload",
    "signed_op",
    "org_spec",
    "serial_range",
]


def op_payload(
    op: str, org: str, time: int, body: Mapping[str, Any], *, nonce: str | None = None
) -> bytes:
    """The canonical payload bytes of an operation (not validated here)."""
    obj: dict[str, Any] = {"v": PAYLOAD_VERSION, "op": op, "org": org, "time": time, "body": body}
    if nonce is not None:
        obj["nonce"] = nonce
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_op(
    op: str,
    org: str,
    time: int,
    body: Mapping[str, Any],
    signers: Sequence[Signer],
    *,
    nonce: str | None = None,
) -> bytes:
    """The envelope bytes (ready to submit) of an operation signed by ``signers``."""
    payload = op_payload(op, org, time, body, nonce=nonce)
    return encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, list(signers)))


def org_spec(org_id: str, name: str, roles: Sequence[str], keys: Sequence[Signer | str]) -> dict[str, Any]:
    """The body of ``org.register`` (or one genesis authority)."""
    return {
        "id": org_id,
        "name": name,
        "roles": list(roles),
        "keys": [k if isinstance(k, str) else k.vkey for k in keys],
    }


def serial_range(start: int, end: int) -> dict[str, int]:
    """A claim range ``[start, end)``."""
    return {"start": start, "end": end}
