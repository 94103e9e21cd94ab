//! End-to-end tests over real HTTP against real PostgreSQL, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod dispatch;
mod helpers;
mod hostile;
mod ingest;
mod integrity;
mod ledgers;
mod proof_wait;
mod proofs;
mod reads_and_auth;
mod tlog_tiles;
mod witness;
