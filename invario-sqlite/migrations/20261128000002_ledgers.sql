-- Many ledgers in one database, as in the PostgreSQL schema: each ledger has
-- its own chain, head, tree and checkpoints, and `ledger_id` leads every
-- primary key and unique index. SQLite cannot change a primary key in place,
-- so each ledger table is rebuilt; existing rows all move into 'default'.
-- Every trigger is recreated per ledger below.

-- The old triggers go first: one of them reads ledger_entries, which is rebuilt.
DROP TRIGGER transactions_no_update;
DROP TRIGGER transactions_no_delete;
DROP TRIGGER ledger_entries_no_update;
DROP TRIGGER ledger_entries_no_delete;
DROP TRIGGER ledger_entries_contiguous;
DROP TRIGGER ledger_head_no_insert;
DROP TRIGGER ledger_head_no_delete;
DROP TRIGGER ledger_head_moves_forward;
DROP TRIGGER tree_tiles_only_grow;
DROP TRIGGER tree_tiles_no_delete;
DROP TRIGGER tree_state_only_grows;
DROP TRIGGER tree_state_no_insert;
DROP TRIGGER tree_state_no_delete;
DROP TRIGGER checkpoints_no_update;
DROP TRIGGER checkpoints_no_delete;

CREATE TABLE ledgers (
    ledger_id  TEXT    PRIMARY KEY NOT NULL
               CHECK (length(ledger_id) BETWEEN 1 AND 63 AND ledger_id GLOB '[a-z0-9]*'
                      AND ledger_id NOT GLOB '*[^a-z0-9_-]*'),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO ledgers (ledger_id, created_at)
VALUES ('default', CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));

CREATE TABLE transactions_by_ledger (
    ledger_id      TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL CHECK (length(transaction_id) = 36),
    amount         TEXT    NOT NULL CHECK (amount <> ''),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
    occurred_at    INTEGER,
    metadata       TEXT    NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object'),
    PRIMARY KEY (ledger_id, transaction_id)
);
INSERT INTO transactions_by_ledger
SELECT 'default', transaction_id, amount, currency, occurred_at, metadata FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_by_ledger RENAME TO transactions;

CREATE TABLE ledger_entries_by_ledger (
    ledger_id       TEXT    NOT NULL,
    sequence_number INTEGER NOT NULL CHECK (sequence_number > 0),
    transaction_id  TEXT    NOT NULL,
    prev_hash       BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash      BLOB    NOT NULL CHECK (length(entry_hash) = 32),
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (ledger_id, sequence_number),
    UNIQUE (ledger_id, transaction_id)
) WITHOUT ROWID;
INSERT INTO ledger_entries_by_ledger
SELECT 'default', sequence_number, transaction_id, prev_hash, entry_hash, recorded_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_by_ledger RENAME TO ledger_entries;

CREATE TABLE ledger_head_by_ledger (
    ledger_id       TEXT    PRIMARY KEY NOT NULL,
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 0),
    entry_hash      BLOB    NOT NULL CHECK (length(entry_hash) = 32),
    recorded_at     INTEGER
) WITHOUT ROWID;
INSERT INTO ledger_head_by_ledger SELECT 'default', sequence_number, entry_hash, recorded_at FROM ledger_head;
DROP TABLE ledger_head;
ALTER TABLE ledger_head_by_ledger RENAME TO ledger_head;

CREATE TABLE tree_tiles_by_ledger (
    ledger_id  TEXT    NOT NULL,
    level      INTEGER NOT NULL CHECK (level BETWEEN 0 AND 7),
    tile_index INTEGER NOT NULL CHECK (tile_index >= 0),
    hashes     BLOB    NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (ledger_id, level, tile_index)
) WITHOUT ROWID;
INSERT INTO tree_tiles_by_ledger SELECT 'default', level, tile_index, hashes FROM tree_tiles;
DROP TABLE tree_tiles;
ALTER TABLE tree_tiles_by_ledger RENAME TO tree_tiles;

CREATE TABLE tree_state_by_ledger (
    ledger_id TEXT    PRIMARY KEY NOT NULL,
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    root_hash BLOB    NOT NULL CHECK (length(root_hash) = 32),
    frontier  BLOB    NOT NULL CHECK (length(frontier) % 32 = 0 AND length(frontier) <= 64 * 32)
) WITHOUT ROWID;
INSERT INTO tree_state_by_ledger SELECT 'default', tree_size, root_hash, frontier FROM tree_state;
DROP TABLE tree_state;
ALTER TABLE tree_state_by_ledger RENAME TO tree_state;

CREATE TABLE checkpoints_by_ledger (
    ledger_id TEXT    NOT NULL,
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    note      TEXT    NOT NULL CHECK (length(note) BETWEEN 1 AND 65536),
    PRIMARY KEY (ledger_id, tree_size)
) WITHOUT ROWID;
INSERT INTO checkpoints_by_ledger SELECT 'default', tree_size, note FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_by_ledger RENAME TO checkpoints;

-- Defence in depth, per ledger: the ledger is append-only.
CREATE TRIGGER ledgers_no_update BEFORE UPDATE ON ledgers BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on ledgers refused: the ledger is append-only');
END;
CREATE TRIGGER ledgers_no_delete BEFORE DELETE ON ledgers BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on ledgers refused: the ledger is append-only');
END;
CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on transactions refused: the ledger is append-only (restore from backup instead of editing rows)');
END;
CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on transactions refused: the ledger is append-only (restore from backup instead of editing rows)');
END;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on ledger_entries refused: the ledger is append-only (restore from backup instead of editing rows)');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on ledger_entries refused: the ledger is append-only (restore from backup instead of editing rows)');
END;
-- Each entry must extend its ledger's chain by exactly one.
CREATE TRIGGER ledger_entries_contiguous BEFORE INSERT ON ledger_entries
WHEN NEW.sequence_number <> (SELECT COALESCE(MAX(sequence_number), 0) + 1 FROM ledger_entries
                             WHERE ledger_id = NEW.ledger_id) BEGIN
    SELECT RAISE(ABORT, 'invario: sequence numbers must be contiguous');
END;
-- A head is inserted once, at genesis, when its ledger is created.
CREATE TRIGGER ledger_head_starts_empty BEFORE INSERT ON ledger_head
WHEN NEW.sequence_number <> 0 OR NEW.entry_hash <> zeroblob(32) OR NEW.recorded_at IS NOT NULL BEGIN
    SELECT RAISE(ABORT, 'invario: a new ledger''s head starts at sequence 0 with the zero hash');
END;
CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on ledger_head refused: the ledger is append-only');
END;
CREATE TRIGGER ledger_head_moves_forward BEFORE UPDATE ON ledger_head
WHEN NEW.ledger_id <> OLD.ledger_id
  OR NEW.sequence_number <= OLD.sequence_number
  OR NOT EXISTS (SELECT 1 FROM ledger_entries WHERE ledger_id = NEW.ledger_id
                 AND sequence_number = NEW.sequence_number AND entry_hash = NEW.entry_hash)
BEGIN
    SELECT RAISE(ABORT, 'invario: ledger_head may only move forward onto an existing entry: the ledger is append-only');
END;
CREATE TRIGGER tree_tiles_only_grow BEFORE UPDATE ON tree_tiles
WHEN NEW.ledger_id <> OLD.ledger_id OR NEW.level <> OLD.level OR NEW.tile_index <> OLD.tile_index
     OR length(OLD.hashes) = 8192
     OR length(NEW.hashes) <= length(OLD.hashes)
     OR substr(NEW.hashes, 1, length(OLD.hashes)) <> OLD.hashes
BEGIN
    SELECT RAISE(ABORT, 'invario: a tile may only grow: a full tile never changes, a partial one keeps its hashes');
END;
CREATE TRIGGER tree_tiles_no_delete BEFORE DELETE ON tree_tiles BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on tree_tiles refused: the ledger is append-only');
END;
CREATE TRIGGER tree_state_only_grows BEFORE UPDATE ON tree_state
WHEN NEW.ledger_id <> OLD.ledger_id OR NEW.tree_size <= OLD.tree_size
BEGIN
    SELECT RAISE(ABORT, 'invario: tree_state may only grow: the ledger is append-only');
END;
-- SHA-256 of the empty string is the root of the empty tree.
CREATE TRIGGER tree_state_starts_empty BEFORE INSERT ON tree_state
WHEN NEW.tree_size <> 0 OR length(NEW.frontier) <> 0
  OR NEW.root_hash <> X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' BEGIN
    SELECT RAISE(ABORT, 'invario: a new ledger''s tree starts empty');
END;
CREATE TRIGGER tree_state_no_delete BEFORE DELETE ON tree_state BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on tree_state refused: the ledger is append-only');
END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on checkpoints refused: the ledger is append-only');
END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on checkpoints refused: the ledger is append-only');
END;
