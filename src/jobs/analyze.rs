//! Gathers the optimizer's statistics for a tenant's tables (cron):
//! `DBMS_STATS.GATHER_TABLE_STATS` on Oracle, `ANALYZE` on PostgreSQL,
//! `ANALYZE` and `PRAGMA optimize` on SQLite (see each backend's
//! [`crate::db::Connection::analyze`]). Each tenant is one [`TenantOp`], so it
//! waits for a migration of the same tenant and leaves an audit row.

use std::collections::HashMap;

use anyhow::bail;

use crate::db::{Open, Session};
use crate::migrate::verify::split_name;
use crate::operation::{Guard, TenantOp, missing_tenant};
use crate::registry::{self, Status, TenantRecord};
use crate::tenant::TenantKey;

/// Gathers statistics for every table of `tenant` (live, archive, summary and
/// history tables); returns how many tables.
pub fn analyze(session: &mut Session<'_>, tenant: &TenantRecord) -> anyhow::Result<usize> {
    let name = tenant.username.as_str();
    let Some(mut op) = TenantOp::begin(session, name, "tenant.analyze", "analyze", Guard::Wait)?
    else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(tenant.user_id.clone());
    let result = (|| -> anyhow::Result<usize> {
        // Read again under the lock: it may have been deprovisioned meanwhile.
        let status = op
            .registry(|sys| registry::get(sys, name))?
            .map(|r| r.status);
        if status != Some(Status::Active) {
            bail!(
                "tenant {name} is {}, not active: nothing to analyze",
                status.map(|s| s.to_string()).unwrap_or("gone".into())
            );
        }
        let key = TenantKey::parse(&tenant.tenant_key, op.session().dialect())?;
        let tables = op
            .tenant(&key, Open::Existing, |conn| {
                // Only this tenant's objects: `pf_user_a_` is also the start
                // of tenant `a_b`'s names.
                let only = HashMap::from([(key.as_str(), ())]);
                let tables: Vec<String> = conn
                    .table_stats(&key.prefix())?
                    .into_iter()
                    .filter(|t| split_name(&t.table, &only).is_some())
                    .map(|t| t.table)
                    .collect();
                conn.analyze(&tables)?;
                Ok(tables.len())
            })?
            .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
        op.complete(|_| Ok(()))?;
        Ok(tables)
    })();
    op.finish(result, |_, _| Ok(()))
}
