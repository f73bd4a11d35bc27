//! Tenant lifecycle: provision (create a user's tables) and deprovision (remove
//! them, optionally archiving or exporting the rows first).
//!
//! PostgreSQL: everything for one tenant (registry row, DDL, history, audit)
//! happens in one transaction under a per-tenant advisory lock: all or nothing.
//! SQLite: the tenant's file is written in one transaction (its write lock is the
//! tenant lock); the registry in the main file says `provisioning` until that
//! commit is followed by `active`. Oracle: every DDL commits, so every step is
//! idempotent and the registry says `provisioning` until all of them succeeded;
//! a re-run finishes the job.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::audit::{self, AuditEntry};
use crate::db::{Connection, Lock, Session};
use crate::dialect::Dialect;
use crate::error::UsageError;
use crate::migrate;
use crate::registry::{self, Status, TenantRecord};
use crate::render::Renderer;
use crate::tenant::{TENANT_TABLES, TenantKey, Username};

/// A user to provision, and the tenant key the DBA chose, if any.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub username: Username,
    pub tenant_key: Option<String>,
    /// Provision at this version instead of the latest (staged rollouts, tests).
    pub target_version: Option<u32>,
    /// [keys] Wraps the user's new encryption key; None: no key is created.
    pub master_key: Option<std::sync::Arc<crate::crypto::MasterKey>>,
}

/// What provisioning did for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProvisionOutcome {
    /// This run created (or finished creating) the tenant.
    Created { tenant_key: String, version: u32 },
    /// The tenant was there already; nothing was changed.
    Exists { tenant_key: String, version: u32 },
}

impl ProvisionOutcome {
    pub fn tenant_key(&self) -> &str {
        match self {
            ProvisionOutcome::Created { tenant_key, .. }
            | ProvisionOutcome::Exists { tenant_key, .. } => tenant_key,
        }
    }
}

/// Decides the tenant key: the registry's (a username keeps its key for life),
/// else the one asked for, else the username; checked against the dialect.
fn resolve_key(
    record: Option<&TenantRecord>,
    req: &ProvisionRequest,
    dialect: Dialect,
) -> anyhow::Result<TenantKey> {
    let registered = record
        .filter(|r| r.status != Status::Deprovisioned)
        .map(|r| r.tenant_key.as_str());
    match (registered, req.tenant_key.as_deref()) {
        (Some(have), Some(asked)) if have != asked => Err(UsageError::new(format!(
            "user {} is registered with tenant key {have:?}, not {asked:?}: drop --tenant-key or deprovision first",
            req.username
        ))
        .into()),
        (Some(have), _) => Ok(TenantKey::parse(have, dialect)?),
        (None, Some(asked)) => Ok(TenantKey::parse(asked, dialect)?),
        (None, None) => Ok(TenantKey::for_username(&req.username, dialect)?),
    }
}

/// Validates a request before any database is touched: the explicit key, or
/// (without one) that the username fits the dialect. A username that does not
/// fit may still be registered with a key: that is `NeedsRegisteredKey`.
pub fn check_request(req: &ProvisionRequest, dialect: Dialect) -> Result<(), NameCheck> {
    match &req.tenant_key {
        Some(k) => TenantKey::parse(k, dialect)
            .map(|_| ())
            .map_err(|e| NameCheck::Invalid(UsageError::new(e.to_string()))),
        None => match TenantKey::for_username(&req.username, dialect) {
            Ok(_) => Ok(()),
            Err(e @ crate::tenant::NameError::TooLongForDialect { .. }) => Err(
                NameCheck::NeedsRegisteredKey(UsageError::new(e.to_string())),
            ),
            Err(e) => Err(NameCheck::Invalid(UsageError::new(e.to_string()))),
        },
    }
}

/// Why a request did not pass [`check_request`].
#[derive(Debug)]
pub enum NameCheck {
    /// Refused whatever the registry says.
    Invalid(UsageError),
    /// Too long for the dialect: fine only if the registry holds a key for it.
    NeedsRegisteredKey(UsageError),
}

/// Creates one tenant at the latest version. Safe to call concurrently for the
/// same user from several processes, and to re-run after a crash.
pub fn provision(
    session: &mut Session<'_>,
    renderer: &Renderer,
    req: &ProvisionRequest,
) -> anyhow::Result<ProvisionOutcome> {
    let started = Instant::now();
    let username = req.username.as_str();
    let result = provision_steps(session, renderer, req, started);
    if let Err(err) = &result {
        let message = crate::error::one_line(err);
        let sys = session.system();
        // The failure is recorded outside the rolled-back transaction, and only
        // on a tenant left half-created: an error about an existing, active
        // tenant (a conflicting --tenant-key, say) must not change it.
        if session_dialect_is_staged(sys.dialect()) {
            let _ = registry::mark_failed_if_provisioning(sys, username, &message);
        }
        let _ = write_audit(
            sys,
            "tenant.provision",
            username,
            None,
            started,
            Some(&message),
        );
        let _ = sys.commit();
    }
    result
}

/// Where provisioning is staged across several commits (all but PostgreSQL).
fn session_dialect_is_staged(dialect: Dialect) -> bool {
    dialect != Dialect::Postgres
}

fn write_audit(
    conn: &mut dyn Connection,
    action: &str,
    username: &str,
    user_id: Option<&str>,
    started: Instant,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let command = action.split('.').nth(1).unwrap_or(action);
    audit::write(
        conn,
        &AuditEntry {
            action,
            entity_type: "tenant",
            entity_id: username,
            user_id,
            command,
            started,
            error,
        },
    )?;
    Ok(())
}

fn provision_steps(
    session: &mut Session<'_>,
    renderer: &Renderer,
    req: &ProvisionRequest,
    started: Instant,
) -> anyhow::Result<ProvisionOutcome> {
    let dialect = session.dialect();
    let one_transaction = !session_dialect_is_staged(dialect);
    let username = req.username.as_str();
    let lock = Lock::Tenant(req.username.as_str());
    session.system().begin()?;
    let outcome = (|| -> anyhow::Result<ProvisionOutcome> {
        // Step 1: register the tenant as `provisioning` (its own commit unless
        // everything runs in one transaction).
        let sys = session.system();
        sys.lock(&lock)?;
        let record = registry::get(sys, username)?;
        let key = resolve_key(record.as_ref(), req, dialect)?;
        match record.as_ref().map(|r| r.status) {
            Some(Status::Active | Status::Migrating) => {
                let version = record.as_ref().map(|r| r.schema_version).unwrap_or(0) as u32;
                return Ok(ProvisionOutcome::Exists {
                    tenant_key: key.to_string(),
                    version,
                });
            }
            Some(Status::Deprovisioning) => bail!(
                "tenant {username} is being deprovisioned: finish with `pathfinder-db deprovision {username} --yes` first"
            ),
            _ => {}
        }
        if let Some(owner) = registry::key_owner(sys, key.as_str())?.filter(|o| o != username) {
            return Err(UsageError::new(format!(
                "tenant key \"{key}\" already belongs to user {owner}: choose another --tenant-key"
            ))
            .into());
        }
        let user_id = registry::user_id_of(sys, username)?;
        match &record {
            None => {
                registry::insert(sys, username, key.as_str(), user_id.as_deref())?;
            }
            Some(_) => {
                registry::restart_provisioning(sys, username, key.as_str(), user_id.as_deref())?
            }
        }
        if !one_transaction {
            sys.commit()?;
        }

        // Step 2: the tenant's objects and history. On SQLite, BEGIN IMMEDIATE on
        // the tenant's file is the tenant lock.
        let (applied, version) = {
            let mut tenant = session
                .tenant(&key, true)?
                .expect("tenant connection is created on demand");
            if !one_transaction {
                tenant.begin()?;
            }
            match migrate::apply_tenant(&mut *tenant, renderer, &key, req.target_version, false) {
                Ok(r) => {
                    if !one_transaction {
                        tenant.commit()?;
                    }
                    r
                }
                Err(e) => {
                    if !one_transaction {
                        let _ = tenant.rollback();
                    }
                    return Err(e);
                }
            }
        };

        // Step 3: mark it active and audit the change.
        let sys = session.system();
        if !one_transaction {
            sys.begin()?;
        }
        registry::set_state(sys, username, Status::Active, Some(version as i64), None)?;
        // [keys] The user's encryption key, in this same transaction.
        let master_key = req.master_key.as_deref();
        crate::keys::create_on_provision(sys, username, user_id.as_deref(), master_key)?;
        let outcome = if applied.versions.is_empty() {
            // Another process (or an earlier, interrupted run) created it.
            ProvisionOutcome::Exists {
                tenant_key: key.to_string(),
                version,
            }
        } else {
            write_audit(
                sys,
                "tenant.provision",
                username,
                user_id.as_deref(),
                started,
                None,
            )?;
            ProvisionOutcome::Created {
                tenant_key: key.to_string(),
                version,
            }
        };
        sys.commit()?;
        Ok(outcome)
    })();
    let sys = session.system();
    // Ends the transaction an early return (the tenant exists) or an error left open.
    let _ = sys.rollback();
    let _ = sys.unlock(&lock);
    outcome
}

/// What to do with a tenant's rows before its tables are dropped.
#[derive(Debug, Clone, Default)]
pub struct DeprovisionOptions {
    /// Copy every row into the tenant's archive tables, which are kept.
    pub archive: bool,
    /// Write every row to this file as JSON Lines first.
    pub export: Option<PathBuf>,
}

/// What deprovisioning did for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeprovisionOutcome {
    Removed {
        tenant_key: String,
        archived_rows: u64,
        exported_rows: u64,
    },
    AlreadyRemoved,
}

/// Removes a tenant's objects. Idempotent and resumable: the registry says
/// `deprovisioning` until every object is gone.
pub fn deprovision(
    session: &mut Session<'_>,
    renderer: &Renderer,
    username: &Username,
    options: &DeprovisionOptions,
) -> anyhow::Result<DeprovisionOutcome> {
    let started = Instant::now();
    let result = deprovision_steps(session, renderer, username, options, started);
    if let Err(err) = &result {
        let message = crate::error::one_line(err);
        let _ = write_audit(
            session.system(),
            "tenant.deprovision",
            username.as_str(),
            None,
            started,
            Some(&message),
        );
        let _ = session.system().commit();
    }
    result
}

fn deprovision_steps(
    session: &mut Session<'_>,
    renderer: &Renderer,
    username: &Username,
    options: &DeprovisionOptions,
    started: Instant,
) -> anyhow::Result<DeprovisionOutcome> {
    let dialect = session.dialect();
    let name = username.as_str();
    let lock = Lock::Tenant(username.as_str());
    let sys = session.system();
    let Some(record) = registry::get(sys, name)? else {
        return Err(UsageError::new(format!(
            "no tenant named {name}: `pathfinder-db tenants` lists them"
        ))
        .into());
    };
    if record.status == Status::Deprovisioned {
        return Ok(DeprovisionOutcome::AlreadyRemoved);
    }
    let key = TenantKey::parse(&record.tenant_key, dialect)?;
    sys.begin()?;
    sys.lock(&lock)?;
    registry::set_state(sys, name, Status::Deprovisioning, None, None)?;
    sys.commit()?;

    let result = (|| -> anyhow::Result<(u64, u64)> {
        let Some(mut tenant) = session.tenant(&key, false)? else {
            return Ok((0, 0));
        };
        let mut exported = 0;
        if let Some(path) = &options.export {
            exported = export_rows(&mut *tenant, &key, path)?;
        }
        tenant.begin()?;
        if dialect == Dialect::Postgres {
            tenant.lock(&lock)?;
        }
        let work = (|| -> anyhow::Result<u64> {
            let mut archived = 0;
            if options.archive {
                archived = archive_all(&mut *tenant, &key)?;
            }
            let drop = if options.archive {
                renderer.drop_tenant_keeping_archives(&key)?
            } else {
                renderer.drop_tenant(&key)?
            };
            tenant.run_statements(&drop)?;
            Ok(archived)
        })();
        match work {
            Ok(archived) => {
                tenant.commit()?;
                Ok((archived, exported))
            }
            Err(e) => {
                let _ = tenant.rollback();
                Err(e)
            }
        }
    })();
    let sys = session.system();
    let (archived_rows, exported_rows) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = sys.unlock(&lock);
            return Err(e);
        }
    };
    if let Some(file) = session.database().sqlite_tenant_file(&key)
        && !options.archive
    {
        remove_sqlite_file(&file)?;
    }
    let sys = session.system();
    sys.begin()?;
    // [keys] Crypto-shredding: unless the rows were kept, the user's key goes too.
    if !options.archive && options.export.is_none() {
        crate::keys::shred_on_deprovision(sys, name, record.user_id.as_deref())?;
    }
    registry::set_state(sys, name, Status::Deprovisioned, Some(0), None)?;
    write_audit(
        sys,
        "tenant.deprovision",
        name,
        record.user_id.as_deref(),
        started,
        None,
    )?;
    sys.commit()?;
    let _ = sys.unlock(&lock);
    Ok(DeprovisionOutcome::Removed {
        tenant_key: key.to_string(),
        archived_rows,
        exported_rows,
    })
}

fn remove_sqlite_file(file: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", file.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

/// Tables whose name exists in the catalog, among the tenant's nine.
fn existing_tables(
    conn: &mut dyn Connection,
    key: &TenantKey,
) -> anyhow::Result<Vec<&'static str>> {
    let columns = conn.columns(&key.prefix())?;
    Ok(TENANT_TABLES
        .iter()
        .copied()
        .filter(|t| columns.iter().any(|c| c.table == key.object(t)))
        .collect())
}

/// Copies every row of the tenant's tables into `<table>_archive` (created on
/// first use, keyed by id, with `archived_at`). Rows already archived are
/// skipped, so a repeated run neither duplicates nor fails. Columns the live
/// table gained since the archive was created (a later schema version) are
/// added to the archive first.
fn archive_all(conn: &mut dyn Connection, key: &TenantKey) -> anyhow::Result<u64> {
    let dialect = conn.dialect();
    let if_not_exists = if dialect == Dialect::Oracle {
        ""
    } else {
        "IF NOT EXISTS "
    };
    let tables = existing_tables(conn, key)?;
    for table in &tables {
        let live = key.object(table);
        let archive = key.object(&format!("{table}_archive"));
        let index = key.object(&format!("{}_arch_uq", short_name(table)));
        conn.run_statements(&[
            crate::render::Statement {
                sql: format!(
                    "CREATE TABLE {if_not_exists}{archive} AS SELECT s.*, CURRENT_TIMESTAMP AS archived_at FROM {live} s WHERE 1 = 0"
                ),
                plsql: false,
            },
            crate::render::Statement {
                sql: format!("CREATE UNIQUE INDEX {if_not_exists}{index} ON {archive} (id)"),
                plsql: false,
            },
        ])?;
    }
    let catalog = conn.columns(&key.prefix())?;
    let mut total = 0;
    for table in &tables {
        let live = key.object(table);
        let archive = key.object(&format!("{table}_archive"));
        let live_columns: Vec<_> = catalog.iter().filter(|c| c.table == live).collect();
        let archived: Vec<&str> = catalog
            .iter()
            .filter(|c| c.table == archive)
            .map(|c| c.column.as_str())
            .collect();
        for col in live_columns
            .iter()
            .filter(|c| !archived.contains(&c.column.as_str()))
        {
            conn.run_statements(&[crate::render::Statement {
                sql: format!("ALTER TABLE {archive} ADD {} {}", col.column, col.data_type),
                plsql: false,
            }])?;
        }
        let names = live_columns
            .iter()
            .map(|c| c.column.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let sourced = live_columns
            .iter()
            .map(|c| format!("s.{}", c.column))
            .collect::<Vec<_>>()
            .join(", ");
        total += conn.execute(
            &format!(
                "INSERT INTO {archive} ({names}, archived_at) SELECT {sourced}, CURRENT_TIMESTAMP FROM {live} s \
                 WHERE NOT EXISTS (SELECT 1 FROM {archive} a WHERE a.id = s.id)"
            ),
            &[],
        )?;
    }
    Ok(total)
}

/// The abbreviation used in a table's constraint and index names.
pub fn short_name(table: &str) -> &'static str {
    match table {
        "experiences" => "exp",
        "skills" => "skl",
        "profile_summary" => "psum",
        "quick_summary" => "qsum",
        "chat_conversations" => "conv",
        "chat_messages" => "msg",
        "career_analytics" => "ana",
        "skills_progression" => "sprog",
        "pert_responses" => "pert",
        other => panic!("no short name for table {other}"),
    }
}

/// Writes every row of the tenant's tables to `path` as JSON Lines
/// (`{"table": ..., "row": {...}}`), flushed to disk before anything is dropped.
fn export_rows(conn: &mut dyn Connection, key: &TenantKey, path: &Path) -> anyhow::Result<u64> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path)
            .with_context(|| format!("cannot create export file {}", path.display()))?,
    );
    let columns = conn.columns(&key.prefix())?;
    let mut count = 0;
    for table in existing_tables(conn, key)? {
        let name = key.object(table);
        let cols: Vec<&str> = columns
            .iter()
            .filter(|c| c.table == name)
            .map(|c| c.column.as_str())
            .collect();
        let rows = conn.query(
            &format!("SELECT {} FROM {name} ORDER BY id", cols.join(", ")),
            &[],
        )?;
        for row in rows {
            let object: serde_json::Map<String, serde_json::Value> = cols
                .iter()
                .zip(row)
                .map(|(c, v)| {
                    (
                        c.to_string(),
                        serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect();
            let line = serde_json::json!({ "table": table, "row": object });
            writeln!(file, "{line}")?;
            count += 1;
        }
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(count)
}
