"""Budget leases (processors.engine.leases): what a lane sees, grants, reclaims, replay."""

from __future__ import annotations

import pytest
from test_engine_support import program, registered, sale

from processors.engine.leases import Grant, GrantRequest, Recorded, Spend, grant_size
from processors.engine.runner import Books, run

KEY = ("prog", 1)
A, B = ("sales", 0), ("sales", 1)


def _spend(budget: int = 10_000) -> Spend:
    spend = Spend()
    spend.know({KEY: budget})
    return spend


def _grant(lane: tuple[str, int], amount: int) -> Grant:
    return Grant(program_id="prog", version=1, topic=lane[0], partition=lane[1], amount=amount)


def test_a_lane_sees_its_lease_and_no_lane_sees_what_is_unleased() -> None:
    spend = _spend()
    assert spend.view(A)[KEY] == 10_000  # nothing leased to A: its budget left is 0
    spend.grant(_grant(A, 3_000))
    spend.add(KEY, A, 1_200)
    assert spend.view(A)[KEY] == 10_000 - 1_800
    assert spend.view(None)[KEY] == 3_000 and spend.unleased(KEY) == 7_000
    spend.add(KEY, None, 500)  # a close's award, from the pool
    assert spend.unleased(KEY) == 6_500
    assert spend.totals() == {KEY: 1_700}


def test_a_close_takes_back_what_the_leases_hold() -> None:
    spend = _spend()
    spend.grant(_grant(A, 3_000))
    spend.grant(_grant(B, 2_000))
    spend.add(KEY, A, 2_500)
    spend.add(KEY, B, -400)  # a clawback: the lane may spend it again
    spend.reclaim([KEY])
    assert spend.lease(KEY, A).left == spend.lease(KEY, B).left == 0
    assert spend.unleased(KEY) == 10_000 - 2_100 == 10_000 - sum(spend.totals().values())


def test_an_ask_gets_a_slice_of_what_is_unleased_and_nothing_once_it_is_gone() -> None:
    spend = _spend(10_000)
    ask = GrantRequest(program_id="prog", version=1, topic="sales", partition=0, round=0)
    first = spend.answer(ask)
    assert first is not None and first.amount == grant_size(10_000, 10_000, 0) == 625
    again = spend.answer(GrantRequest(program_id="prog", version=1, topic="sales",
                                      partition=0, round=3))  # fmt: skip
    assert again is not None and again.amount == 8 * max(9_375 // 16, 10)
    spend.grant(_grant(B, spend.unleased(KEY) or 0))
    assert spend.unleased(KEY) == 0 and spend.answer(ask) is None


def test_recorded_grants_come_back_before_their_arrival_number_in_the_order_made() -> None:
    g1, g2, g3 = _grant(A, 1), _grant(B, 2), _grant(A, 3)
    recorded = Recorded([(7, g1), (5, g2), (7, g3)])
    assert recorded.due(4) == []
    assert recorded.due(6) == [g2]
    assert recorded.due(7) == [g1, g3]
    recorded.finish()
    late = Recorded([(9, g1)])
    late.due(8)
    with pytest.raises(ValueError, match="arrival number 9"):
        late.finish()


def test_an_ask_for_what_the_batch_wanted_gets_it_but_never_more_than_is_unleased() -> None:
    spend = _spend(10_000)
    ask = GrantRequest(program_id="prog", version=1, topic="sales", partition=0, round=0,
                       want=4_000)  # fmt: skip
    first = spend.answer(ask)
    assert first is not None and first.amount == 4_000  # more than a sixteenth
    assert grant_size(10_000, 6_000, 0, want=100) == 6_000 // 16  # a sixteenth at least
    assert grant_size(10_000, 3_000, 0, want=4_000) == 3_000


COMMISSION = """
- kind: commission
  id: com
  pays: currency
  rates:
    - {category: hardware, rate_bp: 300}
"""


def test_a_short_lease_reports_what_the_cut_awards_wanted_and_one_grant_of_it_suffices() -> None:
    """Budget 1,000.00, nothing leased to the lane: the three sales' commissions of 60.00,
    90.00 and 30.00 are cut whole, and the run says the lane wanted 180.00 from the first
    of them on. Granted that before the first, a second run cuts nothing."""
    cp = program(COMMISSION, budget="budget: 100_000\non_budget_exhausted: stop")
    inputs = [registered(), sale("O1", [("hardware", 1, 200_000)]),
              sale("O2", [("hardware", 1, 300_000)]), sale("O3", [("hardware", 1, 100_000)])]
    lanes = [A] * len(inputs)
    short = run(inputs, Books(), [cp], lanes).short
    assert list(short) == [(KEY, A)]
    assert (short[KEY, A].at, short[KEY, A].unleased, short[KEY, A].wanted) == (1, 100_000, 18_000)
    ask = GrantRequest(program_id="prog", version=1, topic=A[0], partition=A[1], round=0,
                       want=short[KEY, A].wanted)  # fmt: skip
    again = run([inputs[0], ask, *inputs[1:]], Books(), [cp], [A] * (len(inputs) + 1))
    assert again.short == {}
    assert [g.amount for _, g in again.grants] == [18_000]  # more than a sixteenth, 62.50
