"""The ledger core: assets, accounts, records, postings and the per-partner hash chain.

Everything here is pure: no I/O, no clock, no database. The program engine builds `Draft`s,
`append` turns them into sealed `Record`s for one partner's chain, and the store writes them.

Assets (an asset is a plain string; the helpers below build and check it)
-------------------------------------------------------------------------
- ``EUR``, ``USD``, ...: a currency, ISO 4217 code, amounts in minor units (cents).
- ``PTS:<program_id>``: loyalty points issued by one program (points of two programs never mix).
- ``AWARD:<kind>``: a non-cash award counted in units, e.g. ``AWARD:trip``, ``AWARD:gift``.
- ``MDF:<currency>``: market development funds, minor units of that currency, kept apart
  from cash because they may only be spent on approved marketing.

Chart of accounts
-----------------
Sign convention: a posting's ``amount`` is what the account *receives*. Value moves from
the accounts with negative amounts to those with positive amounts, and every record's
postings sum to zero per asset. Partner accounts therefore hold positive balances, and a
program's expense account goes negative by exactly what the program has spent.

=============================  ===============================================================
``program:<id>:expense``       Source of everything a program awards (cash, points, MDF,
                               awards). Clawbacks flow back into it. Spend = -balance.
``program:<id>:penalty``       Receives penalties charged to partners under the program, so
                               program spend reports show them apart from clawbacks.
``partner:<id>:pending``       Earned but on hold (for example until a return window passes).
``partner:<id>:available``     Released: payable (cash, MDF), redeemable (points), claimable
                               (awards). May go negative when a clawback exceeds it.
``payout:clearing``            Cash and MDF paid out to partners.
``points:redeemed``            Points consumed by redemptions.
``points:expired``             Points that lapsed.
``awards:fulfilled``           Non-cash awards handed over.
``ledger:adjustments``         Counterpart of manual corrections that no program caused.
=============================  ===============================================================

System accounts (payout, points, awards, ledger) are shared by all partners; a partner's
share of them is found through the partner id that every record carries. A program budget
is not an account: program spend is compared with the budget in the program definition by
the spend projection. A ``partner:<id>:...`` account may only appear in that partner's chain.

Record ids
----------
``record_id = uuid5(LEDGER_NAMESPACE, f"{partner_id}:{source_event_ids[0]}:{program_id or ''}:
{rule_id or ''}:{leg}")``. The first source event is the one that triggered the record. The
partner and program are part of the name because one event can produce records for many
partners (a period close pays every ranked partner) and under many programs (two programs
rewarding the same sale with rules both called ``commission``). Ids, partner ids, program ids
and rule ids contain no colon, so the name is unambiguous. Because the id is derived from
stored fields, the verifier recomputes it, which together with uniqueness within a partner
makes ids unique across the whole ledger without holding every id in memory.

The hashed encoding (what an auditor reimplements)
--------------------------------------------------
``canonical_bytes(record)`` is the UTF-8 JSON text of this array, without any whitespace::

    ["incentives-ledger-record/1", record_id, partner_id, seq, kind,
     occurred_at_us, recorded_at_us, program_id, program_version, rule_id, leg,
     [source_event_id, ...], explanation, [[account, asset, amount], ...], prev_hash_hex]

- UUIDs are lowercase hyphenated strings; ``seq``, amounts and ``program_version`` are JSON
  integers; absent program fields are ``null``.
- ``occurred_at_us``/``recorded_at_us`` are integer microseconds since 1970-01-01T00:00:00Z,
  so time zones and RFC 3339 spellings cannot change a hash.
- ``explanation`` is a JSON object with keys sorted by code point at every level; fields that
  hold their default value are left out, so adding an optional field to `Explanation` later
  does not change the hash of any existing record.
- Postings keep their leg order (leg = index in the list).
- ``prev_hash_hex`` is the previous record's hash as 64 lowercase hex digits.
- Strings are escaped as JSON requires and nothing more: ``"``, ``\\``, and U+0000..U+001F
  (``\\b \\f \\n \\r \\t`` in short form, others as ``\\u00xx``); all else is raw UTF-8. This is
  exactly Python's ``json.dumps(value, ensure_ascii=False, separators=(",", ":"),
  sort_keys=True)``.

``hash = sha256(prev_hash || canonical_bytes(record))`` with ``prev_hash`` as 32 raw bytes;
the first record of a chain has ``seq = 1`` and ``prev_hash = GENESIS_HASH`` (32 zero bytes).
The stored column ``ledger_records.explanation`` holds the exact explanation JSON text, so a
record read back from PostgreSQL hashes to the same value.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Set
from datetime import UTC, datetime, timedelta

import msgspec

# The names of the two modules below are part of this one's interface (``core.Posting``,
# ``core.partner_pending``, ...): the core was split by topic, not its callers.
from ledger.accounts import (
    AWARDS_FULFILLED,
    INT64_MAX,
    INT64_MIN,
    LEDGER_ADJUSTMENTS,
    PAYOUT_CLEARING,
    POINTS_EXPIRED,
    POINTS_REDEEMED,
    Account,
    Asset,
    AssetKind,
    Int64,
    InvalidDraft,
    LedgerError,
    account_partner,
    asset_kind,
    award,
    currency,
    is_account,
    mdf,
    partner_available,
    partner_pending,
    points,
    program_expense,
    program_penalty,
)
from ledger.records import (
    VALUE_FREE_KINDS,
    Explanation,
    InputScalar,
    InputValue,
    Posting,
    RecordKind,
    Rounding,
)
from ledger.validation import (
    EXPLANATION_BYTES_MAX,
    POSTINGS_MAX,
    SOURCE_EVENT_IDS_MAX,
    validate_draft,
)

RECORD_FORMAT = "incentives-ledger-record/1"
GENESIS_HASH = bytes(32)
HASH_SIZE = 32
# uuid5(NAMESPACE_URL, "urn:channel-incentives:ledger-record"), written out so that it can
# never drift with a refactoring.
LEDGER_NAMESPACE = uuid.UUID("0152978f-288f-510d-99fa-42183491c70d")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class PartnerMismatch(LedgerError):
    def __init__(self, chain_partner: str, draft_partner: str) -> None:
        self.chain_partner = chain_partner
        self.draft_partner = draft_partner
        super().__init__(
            f"cannot append a draft for partner {draft_partner!r} "
            f"to the chain of partner {chain_partner!r}"
        )


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """A record before it has a place in a chain: no seq, no hashes. Validated on creation."""

    partner_id: str
    kind: RecordKind
    occurred_at: datetime
    recorded_at: datetime
    source_event_ids: tuple[uuid.UUID, ...]
    leg: str
    explanation: Explanation
    postings: tuple[Posting, ...] = ()
    program_id: str | None = None
    program_version: int | None = None
    rule_id: str | None = None

    def __post_init__(self) -> None:
        validate_draft(self)

    @property
    def record_id(self) -> uuid.UUID:
        return derive_record_id(
            self.partner_id, self.source_event_ids[0], self.program_id, self.rule_id, self.leg
        )


class BuiltDraft(Draft, frozen=True, kw_only=True):
    """A draft the program engine built from inputs already validated at the boundary
    (``schemas.codec``: ids, texts, amounts, times), with its id derived once.

    Re-validating what the engine itself composed would cost more than everything else an
    event does; the engine instead asserts the invariants its construction could break,
    and validates in full what grows with the data rather than with one input (the
    drafts of a period close, see ``validate_draft``). Make one with ``built_draft``.
    """

    record_id: uuid.UUID  # stored, not derived on each use

    def __post_init__(self) -> None:
        if self.kind in VALUE_FREE_KINDS:
            assert not self.postings, f"a {self.kind} record moves no value: {self.postings}"
        else:
            assert 2 <= len(self.postings) <= POSTINGS_MAX, (self.kind, self.postings)


def built_draft(
    *,
    partner_id: str,
    kind: RecordKind,
    occurred_at: datetime,
    recorded_at: datetime,
    source_event_ids: tuple[uuid.UUID, ...],
    leg: str,
    explanation: Explanation,
    postings: tuple[Posting, ...],
    program_id: str | None,
    program_version: int | None,
    rule_id: str | None,
) -> BuiltDraft:
    return BuiltDraft(
        partner_id=partner_id, kind=kind, occurred_at=occurred_at, recorded_at=recorded_at,
        source_event_ids=source_event_ids, leg=leg, explanation=explanation,
        postings=postings, program_id=program_id, program_version=program_version,
        rule_id=rule_id,
        record_id=derive_record_id(partner_id, source_event_ids[0], program_id, rule_id, leg),
    )


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A sealed ledger record. Built by `seal`, or by the store from a row (not validated,
    because the verifier must be able to look at whatever the database holds)."""

    record_id: uuid.UUID
    partner_id: str
    seq: int
    kind: RecordKind
    occurred_at: datetime
    recorded_at: datetime
    program_id: str | None
    program_version: int | None
    rule_id: str | None
    leg: str
    source_event_ids: tuple[uuid.UUID, ...]
    explanation: Explanation
    postings: tuple[Posting, ...]
    prev_hash: bytes
    hash: bytes


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a record or checkpoint, for verifiers to report.

    `code` is a stable machine-readable name (the verifier's finding codes use the same).
    """

    code: str
    path: str
    expected: str
    found: str


def derive_record_id(
    partner_id: str,
    source_event_id: uuid.UUID,
    program_id: str | None,
    rule_id: str | None,
    leg: str,
) -> uuid.UUID:
    name = f"{partner_id}:{source_event_id}:{program_id or ''}:{rule_id or ''}:{leg}"
    # uuid.uuid5 spelled out (SHA-1 of namespace and name, version 5, RFC 4122 variant):
    # the same ids, without the standard library's several conversions per id.
    digest = hashlib.sha1(_LEDGER_NAMESPACE_BYTES + name.encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


_LEDGER_NAMESPACE_BYTES = LEDGER_NAMESPACE.bytes


_CANONICAL = msgspec.json.Encoder(order="sorted")


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch; raises TypeError for a naive datetime."""
    return (moment - EPOCH) // _ONE_US


def canonical_bytes(record: Record) -> bytes:
    """The bytes that are hashed: every field but `hash`, as described in the module doc."""
    return _CANONICAL.encode(
        (
            RECORD_FORMAT,
            record.record_id,
            record.partner_id,
            record.seq,
            record.kind,
            (record.occurred_at - EPOCH) // _ONE_US,
            (record.recorded_at - EPOCH) // _ONE_US,
            record.program_id,
            record.program_version,
            record.rule_id,
            record.leg,
            record.source_event_ids,
            record.explanation,
            record.postings,
            record.prev_hash.hex(),
        )
    )


def record_hash(record: Record) -> bytes:
    return hashlib.sha256(record.prev_hash + canonical_bytes(record)).digest()


def explanation_json(explanation: Explanation) -> str:
    """The exact text stored in ``ledger_records.explanation`` (the hashed sub-encoding)."""
    return _CANONICAL.encode(explanation).decode("utf-8")


_EXPLANATION_DECODER = msgspec.json.Decoder(Explanation)


def decode_explanation(text: str | bytes) -> Explanation:
    """Read back a stored explanation; raises msgspec.ValidationError naming the bad path."""
    return _EXPLANATION_DECODER.decode(text)


def check_balanced(record: Record | Draft) -> list[Problem]:
    """Per asset, the postings must sum to zero; one problem per asset that does not."""
    totals: dict[str, int] = {}
    for posting in record.postings:
        totals[posting.asset] = totals.get(posting.asset, 0) + posting.amount
    return [
        Problem(code="unbalanced", path=f"postings[asset={asset}]", expected="sum 0",
                found=f"sum {total}")
        for asset, total in sorted(totals.items())
        if total != 0
    ]


def seal(draft: Draft, seq: int, prev_hash: bytes) -> Record:
    """Give a draft its place in a chain. An unbalanced draft is an engine bug: assert."""
    assert seq >= 1, f"seq starts at 1, got {seq}"
    assert len(prev_hash) == HASH_SIZE, f"prev_hash must be {HASH_SIZE} bytes"
    return _seal(draft, draft.record_id, seq, prev_hash)


def _seal(draft: Draft, record_id: uuid.UUID, seq: int, prev_hash: bytes) -> Record:
    problems = check_balanced(draft)
    assert not problems, f"draft {record_id} does not balance: {problems}"
    unhashed = Record(
        record_id=record_id,
        partner_id=draft.partner_id,
        seq=seq,
        kind=draft.kind,
        occurred_at=draft.occurred_at,
        recorded_at=draft.recorded_at,
        program_id=draft.program_id,
        program_version=draft.program_version,
        rule_id=draft.rule_id,
        leg=draft.leg,
        source_event_ids=draft.source_event_ids,
        explanation=draft.explanation,
        postings=draft.postings,
        prev_hash=prev_hash,
        hash=b"",
    )
    return msgspec.structs.replace(unhashed, hash=record_hash(unhashed))


# --- the chain ------------------------------------------------------------------------------


class ChainHead(msgspec.Struct, frozen=True):
    """The last record of one partner's chain: seq 0 and GENESIS_HASH when it is empty."""

    partner_id: str
    seq: int
    hash: bytes


def empty_head(partner_id: str) -> ChainHead:
    return ChainHead(partner_id, 0, GENESIS_HASH)


def append(
    head: ChainHead, drafts: Iterable[Draft], known_ids: Set[uuid.UUID] = frozenset()
) -> tuple[list[Record], ChainHead]:
    """Seal `drafts` after `head`; return the new records and the new head.

    Idempotency: the caller passes the ids of this partner's records that already exist
    (the store looks up the batch's ids; `Chain` keeps them). A draft whose id is known, or
    repeats an earlier draft of the same batch, is skipped: its record was already made. Only
    the id is compared, not the content, because a replay legitimately has another
    `recorded_at`; the auditor's re-derivation compares content.
    """
    records: list[Record] = []
    seen: set[uuid.UUID] = set()
    seq, prev_hash = head.seq, head.hash
    for draft in drafts:
        if draft.partner_id != head.partner_id:
            raise PartnerMismatch(head.partner_id, draft.partner_id)
        record_id = draft.record_id
        if record_id in known_ids or record_id in seen:
            continue
        seen.add(record_id)
        record = _seal(draft, record_id, seq + 1, prev_hash)
        records.append(record)
        seq, prev_hash = record.seq, record.hash
    return records, ChainHead(head.partner_id, seq, prev_hash)


class Chain:
    """One partner's chain kept in memory: its head and the ids it holds.

    Used by the auditor's re-derivation and by tests; the store keeps the same two things
    in PostgreSQL (partner_state and the record-id primary key).
    """

    def __init__(self, head: ChainHead, known_ids: Iterable[uuid.UUID] = ()) -> None:
        self.head = head
        self.known_ids: set[uuid.UUID] = set(known_ids)

    @classmethod
    def empty(cls, partner_id: str) -> Chain:
        return cls(empty_head(partner_id))

    def append(self, drafts: Iterable[Draft]) -> list[Record]:
        records, self.head = append(self.head, drafts, self.known_ids)
        self.known_ids.update(record.record_id for record in records)
        return records


__all__ = [
    "AWARDS_FULFILLED", "EPOCH", "EXPLANATION_BYTES_MAX", "GENESIS_HASH", "HASH_SIZE",
    "INT64_MAX", "INT64_MIN", "LEDGER_ADJUSTMENTS", "LEDGER_NAMESPACE", "PAYOUT_CLEARING",
    "POINTS_EXPIRED", "POINTS_REDEEMED", "POSTINGS_MAX", "RECORD_FORMAT",
    "SOURCE_EVENT_IDS_MAX", "VALUE_FREE_KINDS", "Account", "Asset", "AssetKind",
    "BuiltDraft", "Chain", "ChainHead", "Draft", "Explanation", "InputScalar", "InputValue",
    "Int64", "InvalidDraft", "LedgerError", "PartnerMismatch", "Posting", "Problem", "Record",
    "RecordKind", "Rounding", "account_partner", "append", "asset_kind", "award",
    "built_draft", "canonical_bytes", "check_balanced", "currency", "decode_explanation",
    "derive_record_id", "empty_head", "epoch_us", "explanation_json", "is_account", "mdf",
    "partner_available", "partner_pending", "points", "program_expense", "program_penalty",
    "record_hash", "seal", "validate_draft",
]
