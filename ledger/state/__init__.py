"""The deterministic state machine: organizations, footprints, GEC and CCER.

:class:`StateMachine` is what the log calls inside its write transaction;
:mod:`ledger.state.queries` reads the same KV for the node and clients.
"""

from ledger.state._tx import Applied, ApplyContext, Event
from ledger.state.machine import MACHINE_ID, Prepared, StateMachine

__all__ = ["MACHINE_ID", "Applied", "ApplyContext", "Event", "Prepared", "StateMachine"]
