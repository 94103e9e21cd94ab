-- A write can carry the key check (issue 27, lever L7): the key table's epoch
-- moves with every change the key cache watches (the same statements that
-- notify 'invario_api_keys'), and a key record is read together with the
-- epoch it was read at. A write authenticated from a cached record hands that
-- epoch to invario_append_v2, which writes nothing and raises SQLSTATE IVK01
-- if the epoch has moved since: a key revoked (or edited) before the write
-- began never writes, and the request is authenticated again from the table.
-- So a lone append needs no round trip to catch the key cache up first.
CREATE TABLE api_key_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch bigint NOT NULL
);
INSERT INTO api_key_epoch (epoch) VALUES (1);

-- A trigger of its own beside the notification's (which Citus replaces with a
-- coordinator-only version): where api_keys changes without this table — a
-- Citus worker's copy of the reference table — there is nothing to bump, and
-- Citus writes never carry an epoch.
CREATE FUNCTION invario_bump_key_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('api_key_epoch') IS NOT NULL THEN
        UPDATE api_key_epoch SET epoch = epoch + 1;
    END IF;
    RETURN NULL;
END
$$;

SET LOCAL citus.enable_unsafe_triggers = on;
CREATE TRIGGER api_keys_bump_epoch
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at
    ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION invario_bump_key_epoch();

-- invario_append_v1 with the key epoch checked first (NULL: no check, the
-- request's key was read from the table, not from a cache).
CREATE FUNCTION invario_append_v2(
    p_key_epoch bigint,
    p_ledger text,
    p_fence_sequence bigint, p_fence_hash bytea, p_fence_tree_size bigint, p_fence_root bytea,
    p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[], p_metadata text[],
    p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_size bigint, p_root bytea, p_frontier bytea,
    p_head_sequence bigint, p_head_hash bytea, p_head_recorded timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_key_epoch IS NOT NULL THEN
        PERFORM 1 FROM api_key_epoch WHERE epoch = p_key_epoch;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'invario: the API keys changed since the request''s key was read (epoch %)', p_key_epoch
                USING ERRCODE = 'IVK01';
        END IF;
    END IF;
    PERFORM invario_append_v1(
        p_ledger, p_fence_sequence, p_fence_hash, p_fence_tree_size, p_fence_root,
        p_ids, p_amounts, p_currencies, p_occurred, p_metadata,
        p_sequences, p_prev_hashes, p_entry_hashes, p_recorded,
        p_tile_levels, p_tile_indexes, p_tile_hashes,
        p_tree_size, p_root, p_frontier,
        p_head_sequence, p_head_hash, p_head_recorded);
END;
$$;
