-- A server may keep API key records in memory between requests. It listens on
-- the channel 'invario_api_keys' and empties its cache on every notification,
-- so a key created, revoked or edited — by `invario revoke-key` or by hand in
-- SQL — is read afresh on the next request. `last_used_at` is not watched: it
-- is written by authentication itself and decides nothing.
CREATE FUNCTION invario_notify_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('invario_api_keys', TG_OP);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_notify_change
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at
    ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION invario_notify_key_change();
