"""Program budgets shared out in leases, so that writers of different partitions never
update one row together, and a replay still cuts the same awards (pure).

A budgeted program version's budget is in three parts:

- **leases**, one per *lane*: a lane is a source partition (topic, partition), whose
  messages only the holder of its consumer position writes. A lease holds what its lane
  may still spend (``left``) and what its lane spent (``spent``, net of clawbacks);
- **the pool** (``program_spend``): what messages of no lane spent (a period close and a
  clock advance, which concern every partner and run alone), and what has been handed to
  leases in all (``leased``: their left plus their spent);
- **unleased**: the budget less the pool's spent and leased.

A lane's message sees its lease's ``left`` as the budget left; a message of no lane sees
what is unleased. A period close first takes back what its programs' leases have left
(``Spend.reclaim``), so its awards see the whole budget left, as if there were no leases.

A *grant* moves a slice of the unleased budget into a lease. Grants are inputs, recorded
by the writer with the arrival number of the message before which they take effect
(``budget_grants.before_seq``); ``Recorded`` puts them there, for the writer and for the
replay alike, so a replay spends every lease as the writer did.

What this changes for a reader of the budget: the budget is never exceeded, and while
anything is unleased no award is cut (the writer grants and runs the batch again,
``processors.writer.ledger``). Once everything is leased, an award is cut when its lane's
lease is spent although another lane may still hold some; what leases hold is returned at
every period close of the program. ``budget_left`` in the explanation of a cut award is
what its lane could still spend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import msgspec

Lane = tuple[str, int]  # (topic, partition)
ProgramKey = tuple[str, int]  # (program id, version)


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """A slice of a program version's unleased budget given to a lane's lease."""

    program_id: str
    version: int
    topic: str
    partition: int
    amount: int

    @property
    def key(self) -> ProgramKey:
        return (self.program_id, self.version)

    @property
    def lane(self) -> Lane:
        return (self.topic, self.partition)


class GrantRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The writer's ask, placed before the message a lease was short for: the runner grants
    ``grant_size`` of what is unleased at that point (nothing when nothing is), and says
    so in ``Outcome.grants``. Only a writer holding the pool rows' locks asks; the replay
    gets the ``Grant`` that came of it."""

    program_id: str
    version: int
    topic: str
    partition: int
    round: int  # how many grants the same batch already needed before this message
    want: int = 0  # what the batch's cut awards needed from here on (``Short.wanted``)

    @property
    def key(self) -> ProgramKey:
        return (self.program_id, self.version)


@dataclass(slots=True)
class Lease:
    left: int = 0
    spent: int = 0


@dataclass(slots=True)
class Pool:
    spent: int = 0
    leased: int = 0


@dataclass(slots=True)
class Spend:
    """Spend so far per program version, its leases and its pool; see the module."""

    pools: dict[ProgramKey, Pool] = field(default_factory=dict)
    leases: dict[tuple[ProgramKey, Lane], Lease] = field(default_factory=dict)
    # The budgets of the program versions run so far (None: no budget).
    budgets: dict[ProgramKey, int | None] = field(default_factory=dict)

    def know(self, budgets: Mapping[ProgramKey, int | None]) -> None:
        self.budgets.update(budgets)

    def pool(self, key: ProgramKey) -> Pool:
        return self.pools.setdefault(key, Pool())

    def lease(self, key: ProgramKey, lane: Lane) -> Lease:
        return self.leases.setdefault((key, lane), Lease())

    def unleased(self, key: ProgramKey) -> int | None:
        budget = self.budgets.get(key)
        if budget is None:
            return None
        pool = self.pools.get(key) or Pool()
        return budget - pool.spent - pool.leased

    def seen(self, key: ProgramKey, lane: Lane | None) -> int:
        """Spend so far as a message of ``lane`` sees it: the budget less what it may spend."""
        budget = self.budgets.get(key)
        if lane is None:
            pool = self.pools.get(key) or Pool()
            return pool.spent + pool.leased
        lease = self.leases.get((key, lane)) or Lease()
        return lease.spent if budget is None else budget - lease.left

    def view(self, lane: Lane | None) -> Mapping[ProgramKey, int]:
        """The engine's ``Budgets`` for a message of ``lane`` (None: of no lane)."""
        return _View(self, lane)

    def add(self, key: ProgramKey, lane: Lane | None, amount: int) -> None:
        if lane is None:
            self.pool(key).spent += amount
            return
        lease = self.lease(key, lane)
        lease.spent += amount
        if self.budgets.get(key) is not None:
            lease.left -= amount

    def grant(self, grant: Grant) -> None:
        self.lease(grant.key, grant.lane).left += grant.amount
        self.pool(grant.key).leased += grant.amount

    def answer(self, ask: GrantRequest) -> Grant | None:
        """The grant ``ask`` gets from what is unleased now, made; None if nothing is."""
        budget, unleased = self.budgets.get(ask.key), self.unleased(ask.key)
        if budget is None or unleased is None or unleased <= 0:
            return None
        grant = Grant(program_id=ask.program_id, version=ask.version, topic=ask.topic,
                      partition=ask.partition,
                      amount=grant_size(budget, unleased, ask.round, ask.want))
        self.grant(grant)
        return grant

    def reclaim(self, keys: Iterable[ProgramKey]) -> None:
        """What the leases of ``keys`` have left goes back to the unleased budget."""
        wanted = set(keys)
        for (key, _), lease in sorted(self.leases.items()):
            if key in wanted and lease.left:
                self.pool(key).leased -= lease.left
                lease.left = 0

    def totals(self) -> dict[ProgramKey, int]:
        """Spend so far per program version: its pool's and its leases' together."""
        out = {key: pool.spent for key, pool in self.pools.items()}
        for (key, _), lease in self.leases.items():
            out[key] = out.get(key, 0) + lease.spent
        return out


class _View(Mapping[ProgramKey, int]):
    __slots__ = ("_lane", "_spend")

    def __init__(self, spend: Spend, lane: Lane | None) -> None:
        self._spend, self._lane = spend, lane

    def __getitem__(self, key: ProgramKey) -> int:
        return self._spend.seen(key, self._lane)

    def __iter__(self) -> Iterator[ProgramKey]:
        return iter(self._spend.budgets)

    def __len__(self) -> int:
        return len(self._spend.budgets)


def grant_size(budget: int, unleased: int, round_: int, want: int = 0) -> int:
    """The slice a short lease gets: what the batch wants of it (so that one more run of
    the batch cuts nothing), at least a sixteenth of what is unleased and a thousandth of
    the budget (so that the next batches find some left); doubled for every grant the same
    batch already needed before the same message, and never more than is unleased."""
    return min(unleased, max(want, unleased // 16, budget // 1000, 1) << min(round_, 20))


class Recorded:
    """The recorded grants, handed out in arrival order: ``due(seq)`` gives those to apply
    just before the input with arrival number ``seq``, the same place the writer applied
    them (``budget_grants.before_seq``)."""

    def __init__(self, grants: Iterable[tuple[int, Grant]]) -> None:
        # Stable: grants before the same message keep the order they were made in.
        self._grants = sorted(grants, key=lambda g: g[0])
        self._at = 0

    def due(self, seq: int) -> list[Grant]:
        start = self._at
        while self._at < len(self._grants) and self._grants[self._at][0] <= seq:
            self._at += 1
        return [g for _, g in self._grants[start:self._at]]

    def finish(self) -> None:
        """Every grant was handed out: one recorded before an arrival number that no stored
        input has would mean the inputs are not those the writer ran."""
        if self._at < len(self._grants):
            seq, grant = self._grants[self._at]
            raise ValueError(f"a budget grant of {grant.amount} to {grant.lane} for"
                             f" {grant.key} was recorded before arrival number {seq}, and no"
                             " stored input comes at or after it")
