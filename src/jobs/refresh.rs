//! Recomputes a tenant's career summary: `DBMS_MVIEW.REFRESH` on Oracle,
//! `REFRESH MATERIALIZED VIEW` on PostgreSQL, a rebuild of the summary table in
//! one transaction on SQLite.

use std::time::Instant;

use anyhow::bail;

use crate::audit::{self, AuditEntry};
use crate::db::Session;
use crate::registry::{Status, TenantRecord};
use crate::render::Renderer;
use crate::tenant::TenantKey;

pub fn refresh(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let result = refresh_steps(session, renderer, tenant);
    let error = result.as_ref().err().map(crate::error::one_line);
    let sys = session.system();
    let _ = audit::write(
        sys,
        &AuditEntry {
            action: "tenant.refresh",
            entity_type: "tenant",
            entity_id: &tenant.username,
            user_id: tenant.user_id.as_deref(),
            command: "refresh",
            started,
            error: error.as_deref(),
        },
    );
    let _ = sys.commit();
    result
}

fn refresh_steps(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
) -> anyhow::Result<()> {
    if tenant.status != Status::Active {
        bail!(
            "tenant {} is {}, not active: nothing to refresh",
            tenant.username,
            tenant.status
        );
    }
    let key = TenantKey::parse(&tenant.tenant_key, session.dialect())?;
    let statements = renderer.refresh_career_summary(&key)?;
    let Some(mut conn) = session.tenant(&key, false)? else {
        bail!("the database file of tenant {} is missing", tenant.username);
    };
    conn.begin()?;
    match conn.run_statements(&statements) {
        Ok(()) => Ok(conn.commit()?),
        Err(e) => {
            let _ = conn.rollback();
            Err(e.into())
        }
    }
}
