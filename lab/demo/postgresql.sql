-- Demo dataset for the lab drill: a small shop. Deterministic (no random()), so two loads are identical.
-- Loaded into an empty database owned by the lab's app role by playbooks/dr_drill.yml.
\set ON_ERROR_STOP on
CREATE SCHEMA shop;
COMMENT ON SCHEMA shop IS 'demo shop of the runbook.stack lab';

CREATE TABLE shop.customers (
    id      serial PRIMARY KEY,
    name    text NOT NULL,
    email   text NOT NULL UNIQUE,
    created timestamptz NOT NULL
);
CREATE TABLE shop.products (
    id    serial PRIMARY KEY,
    sku   text NOT NULL UNIQUE,
    price numeric(10, 2) NOT NULL
);
CREATE TABLE shop.orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES shop.customers (id),
    product_id  int NOT NULL REFERENCES shop.products (id),
    quantity    int NOT NULL CHECK (quantity > 0),
    placed      timestamptz NOT NULL,
    note        text
);
CREATE INDEX orders_customer_idx ON shop.orders (customer_id);
CREATE INDEX orders_placed_idx ON shop.orders (placed);
CREATE TABLE shop.audit_log (
    id      bigserial PRIMARY KEY,
    event   jsonb NOT NULL,
    payload bytea
);

INSERT INTO shop.customers (name, email, created)
SELECT 'Customer ' || g, 'customer' || g || '@shop.example', timestamptz '2026-01-01' + g * interval '7 minutes'
FROM generate_series(1, 20000) g;

INSERT INTO shop.products (sku, price)
SELECT 'SKU-' || lpad(g::text, 5, '0'), round((1 + (g * 37) % 500)::numeric + 0.99, 2)
FROM generate_series(1, 500) g;

INSERT INTO shop.orders (customer_id, product_id, quantity, placed, note)
SELECT 1 + (g * 7919) % 20000, 1 + (g * 104729) % 500, 1 + g % 5,
       timestamptz '2026-01-01' + g * interval '61 seconds',
       CASE WHEN g % 10 = 0 THEN 'gift wrap: ' || md5(g::text) END
FROM generate_series(1::bigint, 150000) g;

INSERT INTO shop.audit_log (event, payload)
SELECT jsonb_build_object('kind', 'order', 'order_id', g, 'hash', md5(g::text)), decode(md5(g::text) || md5((g + 1)::text), 'hex')
FROM generate_series(1, 50000) g;

SELECT setval('shop.orders_id_seq', 150000);
