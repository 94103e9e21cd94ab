//! The key store port on SQLite.

use async_trait::async_trait;
use invario_core::{
    ApiKeyRecord, KeyChange, KeyChanges, KeyEpoch, KeyHash, KeyStore, Owner, Scopes, StoreError, Timestamp,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use crate::store_error;

/// API keys on a SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteKeyStore {
    pool: SqlitePool,
}

impl SqliteKeyStore {
    /// A store on `pool` (migrated).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteKeyStore { pool }
    }
}

const KEY_COLUMNS: &str =
    "id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at, last_used_at";

fn time(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    let micros: Option<i64> = row.try_get(column).map_err(store_error)?;
    micros
        .map(Timestamp::from_unix_micros)
        .transpose()
        .map_err(|error| StoreError::Corrupt(format!("api key {column}: {error}")))
}

fn record(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let prefix: String = row.try_get("prefix").map_err(store_error)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("api key {prefix}: {what}"));
    let id: String = row.try_get("id").map_err(store_error)?;
    let hash: Vec<u8> = row.try_get("key_hash").map_err(store_error)?;
    let scopes: String = row.try_get("scopes").map_err(store_error)?;
    let owner: String = row.try_get("owner").map_err(store_error)?;
    Ok(ApiKeyRecord {
        id: Uuid::parse_str(&id).map_err(|e| corrupt(e.to_string()))?,
        owner: Owner::parse(&owner).map_err(|e| corrupt(e.to_string()))?,
        key_hash: KeyHash(
            <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| corrupt("key_hash length".into()))?,
        ),
        scopes: serde_json::from_str::<Scopes>(&scopes).map_err(|e| corrupt(e.to_string()))?,
        created_at: time(row, "created_at")?.ok_or_else(|| corrupt("created_at missing".into()))?,
        expires_at: time(row, "expires_at")?,
        revoked_at: time(row, "revoked_at")?,
        last_used_at: time(row, "last_used_at")?,
        prefix: prefix.clone(),
    })
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, owner, prefix, key_hash, scopes, created_at, expires_at, revoked_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.id.to_string())
        .bind(key.owner.as_str())
        .bind(&key.prefix)
        .bind(key.key_hash.0.as_slice())
        .bind(key.scopes.to_json())
        .bind(key.created_at.unix_micros())
        .bind(key.expires_at.map(|t| t.unix_micros()))
        .bind(key.revoked_at.map(|t| t.unix_micros()))
        .bind(key.last_used_at.map(|t| t.unix_micros()))
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1")))
            .bind(hash.0.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(record)
            .transpose()
    }

    async fn key_by_hash_with_epoch(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(ApiKeyRecord, Option<KeyEpoch>)>, StoreError> {
        // One statement: the record and the epoch come from one snapshot.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS}, e.epoch AS key_epoch FROM api_keys CROSS JOIN api_key_epoch e WHERE key_hash = $1"
        )))
        .bind(hash.0.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            let epoch: i64 = row.try_get("key_epoch").map_err(store_error)?;
            let epoch = key_epoch(epoch)?;
            Ok((record(&row)?, Some(epoch)))
        })
        .transpose()
    }

    async fn revoke_owner(&self, owner: &Owner, at: Timestamp) -> Result<u64, StoreError> {
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE owner = $1 AND revoked_at IS NULL")
                .bind(owner.as_str())
                .bind(at.unix_micros())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn revoke_prefix(&self, prefix: &str, at: Timestamp) -> Result<u64, StoreError> {
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE prefix = $1 AND revoked_at IS NULL")
                .bind(prefix)
                .bind(at.unix_micros())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn list_keys(&self, owner: Option<&Owner>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE $1 IS NULL OR owner = $1 ORDER BY created_at, id"
        )))
        .bind(owner.map(Owner::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(record).collect()
    }

    async fn touch_last_used(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(at.unix_micros())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    fn change_feed(&self) -> Option<Box<dyn KeyChanges>> {
        Some(Box::new(SqliteKeyChanges { pool: self.pool.clone(), seen: None }))
    }
}

pub(crate) fn key_epoch(stored: i64) -> Result<KeyEpoch, StoreError> {
    u64::try_from(stored).map(KeyEpoch).map_err(|_| StoreError::Corrupt(format!("api_key_epoch {stored}")))
}

/// Key changes seen through the key table's epoch (migration `key_epoch`):
/// SQLite has no notifications, so each catch-up reads the epoch — one
/// statement, which sees every change committed before it began.
struct SqliteKeyChanges {
    pool: SqlitePool,
    /// The epoch the last catch-up read (`None`: not read yet, or lost).
    seen: Option<i64>,
}

#[async_trait]
impl KeyChanges for SqliteKeyChanges {
    async fn catch_up(&mut self) -> KeyChange {
        let read =
            sqlx::query_scalar::<_, i64>("SELECT epoch FROM api_key_epoch").fetch_one(&self.pool).await;
        let Ok(epoch) = read else {
            self.seen = None;
            return KeyChange::Lost;
        };
        match self.seen.replace(epoch) {
            None => KeyChange::Listening,
            Some(previous) if previous == epoch => KeyChange::Unchanged,
            Some(_) => KeyChange::Changed,
        }
    }
}
