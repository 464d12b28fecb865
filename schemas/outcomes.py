"""Outcomes: what the ledger tells the senders of commands, named in the past tense.

A command can be well-formed (it passed the contract; otherwise it is a dead letter) and
still be refused by the rules: a payout above the available balance, an approval by the
claim's submitter. Nothing is posted for it. The worker records the reason in PostgreSQL
(``command_refusals``) in the batch's transaction and then publishes it as a
``CommandRefused`` on the ``refusals`` stream (``processors.outbox.refusals``), so the finance
tool that sent the command learns why without reading the database.

Unlike the messages we receive, these are messages we send, so the decoder below tolerates
fields it does not know: schemas only grow, new fields get defaults and go at the end, and a
consumer built against an older version keeps working.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

REFUSALS = "refusals"


class CommandRefused(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    """A valid command that the rules refused; nothing was posted for it.

    ``event_id`` is the refused command's own id, so a consumer can match it to what it
    sent and drop the copies that at-least-once delivery may bring. ``code`` is one of the
    refusal codes in docs/integration.md (more may be added; treat an unknown one as a
    refusal all the same), ``path`` the JSON path of the value it concerns and ``message``
    the reason in words, saying what was expected and what came.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: Annotated[uuid.UUID, Meta(description="The refused command's event_id.")]
    partner_id: Annotated[str, Meta(description="The command's partner; the Kafka key.")]
    command_type: Annotated[str, Meta(description="The command's type, e.g. RecordPayout.")]
    code: Annotated[str, Meta(description="Why, as a refusal code (see the guide).")]
    path: Annotated[str, Meta(description="JSON path of the value concerned, e.g. $.amount.")]
    message: Annotated[str, Meta(description="Why, in words: what was expected, what came.")]
    occurred_at: Annotated[
        datetime, Meta(tz=True, description="The command's occurred_at, in UTC.")
    ]
    refused_at: Annotated[
        datetime, Meta(tz=True, description="When the ledger refused it, in UTC.")
    ]


# The refusals stream carries one type; built once, here, like the source decoders.
REFUSAL_DECODER: msgspec.json.Decoder[CommandRefused] = msgspec.json.Decoder(CommandRefused)
REFUSAL_ENCODER = msgspec.json.Encoder()
