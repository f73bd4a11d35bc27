//! Schema versions: the system schema (refinery's own history table) and each
//! tenant's schema (a history table per tenant).

pub mod engine;
pub mod runner;
pub mod verify;

use crate::db::{Connection, Tx};
use crate::schema::render::Renderer;
use crate::schema::tenant::{SCHEMA_HISTORY, TenantKey};

pub use engine::{Applied, DivergenceError};

/// refinery's default history table, for the system schema.
pub const SYSTEM_HISTORY: &str = "refinery_schema_history";

/// Whether the system schema is at the latest version with unchanged
/// templates: one query, no lock, so read-only databases can still be read.
pub fn system_is_current(conn: &mut dyn Connection, renderer: &Renderer) -> anyhow::Result<bool> {
    let applied = engine::applied_versions(conn, SYSTEM_HISTORY)?;
    let migrations = renderer.system_migrations()?;
    Ok(applied.len() == migrations.len()
        && applied
            .iter()
            .zip(&migrations)
            .all(|((version, _, checksum), m)| {
                *version == m.version && *checksum == engine::checksum(m, conn.dialect())
            }))
}

/// Brings the system schema to the latest version. Idempotent: with nothing
/// pending it costs two queries.
/// Every version applied is written to the audit log (in the same transaction
/// where DDL is transactional); a failure is audited when the log exists.
pub fn init_system(conn: &mut dyn Connection, renderer: &Renderer) -> anyhow::Result<Applied> {
    let started = std::time::Instant::now();
    let migrations = renderer.system_migrations()?;
    // Two processes starting on a fresh database must not both create it.
    let lock = crate::db::Lock::System;
    let result = (|| -> anyhow::Result<Applied> {
        let mut tx = Tx::begin(conn)?;
        tx.lock(&lock)?;
        let applied = engine::apply(
            &mut *tx,
            &migrations,
            SYSTEM_HISTORY,
            None,
            false,
            "system schema",
        )?;
        for version in &applied.versions {
            audit_system(&mut *tx, &format!("system V{version}"), started, None)?;
        }
        if !applied.versions.is_empty() {
            // The application role (when it exists) may use what it needs.
            crate::security::grants::grant_system(&mut *tx, renderer)?;
        }
        tx.commit()?;
        Ok(applied)
    })();
    if let Err(e) = &result {
        // Recorded after the rollback, where the audit log exists already.
        let message = crate::error::one_line(e);
        let _ = Tx::begin(conn).and_then(|mut tx| {
            audit_system(&mut *tx, "system", started, Some(&message))?;
            tx.commit()
        });
    }
    // A session-level lock on Oracle; ends with the transaction elsewhere.
    let _ = conn.unlock(&lock);
    result
}

fn audit_system(
    conn: &mut dyn Connection,
    entity: &str,
    started: std::time::Instant,
    error: Option<&str>,
) -> Result<(), crate::db::DbError> {
    let mut entry =
        crate::catalog::audit::AuditEntry::new("system.migrate", "schema", entity, "init");
    entry.started = started;
    entry.error = error.map(str::to_string);
    crate::catalog::audit::write(conn, &entry)
}

/// Applies a tenant's pending migrations up to `target` inside the caller's
/// transaction, and returns what was applied and the version reached.
/// `history_exists`: the tenant has a history table already (it was provisioned).
pub fn apply_tenant(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
    target: Option<u32>,
    history_exists: bool,
) -> anyhow::Result<(Applied, u32)> {
    let migrations = renderer.tenant_migrations(key)?;
    let history = key.object(SCHEMA_HISTORY);
    let applied = engine::apply(
        conn,
        &migrations,
        &history,
        target,
        history_exists,
        &format!("tenant {key}"),
    )?;
    // Versions apply in order, so the last one applied is the version reached;
    // only when nothing was applied does the history need asking.
    let version = match applied.versions.last() {
        Some(v) => *v,
        None => engine::applied_versions(conn, &history)?
            .last()
            .map(|(v, _, _)| *v)
            .unwrap_or(0),
    };
    Ok((applied, version))
}
