-- The contiguity check waits for the writes before it (issue 27, lever L5: a
-- large write's rows are sent while the write before it commits). The rule is
-- unchanged: every insert statement extends each ledger's head by contiguous
-- sequence numbers.
--
-- Until now the check read the head in the statement's snapshot, so rows
-- sent while an earlier write of the same ledger was still committing were
-- refused as not extending the head. The check is first made as before; only
-- when the rows do not extend the head the statement sees does it, for each
-- ledger inserted into (in ledger order, as every writer locks them), wait
-- for a write that announced it ends just before these rows (see below),
-- lock the head (so it waits for a transaction that holds it) and compare
-- once more in a new snapshot: the head as those transactions left it. A
-- statement of a transaction that holds the head (every write function, the
-- locked path) passes the first check and costs what it did; rows that still
-- do not extend the head are refused. Citus dropped this trigger (the head
-- move checks there), so nothing changes there.
--
-- The announcement: a write sent behind another takes, before its rows, the
-- transaction-scoped advisory lock invario_write_key(ledger, its last
-- sequence number). Without it, of two writes sent behind a third, the later
-- one could reach the head while the earlier one was still sending its rows,
-- lock it first and find it not yet where it expects (measured: one write in
-- seven, each then written again).
CREATE FUNCTION invario_write_key(p_ledger text, p_sequence bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended(p_ledger, p_sequence);

CREATE OR REPLACE FUNCTION invario_check_contiguous_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refused record;
    extends_head boolean;
BEGIN
    FOR attempt IN 1..2 LOOP
        SELECT appended_range.ledger_id, low, high, head.sequence_number AS head_sequence INTO refused
        FROM (SELECT ledger_id, min(sequence_number) AS low, max(sequence_number) AS high, count(*) AS inserted
              FROM appended GROUP BY ledger_id) AS appended_range
        LEFT JOIN ledger_head head USING (ledger_id)
        WHERE head.ledger_id IS NULL OR low <> head.sequence_number + 1 OR high - low + 1 <> inserted
        LIMIT 1;
        extends_head := NOT FOUND;
        -- The rows extend the head as this statement sees it: the usual case
        -- (the writer holds the head), checked as before, nothing waited for.
        EXIT WHEN extends_head OR attempt = 2;
        -- Otherwise wait for the write announced just ahead and for whoever
        -- holds the head, then compare once more with the head they left.
        PERFORM pg_advisory_xact_lock_shared(invario_write_key(ledger_id, low - 1))
        FROM (SELECT ledger_id, min(sequence_number) AS low FROM appended GROUP BY ledger_id) AS appended_range
        ORDER BY ledger_id;
        PERFORM 1 FROM ledger_head
        WHERE ledger_id IN (SELECT DISTINCT ledger_id FROM appended)
        ORDER BY ledger_id
        FOR UPDATE;
    END LOOP;
    IF NOT extends_head THEN
        RAISE EXCEPTION 'invario: entries % to % of ledger % do not extend its head at %: sequence numbers must be contiguous',
            refused.low, refused.high, refused.ledger_id, refused.head_sequence
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;
