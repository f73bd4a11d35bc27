//! The jobs cron runs.

pub mod refresh;
