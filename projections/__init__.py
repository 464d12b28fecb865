"""Read models folded from the ledger, kept in step with it by the ledger stage.

- ``account_balances`` (`projections.balances`): the running sum of the postings per
  (account, asset), so finance reads current balances without scanning the ledger.
- ``partner_tiers`` (`projections.tiers`): each partner's current tier per program, since
  when, from the partner states.

The ledger stage (processors/ledger_writer.py) calls `apply` in each batch's transaction,
after the append, so the projections commit or roll back with the records. Both can be
rebuilt at any time from the ledger and partner_state (`rebuild`; ``incentives projections
rebuild``) and compared with such a rebuild (`diff`; ``incentives projections check``).
Tables and privileges: ledger/migrations/0008_projections.sql.

Dependencies: ``ledger`` only (never ``processors``); asyncpg only for type checking, so the
folds are importable and testable without a database driver.
"""

from projections.sync import Rebuilt, Report, apply, diff, rebuild

__all__ = ["Rebuilt", "Report", "apply", "diff", "rebuild"]
