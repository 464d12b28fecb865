-- 0003: ingestion. What the worker's first stage (processors/ingest.py) writes in each
-- batch's transaction, beside the inbox rows and the consumer positions:
--
--   ingest_log          one row per consumed Kafka message and its outcome, so that
--                       reconciliation counts from PostgreSQL, exactly;
--   dead_letters        rejected messages with their original bytes (an outbox: published to
--                       the dead-letter topic after commit, then marked);
--   parked_events       events of partners that are not registered yet, waiting;
--   registered_partners who is registered (the unknown_partner check);
--   orders              one row per sold order line and what remains of it (the checks
--                       unknown_order, reversal_exceeds_sale and currency_mismatch on reversals).
--
-- Times are when the worker recorded the row (now() of the batch transaction).

-- The inbox keeps the order in which events were accepted (arrival_seq, from one sequence,
-- so per partner it is the order the engine applied them in and a replay follows) and the
-- canonical bytes of each event (schemas.codec.encode), so an auditor can replay from
-- PostgreSQL alone. Nothing wrote the inbox before this migration, hence NOT NULL.
ALTER TABLE inbox
    ADD COLUMN arrival_seq bigserial   NOT NULL,
    ADD COLUMN event_type  text        NOT NULL,
    ADD COLUMN occurred_at timestamptz NOT NULL,
    ADD COLUMN body        bytea       NOT NULL;
ALTER TABLE inbox ADD CONSTRAINT inbox_arrival_seq_key UNIQUE (arrival_seq);
CREATE INDEX inbox_partner_arrival_idx ON inbox (partner_id, arrival_seq);

CREATE TABLE ingest_log (
    topic         text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    kafka_offset  bigint      NOT NULL CHECK (kafka_offset >= 0),
    stream        text        NOT NULL,
    -- NULL when the message could not be decoded far enough to have one.
    event_id      uuid,
    outcome       text        NOT NULL
                  CHECK (outcome IN ('applied', 'duplicate', 'dead_lettered', 'parked')),
    -- The reject code of a dead letter; NULL for every other outcome.
    code          text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    PRIMARY KEY (topic, partition, kafka_offset),
    CONSTRAINT ingest_log_code CHECK ((outcome = 'dead_lettered') = (code IS NOT NULL))
);
CREATE INDEX ingest_log_outcome_idx ON ingest_log (topic, outcome);

-- A parked message is the only one whose outcome changes, once: when its partner registers
-- it becomes applied (or dead_lettered, if a stateful check fails then). Every other change
-- is refused by PostgreSQL, so the log cannot be rewritten by mistake.
CREATE FUNCTION ingest_log_resolve_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.outcome = 'parked' AND NEW.outcome IN ('applied', 'dead_lettered')
       AND NEW.resolved_at IS NOT NULL
       AND (NEW.topic, NEW.partition, NEW.kafka_offset, NEW.stream, NEW.event_id,
            NEW.recorded_at)
           IS NOT DISTINCT FROM
           (OLD.topic, OLD.partition, OLD.kafka_offset, OLD.stream, OLD.event_id,
            OLD.recorded_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ingest_log: cannot change % -> % at %/%/%: only a parked message is'
        ' resolved, once', OLD.outcome, NEW.outcome, OLD.topic, OLD.partition, OLD.kafka_offset
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER ingest_log_resolve_only
    BEFORE UPDATE ON ingest_log FOR EACH ROW EXECUTE FUNCTION ingest_log_resolve_only();
CREATE TRIGGER ingest_log_append_only
    BEFORE DELETE OR TRUNCATE ON ingest_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

CREATE TABLE dead_letters (
    topic         text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    kafka_offset  bigint      NOT NULL CHECK (kafka_offset >= 0),
    stream        text        NOT NULL,
    event_id      uuid,
    partner_id    text        COLLATE "C",
    -- The bytes exactly as consumed; NULL for a Kafka message without a value (tombstone).
    raw           bytea,
    code          text        NOT NULL,
    path          text        NOT NULL,
    message       text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- The outbox mark: set once the dead-letter topic acknowledged the envelope.
    published_at  timestamptz,
    PRIMARY KEY (topic, partition, kafka_offset)
);
CREATE INDEX dead_letters_code_idx ON dead_letters (code);
CREATE INDEX dead_letters_unpublished_idx ON dead_letters (topic, partition)
    WHERE published_at IS NULL;

-- Only the outbox mark may be set, once; a dead letter itself never changes.
CREATE FUNCTION dead_letters_mark_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NULL AND NEW.published_at IS NOT NULL
       AND (NEW.topic, NEW.partition, NEW.kafka_offset, NEW.stream, NEW.event_id,
            NEW.partner_id, NEW.raw, NEW.code, NEW.path, NEW.message, NEW.received_at)
           IS NOT DISTINCT FROM
           (OLD.topic, OLD.partition, OLD.kafka_offset, OLD.stream, OLD.event_id,
            OLD.partner_id, OLD.raw, OLD.code, OLD.path, OLD.message, OLD.received_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'dead_letters: only published_at may be set, once (%/%/%)',
        OLD.topic, OLD.partition, OLD.kafka_offset
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER dead_letters_mark_only
    BEFORE UPDATE ON dead_letters FOR EACH ROW EXECUTE FUNCTION dead_letters_mark_only();
CREATE TRIGGER dead_letters_append_only
    BEFORE DELETE OR TRUNCATE ON dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Events of a partner that is not registered yet. They are applied, in park_seq order, in
-- the transaction that registers the partner (released_at and release_outcome are then set).
-- Parked once: a second copy of a parked event is a duplicate (or a conflict).
CREATE TABLE parked_events (
    event_id        uuid        PRIMARY KEY,
    park_seq        bigserial   NOT NULL UNIQUE,
    partner_id      text        COLLATE "C" NOT NULL,
    stream          text        NOT NULL,
    topic           text        NOT NULL,
    partition       integer     NOT NULL CHECK (partition >= 0),
    kafka_offset    bigint      NOT NULL CHECK (kafka_offset >= 0),
    fingerprint     bytea       NOT NULL,
    raw             bytea       NOT NULL,
    body            bytea       NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    release_outcome text        CHECK (release_outcome IN ('applied', 'dead_lettered')),
    UNIQUE (topic, partition, kafka_offset),
    CONSTRAINT parked_events_release CHECK ((released_at IS NULL) = (release_outcome IS NULL))
);
CREATE INDEX parked_events_waiting_idx ON parked_events (partner_id, park_seq)
    WHERE released_at IS NULL;

CREATE TABLE registered_partners (
    partner_id     text        COLLATE "C" PRIMARY KEY,
    -- The PartnerRegistered event that registered it (the first one accepted).
    event_id       uuid        NOT NULL,
    registered_at  timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per order line of an accepted SaleRecorded, and what reversals left of it.
CREATE TABLE orders (
    partner_id          text        COLLATE "C" NOT NULL,
    order_id            text        COLLATE "C" NOT NULL,
    line_id             text        COLLATE "C" NOT NULL,
    currency            text        NOT NULL,
    sale_event_id       uuid        NOT NULL,
    quantity_sold       bigint      NOT NULL CHECK (quantity_sold > 0),
    net_sold            bigint      NOT NULL CHECK (net_sold >= 0),
    quantity_remaining  bigint      NOT NULL
                        CHECK (quantity_remaining BETWEEN 0 AND quantity_sold),
    net_remaining       bigint      NOT NULL CHECK (net_remaining BETWEEN 0 AND net_sold),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, order_id, line_id)
);

REVOKE ALL ON ingest_log, dead_letters, parked_events, registered_partners, orders
    FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON ingest_log, dead_letters, parked_events, registered_partners,
    orders TO incentives_app;
GRANT USAGE, SELECT ON SEQUENCE inbox_arrival_seq_seq, parked_events_park_seq_seq
    TO incentives_app;
