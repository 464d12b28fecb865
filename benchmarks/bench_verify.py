"""Verify-rate benchmark: builds N sealed records over P partners, then times verify()."""

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from ledger.checkpoint import take_checkpoint
from ledger.core import (
    Chain,
    Draft,
    Explanation,
    Posting,
    RecordKind,
    Rounding,
    currency,
    partner_pending,
    program_expense,
)
from ledger.verify import verify

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
P = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
t0 = datetime(2026, 1, 1, tzinfo=UTC)
records = []
heads = []
per = N // P
gen = time.perf_counter()
for p in range(P):
    pid = f"P-{p:06d}"
    chain = Chain.empty(pid)
    drafts = []
    for i in range(per):
        amount = 100 + i % 977
        drafts.append(
            Draft(
                partner_id=pid,
                kind=RecordKind.ACCRUAL,
                occurred_at=t0 + timedelta(seconds=i),
                recorded_at=t0 + timedelta(seconds=i, microseconds=5),
                source_event_ids=(uuid.UUID(int=p * 10_000_000 + i),),
                leg="0",
                program_id="commission-2026",
                program_version=3,
                rule_id="per-sale",
                explanation=Explanation(
                    summary="3% commission on a sale",
                    formula="net * rate",
                    inputs={
                        "net_minor": amount * 33,
                        "rate_bp": 300,
                        "category": "servers",
                        "tier": "gold",
                    },
                    rounding=Rounding(mode="half_even", exact=f"{amount}.01", result=amount),
                ),
                postings=(
                    Posting(program_expense("commission-2026"), currency("EUR"), -amount),
                    Posting(partner_pending(pid), currency("EUR"), amount),
                ),
            )
        )
    records.extend(chain.append(drafts))
    heads.append(chain.head)
gen = time.perf_counter() - gen
cp = take_checkpoint(heads, previous=None, taken_at=t0 + timedelta(days=400))
start = time.perf_counter()
report = verify(iter(records), [cp])
elapsed = time.perf_counter() - start
assert report.ok, report.findings[:3]
print(
    f"built {len(records)} records in {gen:.1f}s; verified {report.records} records, "
    f"{report.partners} partners in {elapsed:.2f}s = {report.records / elapsed:,.0f} records/s"
)
