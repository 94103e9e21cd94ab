//! Schema versions: which migrations a database still lacks. Each adapter
//! reads the versions its database applied and lists the migrations it
//! embeds; the rule that relates them lives here, once.

/// A migration, as reported to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Version number (the file name's prefix).
    pub version: i64,
    /// What it does (the file name's rest).
    pub description: String,
}

/// The migrations of `embedded` (version, description; up migrations only,
/// in order) whose version is not among `applied`, in order.
pub fn pending_migrations<'a>(
    embedded: impl IntoIterator<Item = (i64, &'a str)>,
    applied: &[i64],
) -> Vec<MigrationInfo> {
    embedded
        .into_iter()
        .filter(|(version, _)| !applied.contains(version))
        .map(|(version, description)| MigrationInfo { version, description: description.to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_are_the_embedded_ones_not_applied_in_order() {
        let embedded = [(1, "ledger"), (2, "tree"), (3, "ledgers")];
        let pending = pending_migrations(embedded, &[1, 3]);
        assert_eq!(pending, vec![MigrationInfo { version: 2, description: "tree".into() }]);
        assert_eq!(pending_migrations(embedded, &[]).len(), 3);
        assert!(pending_migrations(embedded, &[3, 2, 1]).is_empty());
    }
}
