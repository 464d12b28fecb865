"""Finance commands end to end: through Kafka, a real `incentives worker` and PostgreSQL.

Payouts and redemptions debit the available balance or are refused with a reason and
nothing posted; adjustments carry their author and reason into the ledger, and a blank one
is dead-lettered by the contract; a fund claim is spent once, by someone other than its
submitter. Every refusal is a row in ``command_refusals`` and a ``CommandRefused`` on the
``refusals`` topic, also when the worker that refused it died before publishing it
(``test_finance_refusals_outbox.py``).

Balances are funded with ``AdjustBalance`` where the example program would need weeks of
event time (commission is held 30 days); points are also earned, from a training course.
Every amount is an exact integer of minor units (cents, points).
"""

from __future__ import annotations

import json
from pathlib import Path

from finance_support import (
    MDF,
    POINTS,
    adjust,
    approve,
    assert_published_as_recorded,
    available,
    claim,
    ensure_registered,
    pay,
    postings,
    publish_example_program,
    published_refusals,
    records_of,
    redeem,
    refusal_rows,
    reject,
    uid,
    worker_of,
)
from ingest_support import (
    fetch,
    keyed,
    send_raw,
    training,
    wait_consumed,
)

from schemas.settings import Settings

# ---------------------------------------------------------------------------------------
# Through the worker.


async def test_payout_above_the_balance_is_refused_and_one_within_it_is_posted(
    settings: Settings, tmp_path: Path
) -> None:
    """With EUR 1,000.00 available, a payout of EUR 1,000.01 posts nothing and is refused
    (row and message: insufficient_balance at $.amount, seeing all 100000 available);
    a payout of EUR 400.00 posts one record that moves exactly 40000 to the clearing
    account."""
    await publish_example_program(settings)
    funded = adjust("P-PAY", "EUR", 100_000)
    too_much, fits = pay("P-PAY", 100_001), pay("P-PAY", 40_000)
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-PAY")
        await send_raw(settings, [keyed("commands", m) for m in (funded, too_much, fits)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    rows = await refusal_rows(settings)
    assert list(rows) == [uid(too_much)]
    row = rows[uid(too_much)]
    assert (row["partner_id"], row["event_type"], row["code"], row["path"]) == (
        "P-PAY", "RecordPayout", "insufficient_balance", "$.amount")  # fmt: skip
    assert "balance is 100000" in row["message"] and "got 100001" in row["message"]
    assert_published_as_recorded(published, rows)
    assert published[uid(too_much)].code == "insufficient_balance"

    assert await records_of(settings, too_much) == []
    [posted] = await records_of(settings, fits)
    assert posted["kind"] == "payout"
    assert postings(posted) == [
        ("partner:P-PAY:available", "EUR", -40_000),
        ("payout:clearing", "EUR", 40_000),
    ]
    assert await available(settings, "P-PAY", "EUR") == 100_000 - 40_000


async def test_redemption_above_the_points_is_refused_and_one_within_them_is_posted(
    settings: Settings, tmp_path: Path
) -> None:
    """A course earns 200 points (the example's academy rule); with 12,000 more adjusted
    in, a Partner Summit pass (40,000) is refused and a EUR 50 gift card (5,000) is
    redeemed: exactly 5,000 points leave for points:redeemed."""
    await publish_example_program(settings)
    funded = adjust("P-PTS", "points", 12_000)
    too_much, fits = redeem("P-PTS", 40_000, "summit-pass"), redeem("P-PTS", 5_000, "gift-card-50")
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-PTS")
        await send_raw(settings, [keyed("trainings", training("P-PTS"))])
        await wait_consumed(settings, worker)
        assert await available(settings, "P-PTS", POINTS) == 200
        await send_raw(settings, [keyed("commands", m) for m in (funded, too_much, fits)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    rows = await refusal_rows(settings)
    assert {k: (r["event_type"], r["code"], r["path"]) for k, r in rows.items()} == {
        uid(too_much): ("RedeemPoints", "insufficient_balance", "$.points")
    }
    assert "balance is 12200" in rows[uid(too_much)]["message"]
    assert_published_as_recorded(published, rows)

    assert await records_of(settings, too_much) == []
    [posted] = await records_of(settings, fits)
    assert posted["kind"] == "redemption"
    assert postings(posted) == [
        ("partner:P-PTS:available", POINTS, -5_000),
        ("points:redeemed", POINTS, 5_000),
    ]
    assert await available(settings, "P-PTS", POINTS) == 200 + 12_000 - 5_000


async def test_adjustment_is_its_own_record_with_author_and_reason_and_blank_ones_are_dead(
    settings: Settings, tmp_path: Path
) -> None:
    """An adjustment posts one record of its own whose explanation names its author and
    reason. One with a blank author or reason, or none, breaks the contract: it is
    dead-lettered and posts nothing. One that takes more than is there is refused."""
    await publish_example_program(settings)
    good = adjust("P-ADJ", "EUR", 25_000, author="finance.lee", reason="missed commission")
    blank_author = adjust("P-ADJ", "EUR", 1_000, author=" ")
    blank_reason = adjust("P-ADJ", "EUR", 1_000, reason="   ")
    no_reason = adjust("P-ADJ", "EUR", 1_000)
    del no_reason["reason"]
    too_much = adjust("P-ADJ", "EUR", -25_001)
    sent = [good, blank_author, blank_reason, no_reason, too_much]
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-ADJ")
        await send_raw(settings, [keyed("commands", m) for m in sent])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    [posted] = await records_of(settings, good)
    assert posted["kind"] == "adjustment"
    explanation = json.loads(posted["explanation"])
    assert (explanation["author"], explanation["reason"]) == ("finance.lee", "missed commission")
    assert postings(posted) == [
        ("ledger:adjustments", "EUR", -25_000),
        ("partner:P-ADJ:available", "EUR", 25_000),
    ]

    dead = await fetch(settings, "SELECT event_id, code, path FROM dead_letters")
    assert {r["event_id"]: (r["code"], r["path"]) for r in dead} == {
        uid(blank_author): ("invalid_value", "$.author"),
        uid(blank_reason): ("invalid_value", "$.reason"),
        uid(no_reason): ("missing_field", "$.reason"),
    }
    for message in (blank_author, blank_reason, no_reason):
        assert await records_of(settings, message) == []

    rows = await refusal_rows(settings)
    assert {k: (r["code"], r["path"]) for k, r in rows.items()} == {
        uid(too_much): ("insufficient_balance", "$.amount")
    }
    assert_published_as_recorded(published, rows)
    assert await records_of(settings, too_much) == []
    # Only the one valid adjustment moved the balance, and it is the partner's only record.
    assert await available(settings, "P-ADJ", "EUR") == 25_000
    everything = await fetch(settings, "SELECT 1 FROM ledger_records WHERE partner_id = 'P-ADJ'")
    assert len(everything) == 1


async def test_fund_claim_is_spent_once_by_an_approver_other_than_its_submitter(
    settings: Settings, tmp_path: Path
) -> None:
    """A claim of EUR 3,000.00 (above the example's auto_approve_max of EUR 1,000.00) waits.
    Its submitter's approval is refused (self_approval); another approver's spends exactly
    300000 of the fund; the same approval sent again is a counted duplicate, and a second
    approval with a new id is refused (unknown_claim). A rejected claim changes no balance
    and frees what it reserved: a claim for the whole rest of the fund is accepted after."""
    await publish_example_program(settings)
    funded = adjust("P-MDF", MDF, 500_000)
    claimed = claim("P-MDF", "MDF-0042", 300_000, submitted_by="anna.kovacs")
    by_submitter = approve("P-MDF", "MDF-0042", approver="anna.kovacs")
    approved = approve("P-MDF", "MDF-0042", approver="channel.manager.eu")
    again = approve("P-MDF", "MDF-0042", approver="channel.manager.eu")
    second_claim = claim("P-MDF", "MDF-0051", 150_000, submitted_by="anna.kovacs")
    rejected = reject("P-MDF", "MDF-0051", approver="channel.manager.eu")
    rest = claim("P-MDF", "MDF-0052", 200_000, submitted_by="anna.kovacs")
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-MDF")
        await send_raw(settings, [keyed("commands", m) for m in (funded, claimed, by_submitter,
                                                                  approved)])  # fmt: skip
        await wait_consumed(settings, worker)
        assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
        # The same approval again (same event id and content), then a new one.
        await send_raw(settings, [keyed("commands", m) for m in (approved, again)])
        await wait_consumed(settings, worker)
        await send_raw(settings, [keyed("commands", m) for m in (second_claim, rejected)])
        await wait_consumed(settings, worker)
        assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
        await send_raw(settings, [keyed("commands", rest)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    [spent] = await records_of(settings, approved)
    assert (spent["kind"], spent["rule_id"]) == ("payout", "market-fund")
    assert postings(spent) == [
        ("partner:P-MDF:available", MDF, -300_000),
        ("payout:clearing", MDF, 300_000),
    ]
    outcomes = await fetch(settings, "SELECT outcome FROM ingest_log WHERE event_id = $1"
                           " ORDER BY kafka_offset", uid(approved))  # fmt: skip
    assert [r["outcome"] for r in outcomes] == ["applied", "duplicate"]

    rows = await refusal_rows(settings)
    assert {k: (r["event_type"], r["code"], r["path"]) for k, r in rows.items()} == {
        uid(by_submitter): ("ApproveClaim", "self_approval", "$.approver"),
        uid(again): ("ApproveClaim", "unknown_claim", "$.claim_id"),
    }
    assert_published_as_recorded(published, rows)
    # Claims, the rejection and the refused approvals post nothing; the one approval did.
    for message in (claimed, by_submitter, again, second_claim, rejected, rest):
        assert await records_of(settings, message) == []
    assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
    state = await fetch(settings, "SELECT state FROM partner_state WHERE partner_id = 'P-MDF'")
    assert set(json.loads(state[0]["state"])["claims"]) == {"MDF-0052"}
