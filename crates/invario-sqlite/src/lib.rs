//! SQLite adapter for the invario-core ports, the embedded default (filled in by the SQLite issue).
