"""Logical streams, the message types each carries, and one decoder per stream.

A stream is the logical name of a Kafka topic (the physical name adds the configured
prefix, see ``Settings.topic``). Every message is keyed by ``partner_id`` so that one
partner's messages stay in order on one partition. Decoders are built once, here, at
import: building one compiles the type, and this reads no configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec

from schemas.commands import (
    ALL_PARTNER_COMMANDS,
    COMMAND_TYPES,
    Command,
)
from schemas.events import (
    EVENT_TYPES,
    Envelope,
    Event,
    PartnerRegistered,
    PartnerUpdated,
    SaleRecorded,
    SaleReversed,
    SurveyCompleted,
    TrainingCompleted,
)

Message = Event | Command

SALES = "sales"
SURVEYS = "surveys"
TRAININGS = "trainings"
PARTNERS = "partners"
COMMANDS = "commands"
# The worker's own commands topic: the timer's ClosePeriod and AdvanceClock (see
# processors.worker.clock). Only the worker principal may write it and finance's commands are not
# carried on it, so a worker's credentials cannot issue a payout or an adjustment.
CLOCK = "clock"


class _Tag(msgspec.Struct):
    """Just the tag; other fields are skipped unread."""

    type: str


_TAG_DECODER = msgspec.json.Decoder(_Tag)


@dataclass(frozen=True, slots=True)
class Stream:
    """One logical stream: its name, the types it carries, and its decoder."""

    name: str
    types: tuple[type[Envelope], ...]
    decoder: msgspec.json.Decoder[Any]

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.__name__ for t in self.types)

    def decode(self, raw: bytes) -> Message:
        """Decode and validate one message; raises msgspec's errors or UnicodeDecodeError."""
        message: Message = self.decoder.decode(raw)
        if len(self.types) == 1:
            # msgspec insists on the tag only when it has to choose between union members;
            # a single-type decoder would take a message without ``type``, which the
            # published schema forbids. The second pass reads one field and skips the rest.
            _TAG_DECODER.decode(raw)
        return message


def _stream(name: str, *types: type[Envelope]) -> Stream:
    # A union of tagged structs decodes by looking up the tag: no trial and error.
    union: Any = types[0] if len(types) == 1 else _union(types)
    return Stream(name, types, msgspec.json.Decoder(union))


def _union(types: tuple[type[Envelope], ...]) -> Any:
    union: Any = types[0]
    for member in types[1:]:
        union = union | member
    return union


STREAMS: Mapping[str, Stream] = MappingProxyType(
    {
        s.name: s
        for s in (
            _stream(SALES, SaleRecorded, SaleReversed),
            _stream(SURVEYS, SurveyCompleted),
            _stream(TRAININGS, TrainingCompleted),
            _stream(PARTNERS, PartnerRegistered, PartnerUpdated),
            _stream(COMMANDS, *COMMAND_TYPES),
        )
    }
)

# Streams the ledger writes and reads itself, outside the contract with upstream teams:
# decoded like the others, but no type is routed to them (``stream_of``) and they are not
# in the published schemas.
INTERNAL_STREAMS: Mapping[str, Stream] = MappingProxyType(
    {CLOCK: _stream(CLOCK, *ALL_PARTNER_COMMANDS)}
)

# Every type, for files that mix streams (a JSONL upload): decode first, then route each
# message to the stream of its type. Not a Kafka stream, so not in STREAMS.
ANY = _stream("any", *EVENT_TYPES, *COMMAND_TYPES)

MESSAGE_TYPES: Mapping[str, type[Envelope]] = MappingProxyType({t.__name__: t for t in ANY.types})

_STREAM_OF: Mapping[type[Envelope], str] = MappingProxyType(
    {t: s.name for s in STREAMS.values() for t in s.types}
)


def stream_of(message_type: type[Envelope]) -> str:
    """The stream that carries ``message_type`` (e.g. ``SaleRecorded`` -> ``"sales"``)."""
    try:
        return _STREAM_OF[message_type]
    except KeyError:
        raise ValueError(f"{message_type.__name__} is carried by no stream") from None


def get_stream(name: str) -> Stream:
    """The stream called ``name``; a ValueError lists the known names otherwise."""
    found = STREAMS.get(name) or INTERNAL_STREAMS.get(name)
    if found is None:
        known = ", ".join([*STREAMS, *INTERNAL_STREAMS])
        raise ValueError(f"unknown stream {name!r}; streams are {known}")
    return found
