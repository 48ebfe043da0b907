"""The CLI's verbs beyond keygen and audit, one module per family. Each
module's ``register(sub)`` adds its parsers to ``carbonledger``."""

from __future__ import annotations

import argparse

from client.commands import ccer, footprints, gec, labels, orgs, queries, reconcile, seed, tiles
from client.commands._common import report_error

__all__ = ["register_all", "report_error"]


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for module in (orgs, footprints, gec, ccer, queries, labels, reconcile, seed, tiles):
        module.register(sub)
