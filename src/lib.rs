//! pathfinder-db: provision, migrate and maintain the per-user schema of the
//! Pathfinder database on Oracle, PostgreSQL and SQLite.
//!
//! Everything the command line does is callable from here, so the integration
//! tests and the benchmarks drive the same code.

// The layers, from the outside in. Library modules never import `cli`.
/// The catalog database: the tenant registry and the audit log.
pub mod catalog;
/// The command line: clap arguments and presentation only, no SQL.
pub mod cli;
/// Database access: one connection type per backend, dialects, redaction.
pub mod db;
/// The fleet: member databases and where each tenant is placed.
pub mod fleet;
/// The jobs cron runs: retention and archival, sessions, refresh, analyze.
pub mod jobs;
/// Tenant schema versions: the migration engine, runner and `verify`.
pub mod migrate;
/// What the objects are: tenant names, the templates, table shapes, reference data.
pub mod schema;
/// Keys and privileges: envelope encryption, key rotation, grants.
pub mod security;
/// One tenant's lifecycle: provision, adopt, export, import, stats.
pub mod tenants;

pub mod config;
pub mod doctor;
pub mod error;
pub mod parallel;

/// `pathfinder-db/<version>`: the user agent written to the audit log.
pub const USER_AGENT: &str = concat!("pathfinder-db/", env!("CARGO_PKG_VERSION"));
