//! pathfinder-db: provision, migrate and maintain the per-user schema of the
//! Pathfinder database on Oracle, PostgreSQL and SQLite.
//!
//! Everything the command line does is callable from here, so the integration
//! tests and the benchmarks drive the same code.

pub mod adopt;
pub mod audit;
pub mod audit_log;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod dialect;
pub mod doctor;
pub mod error;
pub mod export;
pub mod grants;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod migrate;
pub mod operation;
pub mod parallel;
pub mod policy;
pub mod provision;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod render;
pub mod shape;
pub mod stats;
pub mod tenant;

/// `pathfinder-db/<version>`: the user agent written to the audit log.
pub const USER_AGENT: &str = concat!("pathfinder-db/", env!("CARGO_PKG_VERSION"));
