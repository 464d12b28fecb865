-- 0008: the projections the ledger stage keeps in step with the ledger, in the batch's
-- transaction (projections/; the ledger writer calls projections.apply after the append).
-- Both are mutable by design: they can be rebuilt from the ledger and partner_state at any
-- time (`incentives projections rebuild`), and `incentives projections check` diffs them
-- against such a rebuild.
--
-- Keys use COLLATE "C" (code point order), like the ledger's columns, so that the order in
-- which a writer upserts them (Python's string order) is the index order: every writer
-- takes the row locks in the same order and two writers cannot deadlock on them.

-- The running sum of the postings per (account, asset). A row exists for every pair that
-- was ever posted to, also when its sum is back to zero. `last_record_id` names the record
-- that last moved the balance, for finding one's way back into the ledger; it is
-- provenance, not part of the balance, and `check` does not compare it (see
-- projections/balances.py). The sum is bigint: a total beyond 64 bits fails the batch
-- instead of wrapping.
CREATE TABLE account_balances (
    account         text        COLLATE "C" NOT NULL,
    asset           text        COLLATE "C" NOT NULL,
    amount          bigint      NOT NULL,
    last_record_id  uuid        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, asset)
);

-- Each partner's current tier per program, as PartnerState.tiers holds it. A partner
-- without a tier in a program has no row for it.
CREATE TABLE partner_tiers (
    partner_id  text        COLLATE "C" NOT NULL,
    program_id  text        COLLATE "C" NOT NULL,
    tier        text        NOT NULL,
    since       timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, program_id)
);

-- Finance asks "who is in which tier of program X".
CREATE INDEX partner_tiers_program_idx ON partner_tiers (program_id, tier);

-- A database that already holds a ledger gets its projections now, in the migration's
-- transaction, so that the first batch after the upgrade adds to the right totals. The
-- statements are the ones `projections.rebuild` runs (projections/balances.py,
-- projections/tiers.py); on an empty database they insert nothing. Workers of the previous
-- release that keep appending after this migration do not update the projections:
-- `incentives projections check` finds that and `incentives projections rebuild` repairs it.
INSERT INTO account_balances (account, asset, amount, last_record_id)
SELECT s.account, s.asset, s.amount, l.record_id
FROM (SELECT account, asset, sum(amount) AS amount
      FROM ledger_postings GROUP BY account, asset) s
JOIN (SELECT DISTINCT ON (p.account, p.asset) p.account, p.asset, p.record_id
      FROM ledger_postings p JOIN ledger_records r USING (record_id)
      ORDER BY p.account, p.asset, r.recorded_at DESC, r.partner_id DESC, r.seq DESC) l
  USING (account, asset);

INSERT INTO partner_tiers (partner_id, program_id, tier, since)
SELECT s.partner_id, t.key, t.value ->> 'tier', (t.value ->> 'since')::timestamptz
FROM partner_state s
CROSS JOIN LATERAL jsonb_each(coalesce(s.state -> 'tiers', '{}'::jsonb)) AS t;

-- The application's role keeps them: the four data operations, as on partner_state (0002).
REVOKE ALL ON account_balances, partner_tiers FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON account_balances, partner_tiers TO incentives_app;
