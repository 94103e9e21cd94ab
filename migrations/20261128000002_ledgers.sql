-- Many ledgers in one database. Each ledger has its own chain, head, tree and
-- checkpoints; `ledger_id` leads every primary key and unique index, so one
-- ledger's rows never constrain another's and a distributed PostgreSQL (Citus)
-- can keep each ledger's rows together, distributed by `ledger_id`. Nothing
-- here is global to all ledgers but the list of ledgers and the API keys.
-- Existing rows all move into the ledger 'default'.

CREATE TABLE ledgers (
    ledger_id  text        PRIMARY KEY CHECK (ledger_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at timestamptz NOT NULL
);
INSERT INTO ledgers (ledger_id, created_at) VALUES ('default', now());

-- The column is added with a default so existing rows land in 'default'
-- without a rewrite; the default is then dropped so that every write names
-- its ledger.
ALTER TABLE transactions ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE transactions ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE transactions DROP CONSTRAINT transactions_pkey;
ALTER TABLE transactions ADD PRIMARY KEY (ledger_id, transaction_id);

ALTER TABLE ledger_entries ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE ledger_entries ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_transaction_id_key;
ALTER TABLE ledger_entries ADD PRIMARY KEY (ledger_id, sequence_number);
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_transaction_id_key UNIQUE (ledger_id, transaction_id);

ALTER TABLE ledger_head ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE ledger_head ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE ledger_head DROP CONSTRAINT ledger_head_pkey;
ALTER TABLE ledger_head DROP COLUMN singleton;
ALTER TABLE ledger_head ADD PRIMARY KEY (ledger_id);

ALTER TABLE tree_tiles ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE tree_tiles ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE tree_tiles DROP CONSTRAINT tree_tiles_pkey;
ALTER TABLE tree_tiles ADD PRIMARY KEY (ledger_id, level, tile_index);

ALTER TABLE tree_state ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE tree_state ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE tree_state DROP CONSTRAINT tree_state_pkey;
ALTER TABLE tree_state DROP COLUMN singleton;
ALTER TABLE tree_state ADD PRIMARY KEY (ledger_id);

ALTER TABLE checkpoints ADD COLUMN ledger_id text NOT NULL DEFAULT 'default';
ALTER TABLE checkpoints ALTER COLUMN ledger_id DROP DEFAULT;
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_pkey;
ALTER TABLE checkpoints ADD PRIMARY KEY (ledger_id, tree_size);

-- A ledger's head and tree state are inserted once, empty, when it is
-- created; after that they only move forward and are never deleted.
CREATE FUNCTION invario_check_genesis_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sequence_number <> 0 OR NEW.entry_hash <> decode(repeat('00', 32), 'hex') THEN
        RAISE EXCEPTION 'invario: a new ledger''s head starts at sequence 0 with the zero hash (ledger %)', NEW.ledger_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER ledger_head_no_delete ON ledger_head;
CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledger_head_starts_empty BEFORE INSERT ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION invario_check_genesis_head();

CREATE FUNCTION invario_check_empty_tree() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tree_size <> 0 OR NEW.root_hash <> sha256(''::bytea) OR NEW.frontier <> ''::bytea THEN
        RAISE EXCEPTION 'invario: a new ledger''s tree starts empty (ledger %)', NEW.ledger_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER tree_state_no_delete ON tree_state;
CREATE TRIGGER tree_state_no_delete BEFORE DELETE ON tree_state
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER tree_state_starts_empty BEFORE INSERT ON tree_state
    FOR EACH ROW EXECUTE FUNCTION invario_check_empty_tree();

-- The guards of the first migrations, per ledger.
CREATE OR REPLACE FUNCTION invario_check_contiguous_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refused record;
BEGIN
    SELECT appended_range.ledger_id, low, high, head.sequence_number AS head_sequence INTO refused
    FROM (SELECT ledger_id, min(sequence_number) AS low, max(sequence_number) AS high, count(*) AS inserted
          FROM appended GROUP BY ledger_id) AS appended_range
    LEFT JOIN ledger_head head USING (ledger_id)
    WHERE head.ledger_id IS NULL OR low <> head.sequence_number + 1 OR high - low + 1 <> inserted
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invario: entries % to % of ledger % do not extend its head at %: sequence numbers must be contiguous',
            refused.low, refused.high, refused.ledger_id, refused.head_sequence
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION invario_check_head_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_id <> OLD.ledger_id OR NEW.sequence_number <= OLD.sequence_number THEN
        RAISE EXCEPTION 'invario: ledger_head of % may only move forward (from % to %): the ledger is append-only',
            OLD.ledger_id, OLD.sequence_number, NEW.sequence_number
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ledger_entries
                   WHERE ledger_id = NEW.ledger_id AND sequence_number = NEW.sequence_number
                     AND entry_hash = NEW.entry_hash) THEN
        RAISE EXCEPTION 'invario: ledger_head of % must point at an existing entry (sequence %)',
            NEW.ledger_id, NEW.sequence_number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION invario_check_tile_growth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_id <> OLD.ledger_id OR NEW.level <> OLD.level OR NEW.tile_index <> OLD.tile_index
       OR octet_length(OLD.hashes) = 8192
       OR octet_length(NEW.hashes) <= octet_length(OLD.hashes)
       OR substring(NEW.hashes FROM 1 FOR octet_length(OLD.hashes)) <> OLD.hashes THEN
        RAISE EXCEPTION 'invario: tile %/% of ledger % may only grow: a full tile never changes, a partial one keeps its hashes',
            OLD.level, OLD.tile_index, OLD.ledger_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION invario_check_tree_growth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_id <> OLD.ledger_id OR NEW.tree_size <= OLD.tree_size THEN
        RAISE EXCEPTION 'invario: tree_state of % may only grow (from % to %): the ledger is append-only',
            OLD.ledger_id, OLD.tree_size, NEW.tree_size
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledgers_append_only BEFORE UPDATE OR DELETE ON ledgers
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER ledgers_no_truncate BEFORE TRUNCATE ON ledgers
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();
