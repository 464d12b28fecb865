-- 0010: value-free "note" records (ledger.core.RecordKind.NOTE).
--
-- A note is chained like every record but has no postings: a target finance set for a
-- partner, an award the partner could not earn (no target for the period, no base to grow
-- from) or one that a rule's gate withheld at the period's close. It lets a statement say
-- why a line is missing, from the ledger alone.
ALTER TABLE ledger_records DROP CONSTRAINT ledger_records_kind_check;
ALTER TABLE ledger_records ADD CONSTRAINT ledger_records_kind_check CHECK (kind IN (
    'accrual', 'hold_release', 'clawback', 'penalty', 'payout', 'redemption', 'expiry',
    'adjustment', 'reversal', 'tier_change', 'note'));
