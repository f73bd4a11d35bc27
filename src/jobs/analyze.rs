//! Gathers the optimizer's statistics for a tenant's tables (cron):
//! `DBMS_STATS.GATHER_TABLE_STATS` on Oracle, `ANALYZE` on PostgreSQL,
//! `ANALYZE` and `PRAGMA optimize` on SQLite (see each backend's
//! [`crate::db::Connection::analyze`]). Each tenant is one tenant operation, so it
//! waits for a migration of the same tenant and leaves an audit row.

use std::collections::HashMap;

use crate::catalog::registry::TenantRecord;
use crate::db::Session;
use crate::migrate::verify::split_name;
use crate::tenants::operation::on_active_tenant;

/// Gathers statistics for every table of `tenant` (live, archive, summary and
/// history tables); returns how many tables.
pub fn analyze(session: &mut Session<'_>, tenant: &TenantRecord) -> anyhow::Result<usize> {
    on_active_tenant(session, tenant, "tenant.analyze", "analyze", |conn, key| {
        // Only this tenant's objects: `pf_user_a_` is also the start of
        // tenant `a_b`'s names.
        let only = HashMap::from([(key.as_str(), ())]);
        let tables: Vec<String> = conn
            .table_stats(&key.prefix())?
            .into_iter()
            .filter(|t| split_name(&t.table, &only).is_some())
            .map(|t| t.table)
            .collect();
        conn.analyze(&tables)?;
        Ok(tables.len())
    })
}
