"""Read models folded from the ledger, kept in step with it by the ledger stage, and the
finance read side over them (queries in `projections.read`, the HTTP API in
`projections.api`).

Tables (ledger/migrations/0013_read_side.sql), each owned by one module here:

- ``partner_months`` (`projections.balances`): per partner, asset and month, the net change
  of the partner's pending and available balances and the same by kind (earned, paid,
  redeemed, expired, clawed back, ...): current and point-in-time balances and statements.
- ``partner_spend`` (`projections.spend`): what each program paid each partner; program
  spend against budget and points issued are sums over partners.
- ``partner_tier_changes`` and ``partner_tiers`` (`projections.tiers`): tier history (the
  tier as of any moment) and the current tier with the gap to the next one.
- ``partner_activity`` and ``partners`` (`projections.activity`): what leaderboards and team
  standings rank, and the partner directory.
- ``partner_refusals`` (`projections.refusals`) and ``partition_freshness``
  (`projections.freshness`).

The ledger stage calls `apply` with a `Batch` in each batch's transaction, after the
append; `diff` and `rebuild` (``incentives projections check|rebuild``) fold the whole
ledger with the same pure folds. What no record says (tier progress, activity, profiles,
refusals) comes from the processors through a `FactSource`, as typed values
(`projections.facts`): projections never import processors and never read another
package's JSON.
"""

from projections.facts import Batch, PartnerFacts
from projections.sync import TABLES, FactSource, Rebuilt, Report, apply, diff, rebuild

__all__ = [
    "TABLES", "Batch", "FactSource", "PartnerFacts", "Rebuilt", "Report", "apply", "diff",
    "rebuild",
]
