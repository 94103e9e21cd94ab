-- Citus: the delegated write runs its statements on the ledger's local shard
-- tables, not through Citus (issue 27, L9 measured again). Same arguments,
-- same rows, same order, same outcomes (IVF01 when the ledger moved, 23505 on
-- a stored id); like the function it replaces it hashes nothing and decides
-- nothing. Plain PostgreSQL never calls it.
--
-- The coordinator hands the call to the worker holding the ledger's shards,
-- and there every statement on a distributed table still went through Citus:
-- planned, deparsed into SQL text with its arguments inlined, parsed and
-- planned again for local execution (`perf` on a worker: two thirds of the
-- call; `pg_stat_statements` with 64 clients over 16 ledgers: ≈ 2.8 ms of
-- worker time a call of ≈ 2.5 rows, each single-row insert ≈ 0.2 ms). The
-- ledger's shards are plain tables of that worker, found by Citus's own
-- functions; a statement on them is parsed and planned once by PostgreSQL
-- (≈ 1.0 ms a call in the same run, and INSERT … SELECT from the arrays is
-- as cheap as on plain PostgreSQL, so rows are no longer inserted one by
-- one). The triggers Citus keeps on the shards fire as before.
--
-- It takes the lock Citus's own writes take on the shard's placement (a
-- shard move takes it exclusively before moving the ledger), and where the
-- shards are not this node's (the call ran without being handed on, inside a
-- transaction block on the coordinator) or the caller does not own the
-- tables (Citus lets only the owner take that lock), the same statements go
-- to the distributed tables, through Citus, as before.
CREATE OR REPLACE FUNCTION invario_append_delegated_v1(
    p_ledger text,
    p_fence_sequence bigint, p_fence_hash bytea, p_fence_tree_size bigint, p_fence_root bytea,
    p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[], p_metadata text[],
    p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_size bigint, p_root bytea, p_frontier bytea,
    p_head_sequence bigint, p_head_hash bytea, p_head_recorded timestamptz
) RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    -- The ledger's table of each name, in this order.
    tables text[] := ARRAY['ledger_head', 'tree_state', 'transactions', 'ledger_entries', 'tree_tiles'];
    head_shard bigint := get_shard_id_for_distribution_column('ledger_head'::regclass, p_ledger);
    fenced bigint;
    i int;
BEGIN
    -- Written the way Citus's own writes are: under a share lock on the
    -- shard's placement metadata, which a shard move takes exclusively on
    -- every node before it moves the ledger's shards (so the move waits for
    -- this write, or this write for the move) and checked to be a table of
    -- this node under that lock. Citus only lets a table's owner take it.
    IF pg_has_role((SELECT relowner FROM pg_class WHERE oid = 'ledger_head'::regclass), 'USAGE') THEN
        PERFORM lock_shard_metadata(5, ARRAY[head_shard]); -- 5: ShareLock
        IF EXISTS (SELECT 1 FROM pg_dist_placement
                   WHERE shardid = head_shard AND groupid = (SELECT groupid FROM pg_dist_local_group)) THEN
            FOR i IN 1..cardinality(tables) LOOP
                tables[i] := shard_name(tables[i]::regclass,
                                        get_shard_id_for_distribution_column(tables[i]::regclass, p_ledger));
            END LOOP;
        END IF;
    END IF;

    EXECUTE format(
        'SELECT count(*) FROM (SELECT 1 FROM %s h JOIN %s s ON s.ledger_id = h.ledger_id
          WHERE h.ledger_id = $1 AND h.sequence_number = $2 AND h.entry_hash = $3
            AND s.tree_size = $4 AND s.root_hash = $5
          FOR UPDATE) AS fence', tables[1], tables[2])
    INTO fenced USING p_ledger, p_fence_sequence, p_fence_hash, p_fence_tree_size, p_fence_root;
    IF fenced = 0 THEN
        RAISE EXCEPTION 'invario: ledger % moved since this writer''s last append (expected head % and tree size %)',
            p_ledger, p_fence_sequence, p_fence_tree_size
            USING ERRCODE = 'IVF01';
    END IF;

    EXECUTE format(
        'INSERT INTO %s (ledger_id, transaction_id, amount, currency, occurred_at, metadata)
         SELECT $1, id, amount::numeric, currency, occurred_at, metadata::jsonb
         FROM unnest($2, $3, $4, $5, $6) AS batch(id, amount, currency, occurred_at, metadata)', tables[3])
    USING p_ledger, p_ids, p_amounts, p_currencies, p_occurred, p_metadata;

    EXECUTE format(
        'INSERT INTO %s (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at)
         SELECT $1, * FROM unnest($2, $3, $4, $5, $6)', tables[4])
    USING p_ledger, p_sequences, p_ids, p_prev_hashes, p_entry_hashes, p_recorded;

    IF cardinality(p_tile_levels) > 0 THEN
        EXECUTE format(
            'INSERT INTO %s (ledger_id, level, tile_index, hashes)
             SELECT $1, * FROM unnest($2, $3, $4)
             ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes', tables[5])
        USING p_ledger, p_tile_levels, p_tile_indexes, p_tile_hashes;
    END IF;

    EXECUTE format('UPDATE %s SET tree_size = $2, root_hash = $3, frontier = $4 WHERE ledger_id = $1', tables[2])
    USING p_ledger, p_tree_size, p_root, p_frontier;

    -- Last: the head-move trigger finds the entry the head now points at.
    EXECUTE format('UPDATE %s SET sequence_number = $2, entry_hash = $3, recorded_at = $4 WHERE ledger_id = $1',
                   tables[1])
    USING p_ledger, p_head_sequence, p_head_hash, p_head_recorded;
END;
$$;
