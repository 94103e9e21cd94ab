//! Tamper helpers: change the ledger the way an attacker with database access
//! would, bypassing the append-only triggers with `session_replication_role = replica`
//! (which needs a superuser, as the test harness's role is).

use invario_core::LedgerName;
use invario_postgres::PgPool;
use uuid::Uuid;

/// A field of a `transactions` row, with the value to force into it.
#[derive(Debug, Clone)]
pub enum TransactionEdit {
    /// A new amount, as decimal text.
    Amount(&'static str),
    /// A new currency code.
    Currency(&'static str),
    /// A new `occurred_at`, µs since the epoch (`None` clears it).
    OccurredAt(Option<i64>),
    /// Sets one metadata key.
    Metadata(&'static str, &'static str),
    /// Changes the row's id (so its entry no longer finds it).
    TransactionId(Uuid),
}

/// A field of a `ledger_entries` row, with the value to force into it.
#[derive(Debug, Clone)]
pub enum EntryEdit {
    /// A new `entry_hash`.
    EntryHash([u8; 32]),
    /// A new `prev_hash`.
    PrevHash([u8; 32]),
    /// A new `recorded_at`, µs since the epoch.
    RecordedAt(i64),
    /// A new sequence number.
    SequenceNumber(i64),
    /// Points the entry at another transaction id.
    TransactionId(Uuid),
}

/// Which ledger a tamper helper edits: a pool alone means the default ledger.
#[derive(Debug, Clone)]
pub struct Target {
    /// The database.
    pub pool: PgPool,
    /// The ledger whose rows are edited.
    pub ledger: LedgerName,
}

impl Target {
    /// Ledger `ledger` of the database behind `pool`.
    pub fn ledger(pool: &PgPool, ledger: &LedgerName) -> Self {
        Target { pool: pool.clone(), ledger: ledger.clone() }
    }
}

impl From<&PgPool> for Target {
    fn from(pool: &PgPool) -> Self {
        Target::ledger(pool, &LedgerName::default_ledger())
    }
}

async fn bypassing_triggers(
    target: &Target,
    statements: &[(&'static str, Vec<Bind>)],
) -> Result<u64, sqlx::Error> {
    let mut transaction = target.pool.begin().await?;
    // On Citus the triggers fire on the workers: SET LOCAL must reach them too
    // (on plain PostgreSQL this only sets an unused placeholder).
    sqlx::query("SET LOCAL citus.propagate_set_commands = 'local'").execute(&mut *transaction).await?;
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *transaction).await?;
    // Every statement below names its ledger through this setting; a SET
    // (not set_config) so that Citus hands it to the workers as well. A
    // ledger name needs no quoting: it is [a-z0-9_-] only.
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL invario.tamper_ledger = '{}'", target.ledger)))
        .execute(&mut *transaction)
        .await?;
    let mut affected = 0;
    for (sql, binds) in statements {
        let mut query = sqlx::query(*sql);
        for bind in binds.iter() {
            query = match bind {
                Bind::Int(value) => query.bind(*value),
                Bind::Text(value) => query.bind(value.clone()),
                Bind::OptText(value) => query.bind(value.clone()),
                Bind::Bytes(value) => query.bind(value.clone()),
                Bind::Uuid(value) => query.bind(*value),
            };
        }
        affected += query.execute(&mut *transaction).await?.rows_affected();
    }
    transaction.commit().await?;
    Ok(affected)
}

#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
    OptText(Option<String>),
    Bytes(Vec<u8>),
    Uuid(Uuid),
}

fn expect_one(affected: u64, what: &str) {
    assert!(affected >= 1, "tamper helper: {what} touched no row");
}

/// Edits the transaction recorded at `sequence`.
pub async fn edit_transaction(
    target: impl Into<Target>,
    sequence: i64,
    edit: TransactionEdit,
) -> Result<(), sqlx::Error> {
    let target = target.into();
    let at = Bind::Int(sequence);
    let (sql, binds): (&'static str, Vec<Bind>) = match edit {
        TransactionEdit::Amount(amount) => (
            "UPDATE transactions SET amount = $2::numeric WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = \
             (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![at, Bind::Text(amount.into())],
        ),
        TransactionEdit::Currency(code) => (
            "UPDATE transactions SET currency = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = \
             (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![at, Bind::Text(code.into())],
        ),
        TransactionEdit::OccurredAt(micros) => (
            "UPDATE transactions SET occurred_at = $2::text::bigint * interval '1 microsecond' + 'epoch'::timestamptz \
             WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![at, Bind::OptText(micros.map(|m| m.to_string()))],
        ),
        TransactionEdit::Metadata(key, value) => (
            "UPDATE transactions SET metadata = metadata || jsonb_build_object($2::text, $3::text) \
             WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![at, Bind::Text(key.into()), Bind::Text(value.into())],
        ),
        TransactionEdit::TransactionId(id) => (
            "UPDATE transactions SET transaction_id = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = \
             (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![at, Bind::Uuid(id)],
        ),
    };
    expect_one(bypassing_triggers(&target, &[(sql, binds)]).await?, "edit_transaction");
    Ok(())
}

/// Edits the entry at `sequence`.
pub async fn edit_entry(
    target: impl Into<Target>,
    sequence: i64,
    edit: EntryEdit,
) -> Result<(), sqlx::Error> {
    let target = target.into();
    let (sql, value): (&'static str, Bind) = match edit {
        EntryEdit::EntryHash(hash) => (
            "UPDATE ledger_entries SET entry_hash = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            Bind::Bytes(hash.to_vec()),
        ),
        EntryEdit::PrevHash(hash) => (
            "UPDATE ledger_entries SET prev_hash = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            Bind::Bytes(hash.to_vec()),
        ),
        EntryEdit::RecordedAt(micros) => (
            "UPDATE ledger_entries SET recorded_at = $2 * interval '1 microsecond' + 'epoch'::timestamptz \
             WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            Bind::Int(micros),
        ),
        EntryEdit::SequenceNumber(new) => (
            "UPDATE ledger_entries SET sequence_number = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            Bind::Int(new),
        ),
        EntryEdit::TransactionId(id) => (
            "UPDATE ledger_entries SET transaction_id = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            Bind::Uuid(id),
        ),
    };
    expect_one(bypassing_triggers(&target, &[(sql, vec![Bind::Int(sequence), value])]).await?, "edit_entry");
    Ok(())
}

/// Deletes the entry row at `sequence` (its transaction row stays, orphaned).
pub async fn delete_entry(target: impl Into<Target>, sequence: i64) -> Result<(), sqlx::Error> {
    let target = target.into();
    let sql = "DELETE FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1";
    expect_one(bypassing_triggers(&target, &[(sql, vec![Bind::Int(sequence)])]).await?, "delete_entry");
    Ok(())
}

/// Deletes the transaction row recorded at `sequence` (its entry stays).
pub async fn delete_transaction(target: impl Into<Target>, sequence: i64) -> Result<(), sqlx::Error> {
    let target = target.into();
    let sql = "DELETE FROM transactions WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = \
               (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)";
    expect_one(bypassing_triggers(&target, &[(sql, vec![Bind::Int(sequence)])]).await?, "delete_transaction");
    Ok(())
}

/// Deletes the entry at `sequence` *and* its transaction, as a careful attacker would.
pub async fn delete_entry_and_transaction(
    target: impl Into<Target>,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    let target = target.into();
    let statements = [
        (
            "DELETE FROM transactions WHERE ledger_id = current_setting('invario.tamper_ledger') AND transaction_id = \
             (SELECT transaction_id FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1)",
            vec![Bind::Int(sequence)],
        ),
        (
            "DELETE FROM ledger_entries WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            vec![Bind::Int(sequence)],
        ),
    ];
    expect_one(bypassing_triggers(&target, &statements).await?, "delete_entry_and_transaction");
    Ok(())
}

/// Swaps the rows at sequences `a` and `b` (each takes the other's sequence number).
pub async fn swap_entries(target: impl Into<Target>, a: i64, b: i64) -> Result<(), sqlx::Error> {
    let target = target.into();
    // CHECK (sequence_number > 0) forbids a temporary negative number, so the
    // swap goes through the far end of the bigint range.
    let far = i64::MAX - a;
    let statements = [
        (
            "UPDATE ledger_entries SET sequence_number = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            vec![Bind::Int(a), Bind::Int(far)],
        ),
        (
            "UPDATE ledger_entries SET sequence_number = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            vec![Bind::Int(b), Bind::Int(a)],
        ),
        (
            "UPDATE ledger_entries SET sequence_number = $2 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
            vec![Bind::Int(far), Bind::Int(b)],
        ),
    ];
    expect_one(bypassing_triggers(&target, &statements).await?, "swap_entries");
    Ok(())
}

/// Rewrites the head row.
pub async fn rewrite_head(
    target: impl Into<Target>,
    sequence: i64,
    hash: [u8; 32],
) -> Result<(), sqlx::Error> {
    let target = target.into();
    let sql = "UPDATE ledger_head SET sequence_number = $1, entry_hash = $2 WHERE ledger_id = current_setting('invario.tamper_ledger')";
    expect_one(
        bypassing_triggers(&target, &[(sql, vec![Bind::Int(sequence), Bind::Bytes(hash.to_vec())])]).await?,
        "rewrite_head",
    );
    Ok(())
}

/// Rewrites the whole chain consistently from `sequence` on: changes that
/// entry's amount, then recomputes every hash after it and the head, as an
/// attacker who knows the format would. Only a saved digest catches this.
pub async fn rewrite_chain_from(
    target: impl Into<Target>,
    sequence: i64,
    new_amount: &'static str,
) -> Result<(), sqlx::Error> {
    let target = target.into();
    edit_transaction(target.clone(), sequence, TransactionEdit::Amount(new_amount)).await?;
    rehash_chain_from(target, sequence).await
}

/// Recomputes every hash from `sequence` on, the head, and the whole Merkle
/// tree, from the rows as they are now: after an edit this makes the chain and
/// its tree consistent again, as an attacker who knows the formats would.
pub async fn rehash_chain_from(target: impl Into<Target>, sequence: i64) -> Result<(), sqlx::Error> {
    let target = target.into();
    use futures_util::TryStreamExt;
    use invario_core::{EntryContent, EntryHash, entry_hash_v1};
    use sqlx::Row;

    let rows: Vec<sqlx::postgres::PgRow> = sqlx::query(
        "SELECT e.sequence_number, e.transaction_id, e.prev_hash, \
                (extract(epoch FROM e.recorded_at) * 1000000)::bigint AS recorded_micros, \
                t.amount::text AS amount, t.currency, \
                (extract(epoch FROM t.occurred_at) * 1000000)::bigint AS occurred_micros, t.metadata::text AS metadata \
         FROM ledger_entries e JOIN transactions t USING (ledger_id, transaction_id) \
         WHERE e.ledger_id = $1 ORDER BY e.sequence_number",
    )
    .bind(target.ledger.as_str())
    .fetch(&target.pool)
    .try_collect()
    .await?;
    let mut statements = Vec::new();
    let mut previous: Option<EntryHash> = None;
    let mut all_hashes = Vec::new();
    for row in rows {
        let current: i64 = row.get("sequence_number");
        let stored_prev = EntryHash::from_slice(&row.get::<Vec<u8>, _>("prev_hash")).expect("32-byte hash");
        let prev = previous.unwrap_or(stored_prev);
        let metadata: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&row.get::<String, _>("metadata")).expect("string metadata");
        let id: Uuid = row.get("transaction_id");
        let amount: String = row.get("amount");
        let currency: String = row.get("currency");
        let content = EntryContent {
            transaction_id: &id,
            amount: &amount,
            currency: &currency,
            occurred_at_micros: row.get("occurred_micros"),
            recorded_at_micros: row.get("recorded_micros"),
            metadata: &metadata,
        };
        let hash = entry_hash_v1(&prev, u64::try_from(current).expect("positive"), &content);
        if current >= sequence {
            statements.push((
                "UPDATE ledger_entries SET prev_hash = $2, entry_hash = $3 WHERE ledger_id = current_setting('invario.tamper_ledger') AND sequence_number = $1",
                vec![Bind::Int(current), Bind::Bytes(prev.0.to_vec()), Bind::Bytes(hash.0.to_vec())],
            ));
        }
        // Rows before `sequence` are untouched and intact: their recomputed hash is their stored one.
        previous = Some(hash);
        all_hashes.push(hash);
    }
    if let Some(head) = previous {
        statements.push(("UPDATE ledger_head SET entry_hash = $1 WHERE ledger_id = current_setting('invario.tamper_ledger')", vec![Bind::Bytes(head.0.to_vec())]));
    }
    // One transaction, as a careful attacker would: no reader ever sees the chain and its tree disagree.
    statements.extend(tree_statements(&all_hashes));
    bypassing_triggers(&target, &statements).await?;
    Ok(())
}

/// The statements that replace the stored tree with the tree of `entry_hashes`.
fn tree_statements(entry_hashes: &[invario_core::EntryHash]) -> Vec<(&'static str, Vec<Bind>)> {
    use invario_core::TreeSnapshot;
    use invario_core::merkle::{entry_leaf_hash, hashes_to_bytes};
    use invario_core::tiles::extend_tree;

    let leaves = entry_hashes.iter().map(entry_leaf_hash);
    let tree = extend_tree(&TreeSnapshot::empty(), 0, leaves).expect("a tree from empty always extends");
    let mut statements: Vec<(&'static str, Vec<Bind>)> =
        vec![("DELETE FROM tree_tiles WHERE ledger_id = current_setting('invario.tamper_ledger')", vec![])];
    for tile in &tree.tiles {
        statements.push((
            "INSERT INTO tree_tiles (ledger_id, level, tile_index, hashes) VALUES (current_setting('invario.tamper_ledger'), $1, $2, $3)",
            vec![
                Bind::Int(i64::from(tile.coord.level)),
                Bind::Int(i64::try_from(tile.coord.index).expect("small index")),
                Bind::Bytes(hashes_to_bytes(&tile.hashes)),
            ],
        ));
    }
    statements.push((
        "UPDATE tree_state SET tree_size = $1, root_hash = $2, frontier = $3 WHERE ledger_id = current_setting('invario.tamper_ledger')",
        vec![
            Bind::Int(i64::try_from(tree.state.head.size).expect("small tree")),
            Bind::Bytes(tree.state.head.root.0.to_vec()),
            Bind::Bytes(hashes_to_bytes(tree.state.frontier.hashes())),
        ],
    ));
    statements
}

/// Removes the Merkle tree (tiles and state back to empty), as a ledger from
/// before the tree existed looks once the migration added its tables.
pub async fn forget_tree(target: impl Into<Target>) -> Result<(), sqlx::Error> {
    bypassing_triggers(
        &target.into(),
        &[
            ("DELETE FROM tree_tiles WHERE ledger_id = current_setting('invario.tamper_ledger')", vec![]),
            (
                "UPDATE tree_state SET tree_size = 0, root_hash = sha256(''::bytea), frontier = ''::bytea \
                 WHERE ledger_id = current_setting('invario.tamper_ledger')",
                vec![],
            ),
        ],
    )
    .await?;
    Ok(())
}

/// Replaces the stored Merkle tree with the tree of the entries as they are
/// now (tiles and state), bypassing the triggers that keep tiles append-only.
pub async fn rebuild_tree(target: impl Into<Target>) -> Result<(), sqlx::Error> {
    let target = target.into();
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT entry_hash FROM ledger_entries WHERE ledger_id = $1 ORDER BY sequence_number",
    )
    .bind(target.ledger.as_str())
    .fetch_all(&target.pool)
    .await?;
    let hashes: Vec<invario_core::EntryHash> =
        hashes.iter().map(|hash| invario_core::EntryHash::from_slice(hash).expect("32-byte hash")).collect();
    bypassing_triggers(&target, &tree_statements(&hashes)).await?;
    Ok(())
}
