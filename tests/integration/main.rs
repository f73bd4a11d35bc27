//! The integration tests, as one test binary: one module per concern, all linking the
//! library and its dependencies once (a binary per file would link them once each).

mod common;

mod audit_cmd;
mod audit_trail;
mod ci_examples;
mod concurrent_runs;
mod config;
mod dba;
mod fingerprint;
mod fleet;
mod fleet_adopt;
mod fleet_catalog;
mod fleet_grants;
mod fleet_kills;
mod fleet_lost;
mod fleet_move;
mod hardening;
mod keys;
mod least_privilege;
mod lifecycle;
mod migrate;
mod names;
mod oracle;
mod oracle_recorded;
mod oracle_static;
mod provision_robustness;
mod render_cli;
mod render_snapshots;
mod retention;
mod schema_parity;
mod second_round;
mod security;
mod shape_drift;
mod summary_parity;
mod value_checks;
