//! The jobs cron runs, and the archive machinery they share.

pub mod archive;
pub mod refresh;
pub mod retention;
pub mod sessions;
