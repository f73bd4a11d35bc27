//! `migrate`: brings tenants to a target version in parallel, resumably, with
//! a per-tenant result.
//!
//! Which tenants are pending is one registry query, so a run with nothing to
//! do costs one query whatever the fleet size. Work is per tenant, never under
//! a global lock:
//! - PostgreSQL: the workers share out the pending list; each claims a
//!   tenant's registry row with `FOR UPDATE SKIP LOCKED` (skipping it if another
//!   worker or process holds it, or finished it) and migrates it in the same
//!   transaction, so any number of processes (on any number of machines) share
//!   one run, and a killed process's claims vanish with its connection.
//! - SQLite and Oracle: the pending list is shared out among the workers; a
//!   tenant is locked (SQLite: its file's write lock; Oracle: DBMS_LOCK, skipped
//!   when another process holds it) and its history decides what is left, so
//!   nothing is applied twice. On Oracle each statement is idempotent and the
//!   history row is committed per version, so a run killed between two DDL
//!   statements resumes at the one that did not finish.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::audit::{self, AuditEntry};
use crate::db::{Connection, Database, DbError, Lock, Session, Value};
use crate::dialect::Dialect;
use crate::registry::Status;
use crate::render::Renderer;
use crate::tenant::TenantKey;

/// Order in which pending tenants are taken (for staged rollouts with --limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest tenants first (by creation time).
    #[default]
    Oldest,
    /// Newest tenants first.
    Newest,
    /// Alphabetical by username.
    Name,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::Oldest => "created_at, username",
            Order::Newest => "created_at DESC, username",
            Order::Name => "username",
        }
    }
}

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
    pub jobs: usize,
    pub fail_fast: bool,
}

/// A tenant that needs work, as the registry has it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub username: String,
    pub tenant_key: String,
    pub user_id: Option<String>,
    pub schema_version: i64,
    pub status: Status,
}

/// One tenant's result.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    pub username: String,
    pub from_version: i64,
    pub to_version: i64,
    /// Versions this run applied (empty: another process did it, or nothing was left).
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
    /// Tenants another process was working on; they are not this run's to report.
    pub skipped_busy: Vec<String>,
}

/// The WHERE clause for pending tenants and its bind values.
fn pending_filter(plan: &Plan) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "status IN ('active', 'failed', 'migrating') AND (schema_version < ? OR status <> 'active')",
    );
    let mut binds = vec![Value::Int(plan.target as i64)];
    if let Some(names) = &plan.usernames {
        sql.push_str(" AND username IN (");
        sql.push_str(&vec!["?"; names.len().max(1)].join(", "));
        sql.push(')');
        if names.is_empty() {
            binds.push(Value::Null);
        }
        binds.extend(names.iter().map(|n| Value::Text(n.clone())));
    }
    (sql, binds)
}

fn pending_from_row(r: &[Value]) -> Result<Pending, DbError> {
    Ok(Pending {
        username: r[0].to_text(),
        tenant_key: r[1].to_text(),
        user_id: if r[2].is_null() {
            None
        } else {
            Some(r[2].to_text())
        },
        schema_version: r[3].as_i64().unwrap_or(0),
        status: r[4].to_text().parse().map_err(DbError::other)?,
    })
}

const PENDING_COLUMNS: &str = "username, tenant_key, user_id, schema_version, status";

/// The pending tenants, in run order: one query.
pub fn pending(conn: &mut dyn Connection, plan: &Plan) -> Result<Vec<Pending>, DbError> {
    let (filter, binds) = pending_filter(plan);
    let rows = conn.query(
        &format!(
            "SELECT {PENDING_COLUMNS} FROM pf_tenants WHERE {filter} ORDER BY {}",
            plan.order.sql()
        ),
        &binds,
    )?;
    let mut out = rows
        .iter()
        .map(|r| pending_from_row(r))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(limit) = plan.limit {
        out.truncate(limit);
    }
    Ok(out)
}

/// Migrates the pending tenants of `plan`. `on_done` is called after each tenant.
pub fn run(
    db: &Database,
    renderer: &Renderer,
    plan: &Plan,
    pending: &[Pending],
    on_done: &(dyn Fn(&TenantResult) + Sync),
) -> Report {
    let report = Mutex::new(Report {
        target: plan.target,
        pending: pending.len(),
        ..Report::default()
    });
    let record = |result: TenantResult| {
        on_done(&result);
        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
        if result.error.is_some() {
            r.failed.push(result);
        } else {
            r.migrated.push(result);
        }
    };
    let stop = AtomicBool::new(false);
    let taken = AtomicUsize::new(0);
    let budget = pending.len();
    let run_id = uuid::Uuid::new_v4().to_string();
    let workers = plan.jobs.clamp(1, budget.max(1));

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut current: Option<Session<'_>> = None;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(listed) = pending.get(taken.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    // Connect lazily, and again after a lost connection: a
                    // tenant that cannot be reached is reported as failed.
                    if current.as_ref().is_none_or(|s| s.is_broken()) {
                        match db.connect() {
                            Ok(s) => current = Some(s),
                            Err(e) => {
                                current = None;
                                record(failure(listed, e.to_string(), 0));
                                if plan.fail_fast {
                                    stop.store(true, Ordering::Relaxed);
                                }
                                continue;
                            }
                        }
                    }
                    let Some(session) = current.as_mut() else {
                        continue;
                    };
                    let (tenant, claimed) = if db.dialect() == Dialect::Postgres {
                        match claim(session, plan, &listed.username) {
                            Ok(Some(p)) => (p, true),
                            // Another process holds it, or finished it already.
                            Ok(None) => {
                                report
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .skipped_busy
                                    .push(listed.username.clone());
                                continue;
                            }
                            Err(e) => {
                                record(failure(listed, e.to_string(), 0));
                                continue;
                            }
                        }
                    } else {
                        (listed.clone(), false)
                    };
                    match migrate_tenant(session, renderer, &tenant, plan.target, claimed, &run_id)
                    {
                        Outcome::Done(result) => {
                            if result.error.is_some() && plan.fail_fast {
                                stop.store(true, Ordering::Relaxed);
                            }
                            record(result);
                        }
                        Outcome::Busy => {
                            report
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .skipped_busy
                                .push(tenant.username.clone());
                        }
                    }
                }
            });
        }
    });
    let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
    report.migrated.sort_by(|a, b| a.username.cmp(&b.username));
    report.failed.sort_by(|a, b| a.username.cmp(&b.username));
    report
}

enum Outcome {
    Done(TenantResult),
    Busy,
}

/// PostgreSQL: opens a transaction and claims `username` if it is still
/// pending and no other worker or process holds it (`FOR UPDATE SKIP LOCKED`
/// on its registry row, held until the tenant's transaction ends). None: it
/// is taken or done.
fn claim(
    session: &mut Session<'_>,
    plan: &Plan,
    username: &str,
) -> Result<Option<Pending>, DbError> {
    let conn = session.system();
    let (filter, mut binds) = pending_filter(&Plan {
        usernames: None,
        ..plan.clone()
    });
    binds.push(Value::Text(username.into()));
    conn.begin()?;
    let rows = conn.query(
        &format!("SELECT {PENDING_COLUMNS} FROM pf_tenants WHERE {filter} AND username = ? FOR UPDATE SKIP LOCKED"),
        &binds,
    );
    match rows {
        Ok(rows) if rows.is_empty() => {
            conn.rollback()?;
            Ok(None)
        }
        Ok(rows) => Ok(Some(pending_from_row(&rows[0])?)),
        Err(e) => {
            let _ = conn.rollback();
            Err(e)
        }
    }
}

fn migrate_tenant(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &Pending,
    target: u32,
    claimed: bool,
    run_id: &str,
) -> Outcome {
    let started = Instant::now();
    let dialect = session.dialect();
    let lock = Lock::Tenant(&tenant.username);
    let result = (|| -> anyhow::Result<Option<(Vec<u32>, u32)>> {
        let key = TenantKey::parse(&tenant.tenant_key, dialect)?;
        // Lock the tenant against other runs and against deprovisioning. On
        // PostgreSQL the claimed registry row is that lock: deprovision must
        // update the row, so it waits for this transaction.
        match dialect {
            Dialect::Postgres => {}
            Dialect::Oracle => {
                if !session.system().try_lock(&lock)? {
                    return Ok(None);
                }
                // Every DDL commits: say so in the registry while it runs.
                crate::registry::set_state(
                    session.system(),
                    &tenant.username,
                    Status::Migrating,
                    None,
                    None,
                )?;
                session.system().commit()?;
            }
            Dialect::Sqlite => {}
        }
        let Some(mut conn) = session.tenant(&key, false)? else {
            anyhow::bail!("the database file of tenant {} is missing", tenant.username);
        };
        let separate = dialect != Dialect::Postgres;
        if separate {
            conn.begin()?;
        }
        match crate::migrate::apply_tenant(
            &mut *conn,
            renderer,
            &key,
            Some(target),
            tenant.schema_version > 0,
        ) {
            Ok((applied, version)) => {
                if separate {
                    conn.commit()?;
                }
                Ok(Some((applied.versions, version)))
            }
            Err(e) => {
                if separate {
                    let _ = conn.rollback();
                }
                Err(e)
            }
        }
    })();

    let ms = started.elapsed().as_millis() as u64;
    let conn = session.system();
    let outcome = match result {
        Ok(None) => {
            let _ = conn.rollback();
            return Outcome::Busy;
        }
        Ok(Some((applied, version))) => {
            let recorded = (|| -> Result<(), DbError> {
                if !claimed {
                    conn.begin()?;
                }
                conn.execute(
                    "UPDATE pf_tenants SET schema_version = ?, status = 'active', last_error = NULL, \
                     claimed_by = ?, claimed_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
                    &[Value::Int(version as i64), Value::Text(run_id.into()), Value::Text(tenant.username.clone())],
                )?;
                if !applied.is_empty() {
                    write_audit(conn, tenant, started, None)?;
                }
                conn.commit()
            })();
            match recorded {
                Ok(()) => TenantResult {
                    username: tenant.username.clone(),
                    from_version: tenant.schema_version,
                    to_version: version as i64,
                    applied,
                    error: None,
                    ms,
                },
                Err(e) => {
                    let _ = conn.rollback();
                    failure(tenant, e.to_string(), ms)
                }
            }
        }
        Err(err) => {
            let message = crate::error::one_line(&err);
            let _ = conn.rollback();
            // Record the failure in its own transaction, outside the rolled-back one.
            let _ = (|| -> Result<(), DbError> {
                conn.begin()?;
                conn.execute(
                    "UPDATE pf_tenants SET status = 'failed', last_error = ?, claimed_by = ?, \
                     claimed_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
                    &[
                        Value::Text(message.chars().take(4000).collect()),
                        Value::Text(run_id.into()),
                        Value::Text(tenant.username.clone()),
                    ],
                )?;
                write_audit(conn, tenant, started, Some(&message))?;
                conn.commit()
            })();
            failure(tenant, message, ms)
        }
    };
    let _ = conn.unlock(&lock);
    Outcome::Done(outcome)
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

fn write_audit(
    conn: &mut dyn Connection,
    tenant: &Pending,
    started: Instant,
    error: Option<&str>,
) -> Result<(), DbError> {
    audit::write(
        conn,
        &AuditEntry {
            action: "tenant.migrate",
            entity_type: "tenant",
            entity_id: &tenant.username,
            user_id: tenant.user_id.as_deref(),
            command: "migrate",
            started,
            error,
        },
    )
}
