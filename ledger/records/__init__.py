"""Payload models: what an entry means, parsed strictly at the edge.

pydantic lives here and only here; the state machine receives the parsed
:class:`Operation` (whose body is a frozen model) and plain ints and strings.
"""

from ledger.records._base import MAX_SERIAL
from ledger.records.ops import (
    OP_TYPES,
    PAYLOAD_TYPE,
    PAYLOAD_VERSION,
    ROLES,
    Operation,
    parse_operation,
)
from ledger.records.pact import (
    DECLARED_UNITS,
    FootprintSummary,
    ProductFootprint,
    parse_product_footprint,
)

__all__ = [
    "MAX_SERIAL",
    "OP_TYPES",
    "PAYLOAD_TYPE",
    "PAYLOAD_VERSION",
    "ROLES",
    "Operation",
    "parse_operation",
    "DECLARED_UNITS",
    "FootprintSummary",
    "ProductFootprint",
    "parse_product_footprint",
]
