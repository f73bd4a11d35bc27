//! The jobs cron runs, and the archive machinery they share.

pub mod analyze;
pub mod archive;
pub mod oldest;
pub mod policy;
pub mod refresh;
pub mod retention;
pub mod sessions;
