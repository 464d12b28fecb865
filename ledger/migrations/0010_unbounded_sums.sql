-- 0010: the running sums over every partner can never overflow.
--
-- account_balances.amount (the balance projection) and program_spend.spent sum postings
-- of every partner: a program's expense account, ledger:adjustments and payout:clearing
-- are shared. Each posting is bounded (10^15 per message amount; a partner's account holds
-- at most 10^18, see schemas/money.py), but a sum over any number of partners is not, and
-- in bigint its overflow failed every later batch that touched the account. numeric
-- (without precision) holds any integer exactly; readers convert it to int.
ALTER TABLE account_balances ALTER COLUMN amount TYPE numeric;
ALTER TABLE program_spend ALTER COLUMN spent TYPE numeric;
