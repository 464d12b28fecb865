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

import enum
import hashlib
import re
import uuid
from collections.abc import Iterable, Set
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

RECORD_FORMAT = "incentives-ledger-record/1"
GENESIS_HASH = bytes(32)
HASH_SIZE = 32
# uuid5(NAMESPACE_URL, "urn:channel-incentives:ledger-record"), written out so that it can
# never drift with a refactoring.
LEDGER_NAMESPACE = uuid.UUID("0152978f-288f-510d-99fa-42183491c70d")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

# Ids become parts of account names, assets and record-id names, where ":" is the separator.
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}"
_TOKEN_RE = re.compile(_TOKEN)
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_AWARD_KIND_RE = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
_ACCOUNT_RE = re.compile(
    rf"program:({_TOKEN}):(?:expense|penalty)"
    rf"|partner:({_TOKEN}):(?:pending|available)"
    r"|payout:clearing|points:redeemed|points:expired|awards:fulfilled|ledger:adjustments"
)
# Bounds on what one record may hold, so one bad rule cannot write a megabyte row.
_LEG_MAX_CHARS = 200
POSTINGS_MAX = 64
SOURCE_EVENT_IDS_MAX = 1024
EXPLANATION_BYTES_MAX = 16_384

Asset = str
Account = str


class LedgerError(Exception):
    """An expected failure of the ledger core; the message says what was expected and found."""


class InvalidDraft(LedgerError, ValueError):
    """A draft that breaks a rule of the ledger. A ValueError, so that msgspec reports it as a
    ValidationError (with the path) when a Draft is decoded rather than built."""

    def __init__(self, path: str, expected: str, found: object) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(f"invalid ledger draft at `{path}`: expected {expected}, found {found!r}")


class PartnerMismatch(LedgerError):
    def __init__(self, chain_partner: str, draft_partner: str) -> None:
        self.chain_partner = chain_partner
        self.draft_partner = draft_partner
        super().__init__(
            f"cannot append a draft for partner {draft_partner!r} "
            f"to the chain of partner {chain_partner!r}"
        )


# --- assets ---------------------------------------------------------------------------------


class AssetKind(enum.StrEnum):
    CURRENCY = "currency"
    POINTS = "points"
    AWARD = "award"
    MDF = "mdf"


def currency(code: str) -> Asset:
    _require(_CURRENCY_RE.fullmatch(code) is not None, "asset", "an ISO 4217 code like EUR", code)
    return code


def points(program_id: str) -> Asset:
    _require_token("asset.program_id", program_id)
    return f"PTS:{program_id}"


def award(kind: str) -> Asset:
    _require(_AWARD_KIND_RE.fullmatch(kind) is not None, "asset", "an award kind like trip", kind)
    return f"AWARD:{kind}"


def mdf(currency_code: str) -> Asset:
    return f"MDF:{currency(currency_code)}"


def asset_kind(asset: str) -> AssetKind | None:
    """The kind of a well-formed asset, or None when the string is not one."""
    prefix, sep, rest = asset.partition(":")
    if not sep:
        return AssetKind.CURRENCY if _CURRENCY_RE.fullmatch(asset) else None
    if prefix == "PTS" and _TOKEN_RE.fullmatch(rest):
        return AssetKind.POINTS
    if prefix == "AWARD" and _AWARD_KIND_RE.fullmatch(rest):
        return AssetKind.AWARD
    if prefix == "MDF" and _CURRENCY_RE.fullmatch(rest):
        return AssetKind.MDF
    return None


# --- accounts -------------------------------------------------------------------------------

PAYOUT_CLEARING: Account = "payout:clearing"
POINTS_REDEEMED: Account = "points:redeemed"
POINTS_EXPIRED: Account = "points:expired"
AWARDS_FULFILLED: Account = "awards:fulfilled"
LEDGER_ADJUSTMENTS: Account = "ledger:adjustments"


def program_expense(program_id: str) -> Account:
    _require_token("account.program_id", program_id)
    return f"program:{program_id}:expense"


def program_penalty(program_id: str) -> Account:
    _require_token("account.program_id", program_id)
    return f"program:{program_id}:penalty"


def partner_pending(partner_id: str) -> Account:
    _require_token("account.partner_id", partner_id)
    return f"partner:{partner_id}:pending"


def partner_available(partner_id: str) -> Account:
    _require_token("account.partner_id", partner_id)
    return f"partner:{partner_id}:available"


def account_partner(account: str) -> str | None:
    """The partner id of a ``partner:<id>:...`` account, else None."""
    match = _ACCOUNT_RE.fullmatch(account)
    return match.group(2) if match else None


def is_account(account: str) -> bool:
    return _ACCOUNT_RE.fullmatch(account) is not None


# --- records --------------------------------------------------------------------------------


class RecordKind(enum.StrEnum):
    ACCRUAL = "accrual"  # a program awarded value (cash, points, MDF, an award)
    HOLD_RELEASE = "hold_release"  # pending -> available once a hold ends
    CLAWBACK = "clawback"  # what a reversed sale earned goes back to the program
    PENALTY = "penalty"  # a negative incentive charged to the partner
    PAYOUT = "payout"  # available cash or MDF paid out
    REDEMPTION = "redemption"  # available points or awards consumed
    EXPIRY = "expiry"  # available points lapsed
    ADJUSTMENT = "adjustment"  # a manual correction, with author and reason
    REVERSAL = "reversal"  # undoes an earlier record named in the explanation
    TIER_CHANGE = "tier_change"  # status only: moves no value, has no postings
    # A decision that moves no value but belongs in the partner's statement: a target set,
    # an award a partner could not earn (no target, no base) or that a gate withheld.
    NOTE = "note"


# Kinds that move no value; every other kind must have at least two postings.
VALUE_FREE_KINDS = frozenset({RecordKind.TIER_CHANGE, RecordKind.NOTE})

InputScalar = str | Int64 | bool | None
InputValue = InputScalar | list[InputScalar]


class Rounding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an exact amount became an integer of minor units."""

    mode: str  # e.g. "half_even"
    exact: str  # the unrounded value as a decimal string, e.g. "1234.5"
    result: Int64  # the rounded amount in minor units


class Explanation(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Why a record exists, structured so statements and auditors can show every line.

    Treat `inputs` as immutable once the record is sealed: the hash covers it. Only add new
    fields with defaults (omit_defaults keeps old hashes stable).
    """

    summary: str
    formula: str = ""
    inputs: dict[str, InputValue] = {}
    rounding: Rounding | None = None
    author: str | None = None
    reason: str | None = None
    related_record_ids: tuple[uuid.UUID, ...] = ()


class Posting(msgspec.Struct, frozen=True, array_like=True):
    account: Account
    asset: Asset
    amount: int  # signed minor units (or points, or award units): what the account receives


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
        _validate_draft(self)

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


def validate_draft(draft: Draft) -> None:
    """Every rule of the ledger on one draft; raises ``InvalidDraft`` naming the path.
    ``Draft`` runs it on construction and decoding; the engine on the drafts it cannot
    bound by construction."""
    _validate_draft(draft)


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


# --- validation -----------------------------------------------------------------------------


def _require(ok: bool, path: str, expected: str, found: object) -> None:
    if not ok:
        raise InvalidDraft(path, expected, found)


def _require_token(path: str, value: object) -> None:
    _require(
        isinstance(value, str) and _TOKEN_RE.fullmatch(value) is not None,
        path,
        "an id of letters, digits, '.', '_' or '-' (no ':'), at most 128 characters",
        value,
    )


def _require_aware(path: str, value: object) -> None:
    _require(
        isinstance(value, datetime) and value.utcoffset() is not None,
        path,
        "a time-zone-aware datetime",
        value,
    )


def _validate_draft(draft: Draft) -> None:
    _require_token("partner_id", draft.partner_id)
    _require_aware("occurred_at", draft.occurred_at)
    _require_aware("recorded_at", draft.recorded_at)
    _validate_program_fields(draft)
    _require(
        0 < len(draft.leg) <= _LEG_MAX_CHARS and "\x00" not in draft.leg,
        "leg",
        f"a non-empty string of at most {_LEG_MAX_CHARS} characters without NUL",
        draft.leg,
    )
    _require(0 < len(draft.source_event_ids) <= SOURCE_EVENT_IDS_MAX, "source_event_ids",
             f"1 to {SOURCE_EVENT_IDS_MAX} ids", f"{len(draft.source_event_ids)} ids")
    _require(
        len(set(draft.source_event_ids)) == len(draft.source_event_ids),
        "source_event_ids",
        "distinct ids",
        draft.source_event_ids,
    )
    _validate_explanation(draft.explanation)
    _validate_correction(draft)
    _require(len(draft.postings) <= POSTINGS_MAX, "postings", f"at most {POSTINGS_MAX}",
             f"{len(draft.postings)} postings")
    if draft.kind in VALUE_FREE_KINDS:
        _require(not draft.postings, "postings", f"none for a {draft.kind} record", draft.postings)
    else:
        _require(len(draft.postings) >= 2, "postings", "at least two postings", draft.postings)
    for leg, posting in enumerate(draft.postings):
        _validate_posting(f"postings[{leg}]", posting, draft.partner_id)


def _validate_program_fields(draft: Draft) -> None:
    if draft.program_id is None:
        _require(draft.program_version is None, "program_version", "null without program_id",
                 draft.program_version)
        _require(draft.rule_id is None, "rule_id", "null without program_id", draft.rule_id)
        return
    _require_token("program_id", draft.program_id)
    version = draft.program_version
    _require(
        isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= INT64_MAX,
        "program_version",
        "a positive integer when program_id is set",
        version,
    )
    if draft.rule_id is not None:
        _require_token("rule_id", draft.rule_id)


def _validate_correction(draft: Draft) -> None:
    # Corrections are new records; they must say who made them and why, or what they undo.
    explanation = draft.explanation
    if draft.kind is RecordKind.ADJUSTMENT:
        _require(bool(explanation.author), "explanation.author", "the adjustment's author",
                 explanation.author)
        _require(bool(explanation.reason), "explanation.reason", "the adjustment's reason",
                 explanation.reason)
    if draft.kind is RecordKind.REVERSAL:
        _require(len(explanation.related_record_ids) > 0, "explanation.related_record_ids",
                 "the id of the record being reversed", explanation.related_record_ids)


def _validate_posting(path: str, posting: Posting, partner_id: str) -> None:
    _require(is_account(posting.account), f"{path}.account", "an account of the chart",
             posting.account)
    owner = account_partner(posting.account)
    _require(owner is None or owner == partner_id, f"{path}.account",
             f"an account of partner {partner_id!r}", posting.account)
    _require(asset_kind(posting.asset) is not None, f"{path}.asset",
             "EUR, PTS:<program>, AWARD:<kind> or MDF:<currency>", posting.asset)
    amount = posting.amount
    _require(
        isinstance(amount, int) and not isinstance(amount, bool) and amount != 0
        and INT64_MIN <= amount <= INT64_MAX,
        f"{path}.amount",
        "a non-zero 64-bit integer",
        amount,
    )


def _validate_explanation(explanation: Explanation) -> None:
    # PostgreSQL's jsonb cannot hold U+0000, and queries cast the stored explanation to jsonb.
    texts: list[tuple[str, str]] = [
        ("explanation.summary", explanation.summary),
        ("explanation.formula", explanation.formula),
        ("explanation.author", explanation.author or ""),
        ("explanation.reason", explanation.reason or ""),
    ]
    for key, value in explanation.inputs.items():
        texts.append((f"explanation.inputs[{key!r}]", key))
        values = value if isinstance(value, list) else [value]
        _require(
            all(v is None or isinstance(v, (str, int)) for v in values),
            f"explanation.inputs[{key!r}]",
            "strings, integers, booleans or null (never floats)",
            value,
        )
        _require(
            all(INT64_MIN <= v <= INT64_MAX for v in values if isinstance(v, int)),
            f"explanation.inputs[{key!r}]",
            "integers within 64 bits",
            value,
        )
        texts.extend((f"explanation.inputs[{key!r}]", v) for v in values if isinstance(v, str))
    if explanation.rounding is not None:
        texts.append(("explanation.rounding.mode", explanation.rounding.mode))
        texts.append(("explanation.rounding.exact", explanation.rounding.exact))
    for path, text in texts:
        _require("\x00" not in text and _encodable(text), path, "UTF-8 text without NUL", text)
    size = len(_CANONICAL.encode(explanation))
    _require(size <= EXPLANATION_BYTES_MAX, "explanation",
             f"at most {EXPLANATION_BYTES_MAX} bytes of JSON", f"{size} bytes")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
