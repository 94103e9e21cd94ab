//! `invario`: serve the API, migrate, manage keys, verify the ledger, export digests.

mod audit;
mod checkpoints;
mod cli;
mod commands;
mod database;
mod keyfile;
mod mirror;
mod output;
mod proof;
mod remote;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
