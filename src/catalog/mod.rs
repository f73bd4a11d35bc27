//! The catalog database (the one `--database-url` names): the tenant
//! registry and the audit log, which every command reads or writes.

pub mod audit;
pub mod audit_log;
pub mod registry;
