-- Ledgers share a commit (issue 27, lever L8; plain PostgreSQL only, never
-- Citus): the writes that several ledgers' writers have ready at the same
-- moment go to the database in one call, one transaction and one WAL flush,
-- instead of one commit per ledger. Like invario_append_v2 it writes the rows
-- the core planned and decides nothing; each ledger keeps its own outcome, as
-- if it had called invario_append_v2 alone:
--   NULL     written;
--   IVK01    its key epoch moved: nothing of it written;
--   IVF01    its fence did not hold: nothing of it written;
--   any other SQLSTATE (23505 for an id stored already, a guard's refusal):
--            nothing of it written, with the message.
-- The others' writes go on. Heads are locked in ledger-name order, so two
-- servers sharing commits over the same ledgers cannot deadlock.
--
-- Rows, tiles and per-ledger values are the arguments of invario_append_v1
-- laid end to end; p_row_ledgers and p_tile_ledgers give each row's and
-- tile's ledger as a 1-based index into p_ledgers.

-- The writes of the ledgers flagged in p_write, one statement per table for
-- all of them: the entries' statement trigger checks each ledger's range
-- against its own head before the heads move, and each head-move trigger
-- finds its entry.
CREATE FUNCTION invario_write_planned_v1(
    p_write boolean[], p_ledgers text[],
    p_row_ledgers int[], p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[],
    p_metadata text[], p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_ledgers int[], p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_sizes bigint[], p_roots bytea[], p_frontiers bytea[],
    p_head_sequences bigint[], p_head_hashes bytea[], p_head_recorded timestamptz[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata)
    SELECT p_ledgers[batch.ledger], batch.id, batch.amount::numeric, batch.currency, batch.occurred_at,
           batch.metadata::jsonb
    FROM unnest(p_row_ledgers, p_ids, p_amounts, p_currencies, p_occurred, p_metadata)
         AS batch(ledger, id, amount, currency, occurred_at, metadata)
    WHERE p_write[batch.ledger];

    INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at)
    SELECT p_ledgers[batch.ledger], batch.sequence_number, batch.id, batch.prev_hash, batch.entry_hash,
           batch.recorded_at
    FROM unnest(p_row_ledgers, p_sequences, p_ids, p_prev_hashes, p_entry_hashes, p_recorded)
         AS batch(ledger, sequence_number, id, prev_hash, entry_hash, recorded_at)
    WHERE p_write[batch.ledger];

    INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes)
    SELECT p_ledgers[tile.ledger], tile.level, tile.tile_index, tile.hashes
    FROM unnest(p_tile_ledgers, p_tile_levels, p_tile_indexes, p_tile_hashes)
         AS tile(ledger, level, tile_index, hashes)
    WHERE p_write[tile.ledger]
    ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes;

    UPDATE tree_state s SET tree_size = grown.tree_size, root_hash = grown.root_hash, frontier = grown.frontier
    FROM unnest(p_write, p_ledgers, p_tree_sizes, p_roots, p_frontiers)
         AS grown(write, ledger_id, tree_size, root_hash, frontier)
    WHERE grown.write AND s.ledger_id = grown.ledger_id;

    UPDATE ledger_head h SET sequence_number = moved.sequence_number, entry_hash = moved.entry_hash,
                             recorded_at = moved.recorded_at
    FROM unnest(p_write, p_ledgers, p_head_sequences, p_head_hashes, p_head_recorded)
         AS moved(write, ledger_id, sequence_number, entry_hash, recorded_at)
    WHERE moved.write AND h.ledger_id = moved.ledger_id;
END;
$$;

CREATE FUNCTION invario_append_many_v1(
    p_key_epochs bigint[], p_ledgers text[],
    p_fence_sequences bigint[], p_fence_hashes bytea[], p_fence_tree_sizes bigint[], p_fence_roots bytea[],
    p_row_ledgers int[], p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[],
    p_metadata text[], p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_ledgers int[], p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_sizes bigint[], p_roots bytea[], p_frontiers bytea[],
    p_head_sequences bigint[], p_head_hashes bytea[], p_head_recorded timestamptz[]
) RETURNS TABLE (code text, message text) LANGUAGE plpgsql AS $$
DECLARE
    ledger_count int := cardinality(p_ledgers);
    codes text[] := array_fill(NULL::text, ARRAY[ledger_count]);
    messages text[] := array_fill(NULL::text, ARRAY[ledger_count]);
    admitted boolean[] := array_fill(false, ARRAY[ledger_count]);
    alone boolean[];
    current_epoch bigint;
    i int;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_key_epochs) AS epoch WHERE epoch IS NOT NULL) THEN
        SELECT epoch INTO current_epoch FROM api_key_epoch;
        FOR i IN 1..ledger_count LOOP
            IF p_key_epochs[i] IS DISTINCT FROM current_epoch AND p_key_epochs[i] IS NOT NULL THEN
                codes[i] := 'IVK01';
                messages[i] := format('invario: the API keys changed since the request''s key was read (epoch %s)',
                                      p_key_epochs[i]);
            END IF;
        END LOOP;
    END IF;

    FOR i IN
        SELECT fence.slot::int FROM ledger_head h
        JOIN tree_state s ON s.ledger_id = h.ledger_id
        JOIN unnest(p_ledgers, p_fence_sequences, p_fence_hashes, p_fence_tree_sizes, p_fence_roots)
             WITH ORDINALITY AS fence(ledger_id, sequence_number, entry_hash, tree_size, root_hash, slot)
          ON h.ledger_id = fence.ledger_id
        WHERE codes[fence.slot::int] IS NULL
          AND h.sequence_number = fence.sequence_number AND h.entry_hash = fence.entry_hash
          AND s.tree_size = fence.tree_size AND s.root_hash = fence.root_hash
        ORDER BY h.ledger_id
        FOR UPDATE OF h, s
    LOOP
        admitted[i] := true;
    END LOOP;
    FOR i IN 1..ledger_count LOOP
        IF codes[i] IS NULL AND NOT admitted[i] THEN
            codes[i] := 'IVF01';
            messages[i] := format('invario: ledger %s moved since this writer''s last append (expected head %s and tree size %s)',
                                  p_ledgers[i], p_fence_sequences[i], p_fence_tree_sizes[i]);
        END IF;
    END LOOP;

    BEGIN
        PERFORM invario_write_planned_v1(admitted, p_ledgers,
            p_row_ledgers, p_ids, p_amounts, p_currencies, p_occurred, p_metadata,
            p_sequences, p_prev_hashes, p_entry_hashes, p_recorded,
            p_tile_ledgers, p_tile_levels, p_tile_indexes, p_tile_hashes,
            p_tree_sizes, p_roots, p_frontiers, p_head_sequences, p_head_hashes, p_head_recorded);
    EXCEPTION WHEN OTHERS THEN
        -- One ledger's write failed (an id stored already, a guard): nothing
        -- was written; each ledger is written again on its own, so the
        -- failure stays with the ledger it belongs to.
        FOR i IN 1..ledger_count LOOP
            CONTINUE WHEN NOT admitted[i];
            alone := array_fill(false, ARRAY[ledger_count]);
            alone[i] := true;
            BEGIN
                PERFORM invario_write_planned_v1(alone, p_ledgers,
                    p_row_ledgers, p_ids, p_amounts, p_currencies, p_occurred, p_metadata,
                    p_sequences, p_prev_hashes, p_entry_hashes, p_recorded,
                    p_tile_ledgers, p_tile_levels, p_tile_indexes, p_tile_hashes,
                    p_tree_sizes, p_roots, p_frontiers, p_head_sequences, p_head_hashes, p_head_recorded);
            EXCEPTION WHEN OTHERS THEN
                codes[i] := SQLSTATE;
                messages[i] := SQLERRM;
            END;
        END LOOP;
    END;

    RETURN QUERY SELECT * FROM unnest(codes, messages);
END;
$$;
