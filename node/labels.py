"""The carbon label builder hook of the node.

A label (shared/ARCHITECTURE.md section 6) bundles a footprint's entry and
tlog-proof with its attestations, its components' labels and the retirements
behind its claims. Building one is the label work of issue 4, still to come;
the node calls whatever :data:`LabelBuilder` it was given and answers
UNIMPLEMENTED until then.
"""

from __future__ import annotations

from typing import Protocol

from ledger.log import Ledger
from node.errors import Unimplemented

__all__ = ["LabelBuilder", "LabelsUnavailable", "no_labels"]


class LabelsUnavailable(Unimplemented):
    """This node has no label builder (UNIMPLEMENTED)."""


class LabelBuilder(Protocol):
    def __call__(self, ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
        """The label file of ``footprint_id`` against tree ``tree_size``, and
        its media type. Raises NotFound for an unknown footprint."""
        ...


def no_labels(ledger: Ledger, footprint_id: str, tree_size: int) -> tuple[bytes, str]:
    raise LabelsUnavailable("this node cannot build carbon labels yet")
