-- 0005: what the ledger stage (processors/ledger_writer.py) keeps beside the records.

-- Program spend against budget, per program version, kept in step with the records in
-- the same transaction (the engine's Budgets input). One row per version; writers of
-- different partners serialise on it only for programs that have a budget.
CREATE TABLE program_spend (
    program_id text    COLLATE "C" NOT NULL,
    version    integer NOT NULL,
    spent      bigint  NOT NULL,
    PRIMARY KEY (program_id, version)
);

-- Valid commands that the rules refused (insufficient balance, a claim approved by its
-- submitter, ...): nothing was posted for them; this is the reason, for the sender.
CREATE TABLE command_refusals (
    event_id    uuid PRIMARY KEY,
    partner_id  text COLLATE "C" NOT NULL,
    event_type  text NOT NULL,
    code        text NOT NULL,
    path        text NOT NULL,
    message     text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER command_refusals_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON command_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

GRANT SELECT, INSERT, UPDATE ON program_spend TO incentives_app;
GRANT SELECT, INSERT ON command_refusals TO incentives_app;
