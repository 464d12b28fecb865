-- 0016: program budgets in leases, so that writers of different partitions do not take
-- turns on one row (processors/engine/leases.py says how the budget is split).
--
-- Until now every batch locked every program_spend row before it drew its inbox arrival
-- numbers. Now program_spend is the budget's pool: what period closes and clock advances
-- spent (spent, as before: everything spent so far was spent through it) and what has
-- been handed to leases (leased). A lease is a lane's (a source partition's): only the
-- holder of that partition's consumer position writes it, or a period close, which runs
-- alone. A grant, the one time a lane batch locks a pool row, is recorded as an input of
-- the replay.

ALTER TABLE program_spend ALTER COLUMN spent SET DEFAULT 0,
    ADD COLUMN leased numeric NOT NULL DEFAULT 0 CHECK (leased >= 0);

CREATE TABLE budget_leases (
    program_id text    COLLATE "C" NOT NULL,
    version    integer NOT NULL,
    topic      text    COLLATE "C" NOT NULL,
    partition  integer NOT NULL,
    "left"     numeric NOT NULL CHECK ("left" >= 0),
    spent      numeric NOT NULL,
    PRIMARY KEY (program_id, version, topic, partition)
);

CREATE TABLE budget_grants (
    grant_id   bigserial PRIMARY KEY,
    program_id text    COLLATE "C" NOT NULL,
    version    integer NOT NULL,
    topic      text    COLLATE "C" NOT NULL,
    partition  integer NOT NULL,
    -- The inbox arrival number of the message before which the grant takes effect.
    before_seq bigint  NOT NULL,
    amount     numeric NOT NULL CHECK (amount > 0),
    granted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budget_grants_before ON budget_grants (before_seq, grant_id);
CREATE TRIGGER budget_grants_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON budget_grants
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- A program version's spend so far: its pool's and its leases' together.
CREATE VIEW program_spend_totals AS
SELECT s.program_id, s.version,
       s.spent + coalesce((SELECT sum(l.spent) FROM budget_leases l
                           WHERE l.program_id = s.program_id AND l.version = s.version), 0)
           AS spent
FROM program_spend s;

GRANT SELECT, INSERT, UPDATE ON budget_leases TO incentives_writer;
GRANT SELECT, INSERT ON budget_grants TO incentives_writer;
GRANT USAGE ON SEQUENCE budget_grants_grant_id_seq TO incentives_writer;
GRANT SELECT ON program_spend_totals TO incentives_writer, incentives_reader;
GRANT SELECT ON budget_leases, budget_grants TO incentives_reader;
GRANT SELECT ON budget_leases, budget_grants, program_spend_totals TO incentives_auditor;
