-- One database round trip per append (issue 27, levers L1 and L3): the writer
-- keeps the head and the tree's right edge in memory and calls this function
-- in autocommit on its own connection. It writes the rows the core planned and
-- hashed — transactions, entries, tiles, tree state, head — and decides
-- nothing: no hash is computed here and no id is looked up. It first locks the
-- head and the tree state and compares them with the writer's fence; if
-- another writer moved them it raises SQLSTATE IVF01 and writes nothing, and
-- the writer falls back to reading under the lock. A stored transaction id
-- raises 23505 from the unique keys, and the whole call rolls back.
--
-- Separate statements keep the guards' semantics: the entries' statement
-- trigger checks contiguity against the head before the head moves, and the
-- head-move trigger finds the entry it points at.
CREATE FUNCTION invario_append_v1(
    p_ledger text,
    p_fence_sequence bigint, p_fence_hash bytea, p_fence_tree_size bigint, p_fence_root bytea,
    p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[], p_metadata text[],
    p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_size bigint, p_root bytea, p_frontier bytea,
    p_head_sequence bigint, p_head_hash bytea, p_head_recorded timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
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

    INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata)
    SELECT p_ledger, id, amount::numeric, currency, occurred_at, metadata::jsonb
    FROM unnest(p_ids, p_amounts, p_currencies, p_occurred, p_metadata)
         AS batch(id, amount, currency, occurred_at, metadata);

    INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at)
    SELECT p_ledger, * FROM unnest(p_sequences, p_ids, p_prev_hashes, p_entry_hashes, p_recorded);

    INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes)
    SELECT p_ledger, * FROM unnest(p_tile_levels, p_tile_indexes, p_tile_hashes)
    ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes;

    UPDATE tree_state SET tree_size = p_tree_size, root_hash = p_root, frontier = p_frontier
    WHERE ledger_id = p_ledger;

    UPDATE ledger_head SET sequence_number = p_head_sequence, entry_hash = p_head_hash, recorded_at = p_head_recorded
    WHERE ledger_id = p_ledger;
END;
$$;
