"""Commands finance sends through the API: validated as on the topic, then published to the
commands topic, keyed by partner, with the sender's key id in a header.

The command is checked by the same decoder the workers use (``schemas.codec.decode`` on its
canonical bytes), so what the API accepts the ledger accepts; a rejected one is a 422
problem with the reason code and the path of the bad value. The producer is built in one
place (`Wiring.commands_producer`): the Kafka principal of finance is wired there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import msgspec

from projections.api import problems
from projections.api.keys import Principal
from schemas.codec import Rejection, decode, encode
from schemas.commands import Command
from schemas.streams import COMMANDS

if TYPE_CHECKING:
    from projections.api.app import Wiring

PRINCIPAL_HEADER = "incentives-principal"


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """The command is on the commands topic; the ledger applies it in order."""

    event_id: uuid.UUID
    type: str
    topic: str
    partition: int
    offset: int


async def send_command(wiring: Wiring, principal: Principal, command: Command) -> Accepted:
    settings = wiring.settings
    body = encode(command)
    checked = decode(COMMANDS, body, now=dt.datetime.now(dt.UTC), limits=settings.limits())
    if isinstance(checked, Rejection):
        raise problems.ApiError(422, "Unprocessable Content",
                                f"{checked.code}: {checked.message} (at {checked.path})")
    try:
        producer = await wiring.commands_producer()
        sent = await producer.send_and_wait(
            settings.topic(COMMANDS), body, key=command.partner_id.encode(),
            headers=[(PRINCIPAL_HEADER, principal.key_id.encode())])
    except Exception as exc:  # noqa: BLE001 - the broker's failure, named for the sender
        wiring.producer = None
        raise problems.ApiError(503, "Service Unavailable",
                                f"the commands topic cannot be reached: {type(exc).__name__}"
                                ) from None
    return Accepted(event_id=command.event_id, type=type(command).__name__,
                    topic=sent.topic, partition=sent.partition, offset=sent.offset)
