"""Reconciliation: every message Kafka holds, accounted for from PostgreSQL.

Per source topic and partition: published is Kafka's end offset; below the consumer
position stored in PostgreSQL, every offset must have its ``ingest_log`` row (applied,
duplicate, dead-lettered or parked), and from the position to the end offset messages are
pending. So published = applied + duplicates + dead-lettered + parked + pending, and what
does not fit is unaccounted:

- offsets below the position without a log row (a skipped batch; or, with producers this
  system does not use, transaction markers or messages removed by retention);
- log rows at or above the position (a position that went backwards);
- a position beyond the end offset (the topic was deleted and created again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import asyncpg

from processors.intake.types import Outcome


@dataclass(slots=True)
class TopicCount:
    topic: str
    published: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    parked: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def accounted(self) -> int:
        return self.applied + self.duplicates + self.dead_lettered + self.parked + self.pending

    @property
    def unaccounted(self) -> int:
        return self.published - self.accounted


async def count(
    conn: asyncpg.Connection,
    group: str,
    topics: Iterable[str],
    ends: Mapping[tuple[str, int], int],
) -> list[TopicCount]:
    """Reconcile ``topics`` for consumer ``group`` against Kafka's end offsets ``ends``."""
    names = list(topics)
    stored = {
        (r["topic"], r["partition"]): r["next_offset"]
        for r in await conn.fetch(
            """SELECT topic, partition, next_offset FROM consumer_positions
               WHERE group_id = $1 AND topic = ANY($2::text[])""",
            group,
            names,
        )
    }
    logged = await conn.fetch(
        """SELECT l.topic, l.partition, l.outcome, count(*) AS n,
                  count(*) FILTER (WHERE l.kafka_offset >= coalesce(p.next_offset, 0))
                      AS beyond
           FROM ingest_log l
           LEFT JOIN consumer_positions p ON p.group_id = $1 AND p.topic = l.topic
                                          AND p.partition = l.partition
           WHERE l.topic = ANY($2::text[])
           GROUP BY l.topic, l.partition, l.outcome""",
        group,
        names,
    )
    counts = {t: TopicCount(t) for t in names}
    per_partition: dict[tuple[str, int], int] = {}
    for row in logged:
        tc, tp = counts[row["topic"]], (row["topic"], row["partition"])
        _add(tc, row["outcome"], row["n"])
        per_partition[tp] = per_partition.get(tp, 0) + row["n"]
        if row["beyond"]:
            tc.problems.append(
                f"partition {tp[1]}: {row['beyond']} {row['outcome']} messages logged at or"
                f" beyond the stored position {stored.get(tp, 0)}"
            )
    for tp in sorted(set(ends) | set(stored) | set(per_partition)):
        topic, partition = tp
        if topic not in counts:
            continue
        tc, end, position = counts[topic], ends.get(tp, 0), stored.get(tp, 0)
        tc.published += end
        if position > end:
            tc.problems.append(
                f"partition {partition}: stored position {position} is beyond Kafka's end"
                f" offset {end}"
            )
        else:
            tc.pending += end - position
        missing = position - per_partition.get(tp, 0)
        if missing > 0:
            tc.problems.append(
                f"partition {partition}: {missing} offsets below the stored position"
                f" {position} have no ingest_log row"
            )
    return [counts[t] for t in names]


def _add(tc: TopicCount, outcome: str, n: int) -> None:
    match Outcome(outcome):  # the table's CHECK allows nothing else
        case Outcome.APPLIED:
            tc.applied += n
        case Outcome.DUPLICATE:
            tc.duplicates += n
        case Outcome.DEAD_LETTERED:
            tc.dead_lettered += n
        case Outcome.PARKED:
            tc.parked += n


_HEADER = ("topic", "published", "applied", "duplicates", "dead-lettered", "parked", "pending")


def render(counts: list[TopicCount]) -> tuple[list[str], bool]:
    """The report's lines, and whether every message is accounted for."""
    total = TopicCount("total")
    for tc in counts:
        for name in ("published", "applied", "duplicates", "dead_lettered", "parked", "pending"):
            setattr(total, name, getattr(total, name) + getattr(tc, name))
    rows = [
        (tc.topic, tc.published, tc.applied, tc.duplicates, tc.dead_lettered, tc.parked,
         tc.pending)
        for tc in [*counts, total]
    ]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]
    lines = [_line(_HEADER, widths)] + [_line(r, widths) for r in rows]
    problems = [f"{tc.topic}: {p}" for tc in counts for p in tc.problems]
    for tc in counts:
        if tc.unaccounted and not tc.problems:
            problems.append(f"{tc.topic}: {tc.unaccounted} messages unaccounted for")
    if problems:
        lines.append("UNACCOUNTED: " + "; ".join(problems))
        return lines, False
    line = f"all {total.published} messages accounted for"
    if total.pending:
        line += f" ({total.pending} still pending)"
    lines.append(line)
    return lines, True


def _line(cells: tuple[object, ...], widths: list[int]) -> str:
    first, *numbers = cells
    right = (str(c).rjust(w) for c, w in zip(numbers, widths[1:], strict=True))
    return "  ".join([str(first).ljust(widths[0]), *right])
