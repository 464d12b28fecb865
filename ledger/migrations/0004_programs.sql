-- Published program versions. A ledger record names (program_id, program_version); this
-- table keeps the exact source text behind that pair, with its sha256, so an auditor can
-- retrieve and re-hash what was in force. Versions are append-only like the ledger.
CREATE TABLE program_versions (
    program_id     text COLLATE "C" NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    source_name    text NOT NULL,
    source_text    bytea NOT NULL,
    effective_from date NOT NULL,
    effective_to   date,
    published_at   timestamptz NOT NULL DEFAULT now(),
    published_by   text NOT NULL,
    PRIMARY KEY (program_id, version),
    CHECK (effective_to IS NULL OR effective_to >= effective_from)
);

CREATE TRIGGER program_versions_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON program_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

GRANT SELECT, INSERT ON program_versions TO incentives_app;
