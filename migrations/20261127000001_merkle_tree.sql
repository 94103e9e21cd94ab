-- The Merkle tree over the ledger (RFC 9162, stored as C2SP tlog-tiles): tiles
-- of up to 256 hashes per tile level, and one state row with the tree's size,
-- root and compact range ("frontier": one 32-byte hash per set bit of the
-- size, largest subtree first). Written in the same transaction as the
-- entries; `invario migrate` builds it for entries older than this migration.
CREATE TABLE tree_tiles (
    level      smallint NOT NULL CHECK (level BETWEEN 0 AND 7),
    tile_index bigint   NOT NULL CHECK (tile_index >= 0),
    hashes     bytea    NOT NULL CHECK (octet_length(hashes) BETWEEN 32 AND 8192 AND octet_length(hashes) % 32 = 0),
    PRIMARY KEY (level, tile_index)
);

CREATE TABLE tree_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tree_size bigint  NOT NULL CHECK (tree_size >= 0),
    root_hash bytea   NOT NULL CHECK (octet_length(root_hash) = 32),
    frontier  bytea   NOT NULL CHECK (octet_length(frontier) % 32 = 0 AND octet_length(frontier) <= 64 * 32)
);
INSERT INTO tree_state (tree_size, root_hash, frontier) VALUES (0, sha256(''::bytea), ''::bytea);

-- Defence in depth, as for the ledger tables: a full tile never changes, a
-- partial tile may only grow (its old hashes stay a prefix), the state only
-- moves forward, and nothing is deleted.
CREATE FUNCTION invario_check_tile_growth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.level <> OLD.level OR NEW.tile_index <> OLD.tile_index
       OR octet_length(OLD.hashes) = 8192
       OR octet_length(NEW.hashes) <= octet_length(OLD.hashes)
       OR substring(NEW.hashes FROM 1 FOR octet_length(OLD.hashes)) <> OLD.hashes THEN
        RAISE EXCEPTION 'invario: tile %/% may only grow: a full tile never changes, a partial one keeps its hashes',
            OLD.level, OLD.tile_index
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tree_tiles_only_grow BEFORE UPDATE ON tree_tiles
    FOR EACH ROW EXECUTE FUNCTION invario_check_tile_growth();
CREATE TRIGGER tree_tiles_no_delete BEFORE DELETE ON tree_tiles
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER tree_tiles_no_truncate BEFORE TRUNCATE ON tree_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();

CREATE FUNCTION invario_check_tree_growth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tree_size <= OLD.tree_size THEN
        RAISE EXCEPTION 'invario: tree_state may only grow (from % to %): the ledger is append-only',
            OLD.tree_size, NEW.tree_size
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tree_state_only_grows BEFORE UPDATE ON tree_state
    FOR EACH ROW EXECUTE FUNCTION invario_check_tree_growth();
CREATE TRIGGER tree_state_no_delete BEFORE INSERT OR DELETE ON tree_state
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER tree_state_no_truncate BEFORE TRUNCATE ON tree_state
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();
