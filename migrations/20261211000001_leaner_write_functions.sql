-- The shared commit, leaner (issue 27): invario_append_many_v1 with the same
-- arguments and the same outcomes, measured with pg_stat_statements
-- (track = all) on plain PostgreSQL.
--
-- It locks its ledgers' heads and tree states in the same subtransaction that
-- moves them. It locked them in the call's transaction and moved them in the
-- subtransaction its error handler opens, and a row locked by one transaction
-- and updated by another (a subtransaction is another) gets a MultiXact as the
-- old version's xmax: ≈ 10,000 of them in one run of the bench's many-ledgers
-- scenario (five pages of pg_multixact/offsets; none since), each written to
-- the MultiXact logs and looked up by later readers of the row
-- (GetMultiXactIdMembers was among PostgreSQL's top functions in a perf
-- profile of 64 clients over 16 ledgers), and each bringing the cluster nearer
-- its anti-wraparound vacuums of MultiXact ids. The fence is also one indexed
-- lookup per ledger instead of one join of both tables with all the fences,
-- sorted and locked together (0.045–0.15 ms per call of ≈ 3.9 ledgers,
-- depending on the plan PL/pgSQL had cached, against ≈ 0.015 ms per ledger).
-- Heads are still locked in ledger-name order (the same collation as before),
-- in the shared write and in the one-by-one retry after a failure, so servers
-- of either version sharing commits over the same ledgers cannot deadlock.
--
-- Like the function it replaces it hashes nothing and decides nothing.

CREATE OR REPLACE FUNCTION invario_append_many_v1(
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
    in_name_order int[];
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

    SELECT array_agg(fence.slot::int ORDER BY fence.ledger_id) INTO in_name_order
    FROM unnest(p_ledgers) WITH ORDINALITY AS fence(ledger_id, slot);

    BEGIN
        FOREACH i IN ARRAY in_name_order LOOP
            CONTINUE WHEN codes[i] IS NOT NULL;
            PERFORM 1 FROM ledger_head h JOIN tree_state s ON s.ledger_id = h.ledger_id
            WHERE h.ledger_id = p_ledgers[i]
              AND h.sequence_number = p_fence_sequences[i] AND h.entry_hash = p_fence_hashes[i]
              AND s.tree_size = p_fence_tree_sizes[i] AND s.root_hash = p_fence_roots[i]
            FOR UPDATE;
            admitted[i] := FOUND;
            IF NOT FOUND THEN
                codes[i] := 'IVF01';
                messages[i] := format('invario: ledger %s moved since this writer''s last append (expected head %s and tree size %s)',
                                      p_ledgers[i], p_fence_sequences[i], p_fence_tree_sizes[i]);
            END IF;
        END LOOP;
        PERFORM invario_write_planned_v1(admitted, p_ledgers,
            p_row_ledgers, p_ids, p_amounts, p_currencies, p_occurred, p_metadata,
            p_sequences, p_prev_hashes, p_entry_hashes, p_recorded,
            p_tile_ledgers, p_tile_levels, p_tile_indexes, p_tile_hashes,
            p_tree_sizes, p_roots, p_frontiers, p_head_sequences, p_head_hashes, p_head_recorded);
    EXCEPTION WHEN OTHERS THEN
        -- One ledger's write failed (an id stored already, a guard), or a
        -- lock could not be had: nothing was written and no lock is held.
        -- Each ledger not refused yet is fenced and written again on its own,
        -- so the failure stays with the ledger it belongs to.
        FOREACH i IN ARRAY in_name_order LOOP
            CONTINUE WHEN codes[i] IS NOT NULL;
            alone := array_fill(false, ARRAY[ledger_count]);
            alone[i] := true;
            BEGIN
                -- Raises IVF01, kept below as this ledger's outcome, if it moved.
                PERFORM invario_fence_v1(NULL, p_ledgers[i], p_fence_sequences[i], p_fence_hashes[i],
                                         p_fence_tree_sizes[i], p_fence_roots[i]);
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
