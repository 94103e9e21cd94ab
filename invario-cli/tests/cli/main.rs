//! End-to-end: the built `invario` binary against real PostgreSQL and the
//! embedded default — one test binary, a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod checkpoints;
mod embedded;
mod keys;
mod ledgers;
mod migrate;
mod mirror;
mod proofs;
mod tlog_proof;
mod verify;
mod witness;
