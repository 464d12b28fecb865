-- 0010: least privilege. Every process connects as its own role (README, "Roles and
-- principals"); this migration says what each may do. It is run by the migration owner,
-- the role that owns every object here and the only one that runs DDL.
--
--   incentives_writer   the ledger workers: append to the ledger, the inbox and the logs,
--                       set the outbox marks, keep the state that is state by design
--                       (positions, partner state and orders, projections, program spend,
--                       the timer's state); read the program versions.
--   incentives_reader   the finance API and the query commands: read the ledger, the
--                       projections, the programs and what was refused or rejected; not
--                       the raw inputs (inbox, parked events).
--   incentives_auditor  reads everything, now and in later migrations (default
--                       privileges), and appends checkpoints of the chain heads.
--
-- Nobody but the owner may UPDATE or DELETE history: the privileges say so, and the
-- triggers of 0002-0007 say it again for the owner. A non-owner can neither disable a
-- trigger nor set session_replication_role (superuser only).
--
-- Roles are cluster-wide, hence create-if-missing, as NOLOGIN groups: a deployment grants
-- them to the login roles its processes use (GRANT incentives_writer TO <login>), or
-- creates login roles of these names beforehand (the local stack does). Creating them here
-- needs CREATEROLE; a DBA who created them already spares the owner that right.
DO $$
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['incentives_writer', 'incentives_reader', 'incentives_auditor']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
END;
$$;

-- Authors are principals: the Kafka principal that published each accepted message, as
-- the topic's ACL proves it (only that principal may write the topic; see
-- docs/integration.md, "Authentication and authorisation"). NULL for messages accepted
-- before this migration.
ALTER TABLE inbox ADD COLUMN principal text;

-- Who issued each command: the principal that published it beside the author, approver or
-- submitter it names, for the auditor and finance, without the rest of the raw inputs.
CREATE VIEW command_provenance AS
SELECT i.event_id, i.event_type, i.partner_id, i.stream, i.topic, i.principal,
       b ->> 'author' AS author, b ->> 'approver' AS approver,
       b ->> 'submitted_by' AS submitted_by, i.occurred_at, i.received_at, i.arrival_seq
FROM inbox i
CROSS JOIN LATERAL (SELECT convert_from(i.body, 'UTF8')::jsonb AS b) AS body
WHERE i.stream IN ('commands', 'clock');

-- The role of 0002, never granted to a login, gives way to the three below.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM incentives_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM incentives_app;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO incentives_writer, incentives_reader, incentives_auditor;

-- The writer. History: insert and read, never change.
GRANT SELECT, INSERT ON ledger_records, ledger_postings, inbox, registered_partners,
    ingest_log, dead_letters, parked_events, command_refusals, smoke_deliveries
    TO incentives_writer;
-- The one change each log allows (the triggers of 0003 and 0007 check the rest): a parked
-- message resolved, an outbox row marked published.
GRANT UPDATE (outcome, code, resolved_at) ON ingest_log TO incentives_writer;
GRANT UPDATE (released_at, release_outcome) ON parked_events TO incentives_writer;
GRANT UPDATE (published_at) ON dead_letters, command_refusals TO incentives_writer;
-- State by design: rebuildable from the ledger, or the worker's own bookkeeping.
GRANT SELECT, INSERT, UPDATE ON consumer_positions, partner_state, program_spend, clock_state
    TO incentives_writer;
GRANT SELECT, INSERT ON orders TO incentives_writer;
GRANT UPDATE (quantity_remaining, net_remaining, updated_at) ON orders TO incentives_writer;
-- Orders past their keep date are purged; projections are upserted, and rebuilt.
GRANT SELECT, INSERT, UPDATE, DELETE ON partner_orders, account_balances, partner_tiers
    TO incentives_writer;
-- The rules in force: read, never written (program versions are published by the owner).
GRANT SELECT ON program_versions TO incentives_writer;
GRANT USAGE ON SEQUENCE inbox_arrival_seq_seq, parked_events_park_seq_seq TO incentives_writer;

-- The reader.
GRANT SELECT ON ledger_records, ledger_postings, chain_checkpoints, partner_state,
    account_balances, partner_tiers, program_versions, program_spend, command_refusals,
    command_provenance, dead_letters, ingest_log, consumer_positions, registered_partners,
    clock_state, schema_migrations
    TO incentives_reader;

-- The auditor: everything, also what later migrations create.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO incentives_auditor;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO incentives_auditor;
GRANT INSERT ON chain_checkpoints TO incentives_auditor;
