//! The key store port on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use invario_core::{
    ApiKeyRecord, KeyChange, KeyChanges, KeyEpoch, KeyHash, KeyStore, Owner, Scopes, StoreError, Timestamp,
};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Executor, PgPool};
use uuid::Uuid;

use crate::CitusProbe;
use crate::rows::{store_error, timestamp, to_datetime};

/// API keys on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PgKeyStore {
    pool: PgPool,
    citus: CitusProbe,
}

impl PgKeyStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: PgPool) -> Self {
        PgKeyStore { pool, citus: CitusProbe::default() }
    }

    async fn is_citus(&self) -> Result<bool, StoreError> {
        self.citus.is_citus(&self.pool).await
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    owner: String,
    prefix: String,
    key_hash: Vec<u8>,
    scopes: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

/// A key row and the key table's epoch, read together.
#[derive(sqlx::FromRow)]
struct KeyRowWithEpoch {
    #[sqlx(flatten)]
    key: KeyRow,
    epoch: i64,
}

const KEY_COLUMNS: &str =
    "id, owner, prefix, key_hash, scopes::text AS scopes, created_at, expires_at, revoked_at, last_used_at";

impl KeyRow {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("api key {}: {what}", self.prefix));
        let key_hash = <[u8; 32]>::try_from(self.key_hash.as_slice())
            .map_err(|_| corrupt("key_hash is not 32 bytes".into()))?;
        Ok(ApiKeyRecord {
            id: self.id,
            owner: Owner::parse(&self.owner).map_err(|e| corrupt(e.to_string()))?,
            key_hash: KeyHash(key_hash),
            scopes: serde_json::from_str::<Scopes>(&self.scopes).map_err(|e| corrupt(e.to_string()))?,
            created_at: timestamp(self.created_at)?,
            expires_at: self.expires_at.map(timestamp).transpose()?,
            revoked_at: self.revoked_at.map(timestamp).transpose()?,
            last_used_at: self.last_used_at.map(timestamp).transpose()?,
            prefix: self.prefix,
        })
    }
}

#[async_trait]
impl KeyStore for PgKeyStore {
    async fn insert_key(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)",
        )
        .bind(record.id)
        .bind(record.owner.as_str())
        .bind(&record.prefix)
        .bind(record.key_hash.0.as_slice())
        .bind(record.scopes.to_json())
        .bind(to_datetime(record.created_at))
        .bind(record.expires_at.map(to_datetime))
        .bind(record.revoked_at.map(to_datetime))
        .bind(record.last_used_at.map(to_datetime))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// The record and the epoch in one statement (one snapshot), so the epoch
    /// is the one the record was current at. None on Citus, whose writes do
    /// not check it.
    async fn key_by_hash_with_epoch(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(ApiKeyRecord, Option<KeyEpoch>)>, StoreError> {
        if self.is_citus().await? {
            return Ok(self.key_by_hash(hash).await?.map(|record| (record, None)));
        }
        let row: Option<(KeyRow, i64)> = sqlx::query_as::<_, KeyRowWithEpoch>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS}, e.epoch FROM api_keys CROSS JOIN api_key_epoch e WHERE key_hash = $1"
        )))
        .bind(hash.0.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(|row| (row.key, row.epoch));
        row.map(|(key, epoch)| {
            let epoch =
                u64::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("api_key_epoch {epoch}")))?;
            Ok((key.into_record()?, Some(KeyEpoch(epoch))))
        })
        .transpose()
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        )))
        .bind(hash.0.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(KeyRow::into_record)
        .transpose()
    }

    async fn revoke_owner(&self, owner: &Owner, at: Timestamp) -> Result<u64, StoreError> {
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE owner = $1 AND revoked_at IS NULL")
                .bind(owner.as_str())
                .bind(to_datetime(at))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn revoke_prefix(&self, prefix: &str, at: Timestamp) -> Result<u64, StoreError> {
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE prefix = $1 AND revoked_at IS NULL")
                .bind(prefix)
                .bind(to_datetime(at))
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn list_keys(&self, owner: Option<&Owner>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id"
        )))
        .bind(owner.map(Owner::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(KeyRow::into_record)
        .collect()
    }

    async fn touch_last_used(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(to_datetime(at))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    fn change_feed(&self) -> Option<Box<dyn KeyChanges>> {
        // The listener holds its connection for good: give it a pool of its
        // own, so the service's pool keeps every connection it was sized for.
        let listener_pool =
            PgPoolOptions::new().max_connections(1).max_lifetime(None).idle_timeout(None).connect_lazy_with(
                (*self.pool.connect_options()).clone().application_name(KEY_FEED_APPLICATION_NAME),
            );
        Some(Box::new(PgKeyChanges { pool: listener_pool, listener: None }))
    }
}

/// The channel a trigger on `api_keys` notifies (see the key-notification
/// migration) whenever a key is created, revoked, edited or deleted.
pub const KEY_CHANGES_CHANNEL: &str = "invario_api_keys";

/// Longest a catch-up round trip may take before the feed's connection is
/// given up as lost (a partitioned network would otherwise hold it for the
/// kernel's TCP timeout).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// The `application_name` of the key change feed's connection, as
/// `pg_stat_activity` shows it.
pub const KEY_FEED_APPLICATION_NAME: &str = "invario key feed";

/// Key changes pushed by PostgreSQL's `NOTIFY` on [`KEY_CHANGES_CHANNEL`].
struct PgKeyChanges {
    pool: PgPool,
    listener: Option<PgListener>,
}

#[async_trait]
impl KeyChanges for PgKeyChanges {
    /// One round trip on the listening connection. PostgreSQL signals every
    /// listener as a notifying transaction commits, before that transaction's
    /// client hears of the commit, and a listener sends what it was signalled
    /// before it reports ready for the next query: so when this query's answer
    /// is in, every notification committed before it was sent is in the
    /// listener's buffer.
    async fn catch_up(&mut self) -> KeyChange {
        let Some(listener) = self.listener.as_mut() else {
            return match listen(&self.pool).await {
                Ok(listener) => {
                    self.listener = Some(listener);
                    KeyChange::Listening
                }
                Err(_) => KeyChange::Lost,
            };
        };
        let answered = tokio::time::timeout(CATCH_UP_LIMIT, (&mut *listener).execute("SELECT 1")).await;
        if !matches!(answered, Ok(Ok(_))) {
            // Whatever changed since went unreported: the next call starts
            // over on a fresh connection, and its `Listening` tells the cache.
            self.listener = None;
            return KeyChange::Lost;
        }
        let mut changed = false;
        while listener.next_buffered().is_some() {
            changed = true;
        }
        if changed { KeyChange::Changed } else { KeyChange::Unchanged }
    }
}

/// A listener on [`KEY_CHANGES_CHANNEL`] that reports a lost connection
/// instead of silently reconnecting.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(false);
    listener.listen(KEY_CHANGES_CHANNEL).await?;
    Ok(listener)
}
