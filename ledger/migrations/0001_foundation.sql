-- Where each consumer group stands in each partition, written in the same transaction as
-- the effects of the messages before that offset (DESIGN.md section 7). On assignment a
-- worker resumes from here, not from Kafka's committed offsets.
CREATE TABLE consumer_positions (
    group_id    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint  NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- The smoke flow's effect: one row per consumed message. The primary key makes a message
-- written twice an error rather than a silent duplicate, which is what the smoke test proves.
CREATE TABLE smoke_deliveries (
    topic     text    NOT NULL,
    partition integer NOT NULL,
    "offset"  bigint  NOT NULL,
    key       text,
    value     bytea   NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
