-- 0009: orders apart from the partner state (processors/ledger_writer.py).
--
-- What each sold order earned, per line and rule, is what a reversal takes back; a large
-- partner has tens of thousands of them. Kept inside partner_state.state they made the
-- state megabytes large, read and written whole by every batch. Here, one row per order:
-- a batch reads only the orders its sales and reversals name, and writes only those.
-- ``state`` is the order's JSON (processors.engine.OrderState). Rows whose keep_until has
-- passed the partner's pruning day are deleted; the engine treats them as gone anyway.
-- Orders still inside older partner states move here the next time the partner is written.
CREATE TABLE partner_orders (
    partner_id  text  COLLATE "C" NOT NULL,
    order_id    text  COLLATE "C" NOT NULL,
    keep_until  date  NOT NULL,
    state       jsonb NOT NULL,
    PRIMARY KEY (partner_id, order_id)
);
CREATE INDEX partner_orders_keep_idx ON partner_orders (partner_id, keep_until);

REVOKE ALL ON partner_orders FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON partner_orders TO incentives_app;
