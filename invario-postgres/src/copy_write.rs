//! Large fenced writes by binary `COPY` (issue 27, lever L4).
//!
//! A write of [`COPY_WRITE_MIN_ROWS`] rows or more goes on a writers'
//! connection as one transaction: `invario_fence_v1` (the same lock and
//! compare `invario_append_v2` starts with), `COPY transactions` and `COPY
//! ledger_entries` in PostgreSQL's binary format, `invario_advance_v1` (tiles,
//! tree state, head), `COMMIT`. COPY inserts its rows in batches, and the rows
//! are encoded and sent in chunks, so PostgreSQL stores one chunk while the
//! next is encoded; a call with arrays must arrive whole before it starts.
//! A handful of round trips more than that one call costs nothing at this
//! size. A write sent behind another (lever L5, [`FenceAt::End`]) sends its
//! rows first and compares its fence after them. Like the append functions
//! it writes what the core planned: every hash comes from the plan.

use invario_core::writer::Fence;
use invario_core::{AppendPlan, KeyEpoch, LedgerEntry, LedgerName, StoreError};
use sqlx::encode::IsNull;
use sqlx::postgres::PgArgumentBuffer;
use sqlx::{Connection, Encode, PgConnection, Postgres};

use crate::commit_lane::{CommitLane, WriteFrame, on_lane_connection};
use crate::ledger::write_error;
use crate::rows::{metadata_json, to_datetime};

/// The fewest rows a fenced write sends by `COPY` rather than in one call to
/// `invario_append_v2` (BENCHMARKS.md, "L4").
pub const COPY_WRITE_MIN_ROWS: usize = 2_000;

/// Bytes encoded before they are sent as one `CopyData` message.
const CHUNK_BYTES: usize = 64 * 1024;

/// The binary COPY header: signature, flags (none), header extension length (0).
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a tuple of -1 fields.
const BINARY_TRAILER: [u8; 2] = (-1_i16).to_be_bytes();

const COPY_TRANSACTIONS: &str = "COPY transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata) \
     FROM STDIN (FORMAT binary)";
const COPY_ENTRIES: &str = "COPY ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, \
     recorded_at) FROM STDIN (FORMAT binary)";

/// When a COPY write compares its fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FenceAt {
    /// First, under the head's lock, before any row: the usual write.
    Start,
    /// After the rows, for a write sent while the write before it (of the
    /// same writer, on another connection) may still be in flight: the write
    /// announces itself, sends both COPYs — the contiguity check at the end
    /// of the second waits for the write announced just ahead and for
    /// whoever holds the head, then compares with the head they left (the
    /// migration `contiguity_waits_for_the_head`) — and then compares its
    /// fence. Rows that do not extend the head are refused as a fence is:
    /// the ledger is not where this write was planned.
    End,
}

/// Writes `plan` by COPY on one of `lane`'s connections, if the fence holds.
pub(crate) async fn write_by_copy(
    lane: &CommitLane,
    ledger: &LedgerName,
    fence: &Fence,
    keys: Option<KeyEpoch>,
    plan: &AppendPlan,
    fence_at: FenceAt,
) -> Result<(), StoreError> {
    let frame = WriteFrame::new(fence, keys, plan)?;
    let mut connection = lane.take_stream_connection().await?;
    on_lane_connection!(lane, &mut connection.slot, |lane_connection| copy_write(
        lane_connection,
        ledger,
        &frame,
        plan.new_entries(),
        fence_at
    ))
    .map_err(|error| match &error {
        sqlx::Error::Database(database)
            if fence_at == FenceAt::End
                && (database.code().as_deref() == Some(NOT_CONTIGUOUS_SQLSTATE)
                    || database.constraint() == Some(SEQUENCE_KEY)) =>
        {
            StoreError::Fenced
        }
        _ => write_error(error),
    })
}

/// `integrity_constraint_violation`: raised by the contiguity check when
/// entries do not extend the head.
const NOT_CONTIGUOUS_SQLSTATE: &str = "23000";
/// The key on an entry's sequence number: another writer's entries hold the
/// numbers this write was planned with (never on Citus, whose shard
/// constraints carry suffixes; this write is not used there).
const SEQUENCE_KEY: &str = "ledger_entries_pkey";

/// One transaction on `connection`: the fence where `fence_at` says, both
/// COPYs, tiles, tree and head. An error leaves nothing written (the
/// transaction rolls back when dropped).
async fn copy_write(
    connection: &mut PgConnection,
    ledger: &LedgerName,
    frame: &WriteFrame,
    entries: &[LedgerEntry],
    fence_at: FenceAt,
) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin().await?;
    let fence = || frame.bind_fence(sqlx::query("SELECT invario_fence_v1($1, $2, $3, $4, $5, $6)"), ledger);
    match fence_at {
        FenceAt::Start => fence().execute(&mut *transaction).await?,
        // Announces the write: a write sent behind this one waits for it
        // before it locks the head.
        FenceAt::End => {
            sqlx::query("SELECT pg_advisory_xact_lock(invario_write_key($1, $2))")
                .bind(ledger.as_str())
                .bind(frame.head.0)
                .execute(&mut *transaction)
                .await?
        }
    };
    copy_rows(&mut transaction, COPY_TRANSACTIONS, entries, |rows, entry| rows.transaction(ledger, entry))
        .await?;
    copy_rows(&mut transaction, COPY_ENTRIES, entries, |rows, entry| rows.entry(ledger, entry)).await?;
    if fence_at == FenceAt::End {
        fence().execute(&mut *transaction).await?;
    }
    let advance = sqlx::query("SELECT invario_advance_v1($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
    frame.bind_advance(advance.bind(ledger.as_str())).execute(&mut *transaction).await?;
    transaction.commit().await
}

/// Streams one binary COPY of `entries`, each encoded by `encode`, a chunk at a time.
async fn copy_rows(
    connection: &mut PgConnection,
    statement: &str,
    entries: &[LedgerEntry],
    encode: impl Fn(&mut BinaryRows, &LedgerEntry) -> Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error> {
    let mut copy = connection.copy_in_raw(statement).await?;
    let mut rows = BinaryRows::new();
    rows.buffer.extend_from_slice(BINARY_HEADER);
    for entry in entries {
        encode(&mut rows, entry)?;
        if rows.buffer.len() >= CHUNK_BYTES {
            copy.send(rows.buffer.as_slice()).await?;
            rows.buffer.clear();
        }
    }
    rows.buffer.extend_from_slice(&BINARY_TRAILER);
    copy.send(rows.buffer.as_slice()).await?;
    copy.finish().await.map(drop)
}

/// Rows in PostgreSQL's binary COPY format: per tuple a field count, then
/// each field as its length and its binary send format (sqlx's encoders).
struct BinaryRows {
    buffer: Vec<u8>,
    /// Where one value is encoded before it is copied behind its length.
    value: PgArgumentBuffer,
}

impl BinaryRows {
    fn new() -> BinaryRows {
        BinaryRows { buffer: Vec::with_capacity(CHUNK_BYTES + 4 * 1024), value: PgArgumentBuffer::default() }
    }

    /// A `transactions` row: ledger_id, transaction_id, amount, currency, occurred_at, metadata.
    fn transaction(&mut self, ledger: &LedgerName, entry: &LedgerEntry) -> Result<(), sqlx::Error> {
        let transaction = &entry.transaction;
        self.tuple(6);
        self.value(&ledger.as_str())?;
        self.value(transaction.transaction_id.as_uuid())?;
        self.value(&transaction.amount.decimal())?;
        self.value(&transaction.currency.code())?;
        self.value(&transaction.occurred_at.map(to_datetime))?;
        self.jsonb(&metadata_json(&transaction.metadata))
    }

    /// A `ledger_entries` row: ledger_id, sequence_number, transaction_id,
    /// prev_hash, entry_hash, recorded_at.
    fn entry(&mut self, ledger: &LedgerName, entry: &LedgerEntry) -> Result<(), sqlx::Error> {
        let sequence = i64::try_from(entry.sequence_number).map_err(|_| {
            sqlx::Error::Encode(format!("sequence number {} exceeds bigint", entry.sequence_number).into())
        })?;
        self.tuple(6);
        self.value(&ledger.as_str())?;
        self.value(&sequence)?;
        self.value(entry.transaction.transaction_id.as_uuid())?;
        self.value(&entry.prev_hash.as_bytes().as_slice())?;
        self.value(&entry.entry_hash.as_bytes().as_slice())?;
        self.value(&to_datetime(entry.recorded_at))
    }

    fn tuple(&mut self, fields: i16) {
        self.buffer.extend_from_slice(&fields.to_be_bytes());
    }

    fn value<'q, T: Encode<'q, Postgres>>(&mut self, value: &T) -> Result<(), sqlx::Error> {
        self.value.clear();
        match value.encode_by_ref(&mut self.value).map_err(sqlx::Error::Encode)? {
            IsNull::Yes => self.buffer.extend_from_slice(&(-1_i32).to_be_bytes()),
            IsNull::No => {
                self.length(self.value.len())?;
                self.buffer.extend_from_slice(&self.value);
            }
        }
        Ok(())
    }

    /// `jsonb`'s binary format: version 1, then the JSON text.
    fn jsonb(&mut self, text: &str) -> Result<(), sqlx::Error> {
        self.length(text.len() + 1)?;
        self.buffer.push(1);
        self.buffer.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn length(&mut self, length: usize) -> Result<(), sqlx::Error> {
        let length = i32::try_from(length).map_err(|_| {
            sqlx::Error::Encode(format!("a value of {length} bytes exceeds COPY's field limit").into())
        })?;
        self.buffer.extend_from_slice(&length.to_be_bytes());
        Ok(())
    }
}
