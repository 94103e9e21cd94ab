-- Contiguity is checked once per write, when the head moves, instead of once
-- per inserted row (a per-row trigger cost about a fifth of a 1,000-row
-- append). A head may only move onto a contiguous run: every sequence number
-- between the old head and the new one present (the primary key makes each
-- unique, so counting them is enough) and none beyond it. A row inserted
-- without moving the head is no longer refused at insert: it blocks the next
-- append (its head move, or the primary key, refuses) and verification
-- reports it (the chain no longer ends at the head).
DROP TRIGGER ledger_entries_contiguous;
CREATE TRIGGER ledger_head_moves_onto_contiguous_entries BEFORE UPDATE ON ledger_head
WHEN NEW.sequence_number > OLD.sequence_number
 AND ((SELECT count(*) FROM ledger_entries
       WHERE ledger_id = NEW.ledger_id
         AND sequence_number > OLD.sequence_number AND sequence_number <= NEW.sequence_number)
        <> NEW.sequence_number - OLD.sequence_number
      OR EXISTS (SELECT 1 FROM ledger_entries
                 WHERE ledger_id = NEW.ledger_id AND sequence_number > NEW.sequence_number))
BEGIN
    SELECT RAISE(ABORT, 'invario: ledger_head may only move onto contiguous entries: sequence numbers must be contiguous, with none past the head');
END;
