//! `migrate`: brings tenants to a target version in parallel, resumably, with
//! a per-tenant result.
//!
//! Which tenants are pending is one registry query, so a run with nothing to
//! do costs one query whatever the fleet size. The workers of the shared pool
//! ([`crate::parallel`]) take tenants from that list; each claims its tenant's
//! registry row ([`crate::catalog::registry::claim`]) so several `migrate --all`
//! processes, on any number of machines, share the work and never apply a
//! migration twice; a tenant another run holds is skipped. How the claim and
//! the tenant's transaction work on each backend is decided by [`TenantOp`].

use std::time::Instant;

use serde::Serialize;

use crate::catalog::registry::{self, Claim, Status};
use crate::db::{Database, Open, Session};
use crate::schema::render::Renderer;
use crate::schema::tenant::TenantKey;
use crate::tenants::operation::{Guard, TenantOp};

pub use crate::catalog::registry::{Order, Pending};

/// What to migrate.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Only these usernames (None: every tenant).
    pub usernames: Option<Vec<String>>,
    /// Target version.
    pub target: u32,
    pub order: Order,
    /// At most this many tenants in this run.
    pub limit: Option<usize>,
    /// Sessions at once (per member on a fleet).
    pub jobs: usize,
    /// Sessions at once in all, over the members (see [`crate::parallel::ByMember`]).
    pub max_jobs: usize,
    pub fail_fast: bool,
    /// Only the tenants on this member database (None: every member).
    pub database: Option<String>,
}

/// A named tenant whose own history was behind its registry version.
#[derive(Debug, Clone, Serialize)]
pub struct Resynced {
    pub username: String,
    /// What the registry said.
    pub registry: i64,
    /// The highest version the tenant's history holds (what its tables are).
    pub history: i64,
}

/// For the named `usernames`: active tenants whose own history is behind the
/// registry (tables restored from a backup taken before a migration, while
/// the registry kept the later version): the registry is set back to the
/// history's version, audited as `tenant.resync`, so that the migration that
/// follows brings them up. Unchanged with `dry_run`. A fleet-wide run does
/// not look (a history read per tenant): `verify` names such a tenant.
pub fn resync_restored(
    session: &mut Session<'_>,
    usernames: &[String],
    dry_run: bool,
) -> anyhow::Result<Vec<Resynced>> {
    let mut out = Vec::new();
    for name in usernames {
        let Some(record) = registry::get(session.system(), name)? else {
            continue;
        };
        if record.status != Status::Active || record.schema_version <= 0 {
            continue;
        }
        let key = TenantKey::parse(&record.tenant_key, session.dialect())?;
        let Some(history) = tenant_history_top(session, &key)? else {
            continue;
        };
        if history >= record.schema_version {
            continue;
        }
        out.push(Resynced {
            username: name.clone(),
            registry: record.schema_version,
            history,
        });
        if dry_run {
            continue;
        }
        let Some(mut op) = TenantOp::begin(session, name, "tenant.resync", "migrate", Guard::Wait)?
        else {
            anyhow::bail!("tenant {name} is locked by another process");
        };
        op.set_user_id(record.user_id.clone());
        op.set_details(
            serde_json::json!({"registry": record.schema_version, "history": history}).to_string(),
        );
        let result = op.complete(|sys| {
            let changes = registry::Changes {
                schema_version: Some(history),
                ..registry::Changes::default()
            };
            if !registry::transition(sys, name, &[Status::Active], Status::Active, &changes)? {
                anyhow::bail!("tenant {name} changed meanwhile: run the migration again");
            }
            Ok(())
        });
        op.finish(result, |_, _| Ok(()))?;
    }
    Ok(out)
}

/// The highest version in a tenant's own history; None without one (or
/// without the tenant's tables).
fn tenant_history_top(session: &mut Session<'_>, key: &TenantKey) -> anyhow::Result<Option<i64>> {
    let Some(mut conn) = session.tenant(key, Open::Existing)? else {
        return Ok(None);
    };
    let applied =
        crate::migrate::engine::applied_versions(&mut *conn, &key.object("schema_history"))?;
    Ok(applied.iter().map(|(v, _, _)| i64::from(*v)).max())
}

/// One tenant's result.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    pub username: String,
    pub from_version: i64,
    pub to_version: i64,
    /// Versions this run applied (empty: an interrupted run had applied them).
    pub applied: Vec<u32>,
    pub error: Option<String>,
    pub ms: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub target: u32,
    pub pending: usize,
    pub migrated: Vec<TenantResult>,
    pub failed: Vec<TenantResult>,
    /// Tenants another process was working on (or took over, or removed
    /// meanwhile); they are not this run's to report.
    pub skipped_busy: Vec<String>,
}

/// The pending tenants of `plan`, in run order: one query.
pub fn pending(
    conn: &mut dyn crate::db::Connection,
    plan: &Plan,
) -> Result<Vec<Pending>, crate::db::DbError> {
    registry::pending(
        conn,
        plan.target,
        plan.usernames.as_deref(),
        plan.database.as_deref(),
        plan.order,
        plan.limit,
    )
}

enum Outcome {
    Done(TenantResult),
    /// Held or finished by another run, or removed meanwhile.
    Skipped,
}

/// The claim was lost between claiming and recording: another run took the
/// tenant over, or it was deprovisioned. Its result is not this run's.
#[derive(Debug, thiserror::Error)]
#[error("the tenant was taken over by another command")]
struct ClaimLost;

/// Migrates the pending tenants of `plan`. `on_done` is called after each tenant.
pub fn run(
    db: &Database,
    renderer: &Renderer,
    plan: &Plan,
    pending: &[Pending],
    on_done: &(dyn Fn(&TenantResult) + Sync),
) -> Report {
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut report = Report {
        target: plan.target,
        pending: pending.len(),
        ..Report::default()
    };
    // A tenant that failed is an Err, so --fail-fast stops handing out more;
    // so is one whose session could not connect.
    let options = crate::parallel::PoolOptions {
        jobs: plan.jobs,
        read_only: false,
        fail_fast: plan.fail_fast,
    };
    let by_member = crate::parallel::ByMember {
        member_of: |p: &Pending| p.database.as_str(),
        limit: plan.max_jobs,
    };
    let results = crate::parallel::for_each_by_member(
        db,
        pending,
        options,
        by_member,
        |session, listed| match migrate_tenant(session, renderer, listed, plan.target, &run_id) {
            Ok(Outcome::Done(r)) if r.error.is_some() => Err(anyhow::Error::new(Failed(r))),
            other => other,
        },
        |listed, result| match result {
            Ok(Outcome::Done(r)) => on_done(r),
            Ok(Outcome::Skipped) => {}
            Err(e) => on_done(&failed_result(listed, e)),
        },
    );
    for (listed, result) in pending.iter().zip(results) {
        match result {
            Some(Ok(Outcome::Done(r))) => report.migrated.push(r),
            Some(Err(e)) => report.failed.push(failed_result(listed, &e)),
            Some(Ok(Outcome::Skipped)) => report.skipped_busy.push(listed.username.clone()),
            // Not handed out after a --fail-fast stop.
            None => {}
        }
    }
    report.migrated.sort_by(|a, b| a.username.cmp(&b.username));
    report.failed.sort_by(|a, b| a.username.cmp(&b.username));
    report
}

fn migrate_tenant(
    session: &mut Session<'_>,
    renderer: &Renderer,
    listed: &Pending,
    target: u32,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let dialect = session.dialect();
    let Some(mut op) = TenantOp::begin(
        session,
        &listed.username,
        "tenant.migrate",
        "migrate",
        Guard::Claim,
    )?
    else {
        return Ok(Outcome::Skipped);
    };
    let Some(claim) = op.claim(target, run_id)? else {
        return Ok(Outcome::Skipped);
    };
    op.set_user_id(claim.tenant.user_id.clone());
    let result = migrate_claimed(&mut op, renderer, &claim, target, dialect);
    if matches!(&result, Err(e) if e.is::<ClaimLost>()) {
        return Ok(Outcome::Skipped);
    }
    let ms = started.elapsed().as_millis() as u64;
    let result = op.finish(result, |sys, message| {
        registry::finish_claim(sys, &claim, Err(message)).map(|_| ())
    });
    Ok(Outcome::Done(match result {
        Ok((applied, version)) => TenantResult {
            username: claim.tenant.username.clone(),
            from_version: claim.tenant.schema_version,
            to_version: version as i64,
            applied,
            error: None,
            ms,
        },
        Err(e) => failure(&claim.tenant, crate::error::one_line(&e), ms),
    }))
}

fn migrate_claimed(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    claim: &Claim,
    target: u32,
    dialect: crate::db::dialect::Dialect,
) -> anyhow::Result<(Vec<u32>, u32)> {
    let tenant = &claim.tenant;
    let key = TenantKey::parse(&tenant.tenant_key, dialect)?;
    let (applied, version) = op
        .tenant(&key, Open::Existing, |conn| {
            let (applied, version) = crate::migrate::apply_tenant(
                conn,
                renderer,
                &key,
                Some(target),
                tenant.schema_version > 0,
            )?;
            // New tables are granted to the application role (when there is
            // one), also those of versions an interrupted run applied.
            if !applied.versions.is_empty() || version as i64 != tenant.schema_version {
                crate::security::grants::grant_tenant(
                    conn,
                    renderer,
                    &key,
                    version,
                    (&tenant.username, tenant.user_id.as_deref(), "migrate"),
                )?;
            }
            Ok((applied, version))
        })?
        .ok_or_else(|| {
            crate::tenants::operation::missing_tenant(op.session(), &key, &tenant.username)
        })?;
    // A change is audited once: when the registry records it. A run that
    // finds the versions applied by an interrupted one records (and audits)
    // what that one could not.
    let changed = version as i64 != tenant.schema_version || tenant.status != Status::Active;
    let record = |sys: &mut dyn crate::db::Connection| -> anyhow::Result<()> {
        if registry::finish_claim(sys, claim, Ok(version as i64))? {
            Ok(())
        } else {
            Err(ClaimLost.into())
        }
    };
    if changed {
        op.complete(record)?;
    } else {
        op.registry(record)?;
    }
    Ok((applied.versions, version))
}

/// A tenant's failed result, carried as an error through the worker pool.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.error.as_deref().unwrap_or("failed"))]
struct Failed(TenantResult);

fn failed_result(listed: &Pending, e: &anyhow::Error) -> TenantResult {
    match e.downcast_ref::<Failed>() {
        Some(Failed(r)) => r.clone(),
        None => failure(listed, crate::error::one_line(e), 0),
    }
}

fn failure(tenant: &Pending, message: String, ms: u64) -> TenantResult {
    TenantResult {
        username: tenant.username.clone(),
        from_version: tenant.schema_version,
        to_version: tenant.schema_version,
        applied: vec![],
        error: Some(message),
        ms,
    }
}
