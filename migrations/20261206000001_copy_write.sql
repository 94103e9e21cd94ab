-- Large fenced writes by binary COPY (issue 27, lever L4). A write of many
-- rows goes as: BEGIN; invario_fence_v1 (lock and compare, as
-- invario_append_v2 does first); COPY transactions; COPY ledger_entries;
-- invario_advance_v1 (tiles, tree state, head); COMMIT. COPY inserts rows in
-- batches and PostgreSQL parses each chunk while the writer encodes the next,
-- where one call with arrays must arrive whole before it starts. Like the
-- append functions, these write what the core planned and decide nothing: no
-- hash is computed here and no id is looked up.

-- Raises IVK01 if the key epoch moved (when one is given) and IVF01 if the
-- ledger's head or tree moved since the writer's fence; otherwise leaves the
-- head and tree state locked until the transaction ends.
CREATE FUNCTION invario_fence_v1(
    p_key_epoch bigint,
    p_ledger text,
    p_fence_sequence bigint, p_fence_hash bytea, p_fence_tree_size bigint, p_fence_root bytea
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_key_epoch IS NOT NULL THEN
        PERFORM 1 FROM api_key_epoch WHERE epoch = p_key_epoch;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'invario: the API keys changed since the request''s key was read (epoch %)', p_key_epoch
                USING ERRCODE = 'IVK01';
        END IF;
    END IF;
    PERFORM 1 FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id
    WHERE h.ledger_id = p_ledger
      AND h.sequence_number = p_fence_sequence AND h.entry_hash = p_fence_hash
      AND s.tree_size = p_fence_tree_size AND s.root_hash = p_fence_root
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invario: ledger % moved since this writer''s last append (expected head % and tree size %)',
            p_ledger, p_fence_sequence, p_fence_tree_size
            USING ERRCODE = 'IVF01';
    END IF;
END;
$$;

-- After the rows: the tiles, the tree state and the head (the head-move
-- trigger finds the entry the head now points at).
CREATE FUNCTION invario_advance_v1(
    p_ledger text,
    p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_size bigint, p_root bytea, p_frontier bytea,
    p_head_sequence bigint, p_head_hash bytea, p_head_recorded timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes)
    SELECT p_ledger, * FROM unnest(p_tile_levels, p_tile_indexes, p_tile_hashes)
    ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes;

    UPDATE tree_state SET tree_size = p_tree_size, root_hash = p_root, frontier = p_frontier
    WHERE ledger_id = p_ledger;

    UPDATE ledger_head SET sequence_number = p_head_sequence, entry_hash = p_head_hash, recorded_at = p_head_recorded
    WHERE ledger_id = p_ledger;
END;
$$;
