//! What the commands print: the operator's guide's exact lines, tables, reports.

use invario_core::{
    ApiKeyRecord, IntegrityBreak, LedgerHead, Timestamp, VerificationRecord, VerificationReport,
};
use serde_json::{Value, json};

/// The three lines the operator's guide shows for a new key.
pub(crate) fn key_created(owner: &str, key: &str) -> String {
    format!(
        "✅ API Key Created for '{owner}'\n🔑 Key: {key}\n⚠️  SAVE THIS KEY NOW. It will not be shown again."
    )
}

fn short_time(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "-".to_owned(), |time| time.to_datetime().format("%Y-%m-%d %H:%M:%SZ").to_string())
}

/// A table of keys, never a secret.
pub(crate) fn key_table(keys: &[ApiKeyRecord], now: Timestamp) -> String {
    let header = ["OWNER", "PREFIX", "SCOPES", "CREATED", "LAST USED", "STATUS"].map(str::to_owned);
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|key| {
            let status = match (key.revoked_at, key.expires_at) {
                (Some(at), _) => format!("revoked {}", short_time(Some(at))),
                (None, Some(expiry)) if expiry <= now => format!("expired {}", short_time(Some(expiry))),
                (None, Some(expiry)) => format!("active until {}", short_time(Some(expiry))),
                (None, None) => "active".to_owned(),
            };
            let scopes = key.scopes.summary();
            [
                key.owner.to_string(),
                key.prefix.clone(),
                scopes,
                short_time(Some(key.created_at)),
                short_time(key.last_used_at),
                status,
            ]
        })
        .collect();
    table(header, &rows)
}

/// The ledgers with their head, one row each, and a trailing newline.
pub(crate) fn ledger_table(ledgers: &[(invario_core::LedgerInfo, LedgerHead)]) -> String {
    let header = ["LEDGER", "ENTRIES", "HEAD", "CREATED"].map(str::to_owned);
    let rows: Vec<[String; 4]> = ledgers
        .iter()
        .map(|(info, head)| {
            [
                info.name.to_string(),
                head.sequence_number.to_string(),
                head.entry_hash.to_hex(),
                short_time(Some(info.created_at)),
            ]
        })
        .collect();
    table(header, &rows) + "\n"
}

/// Left-aligned columns as wide as their widest cell, two spaces apart.
fn table<const N: usize>(header: [String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(&header)).chain(rows.iter().map(line)).collect::<Vec<_>>().join("\n")
}

/// The head as an exportable digest.
pub(crate) fn digest(head: &LedgerHead) -> Value {
    json!({
        "format": invario_core::chain::FORMAT_V1_NAME,
        "sequence_number": head.sequence_number,
        "entry_hash": head.entry_hash,
        "recorded_at": head.recorded_at,
    })
}

fn record_json(record: &VerificationRecord) -> Value {
    let transaction_json = |transaction: &invario_core::StoredTransaction| {
        json!({
            "transaction_id": transaction.transaction_id,
            "amount": transaction.amount,
            "currency": transaction.currency,
            "occurred_at": transaction.occurred_at_micros.map(Timestamp::describe_micros),
            "metadata": transaction.metadata,
        })
    };
    match record {
        VerificationRecord::Entry(entry, transaction) => json!({
            "sequence_number": entry.sequence_number,
            "transaction_id": entry.transaction_id,
            "prev_hash": entry.prev_hash,
            "entry_hash": entry.entry_hash,
            "recorded_at": Timestamp::describe_micros(entry.recorded_at_micros),
            "transaction": transaction.as_ref().map(transaction_json),
        }),
        VerificationRecord::OrphanTransaction(transaction) => {
            json!({ "transaction": transaction_json(transaction) })
        }
    }
}

/// The report as JSON (`--json`).
pub(crate) fn report_json(report: &VerificationReport) -> Value {
    json!({
        "intact": report.is_intact(),
        "entries_checked": report.entries_checked,
        "head": { "sequence_number": report.head.sequence_number, "entry_hash": report.head.entry_hash },
        "verified": { "sequence_number": report.verified.sequence_number, "entry_hash": report.verified.entry_hash },
        "break": report.first_break.as_ref().map(break_json),
        "row": report.broken_record.as_ref().map(record_json),
    })
}

fn break_json(found: &IntegrityBreak) -> Value {
    let mut value = serde_json::to_value(found).unwrap_or(Value::Null);
    value["message"] = json!(found.to_string());
    value
}

/// The human report: one line when intact; the break and the row's fields when not.
pub(crate) fn report_text(report: &VerificationReport) -> String {
    let Some(found) = &report.first_break else {
        return format!(
            "✅ Ledger intact: {} entries verified, head at sequence {} ({})",
            report.entries_checked, report.head.sequence_number, report.head.entry_hash
        );
    };
    let mut text = format!(
        "❌ Ledger BROKEN: {found}\n   kind: {}\n   first broken sequence: {}\n   entries verified before the break: {}",
        found.kind(),
        found.sequence().map_or_else(|| "-".to_owned(), |sequence| sequence.to_string()),
        report.entries_checked,
    );
    if let IntegrityBreak::HashMismatch { stored, recomputed, .. } = found {
        text.push_str(&format!(
            "\n   stored entry_hash:     {stored}\n   recomputed entry_hash: {recomputed}"
        ));
    }
    if let Some(record) = &report.broken_record {
        let row = serde_json::to_string_pretty(&record_json(record)).unwrap_or_default();
        text.push_str("\n   the row as stored:\n");
        text.push_str(&row.lines().map(|line| format!("     {line}")).collect::<Vec<_>>().join("\n"));
    }
    text.push_str(
        "\n   Quarantine: stop the API. Restore from the last good backup; Invario never rewrites hashes.",
    );
    text
}
