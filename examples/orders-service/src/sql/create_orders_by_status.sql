-- Migration 1 of the read model of orders by status, beside the store's tables in its
-- schema; applied once per schema and recorded (`PgOrderList`'s `MIGRATIONS`). Never edit
-- it once released: put a change in a new migration. `IF NOT EXISTS` because releases
-- before the table was declared made it by hand at start, without a record: on their
-- schemas this step adopts the table as it is.
CREATE TABLE IF NOT EXISTS {schema}.orders_by_status (
    order_id    text PRIMARY KEY,
    customer    text NOT NULL,
    status      text NOT NULL,
    total_cents bigint NOT NULL,
    paid_cents  bigint NOT NULL,
    -- The order's version the row includes: an event at or below it changes nothing.
    version     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_status_status
    ON {schema}.orders_by_status (status, order_id);
