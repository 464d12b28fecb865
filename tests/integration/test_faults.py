"""Fault suite: whatever crashes, every accepted event yields its records exactly once.

Each run publishes the sample quarter, sized by INCENTIVES_FAULT_EVENTS (``fault_traffic``):
every event three times, poison messages of every reject code interleaved, a few partners'
events before their registration. It does faults to the workers meanwhile (``fault_run``),
then checks the result (``fault_checks``) against a reference ledger that the pure runner
computes offline from the stored events in their stored order (identical record ids and
chain heads, nothing missing, nothing doubled, a clean audit), and checks the fate of every
message published: accepted once, duplicate, dead letter with its code, parked and released.

The normal suite runs the first two tests at the default size. ``./dev.sh faults`` runs the
long run (marker ``long_run``, deselected otherwise): one run with every fault, 100,000
events by default there, printing the run's figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_checks import Figures, check_run
from fault_run import FaultRun
from fault_traffic import fault_events

from schemas.settings import Settings

KILLS = 20
# Shares of the messages over which the faults are spread: they must leave some stream to
# consume after the last one, or they would prove nothing.
KILL_SHARE = (0.02, 0.8)
POOL_SHARE = (0.05, 0.8)
LONG_KILL_SHARE = (0.01, 0.5)
LONG_POOL_SHARE = (0.55, 0.85)


@pytest.mark.timeout(1200)
async def test_a_worker_killed_twenty_times_gives_the_reference_ledger(
    settings: Settings, tmp_path: Path
) -> None:
    """The lone worker is killed with SIGKILL twenty times at random moments spread over
    the stream, and restarted each time; the ledger is exactly the reference and every
    message has its exact fate."""
    async with FaultRun(settings, fault_events(), tmp_path) as fault_run:
        await fault_run.publish()
        await fault_run.kill_repeatedly(KILLS, KILL_SHARE)
        await fault_run.drain()
    figures = await check_run(fault_run)
    print(figures.render())
    assert_kills_mid_stream(figures, KILLS)


@pytest.mark.timeout(900)
async def test_broker_and_database_restarts_with_three_workers_give_the_reference_ledger(
    settings: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    """Three workers join one by one (rebalancing as they join), the broker is stopped and
    restarted mid-stream, then PostgreSQL; workers that die of it are replaced, one leaves
    for good and another joins; the ledger is still exactly the reference."""
    async with FaultRun(settings, fault_events(), tmp_path) as fault_run:
        await fault_run.publish()
        size = await fault_run.pool_with_restarts(stack_settings, POOL_SHARE)
        await fault_run.drain(pool=size)
    figures = await check_run(fault_run)
    print(figures.render())
    assert_restarts_mid_stream(figures)


@pytest.mark.long_run
@pytest.mark.timeout(2400)
async def test_a_long_run_with_every_fault_gives_the_reference_ledger(
    settings: Settings, stack_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run with every fault: the lone worker killed twenty times over the first part
    of the stream, then a pool of three with rebalances, a broker restart and a PostgreSQL
    restart over the next; the ledger is exactly the reference. Prints the figures."""
    async with FaultRun(settings, fault_events(), tmp_path) as fault_run:
        await fault_run.publish()
        await fault_run.kill_repeatedly(KILLS, LONG_KILL_SHARE)
        size = await fault_run.pool_with_restarts(stack_settings, LONG_POOL_SHARE)
        await fault_run.drain(pool=size)
    figures = await check_run(fault_run)
    with capsys.disabled():
        print("\n" + figures.render(), flush=True)
    assert_kills_mid_stream(figures, KILLS)
    assert_restarts_mid_stream(figures)


def assert_kills_mid_stream(figures: Figures, kills: int) -> None:
    """The kills landed with progress between them, and while there was stream left."""
    progress = figures.tally.kill_progress
    assert figures.tally.kills == len(progress) == kills
    assert progress == sorted(set(progress)), f"no progress between kills: {progress}"
    assert 0 < progress[0] and progress[-1] < figures.messages, progress


def assert_restarts_mid_stream(figures: Figures) -> None:
    """The broker and PostgreSQL went away while there was stream left, after the pool of
    three had formed."""
    tally = figures.tally
    assert (tally.broker_restarts, tally.database_restarts) == (1, 1)
    assert tally.joined >= 3 and tally.left >= 1, tally
    assert all(0 < p < figures.messages for p in tally.restart_progress), tally.restart_progress
