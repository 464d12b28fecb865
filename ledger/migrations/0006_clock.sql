-- 0006: event time, and the timer that closes periods and posts due work (processors/clock.py).

-- The latest event time consumed from each source partition (the largest occurred_at of a
-- valid message, whatever its outcome), stored with the position in the batch's
-- transaction. The event-time watermark is the smallest of these over the partitions.
ALTER TABLE consumer_positions ADD COLUMN event_time timestamptz;

-- When ``due`` will next post something for the partner (processors.engine.next_due),
-- kept in step with ``state``, so that an AdvanceClock locks and loads only those partners.
ALTER TABLE partner_state ADD COLUMN next_due_at timestamptz;
CREATE INDEX partner_state_next_due_idx ON partner_state (next_due_at)
    WHERE next_due_at IS NOT NULL;

-- What the timer of a consumer group has sent: the next month to close automatically and
-- the moment the clock was last advanced to. A restarted worker carries on from here; what
-- it sends again after a crash has the same event id and is a counted duplicate.
CREATE TABLE clock_state (
    group_id        text        PRIMARY KEY,
    next_close      text        CHECK (next_close ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    advanced_to     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON clock_state FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON clock_state TO incentives_app;
