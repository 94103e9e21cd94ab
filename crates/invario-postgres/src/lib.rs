//! PostgreSQL adapter for the invario-core ports (filled in by the PostgreSQL issue).
