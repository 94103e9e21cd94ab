-- The Merkle tree over the ledger (RFC 9162, stored as C2SP tlog-tiles), as in
-- the PostgreSQL schema: tiles of up to 256 hashes, one state row with the
-- size, root and compact range. Same guards: tiles only grow, the state only
-- moves forward, nothing is deleted.
CREATE TABLE tree_tiles (
    level      INTEGER NOT NULL CHECK (level BETWEEN 0 AND 7),
    tile_index INTEGER NOT NULL CHECK (tile_index >= 0),
    hashes     BLOB    NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (level, tile_index)
) WITHOUT ROWID;

CREATE TABLE tree_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    root_hash BLOB    NOT NULL CHECK (length(root_hash) = 32),
    frontier  BLOB    NOT NULL CHECK (length(frontier) % 32 = 0 AND length(frontier) <= 64 * 32)
);
-- SHA-256 of the empty string: the root of the empty tree.
INSERT INTO tree_state (singleton, tree_size, root_hash, frontier)
VALUES (1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', X'');

CREATE TRIGGER tree_tiles_only_grow BEFORE UPDATE ON tree_tiles
WHEN NEW.level <> OLD.level OR NEW.tile_index <> OLD.tile_index
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
WHEN NEW.tree_size <= OLD.tree_size
BEGIN
    SELECT RAISE(ABORT, 'invario: tree_state may only grow: the ledger is append-only');
END;
CREATE TRIGGER tree_state_no_insert BEFORE INSERT ON tree_state BEGIN
    SELECT RAISE(ABORT, 'invario: INSERT on tree_state refused: the ledger is append-only');
END;
CREATE TRIGGER tree_state_no_delete BEFORE DELETE ON tree_state BEGIN
    SELECT RAISE(ABORT, 'invario: DELETE on tree_state refused: the ledger is append-only');
END;
