-- Invario ledger schema v1 for SQLite (the embedded default). Same tables and
-- rules as PostgreSQL; times are µs since the Unix epoch, amounts their
-- canonical decimal text (so the scale survives), ids hyphenated UUID text.

CREATE TABLE transactions (
    transaction_id TEXT    PRIMARY KEY NOT NULL CHECK (length(transaction_id) = 36),
    amount         TEXT    NOT NULL CHECK (amount <> ''),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
    occurred_at    INTEGER,
    metadata       TEXT    NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object')
);

CREATE TABLE ledger_entries (
    sequence_number INTEGER PRIMARY KEY CHECK (sequence_number > 0),
    transaction_id  TEXT    NOT NULL UNIQUE,
    prev_hash       BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash      BLOB    NOT NULL CHECK (length(entry_hash) = 32),
    recorded_at     INTEGER NOT NULL
);

CREATE TABLE ledger_head (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    sequence_number INTEGER NOT NULL CHECK (sequence_number >= 0),
    entry_hash      BLOB    NOT NULL CHECK (length(entry_hash) = 32),
    recorded_at     INTEGER
);
INSERT INTO ledger_head (singleton, sequence_number, entry_hash, recorded_at) VALUES (1, 0, zeroblob(32), NULL);

CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY NOT NULL,
    owner        TEXT    NOT NULL CHECK (owner <> ''),
    prefix       TEXT    NOT NULL,
    key_hash     BLOB    NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scopes       TEXT    NOT NULL CHECK (json_type(scopes) = 'object'),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE INDEX api_keys_owner_idx ON api_keys (owner);
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix);

-- Defence in depth: the ledger is append-only.
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
-- Each entry must extend the chain by exactly one.
CREATE TRIGGER ledger_entries_contiguous BEFORE INSERT ON ledger_entries
WHEN NEW.sequence_number <> (SELECT COALESCE(MAX(sequence_number), 0) + 1 FROM ledger_entries) BEGIN
    SELECT RAISE(ABORT, 'invario: sequence numbers must be contiguous');
END;
CREATE TRIGGER ledger_head_no_insert BEFORE INSERT ON ledger_head BEGIN
    SELECT RAISE(ABORT, 'invario: INSERT on ledger_head refused: the ledger is append-only');
END;
CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on ledger_head refused: the ledger is append-only');
END;
CREATE TRIGGER ledger_head_moves_forward BEFORE UPDATE ON ledger_head
WHEN NEW.sequence_number <= OLD.sequence_number
  OR NOT EXISTS (SELECT 1 FROM ledger_entries WHERE sequence_number = NEW.sequence_number AND entry_hash = NEW.entry_hash)
BEGIN
    SELECT RAISE(ABORT, 'invario: ledger_head may only move forward onto an existing entry: the ledger is append-only');
END;
