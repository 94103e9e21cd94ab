-- A checkpoint's copy may gain cosignatures gathered on a later round (from a
-- witness that was down when it was signed): an UPDATE may only append to the
-- note, never change what is there, its ledger or its size. DELETE stays refused.
DROP TRIGGER checkpoints_no_update;
CREATE TRIGGER checkpoints_only_gain_cosignatures BEFORE UPDATE ON checkpoints
WHEN NEW.ledger_id IS NOT OLD.ledger_id
  OR NEW.tree_size IS NOT OLD.tree_size
  OR length(NEW.note) <= length(OLD.note)
  OR substr(NEW.note, 1, length(OLD.note)) IS NOT OLD.note
BEGIN
    SELECT RAISE(ABORT, 'invario: UPDATE on checkpoints refused: a checkpoint copy only gains cosignatures');
END;
