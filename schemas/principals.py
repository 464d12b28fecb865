"""Who publishes what: each topic is written by one Kafka principal, and that is what can
be proven of a message's origin.

Kafka does not stamp the producing principal on a message: a header saying "finance" is
only what the producer claims. What the broker does enforce is its ACLs: a topic that one
principal alone may write holds only messages that principal published (or a super user:
the broker itself and the administrator, whose credentials produce nothing in this
system). So each topic has one publisher below; `stack.acls` grants WRITE from this table
and nothing else, and the worker records, with every accepted message, the principal the
topic it came from proves (``inbox.principal``). Which message types a principal may issue
is which types its topics carry (``schemas.streams``): finance every command on
``commands``, the worker only the timer's ``ClosePeriod`` and ``AdvanceClock`` on
``clock``; anything else there is dead-lettered like any type on the wrong stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.outcomes import REFUSALS
from schemas.settings import Principal
from schemas.streams import CLOCK, COMMANDS, PARTNERS, SALES, SURVEYS, TRAININGS

DEADLETTERS = "deadletters"
# Checkpoints of the chain heads, exported by the auditors' tools.
CHECKPOINTS = "checkpoints"

PUBLISHER: Mapping[str, Principal] = MappingProxyType(
    {
        SALES: "upstream",
        SURVEYS: "upstream",
        TRAININGS: "upstream",
        PARTNERS: "upstream",
        COMMANDS: "finance",
        CLOCK: "worker",
        DEADLETTERS: "worker",
        REFUSALS: "worker",
        CHECKPOINTS: "auditor",
    }
)


def publisher_of(stream: str) -> Principal:
    """The one principal that may write ``stream``'s topic."""
    try:
        return PUBLISHER[stream]
    except KeyError:
        raise ValueError(f"stream {stream!r} has no publisher; add it to PUBLISHER") from None
