-- 0013: the finance read side (projections/). Every table the ledger stage writes is keyed
-- by partner first (or, for freshness, by partition), so two writers of different partners
-- never update one row; shared accounts have no projection rows: program-wide figures are
-- sums over partners at read time. All of them are rebuildable from the ledger and the
-- engine's facts (`incentives projections rebuild`) and checked against such a rebuild
-- (`incentives projections check`).
--
-- account_balances (one row per account, shared accounts included: a hot row every writer
-- locked) and partner_tiers (read out of the engine's state JSON) are replaced. A database
-- that already holds a ledger gets empty tables here: run `incentives projections rebuild`
-- after the upgrade (it is exact while workers run; until then `check` reports the gap).

DROP TABLE account_balances;
DROP TABLE partner_tiers;

-- Statements and point-in-time balances read one partner's records of a span of event
-- time in (occurred_at, seq) order, paged by that key: the index now ends with seq.
DROP INDEX ledger_records_partner_occurred_idx;
CREATE INDEX ledger_records_partner_occurred_idx ON ledger_records (partner_id, occurred_at, seq);

-- Per partner, asset and UTC calendar month of occurred_at: the month's net change of the
-- partner's pending and available accounts, and the same by kind of movement (see
-- projections/balances.py). A balance as of any moment is the sum of the earlier months
-- plus that month's records up to the moment.
CREATE TABLE partner_months (
    partner_id   text    COLLATE "C" NOT NULL,
    asset        text    COLLATE "C" NOT NULL,
    month        date    NOT NULL CHECK (extract(day FROM month) = 1),
    pending      bigint  NOT NULL,
    available    bigint  NOT NULL,
    earned       bigint  NOT NULL,
    released     bigint  NOT NULL,
    paid         bigint  NOT NULL,
    redeemed     bigint  NOT NULL,
    expired      bigint  NOT NULL,
    clawed_back  bigint  NOT NULL,
    penalties    bigint  NOT NULL,
    adjusted     bigint  NOT NULL,
    reversed     bigint  NOT NULL,
    records      integer NOT NULL CHECK (records >= 1),
    PRIMARY KEY (partner_id, asset, month)
);

-- What each program's expense and penalty accounts exchanged with each partner.
CREATE TABLE partner_spend (
    partner_id       text    COLLATE "C" NOT NULL,
    program_id       text    COLLATE "C" NOT NULL,
    program_version  integer NOT NULL,
    asset            text    COLLATE "C" NOT NULL,
    awarded          bigint  NOT NULL,
    returned         bigint  NOT NULL,
    penalties        bigint  NOT NULL,
    budget_cost      bigint  NOT NULL,
    records          integer NOT NULL,
    PRIMARY KEY (partner_id, program_id, program_version, asset)
);

-- Every tier_change record; the tier as of a moment is the last row at or before it.
CREATE TABLE partner_tier_changes (
    partner_id       text        COLLATE "C" NOT NULL,
    program_id       text        COLLATE "C" NOT NULL,
    occurred_at      timestamptz NOT NULL,
    seq              bigint      NOT NULL,
    record_id        uuid        NOT NULL,
    program_version  integer     NOT NULL,
    from_tier        text,
    to_tier          text        NOT NULL,
    summary          text        NOT NULL,
    PRIMARY KEY (partner_id, program_id, occurred_at, seq)
);

-- The current tier per program in force, and the gap to the next tier per criterion
-- (criteria: a JSON list of {name, required, actual, gap}, projections/facts.py).
CREATE TABLE partner_tiers (
    partner_id       text        COLLATE "C" NOT NULL,
    program_id       text        COLLATE "C" NOT NULL,
    program_version  integer     NOT NULL,
    tier             text        NOT NULL,
    since            timestamptz,
    below_periods    integer     NOT NULL,
    next_tier        text,
    window_months    integer,
    measured_on      date        NOT NULL,
    criteria         jsonb       NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, program_id)
);
CREATE INDEX partner_tiers_program_idx ON partner_tiers (program_id, tier);

-- The metrics leaderboards rank, per partner and month.
CREATE TABLE partner_activity (
    partner_id  text        COLLATE "C" NOT NULL,
    month       date        NOT NULL CHECK (extract(day FROM month) = 1),
    metric      text        NOT NULL,
    currency    text        NOT NULL,
    value       bigint      NOT NULL,
    reached_at  timestamptz,
    PRIMARY KEY (partner_id, month, metric, currency)
);
-- A month's leaderboard is an index range in rank order.
CREATE INDEX partner_activity_board_idx
    ON partner_activity (month, metric, currency, value DESC, partner_id);

-- The partner directory, from registrations and updates.
CREATE TABLE partners (
    partner_id  text        COLLATE "C" PRIMARY KEY,
    kind        text        NOT NULL,
    region      text        NOT NULL,
    team        text        COLLATE "C",
    status      text        NOT NULL,
    joined_on   date        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partners_team_idx ON partners (team) WHERE team IS NOT NULL;

-- Commands the rules refused.
CREATE TABLE partner_refusals (
    partner_id   text        COLLATE "C" NOT NULL,
    event_id     uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    event_type   text        NOT NULL,
    code         text        NOT NULL,
    path         text        NOT NULL,
    message      text        NOT NULL,
    PRIMARY KEY (partner_id, event_id)
);
CREATE INDEX partner_refusals_time_idx ON partner_refusals (occurred_at, event_id);

-- The newest event time applied per source partition.
CREATE TABLE partition_freshness (
    topic            text        NOT NULL,
    partition        integer     NOT NULL CHECK (partition >= 0),
    newest_event_at  timestamptz NOT NULL,
    last_offset      bigint      NOT NULL,
    applied          bigint      NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

REVOKE ALL ON partner_months, partner_spend, partner_tier_changes, partner_tiers,
              partner_activity, partners, partner_refusals, partition_freshness FROM PUBLIC;
-- The workers keep them (state by design, like partner_state: 0012); the read-only role
-- reads them for the finance API and the query commands; the auditor reads every table
-- (0012's default privileges).
GRANT SELECT, INSERT, UPDATE, DELETE ON partner_months, partner_spend, partner_tier_changes,
      partner_tiers, partner_activity, partners, partner_refusals, partition_freshness
    TO incentives_writer;
GRANT SELECT ON partner_months, partner_spend, partner_tier_changes, partner_tiers,
      partner_activity, partners, partner_refusals, partition_freshness TO incentives_reader;
