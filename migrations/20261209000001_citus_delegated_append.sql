-- Citus: an append is one hop to the worker holding its ledger (issue 27,
-- lever L9). `distribute_on_citus` distributes this function by p_ledger,
-- colocated with the ledger tables, and the writer calls it in autocommit:
-- the coordinator hands the whole call to that worker, where every statement
-- touches only local shards and the commit is one-phase. On plain PostgreSQL
-- it is created and never called (the writer calls invario_append_v2 there,
-- or shares a commit with invario_append_many_v1).
--
-- It writes what invario_append_v1 writes, in the same order, under the same
-- fence (it calls invario_fence_v1, with no key epoch: Citus writes never
-- carry one), and like it hashes nothing and decides nothing (a stored id
-- fires the unique key, reported to the writer as SQLSTATE 23505). What
-- differs is cost on Citus, where every statement on a distributed table goes
-- through Citus's planner even on the worker: an INSERT … SELECT from arrays
-- is run by collecting the rows and copying them into the shard (≈ 1–2 ms
-- each, measured, even with no rows), while a single-row INSERT is routed at
-- once (≈ 0.14 ms). So a write of up to six rows inserts row by row, a larger
-- one by INSERT … SELECT, and tiles only when there are any (hence not
-- through invario_advance_v1, which always runs the tile upsert).
CREATE FUNCTION invario_append_delegated_v1(
    p_ledger text,
    p_fence_sequence bigint, p_fence_hash bytea, p_fence_tree_size bigint, p_fence_root bytea,
    p_ids uuid[], p_amounts text[], p_currencies text[], p_occurred timestamptz[], p_metadata text[],
    p_sequences bigint[], p_prev_hashes bytea[], p_entry_hashes bytea[], p_recorded timestamptz[],
    p_tile_levels smallint[], p_tile_indexes bigint[], p_tile_hashes bytea[],
    p_tree_size bigint, p_root bytea, p_frontier bytea,
    p_head_sequence bigint, p_head_hash bytea, p_head_recorded timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    row_count int := coalesce(cardinality(p_ids), 0);
    i int;
BEGIN
    PERFORM invario_fence_v1(NULL, p_ledger, p_fence_sequence, p_fence_hash, p_fence_tree_size, p_fence_root);

    IF row_count <= 6 THEN
        FOR i IN 1..row_count LOOP
            INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata)
            VALUES (p_ledger, p_ids[i], p_amounts[i]::numeric, p_currencies[i], p_occurred[i], p_metadata[i]::jsonb);
        END LOOP;
        FOR i IN 1..row_count LOOP
            INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at)
            VALUES (p_ledger, p_sequences[i], p_ids[i], p_prev_hashes[i], p_entry_hashes[i], p_recorded[i]);
        END LOOP;
    ELSE
        INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata)
        SELECT p_ledger, id, amount::numeric, currency, occurred_at, metadata::jsonb
        FROM unnest(p_ids, p_amounts, p_currencies, p_occurred, p_metadata)
             AS batch(id, amount, currency, occurred_at, metadata);

        INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at)
        SELECT p_ledger, * FROM unnest(p_sequences, p_ids, p_prev_hashes, p_entry_hashes, p_recorded);
    END IF;

    IF cardinality(p_tile_levels) > 0 THEN
        INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes)
        SELECT p_ledger, * FROM unnest(p_tile_levels, p_tile_indexes, p_tile_hashes)
        ON CONFLICT (ledger_id, level, tile_index) DO UPDATE SET hashes = EXCLUDED.hashes;
    END IF;

    UPDATE tree_state SET tree_size = p_tree_size, root_hash = p_root, frontier = p_frontier
    WHERE ledger_id = p_ledger;

    UPDATE ledger_head SET sequence_number = p_head_sequence, entry_hash = p_head_hash, recorded_at = p_head_recorded
    WHERE ledger_id = p_ledger;
END;
$$;
