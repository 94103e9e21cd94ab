-- The contiguity check waits for the writes before it (issue 27, lever L5: a
-- large write's rows are sent while the write before it commits). The rule is
-- unchanged: every insert statement extends each ledger's head by contiguous
-- sequence numbers.
--
-- Until now the check read the head in the statement's snapshot, so rows
-- sent while an earlier write of the same ledger was still committing were
-- refused as not extending the head. Now, for each ledger it inserted into
-- (in ledger order, as every writer locks them), it first waits for a write
-- that announced it ends just before these rows (see below), then locks the
-- head, so it waits for a transaction that holds it, and then compares in a
-- new snapshot: the head as those transactions left it. A statement of a
-- transaction that already holds the head (every write function, the locked
-- path) does not wait, nor does one that nobody is writing ahead of. Citus
-- dropped this trigger (the head move checks there), so nothing changes there.
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
BEGIN
    PERFORM pg_advisory_xact_lock_shared(invario_write_key(ledger_id, low - 1))
    FROM (SELECT ledger_id, min(sequence_number) AS low FROM appended GROUP BY ledger_id) AS appended_range
    ORDER BY ledger_id;
    PERFORM 1 FROM ledger_head
    WHERE ledger_id IN (SELECT DISTINCT ledger_id FROM appended)
    ORDER BY ledger_id
    FOR UPDATE;
    SELECT appended_range.ledger_id, low, high, head.sequence_number AS head_sequence INTO refused
    FROM (SELECT ledger_id, min(sequence_number) AS low, max(sequence_number) AS high, count(*) AS inserted
          FROM appended GROUP BY ledger_id) AS appended_range
    LEFT JOIN ledger_head head USING (ledger_id)
    WHERE head.ledger_id IS NULL OR low <> head.sequence_number + 1 OR high - low + 1 <> inserted
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invario: entries % to % of ledger % do not extend its head at %: sequence numbers must be contiguous',
            refused.low, refused.high, refused.ledger_id, refused.head_sequence
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;
