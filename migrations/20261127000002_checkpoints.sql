-- A copy of every checkpoint the service signed, for serving only: the
-- reference is the checkpoint directory outside the database, never this table.
CREATE TABLE checkpoints (
    tree_size bigint PRIMARY KEY CHECK (tree_size >= 0),
    note      text   NOT NULL CHECK (octet_length(note) BETWEEN 1 AND 65536)
);
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION invario_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION invario_refuse_change();
