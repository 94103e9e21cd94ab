-- A write can carry the key check (issue 27, lever L7, as on PostgreSQL): the
-- key table's epoch moves with every change a key cache must see — a key
-- created, deleted, or any column but last_used_at updated (authentication
-- writes that one itself and it decides nothing) — and a key record is read
-- together with the epoch it was read at. A write authenticated from a cached
-- record carries that epoch; the write reads it under its lock and writes
-- nothing if it moved, and the request is authenticated again from the table.
-- A server's change feed reads it too: the cache is emptied whenever it moved.
CREATE TABLE api_key_epoch (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    epoch     INTEGER NOT NULL
);
INSERT INTO api_key_epoch (singleton, epoch) VALUES (1, 1);

CREATE TRIGGER api_keys_bump_epoch_on_insert AFTER INSERT ON api_keys BEGIN
    UPDATE api_key_epoch SET epoch = epoch + 1;
END;
CREATE TRIGGER api_keys_bump_epoch_on_delete AFTER DELETE ON api_keys BEGIN
    UPDATE api_key_epoch SET epoch = epoch + 1;
END;
CREATE TRIGGER api_keys_bump_epoch_on_update
AFTER UPDATE OF id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at ON api_keys BEGIN
    UPDATE api_key_epoch SET epoch = epoch + 1;
END;
