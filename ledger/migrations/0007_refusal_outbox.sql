-- 0007: command_refusals becomes an outbox, like dead_letters (0003). The worker publishes
-- each refusal to the refusals topic after the batch that wrote it commits, then sets
-- published_at (processors/refusals.py). Rows written before this migration start
-- unpublished, so they are sent once too, the next time their partition is assigned.

ALTER TABLE command_refusals ADD COLUMN published_at timestamptz;

-- What a worker looks for after a batch and on assignment; small, since rows leave it
-- once published.
CREATE INDEX command_refusals_unpublished_idx ON command_refusals (event_id)
    WHERE published_at IS NULL;

-- 0005's statement trigger refused every UPDATE. Now only the outbox mark may be set, once;
-- a refusal itself never changes. DELETE and TRUNCATE stay refused for everyone.
DROP TRIGGER command_refusals_append_only ON command_refusals;

CREATE FUNCTION command_refusals_mark_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.published_at IS NULL AND NEW.published_at IS NOT NULL
       AND (NEW.event_id, NEW.partner_id, NEW.event_type, NEW.code, NEW.path, NEW.message,
            NEW.occurred_at, NEW.recorded_at)
           IS NOT DISTINCT FROM
           (OLD.event_id, OLD.partner_id, OLD.event_type, OLD.code, OLD.path, OLD.message,
            OLD.occurred_at, OLD.recorded_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'command_refusals: only published_at may be set, once (event %)',
        OLD.event_id
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER command_refusals_mark_only
    BEFORE UPDATE ON command_refusals FOR EACH ROW EXECUTE FUNCTION command_refusals_mark_only();
CREATE TRIGGER command_refusals_append_only
    BEFORE DELETE OR TRUNCATE ON command_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- The application may set the mark and nothing else: a column privilege, so even with the
-- trigger disabled the worker's role cannot rewrite a reason.
GRANT UPDATE (published_at) ON command_refusals TO incentives_app;
