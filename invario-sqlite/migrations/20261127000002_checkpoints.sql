-- A copy of every checkpoint the service signed, for serving only: the
-- reference is the checkpoint directory outside the database, never this table.
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    note      TEXT    NOT NULL CHECK (length(note) BETWEEN 1 AND 65536)
);
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on checkpoints refused: the ledger is append-only');
END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on checkpoints refused: the ledger is append-only');
END;
