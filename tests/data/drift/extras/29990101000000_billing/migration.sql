-- Object kinds the langfuse history does not have, as an application's migrations write them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE SCHEMA billing;
COMMENT ON SCHEMA billing IS 'Invoices and accounts';

CREATE COLLATION billing.bytewise (provider = libc, locale = 'C');
CREATE TYPE billing.plan AS ENUM ('free', 'pro', 'team');
CREATE DOMAIN billing.cents AS bigint DEFAULT 0 NOT NULL CONSTRAINT cents_positive CHECK (VALUE >= 0);
CREATE TYPE billing.price AS (amount billing.cents, currency text COLLATE "C");
CREATE TYPE billing.cents_range AS RANGE (subtype = bigint);
CREATE SEQUENCE billing.invoice_number START WITH 1000 INCREMENT BY 1 CACHE 1;

CREATE TABLE billing.account (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan billing.plan NOT NULL DEFAULT 'free',
    name text NOT NULL,
    email text COLLATE "C",
    balance billing.cents,
    name_lower text GENERATED ALWAYS AS (lower(name)) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    trial interval NOT NULL DEFAULT '14 days',
    since date DEFAULT '2026-01-31',
    renews_at timestamptz DEFAULT '2026-06-30 12:00:00+02',
    fee money DEFAULT 12.5,
    ratio double precision DEFAULT 0.1,
    secret bytea DEFAULT '\x00ff',
    note text DEFAULT E'it''s a \\ backslash',
    CONSTRAINT account_email_key UNIQUE (email)
);
CREATE TABLE billing.invoice (
    id serial PRIMARY KEY,
    number bigint NOT NULL DEFAULT nextval('billing.invoice_number'),
    account_id bigint NOT NULL REFERENCES billing.account (id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED,
    total billing.cents,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'void')),
    issued_on date NOT NULL DEFAULT CURRENT_DATE,
    period daterange,
    reference text COLLATE billing.bytewise,
    EXCLUDE USING gist (account_id WITH =, period WITH &&) WHERE (status <> 'void')
);
ALTER SEQUENCE billing.invoice_number OWNED BY billing.invoice.number;
CREATE UNIQUE INDEX invoice_number_key ON billing.invoice (number);
CREATE INDEX invoice_open ON billing.invoice (account_id) WHERE status = 'open';
CREATE INDEX account_name_trgm ON billing.account USING gin (name gin_trgm_ops);
CREATE STATISTICS billing.invoice_stats (dependencies) ON account_id, status FROM billing.invoice;

CREATE TABLE billing.event (id bigint NOT NULL, at timestamptz NOT NULL, payload jsonb)
    PARTITION BY RANGE (at);
CREATE TABLE billing.event_2026 PARTITION OF billing.event
    FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX event_at ON billing.event (at);
CREATE UNLOGGED TABLE billing.cache (key text PRIMARY KEY, value text) WITH (fillfactor = 70);

CREATE FUNCTION billing.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.issued_on := coalesce(NEW.issued_on, current_date);
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_touch BEFORE INSERT OR UPDATE ON billing.invoice
    FOR EACH ROW WHEN (NEW.status <> 'void') EXECUTE FUNCTION billing.touch();
CREATE FUNCTION billing.total_for(account bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(total), 0) FROM billing.invoice WHERE account_id = account
$$;
CREATE FUNCTION billing.open_count(account bigint) RETURNS bigint LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT count(*) FROM billing.invoice WHERE account_id = account AND status = 'open';
END;
CREATE PROCEDURE billing.void_all(account bigint) LANGUAGE sql AS $$
    UPDATE billing.invoice SET status = 'void' WHERE account_id = account
$$;
CREATE AGGREGATE billing.concat_all(text) (SFUNC = textcat, STYPE = text, INITCOND = '');

CREATE VIEW billing.open_invoices AS
    SELECT i.id, i.account_id, i.total FROM billing.invoice i WHERE i.status = 'open';
CREATE MATERIALIZED VIEW billing.account_totals AS
    SELECT a.id, billing.total_for(a.id) AS total FROM billing.account a;
CREATE UNIQUE INDEX account_totals_id ON billing.account_totals (id);

ALTER TABLE billing.account ENABLE ROW LEVEL SECURITY;
CREATE POLICY account_self ON billing.account FOR SELECT TO PUBLIC
    USING (email = current_user);
CREATE RULE invoice_keep_paid AS ON DELETE TO billing.invoice
    WHERE OLD.status = 'paid' DO INSTEAD NOTHING;

CREATE FUNCTION billing.ddl_seen() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
END
$$;
CREATE EVENT TRIGGER billing_ddl_seen ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION billing.ddl_seen();

COMMENT ON TABLE billing.account IS 'Customers';
COMMENT ON COLUMN billing.account.plan IS 'What they pay for';
COMMENT ON FUNCTION billing.total_for(bigint) IS 'Sum of the invoices';
COMMENT ON CONSTRAINT invoice_status_check ON billing.invoice IS 'Known states';
COMMENT ON INDEX billing.invoice_open IS 'Open invoices per account';

INSERT INTO billing.account (name, email) VALUES ('Ada', 'ada@example.com');
