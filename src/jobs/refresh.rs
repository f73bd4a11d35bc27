//! Recomputes a tenant's career summary: `DBMS_MVIEW.REFRESH` on Oracle,
//! `REFRESH MATERIALIZED VIEW` on PostgreSQL, a rebuild of the summary table in
//! one transaction on SQLite.

use crate::catalog::registry::TenantRecord;
use crate::db::Session;
use crate::schema::render::Renderer;
use crate::tenants::operation::on_active_tenant;

pub fn refresh(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
) -> anyhow::Result<()> {
    on_active_tenant(session, tenant, "tenant.refresh", "refresh", |conn, key| {
        Ok(conn.run_statements(&renderer.refresh_career_summary(key)?)?)
    })
}
