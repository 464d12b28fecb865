-- 0002: the ledger, its inbox, partner state and chain checkpoints; privileges on them and
-- on consumer_positions (created by 0001_foundation).
--
-- Run once, inside a transaction, by the migration runner (ledger/migrate.py).
-- The database must use the UTF8 encoding: hashes are computed over UTF-8 text.
--
-- Hash fidelity: ledger.verify recomputes every record hash from these columns, so they store
-- exactly what is hashed (see ledger/core.py for the encoding). Times are timestamptz, which
-- keeps microseconds, the precision that is hashed. `explanation` is the exact canonical JSON
-- text of the record's explanation (ledger.core.explanation_json), as text and not jsonb,
-- because jsonb reorders keys and normalises the text; cast it (explanation::jsonb) to query.
-- Ids that are compared with Python's ordering use COLLATE "C" (code point order), so that
-- `ORDER BY partner_id, seq` feeds the verifier in the order it expects.

CREATE TABLE ledger_records (
    record_id         uuid        PRIMARY KEY,
    partner_id        text        COLLATE "C" NOT NULL,
    seq               bigint      NOT NULL CHECK (seq >= 1),
    kind              text        NOT NULL CHECK (kind IN (
                          'accrual', 'hold_release', 'clawback', 'penalty', 'payout',
                          'redemption', 'expiry', 'adjustment', 'reversal', 'tier_change')),
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL,
    program_id        text        COLLATE "C",
    program_version   integer     CHECK (program_version >= 1),
    rule_id           text        COLLATE "C",
    -- Which of the records that one (event, program, rule) produced; part of the record id.
    leg               text        NOT NULL,
    -- The first id is the triggering event, from which record_id is derived.
    source_event_ids  uuid[]      NOT NULL CHECK (cardinality(source_event_ids) >= 1),
    explanation       text        NOT NULL,
    prev_hash         bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash              bytea       NOT NULL CHECK (octet_length(hash) = 32),
    -- Gapless per partner is the application's invariant; uniqueness is what lets a stale
    -- worker (a zombie after a rebalance) fail instead of forking a chain.
    CONSTRAINT ledger_records_partner_seq_key UNIQUE (partner_id, seq),
    CONSTRAINT ledger_records_program_fields CHECK (
        (program_id IS NULL AND program_version IS NULL AND rule_id IS NULL)
        OR (program_id IS NOT NULL AND program_version IS NOT NULL))
);

CREATE INDEX ledger_records_partner_occurred_idx ON ledger_records (partner_id, occurred_at);
CREATE INDEX ledger_records_program_idx ON ledger_records (program_id, occurred_at)
    WHERE program_id IS NOT NULL;

-- One row per posting; leg is the posting's index in the record (the hashed order).
CREATE TABLE ledger_postings (
    record_id  uuid    NOT NULL REFERENCES ledger_records (record_id),
    leg        integer NOT NULL CHECK (leg >= 0),
    account    text    COLLATE "C" NOT NULL,
    asset      text    COLLATE "C" NOT NULL,
    amount     bigint  NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (record_id, leg)
);

CREATE INDEX ledger_postings_account_idx ON ledger_postings (account, asset);

-- Every applied event id. A redelivered event hits the primary key and is skipped; the same
-- id with another fingerprint (hash of the event's canonical content) is a conflict.
CREATE TABLE inbox (
    event_id      uuid        PRIMARY KEY,
    fingerprint   bytea       NOT NULL,
    stream        text        NOT NULL,
    partner_id    text        COLLATE "C",
    topic         text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    kafka_offset  bigint      NOT NULL CHECK (kafka_offset >= 0),
    received_at   timestamptz NOT NULL DEFAULT now()
);

-- The head of each partner's chain and the engine's state for it, written in the same
-- transaction as the records. Mutable by design: it is rebuildable from the ledger.
CREATE TABLE partner_state (
    partner_id  text        COLLATE "C" PRIMARY KEY,
    head_seq    bigint      NOT NULL CHECK (head_seq >= 0),
    head_hash   bytea       NOT NULL CHECK (octet_length(head_hash) = 32),
    state       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per checkpoint (ledger/checkpoint.py): the heads are three parallel arrays in
-- partner_id order, root = sha256(prev_root || canonical bytes of the row).
CREATE TABLE chain_checkpoints (
    checkpoint_seq    bigint      PRIMARY KEY CHECK (checkpoint_seq >= 1),
    taken_at          timestamptz NOT NULL,
    prev_root         bytea       NOT NULL CHECK (octet_length(prev_root) = 32),
    partner_count     integer     NOT NULL CHECK (partner_count >= 0),
    head_partner_ids  text[]      NOT NULL,
    head_seqs         bigint[]    NOT NULL,
    head_hashes       bytea[]     NOT NULL,
    root              bytea       NOT NULL CHECK (octet_length(root) = 32),
    CONSTRAINT chain_checkpoints_heads_count CHECK (
        cardinality(head_partner_ids) = partner_count
        AND cardinality(head_seqs) = partner_count
        AND cardinality(head_hashes) = partner_count)
);

-- Immutability enforced by PostgreSQL itself, for every role, the owner included. A
-- statement-level trigger fires even when no row matches, so a mistaken UPDATE fails loudly
-- instead of silently doing nothing; TRUNCATE only has statement-level triggers. The error
-- is SQLSTATE 23001 (restrict_violation; asyncpg's RestrictViolationError).
CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected; corrections are new records',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a reversal or adjustment record instead of changing history';
END;
$$;

CREATE TRIGGER ledger_records_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_records
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_postings_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER chain_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER inbox_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON inbox
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- The application's role: it may read and append to the ledger tables, and nothing more, so
-- even with the trigger disabled it cannot change history. It is NOLOGIN: a deployment grants
-- it to the login role the workers use (GRANT incentives_app TO <login>). Roles are
-- cluster-wide, hence create-if-missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'incentives_app') THEN
        CREATE ROLE incentives_app NOLOGIN;
    END IF;
END;
$$;

REVOKE ALL ON ledger_records, ledger_postings, chain_checkpoints, inbox,
              partner_state, consumer_positions FROM PUBLIC;
REVOKE ALL ON ledger_records, ledger_postings, chain_checkpoints, inbox
    FROM incentives_app;
GRANT USAGE ON SCHEMA public TO incentives_app;
GRANT SELECT, INSERT ON ledger_records, ledger_postings, chain_checkpoints, inbox
    TO incentives_app;
-- "Full rights" on the mutable tables means the four data operations; TRUNCATE, TRIGGER and
-- REFERENCES are not needed by the application and are left out.
GRANT SELECT, INSERT, UPDATE, DELETE ON partner_state, consumer_positions TO incentives_app;
