"""Which state machine a ledger was created with, by the id it recorded."""

from __future__ import annotations

from ledger.errors import StorageError
from ledger.log import StateMachineHook

__all__ = ["machine_for"]


def machine_for(machine_id: str) -> StateMachineHook | None:
    """The state machine recorded as ``machine_id`` (``"none"``: a plain log)."""
    if machine_id == "none":
        return None
    # Imported here: a plain log and the offline verifier never need the rules.
    from ledger.state import MACHINE_ID, StateMachine

    if machine_id == MACHINE_ID:
        return StateMachine()
    raise StorageError(f"unknown state machine {machine_id!r}; this build runs {MACHINE_ID!r}")
