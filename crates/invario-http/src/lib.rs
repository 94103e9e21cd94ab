//! The warp HTTP ingestion service (filled in by the HTTP issue).
