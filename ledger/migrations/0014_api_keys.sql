-- 0014: the finance API's keys (projections/api/keys.py). A key is shown once, when it is
-- made (`incentives api-keys create`); only the SHA-256 of its secret part is stored, so
-- neither this table nor a copy of it lets anyone call the API. `key_id` is the key's
-- public prefix, for looking it up and for naming it in logs and in the commands it sends.
CREATE TABLE api_keys (
    key_id       text        PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{12}$'),
    secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    role         text        NOT NULL CHECK (role IN ('finance', 'auditor', 'partner')),
    partner_id   text        COLLATE "C",
    label        text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CONSTRAINT api_keys_partner CHECK ((role = 'partner') = (partner_id IS NOT NULL))
);

REVOKE ALL ON api_keys FROM PUBLIC;
-- Keys are made and revoked by the owner (`incentives api-keys`, an administrator's
-- command like `programs publish`); the API, on the read-only role, only looks them up.
GRANT SELECT ON api_keys TO incentives_reader;
