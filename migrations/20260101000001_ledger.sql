-- Invario ledger schema v1: transactions, the hash-chained entries, the head, API keys.

CREATE TABLE transactions (
    transaction_id uuid PRIMARY KEY,
    -- Unconstrained numeric keeps the scale exactly as sent ("100.50" stays "100.50").
    amount         numeric     NOT NULL CHECK (amount <> 0),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    occurred_at    timestamptz,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object')
);

-- No foreign key to transactions: verification already proves every entry has
-- its transaction (and every transaction its entry), and the key's per-row
-- check is a large share of bulk-insert cost.
CREATE TABLE ledger_entries (
    sequence_number bigint      PRIMARY KEY CHECK (sequence_number > 0),
    transaction_id  uuid        NOT NULL UNIQUE,
    prev_hash       bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    entry_hash      bytea       NOT NULL CHECK (octet_length(entry_hash) = 32),
    recorded_at     timestamptz NOT NULL
);

CREATE TABLE ledger_head (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    sequence_number bigint      NOT NULL CHECK (sequence_number >= 0),
    entry_hash      bytea       NOT NULL CHECK (octet_length(entry_hash) = 32),
    recorded_at     timestamptz,
    CHECK ((sequence_number = 0) = (recorded_at IS NULL))
);
INSERT INTO ledger_head (sequence_number, entry_hash, recorded_at)
VALUES (0, decode(repeat('00', 32), 'hex'), NULL);

CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    owner        text        NOT NULL CHECK (owner <> ''),
    prefix       text        NOT NULL CHECK (prefix LIKE 'inv\_live\_%'),
    key_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    scopes       jsonb       NOT NULL CHECK (jsonb_typeof(scopes) = 'object'),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_owner_idx ON api_keys (owner);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);

-- Defence in depth: the ledger is append-only. These triggers make an
-- accidental edit fail loudly; a superuser can bypass them, which is what
-- verification is for.
CREATE FUNCTION invario_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invario: % on % refused: the ledger is append-only (restore from backup instead of editing rows)',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledger_head_no_delete BEFORE INSERT OR DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledger_head_no_truncate BEFORE TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();

-- Every insert statement must extend the head by contiguous sequence numbers
-- (checked once per statement, so multi-row appends stay cheap).
CREATE FUNCTION invario_check_contiguous_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_sequence bigint;
    low bigint;
    high bigint;
    inserted bigint;
BEGIN
    SELECT sequence_number INTO head_sequence FROM ledger_head;
    SELECT min(sequence_number), max(sequence_number), count(*) INTO low, high, inserted FROM appended;
    IF inserted > 0 AND (low <> head_sequence + 1 OR high - low + 1 <> inserted) THEN
        RAISE EXCEPTION 'invario: entries % to % do not extend the head at %: sequence numbers must be contiguous',
            low, high, head_sequence
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_entries_contiguous AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION invario_check_contiguous_append();

-- The head only ever moves forward, onto an entry that exists with that hash.
CREATE FUNCTION invario_check_head_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sequence_number <= OLD.sequence_number THEN
        RAISE EXCEPTION 'invario: ledger_head may only move forward (from % to %): the ledger is append-only',
            OLD.sequence_number, NEW.sequence_number
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ledger_entries
                   WHERE sequence_number = NEW.sequence_number AND entry_hash = NEW.entry_hash) THEN
        RAISE EXCEPTION 'invario: ledger_head must point at an existing entry (sequence %)', NEW.sequence_number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_head_moves_forward BEFORE UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION invario_check_head_move();
