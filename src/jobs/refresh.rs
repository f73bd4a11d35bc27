//! Recomputes a tenant's career summary: `DBMS_MVIEW.REFRESH` on Oracle,
//! `REFRESH MATERIALIZED VIEW` on PostgreSQL, a rebuild of the summary table in
//! one transaction on SQLite.

use anyhow::bail;

use crate::db::{Open, Session};
use crate::operation::{Guard, TenantOp, missing_tenant};
use crate::registry::{self, Status, TenantRecord};
use crate::render::Renderer;
use crate::tenant::TenantKey;

pub fn refresh(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
) -> anyhow::Result<()> {
    let name = tenant.username.as_str();
    let Some(mut op) = TenantOp::begin(session, name, "tenant.refresh", "refresh", Guard::Wait)?
    else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(tenant.user_id.clone());
    let result = (|| -> anyhow::Result<()> {
        // Read again under the lock: it may have been deprovisioned meanwhile.
        let status = op
            .registry(|sys| registry::get(sys, name))?
            .map(|r| r.status);
        if status != Some(Status::Active) {
            bail!(
                "tenant {name} is {}, not active: nothing to refresh",
                status.map(|s| s.to_string()).unwrap_or("gone".into())
            );
        }
        let key = TenantKey::parse(&tenant.tenant_key, op.session().dialect())?;
        let statements = renderer.refresh_career_summary(&key)?;
        op.tenant(&key, Open::Existing, |conn| {
            Ok(conn.run_statements(&statements)?)
        })?
        .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
        op.complete(|_| Ok(()))
    })();
    op.finish(result, |_, _| Ok(()))
}
