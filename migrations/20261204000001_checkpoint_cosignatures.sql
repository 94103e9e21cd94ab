-- A checkpoint's copy may gain cosignatures gathered on a later round (from a
-- witness that was down when it was signed): an UPDATE may only append to the
-- note, never change what is there, its ledger or its size. DELETE and
-- TRUNCATE stay refused. (On Citus the trigger is one of the "unsafe" kind:
-- it reads only the row it guards.)
SET LOCAL citus.enable_unsafe_triggers = on;

CREATE FUNCTION invario_checkpoint_only_gains_cosignatures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_id IS DISTINCT FROM OLD.ledger_id
       OR NEW.tree_size IS DISTINCT FROM OLD.tree_size
       OR length(NEW.note) <= length(OLD.note)
       OR left(NEW.note, length(OLD.note)) <> OLD.note THEN
        RAISE EXCEPTION 'invario: UPDATE on checkpoints refused: a checkpoint copy only gains cosignatures'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER checkpoints_append_only ON checkpoints;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER checkpoints_only_gain_cosignatures BEFORE UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION invario_checkpoint_only_gains_cosignatures();
