//! The warp HTTP ingestion service.
