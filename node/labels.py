"""The carbon label builder hook of the node.

A label (shared/ARCHITECTURE.md section 6) bundles a footprint's entry and
tlog-proof with its attestations, its components' labels and the retirements
behind its claims. The node serves whatever :data:`LabelBuilder` it was given;
the default is :func:`node.label_builder.label_builder`.
"""

from __future__ import annotations

from typing import Protocol

from ledger.log import Ledger

__all__ = ["LabelBuilder"]


class LabelBuilder(Protocol):
    def __call__(self, ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
        """The label file of ``footprint_id`` against tree ``tree_size``, and
        its media type. Raises NotFound for an unknown footprint."""
        ...
