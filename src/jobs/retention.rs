//! Retention sweeps (`retention run`) and their undo (`retention restore`).
//!
//! A run takes the policies stored by `policies apply`, fixes every cutoff
//! when it starts (now − retention_days, in UTC), and sweeps each tenant's
//! tables children first (`pert_responses` and `skills` before
//! `experiences`, `chat_messages` before `chat_conversations`), then the
//! system tables. Rows go in batches, the oldest first by (age column, id);
//! each batch copies and deletes the same rows in one transaction (see
//! [`archive`]), so a row is always in exactly one place and a run killed at
//! any moment loses nothing: the next run takes up what is left.
//!
//! The rule for parents: a row that a child row still points at stays. The
//! children are swept first, so a parent moves once every child pointing at
//! it has moved; an old experience whose skill is young stays until the
//! skill ages out. Deleting it would cascade to the skill unarchived (or
//! fail, for `pert_responses`, which has no cascade).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::catalog::audit::{self, AuditEntry};
use crate::catalog::registry::{self, Status, TenantRecord, iso_utc};
use crate::db::dialect::Dialect;
use crate::db::{Connection, Lock, Open, Session, Tx, Value};
use crate::error::UsageError;
use crate::jobs::archive::{self, Action, ArchiveTable, Batch, Child, Sweep};
use crate::jobs::oldest;
use crate::jobs::policy::{AUDIT_LOG, FOREIGN_KEYS, Policy, SESSIONS, Target};
use crate::schema::render::Renderer;
use crate::schema::tenant::{TABLES, TableDef, TenantKey, tables_children_first};
use crate::tenants::operation::{Guard, TenantOp, missing_tenant};

/// Batches listed with one scan of a table: the ids of up to this many
/// batches are held in memory at a time.
const CHUNK_BATCHES: u64 = 100;

/// Batches that find their own rows before a sweep lists ids: each such
/// batch sorts the due rows to find its last one, which is cheapest for a
/// few batches and wasteful for a large backlog.
const FIND_BATCHES: u64 = 4;

/// A policy of this run, with its cutoff.
#[derive(Debug, Clone)]
pub struct Planned {
    pub policy: Policy,
    /// Rows whose age column is before this are due (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
    pub cutoff: String,
    pub targets: Vec<Target>,
}

/// What a run does, fixed when it starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// When the run started (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC): the cutoffs count back from
    /// it, and it is the `archived_at` (generation) of every row it moves.
    pub started: String,
    pub policies: Vec<Planned>,
}

impl Plan {
    pub fn new(policies: Vec<Policy>, now: time::OffsetDateTime) -> Plan {
        let now = now.to_offset(time::UtcOffset::UTC);
        let now = time::PrimitiveDateTime::new(now.date(), now.time());
        Plan {
            started: archive::timestamp_text(now),
            policies: policies
                .into_iter()
                .map(|policy| Planned {
                    cutoff: archive::timestamp_text(
                        now - time::Duration::days(policy.retention_days),
                    ),
                    targets: policy.targets(),
                    policy,
                })
                .collect(),
        }
    }

    /// The tenant tables to sweep, children first, each with its policies
    /// (in name order).
    pub fn tenant_steps(&self) -> Vec<(&'static TableDef, Vec<&Planned>)> {
        tables_children_first()
            .filter_map(|def| {
                let policies: Vec<&Planned> = self
                    .policies
                    .iter()
                    .filter(|p| p.targets.contains(&Target::Tenant(def)))
                    .collect();
                (!policies.is_empty()).then_some((def, policies))
            })
            .collect()
    }

    /// The system tables to sweep, each with its policies.
    pub fn system_steps(&self) -> Vec<(&'static str, Vec<&Planned>)> {
        [SESSIONS, AUDIT_LOG]
            .into_iter()
            .filter_map(|table| {
                let policies: Vec<&Planned> = self
                    .policies
                    .iter()
                    .filter(|p| p.targets.contains(&Target::System(table)))
                    .collect();
                (!policies.is_empty()).then_some((table, policies))
            })
            .collect()
    }

    /// (age column, cutoff) of the policies that remove rows of `table`.
    fn removing(&self, table: &str) -> Vec<(String, String)> {
        self.policies
            .iter()
            .filter(|p| p.policy.action().deletes() && p.targets.iter().any(|t| t.name() == table))
            .map(|p| (p.policy.age_column.clone(), p.cutoff.clone()))
            .collect()
    }
}

/// Why a run stopped before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxRuntime,
    StopFile,
}

/// Whether the stop file at `path` stops a sweep: it exists and is the
/// running user's or root's. The default place is the shared temporary
/// folder, where any local user could otherwise stop every sweep.
pub fn stop_file_counts(path: &std::path::Path) -> bool {
    stop_file_owner(path).is_some_and(|owner| owner.is_none())
}

/// None: no stop file; Some(None): one that counts; Some(Some(uid)): one
/// of another user, ignored.
pub fn stop_file_owner(path: &std::path::Path) -> Option<Option<u32>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::config::running_uid();
        if meta.uid() != me && meta.uid() != 0 {
            return Some(Some(meta.uid()));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Some(None)
}

/// `--max-runtime` and the stop file, checked between batches.
#[derive(Debug)]
pub struct Stop {
    deadline: Option<Instant>,
    file: Option<PathBuf>,
    hit: OnceLock<StopReason>,
}

impl Stop {
    pub fn new(max_runtime: Option<Duration>, file: Option<PathBuf>) -> Stop {
        Stop {
            deadline: max_runtime.map(|d| Instant::now() + d),
            file,
            hit: OnceLock::new(),
        }
    }

    /// Whether to stop now (once true, it stays true for every worker).
    pub fn check(&self) -> Option<StopReason> {
        if let Some(reason) = self.hit.get() {
            return Some(*reason);
        }
        let reason = if self.deadline.is_some_and(|d| Instant::now() >= d) {
            StopReason::MaxRuntime
        } else if self.file.as_ref().is_some_and(|f| stop_file_counts(f)) {
            StopReason::StopFile
        } else {
            return None;
        };
        Some(*self.hit.get_or_init(|| reason))
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.hit.get().copied()
    }
}

/// One table under one policy, in a report.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub policy: String,
    pub action: Action,
    pub age_column: String,
    /// ISO 8601 UTC.
    pub cutoff: String,
    /// Rows moved, deleted or copied; in a dry run, the rows due.
    pub rows: u64,
    pub archived: u64,
    pub deleted: u64,
    pub batches: u64,
    /// Set when the run stopped in this table: the rows still due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_left: Option<u64>,
}

impl TableReport {
    fn new(table: &str, p: &Planned) -> TableReport {
        TableReport {
            table: table.to_string(),
            policy: p.policy.name.clone(),
            action: p.policy.action(),
            age_column: p.policy.age_column.clone(),
            cutoff: iso_utc(&p.cutoff),
            rows: 0,
            archived: 0,
            deleted: 0,
            batches: 0,
            rows_left: None,
        }
    }

    fn add(&mut self, b: &Batch) {
        if b.selected > 0 {
            self.batches += 1;
        }
        self.rows += b.selected;
        self.archived += b.archived;
        self.deleted += b.deleted;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    Done,
    /// Stopped between two batches (`--max-runtime`, the stop file).
    Stopped,
    /// The run stopped before it reached this tenant.
    NotStarted,
    Failed,
}

/// What a run did for one tenant (or for the system tables).
#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    /// None for the system tables.
    pub username: Option<String>,
    pub tenant_key: Option<String>,
    pub status: UnitStatus,
    pub tables: Vec<TableReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl UnitReport {
    /// A report that says nothing was done yet.
    pub fn new(unit: &Unit) -> UnitReport {
        let (username, tenant_key) = match unit {
            Unit::System => (None, None),
            Unit::Tenant(t) => (Some(t.username.clone()), Some(t.tenant_key.clone())),
        };
        UnitReport {
            username,
            tenant_key,
            status: UnitStatus::Done,
            tables: Vec::new(),
            error: None,
        }
    }
}

/// A piece of a run's work: one tenant, or the system tables.
#[derive(Debug, Clone)]
pub enum Unit {
    System,
    Tenant(Box<TenantRecord>),
}

impl Unit {
    /// The member database whose tables the unit sweeps.
    pub fn database(&self) -> &str {
        match self {
            Unit::System => crate::fleet::members::CATALOG,
            Unit::Tenant(t) => &t.database,
        }
    }
}

/// Batch size and whether anything may change.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub batch_size: u64,
    pub dry_run: bool,
}

/// Sweeps (or, in a dry run, counts) one unit. Never an error: a failure is
/// in the report, and the other units go on.
pub fn sweep_unit(
    session: &mut Session<'_>,
    renderer: &Renderer,
    plan: &Plan,
    options: Options,
    stop: &Stop,
    unit: &Unit,
) -> UnitReport {
    let mut report = UnitReport::new(unit);
    if !options.dry_run && stop.check().is_some() {
        report.status = UnitStatus::NotStarted;
        return report;
    }
    let result = match (unit, options.dry_run) {
        (Unit::System, false) => sweep_system(session, renderer, plan, options, stop, &mut report),
        (Unit::System, true) => count_system(session, plan, &mut report),
        (Unit::Tenant(t), false) => {
            sweep_tenant(session, renderer, plan, options, stop, t, &mut report)
        }
        (Unit::Tenant(t), true) => count_tenant(session, plan, t, &mut report),
    };
    if let Err(e) = result {
        report.status = UnitStatus::Failed;
        report.error = Some(crate::error::one_line(&e));
    }
    report
}

/// The audit row of one committed batch of a table (or of a stop or a
/// failure, which commit none): `archived` and `deleted` are the rows this
/// batch copied and deleted, so the rows of a table add up to exactly what
/// left it, whenever a run was killed; `policies` is the table's progress in
/// this run so far (the last row of a table sums it up). None when there is
/// nothing to say.
fn table_audit(
    tenant: Option<&TenantRecord>,
    table: &str,
    batch: Batch,
    reports: &[TableReport],
    started: Instant,
    error: Option<&str>,
) -> Option<(AuditEntry, String)> {
    let stopped = reports.iter().any(|r| r.rows_left.is_some());
    // Rows are audited where something changed, or went wrong.
    if batch.archived == 0 && batch.deleted == 0 && error.is_none() && !stopped {
        return None;
    }
    let mut entry = AuditEntry::new("retention.sweep", "table", table, "retention");
    entry.started = started;
    entry.user_id = tenant.and_then(|t| t.user_id.clone());
    entry.error = error.map(str::to_string);
    let details = serde_json::json!({
        "username": tenant.map(|t| t.username.clone()),
        "tenant_key": tenant.map(|t| t.tenant_key.clone()),
        "table": table,
        "archived": batch.archived,
        "deleted": batch.deleted,
        "stopped": stopped,
        "policies": reports,
    });
    Some((entry, details.to_string()))
}

/// Writes [`table_audit`]'s row, if any.
fn write_audit(
    conn: &mut dyn Connection,
    row: Option<(AuditEntry, String)>,
) -> Result<(), crate::db::DbError> {
    match row {
        Some((entry, details)) => audit::write_details(conn, &entry, Some(&details)),
        None => Ok(()),
    }
}

/// The children of `def` in `key`'s tables (a real sweep: every child row
/// left holds its parent).
fn children_of(key: &TenantKey, def: &TableDef, plan: Option<&Plan>) -> Vec<Child> {
    FOREIGN_KEYS
        .iter()
        .filter(|(_, _, parent)| *parent == def.name)
        .map(|(child, fk, _)| Child {
            table: key.object(child),
            fk,
            removed_by: plan.map(|p| p.removing(child)).unwrap_or_default(),
        })
        .collect()
}

/// Checks that every table of `steps` exists with its policies' age columns,
/// before anything changes.
fn check_columns(
    name: &str,
    key: &TenantKey,
    live: &[(&'static TableDef, Vec<crate::db::CatalogColumn>)],
    steps: &[(&'static TableDef, Vec<&Planned>)],
) -> anyhow::Result<()> {
    for (def, policies) in steps {
        let Some((_, columns)) = live.iter().find(|(d, _)| d.name == def.name) else {
            bail!(
                "{} does not exist: check the tenant with `pathfinder-db verify {name}`",
                key.object(def.name)
            );
        };
        for p in policies {
            if !columns.iter().any(|c| c.column == p.policy.age_column) {
                bail!(
                    "{} has no column {} (policy {}): bring tenant {name} to the latest version with `pathfinder-db migrate {name}`",
                    key.object(def.name),
                    p.policy.age_column,
                    p.policy.name
                );
            }
        }
    }
    Ok(())
}

/// The table in progress, for its audit row should the sweep fail.
struct InProgress {
    table: String,
    /// Its policies done so far.
    done: Vec<TableReport>,
    /// The policy being swept.
    active: Option<TableReport>,
    started: Instant,
}

impl InProgress {
    fn reports(&self) -> Vec<TableReport> {
        self.done.iter().chain(&self.active).cloned().collect()
    }

    /// The row of a stop or a failure in this table: the table's progress,
    /// no counts (its batches have their own rows).
    fn audit_end(
        &self,
        conn: &mut dyn Connection,
        tenant: &TenantRecord,
        error: Option<&str>,
    ) -> Result<(), crate::db::DbError> {
        let reports = self.reports();
        write_audit(
            conn,
            table_audit(
                Some(tenant),
                &self.table,
                Batch::default(),
                &reports,
                self.started,
                error,
            ),
        )
    }
}

/// The audit row of a batch that `table` (the policy in progress, before the
/// batch) just did.
fn batch_audit(
    tenant: &TenantRecord,
    current: &Option<InProgress>,
    table: &TableReport,
    batch: Batch,
    started: Instant,
) -> Option<(AuditEntry, String)> {
    let c = current.as_ref()?;
    let mut now = table.clone();
    now.add(&batch);
    let reports: Vec<TableReport> = c.done.iter().cloned().chain([now]).collect();
    table_audit(Some(tenant), &c.table, batch, &reports, started, None)
}

fn sweep_tenant(
    session: &mut Session<'_>,
    renderer: &Renderer,
    plan: &Plan,
    options: Options,
    stop: &Stop,
    tenant: &TenantRecord,
    report: &mut UnitReport,
) -> anyhow::Result<()> {
    let steps = plan.tenant_steps();
    if steps.is_empty() {
        return Ok(());
    }
    let name = tenant.username.as_str();
    let Some(mut op) =
        TenantOp::begin(session, name, "tenant.retention", "retention", Guard::Wait)?
    else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(tenant.user_id.clone());
    let mut current: Option<InProgress> = None;
    let result = tenant_steps(
        &mut op,
        renderer,
        plan,
        options,
        stop,
        tenant,
        &steps,
        report,
        &mut current,
    );
    let result = op.finish(result, |sys, message| {
        if let Some(c) = &current {
            c.audit_end(sys, tenant, Some(message))?;
        }
        Ok(())
    });
    // The tenant's lock, if the sweep held it across its batches, goes only
    // now, after its last commit (or rollback) and audit row.
    let sys = session.system();
    let lock = Lock::Tenant(name);
    if sys.holds(&lock) {
        // On failure the session is given up, and the lock with it.
        let _ = sys.release_held(&lock);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn tenant_steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    plan: &Plan,
    options: Options,
    stop: &Stop,
    tenant: &TenantRecord,
    steps: &[(&'static TableDef, Vec<&Planned>)],
    report: &mut UnitReport,
    current: &mut Option<InProgress>,
) -> anyhow::Result<()> {
    let name = tenant.username.as_str();
    // Read again under the lock: it may have been deprovisioned meanwhile.
    let status = op
        .registry(|sys| registry::get(sys, name))?
        .map(|r| r.status);
    if status != Some(Status::Active) {
        bail!(
            "tenant {name} is {}, not active: retention sweeps active tenants only",
            status.map(|s| s.to_string()).unwrap_or("gone".into())
        );
    }
    let key = TenantKey::parse(&tenant.tenant_key, op.session().dialect())?;
    // Columns and archive tables first: no DDL in the batch loop (on Oracle
    // every DDL commits).
    let archives: Vec<ArchiveTable> = op
        .tenant(&key, Open::Existing, |conn| {
            let catalog = conn.columns(&key.prefix())?;
            let live = archive::live_tables_in(&key, &catalog);
            check_columns(name, &key, &live, steps)?;
            let to_archive: Vec<_> = live
                .into_iter()
                .filter(|(def, _)| {
                    steps
                        .iter()
                        .any(|(d, ps)| d.name == def.name && ps.iter().any(|p| p.policy.archive))
                })
                .collect();
            archive::prepare_in(conn, renderer, &key, &to_archive, &catalog)
        })?
        .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
    op.checkpoint()?;
    // Audit rows a killed run left staged (SQLite) go in before anything moves.
    op.flush_audit(&key)?;

    let limit = options.batch_size;
    for (def, policies) in steps {
        let live = key.object(def.name);
        let children = children_of(&key, def, None);
        let archive = archives.iter().find(|a| a.live == live);
        *current = Some(InProgress {
            table: live.clone(),
            done: Vec::new(),
            active: None,
            started: Instant::now(),
        });
        for p in policies {
            let sweep = Sweep {
                live: &live,
                archive,
                age_column: &p.policy.age_column,
                cutoff: &p.cutoff,
                children: &children,
                earlier: &[],
                action: p.policy.action(),
            };
            let mut table = TableReport::new(&live, p);
            let chunk = limit.saturating_mul(CHUNK_BATCHES);
            // Each round counts what is due (one scan, no sort): nothing due
            // costs no batch, and when one batch takes all that is due its
            // rows need no order. With more than a batch due the oldest go
            // first, a few batches this way (each sorts the due rows to find
            // its last one), then a large backlog in chunks of due ids, each
            // listed with one scan of the table and moved batch by batch
            // through the primary key.
            let mut more = true;
            // PostgreSQL takes each batch through the age column's index by
            // row address, so neither counts nor id lists are needed.
            while more && op.session().dialect() == Dialect::Postgres {
                if stop.check().is_some() {
                    return stop_here(op, &key, &sweep, table, tenant, report, current);
                }
                let started = Instant::now();
                let (batch, left) = op
                    .tenant_audited(
                        &key,
                        |conn| archive::sweep_oldest(conn, &sweep, limit, &plan.started),
                        |(b, _)| batch_audit(tenant, current, &table, *b, started),
                    )?
                    .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
                more = left;
                table.add(&batch);
                if more {
                    // Held by the session until the sweep ends, so that the
                    // batches that follow need not wait for it again.
                    op.registry(|sys| sys.hold(&Lock::Tenant(name)))?;
                }
                batch_done(op, current, &table)?;
            }
            let mut found = 0;
            let mut counted: Option<u64> = None;
            while more && found < FIND_BATCHES {
                if stop.check().is_some() {
                    return stop_here(op, &key, &sweep, table, tenant, report, current);
                }
                // Counted once; after a batch what it took is subtracted (a
                // concurrent change only makes the last batch a little larger
                // or smaller).
                let due = match counted {
                    Some(n) => n,
                    None => op
                        .tenant(&key, Open::Existing, |conn| {
                            archive::count_due(conn, &sweep)
                        })?
                        .ok_or_else(|| missing_tenant(op.session(), &key, name))?,
                };
                let batch = if due == 0 {
                    more = false;
                    None
                } else {
                    let all = due <= limit;
                    let started = Instant::now();
                    let (batch, left) = op
                        .tenant_audited(
                            &key,
                            |conn| {
                                if all {
                                    Ok((
                                        archive::sweep_all_due(conn, &sweep, &plan.started)?,
                                        false,
                                    ))
                                } else {
                                    archive::sweep_batch(conn, &sweep, limit, &plan.started)
                                }
                            },
                            |(b, _)| batch_audit(tenant, current, &table, *b, started),
                        )?
                        .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
                    more = left;
                    found += u64::from(!all);
                    table.add(&batch);
                    Some(batch)
                };
                counted = Some(due.saturating_sub(batch.map(|b| b.selected).unwrap_or(0)));
                batch_done(op, current, &table)?;
            }
            while more {
                let ids = op
                    .tenant(&key, Open::Existing, |conn| {
                        archive::due_ids(conn, &sweep, chunk)
                    })?
                    .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
                more = ids.len() as u64 >= chunk;
                for batch_ids in ids.chunks(limit as usize) {
                    if stop.check().is_some() {
                        return stop_here(op, &key, &sweep, table, tenant, report, current);
                    }
                    let started = Instant::now();
                    let batch = op
                        .tenant_audited(
                            &key,
                            |conn| archive::move_ids(conn, &sweep, batch_ids, &plan.started),
                            |b| batch_audit(tenant, current, &table, *b, started),
                        )?
                        .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
                    table.add(&batch);
                    batch_done(op, current, &table)?;
                }
            }
            if let Some(c) = current.as_mut() {
                c.active = None;
                c.done.push(table.clone());
            }
            report.tables.push(table);
        }
        *current = None;
    }
    Ok(())
}

/// After a batch (audited in its own transaction): its counts go into the
/// table's report, and the batch is made durable.
fn batch_done(
    op: &mut TenantOp<'_, '_>,
    current: &mut Option<InProgress>,
    table: &TableReport,
) -> anyhow::Result<()> {
    if let Some(c) = current.as_mut() {
        c.active = Some(table.clone());
    }
    Ok(op.checkpoint()?)
}

/// Ends a tenant's sweep between two batches: counts what is left of the
/// table in progress and writes its audit row.
fn stop_here(
    op: &mut TenantOp<'_, '_>,
    key: &TenantKey,
    sweep: &Sweep<'_>,
    mut table: TableReport,
    tenant: &TenantRecord,
    report: &mut UnitReport,
    current: &mut Option<InProgress>,
) -> anyhow::Result<()> {
    table.rows_left = op.tenant(key, Open::Existing, |conn| archive::count_due(conn, sweep))?;
    report.tables.push(table.clone());
    if let Some(c) = current.as_mut() {
        c.active = Some(table);
        let c = &*c;
        op.registry(|sys| c.audit_end(sys, tenant, None))?;
    }
    *current = None;
    report.status = UnitStatus::Stopped;
    Ok(())
}

fn sweep_system(
    session: &mut Session<'_>,
    renderer: &Renderer,
    plan: &Plan,
    options: Options,
    stop: &Stop,
    report: &mut UnitReport,
) -> anyhow::Result<()> {
    let sys = session.system();
    let steps = plan.system_steps();
    // Check and prepare everything before the first batch.
    let mut archives: Vec<ArchiveTable> = Vec::new();
    for (table, policies) in &steps {
        let columns = sys.columns(table)?;
        for p in policies {
            if !columns
                .iter()
                .any(|c| c.table == *table && c.column == p.policy.age_column)
            {
                bail!(
                    "{table} has no column {} (policy {}): run `pathfinder-db init`",
                    p.policy.age_column,
                    p.policy.name
                );
            }
        }
        if *table == AUDIT_LOG && policies.iter().any(|p| p.policy.archive) {
            let mut tx = Tx::begin(sys)?;
            archives.push(archive::prepare_audit_log(&mut *tx, renderer)?);
            tx.commit()?;
        }
    }
    let limit = options.batch_size;
    for (table, policies) in &steps {
        let started = Instant::now();
        let archive = archives.iter().find(|a| a.live == *table);
        let mut done: Vec<TableReport> = Vec::new();
        for p in policies {
            let sweep = Sweep {
                live: table,
                archive,
                age_column: &p.policy.age_column,
                cutoff: &p.cutoff,
                children: &[],
                earlier: &[],
                action: p.policy.action(),
            };
            let mut t = TableReport::new(table, p);
            loop {
                if stop.check().is_some() {
                    t.rows_left = Some(archive::count_due(sys, &sweep)?);
                    done.push(t.clone());
                    report.tables.push(t);
                    let mut tx = Tx::begin(sys)?;
                    write_audit(
                        &mut *tx,
                        table_audit(None, table, Batch::default(), &done, started, None),
                    )?;
                    tx.commit()?;
                    report.status = UnitStatus::Stopped;
                    return Ok(());
                }
                let batch_started = Instant::now();
                let mut tx = Tx::begin(sys)?;
                let (batch, more) =
                    match archive::sweep_batch(&mut *tx, &sweep, limit, &plan.started) {
                        Ok(b) => b,
                        Err(e) => {
                            drop(tx);
                            let mut so_far = done.clone();
                            so_far.push(t.clone());
                            let message = crate::error::one_line(&e);
                            let _ = (|| -> Result<(), crate::db::DbError> {
                                let mut tx = Tx::begin(sys)?;
                                write_audit(
                                    &mut *tx,
                                    table_audit(
                                        None,
                                        table,
                                        Batch::default(),
                                        &so_far,
                                        started,
                                        Some(&message),
                                    ),
                                )?;
                                tx.commit()
                            })();
                            return Err(e);
                        }
                    };
                t.add(&batch);
                let last = !more;
                // Each batch audited in its own transaction.
                let mut all = done.clone();
                all.push(t.clone());
                write_audit(
                    &mut *tx,
                    table_audit(None, table, batch, &all, batch_started, None),
                )?;
                tx.commit()?;
                if last {
                    break;
                }
            }
            done.push(t.clone());
            report.tables.push(t);
        }
    }
    Ok(())
}

/// A dry run for one tenant: per table and policy, the rows a real run
/// would take now (children first, so a parent whose children a policy
/// removes counts as free).
fn count_tenant(
    session: &mut Session<'_>,
    plan: &Plan,
    tenant: &TenantRecord,
    report: &mut UnitReport,
) -> anyhow::Result<()> {
    let steps = plan.tenant_steps();
    if steps.is_empty() {
        return Ok(());
    }
    let name = tenant.username.as_str();
    if tenant.status != Status::Active {
        bail!(
            "tenant {name} is {}, not active: retention sweeps active tenants only",
            tenant.status
        );
    }
    let key = TenantKey::parse(&tenant.tenant_key, session.dialect())?;
    let Some(mut conn) = session.tenant(&key, Open::Existing)? else {
        return Err(missing_tenant(session, &key, name));
    };
    let live = archive::live_tables(&mut *conn, &key)?;
    check_columns(name, &key, &live, &steps)?;
    let catalog = conn.columns(&key.prefix())?;
    for (def, policies) in &steps {
        let table = key.object(def.name);
        let archive_name = key.object(&format!("{}_archive", def.name));
        let archive = catalog
            .iter()
            .any(|c| c.table == archive_name)
            .then(|| ArchiveTable {
                def: Some(def),
                live: table.clone(),
                archive: archive_name,
                columns: Vec::new(),
            });
        let children = children_of(&key, def, Some(plan));
        let mut earlier: Vec<(String, String)> = Vec::new();
        for p in policies {
            let sweep = Sweep {
                live: &table,
                archive: archive.as_ref(),
                age_column: &p.policy.age_column,
                cutoff: &p.cutoff,
                children: &children,
                earlier: &earlier,
                action: p.policy.action(),
            };
            let mut t = TableReport::new(&table, p);
            t.rows = archive::count_due(&mut *conn, &sweep)?;
            if p.policy.action().deletes() {
                earlier.push((p.policy.age_column.clone(), p.cutoff.clone()));
            }
            report.tables.push(t);
        }
    }
    Ok(())
}

fn count_system(
    session: &mut Session<'_>,
    plan: &Plan,
    report: &mut UnitReport,
) -> anyhow::Result<()> {
    let sys = session.system();
    for (table, policies) in plan.system_steps() {
        let archive_name = format!("{table}_archive");
        let archive = (table == AUDIT_LOG
            && sys
                .columns(&archive_name)?
                .iter()
                .any(|c| c.table == archive_name))
        .then(|| ArchiveTable {
            def: None,
            live: table.to_string(),
            archive: archive_name,
            columns: Vec::new(),
        });
        let mut earlier: Vec<(String, String)> = Vec::new();
        for p in policies {
            let sweep = Sweep {
                live: table,
                archive: archive.as_ref(),
                age_column: &p.policy.age_column,
                cutoff: &p.cutoff,
                children: &[],
                earlier: &earlier,
                action: p.policy.action(),
            };
            let mut t = TableReport::new(table, p);
            t.rows = archive::count_due(sys, &sweep)?;
            if p.policy.action().deletes() {
                earlier.push((p.policy.age_column.clone(), p.cutoff.clone()));
            }
            report.tables.push(t);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Finding the tenants with rows due

/// Tenants one probe statement covers on PostgreSQL and Oracle (each is a
/// few index probes; a statement locks its relations until it ends, so it
/// stays short), and tenant files one SQLite worker probes in a row.
const PROBE_CHUNK: usize = 100;

/// A tenant's probes: per table and policy of the plan, its age column and cutoff.
fn probes(plan: &Plan, key: &TenantKey) -> Vec<archive::Probe> {
    plan.tenant_steps()
        .iter()
        .flat_map(|(def, policies)| {
            policies.iter().map(|p| archive::Probe {
                table: key.object(def.name),
                age_column: p.policy.age_column.clone(),
                cutoff: p.cutoff.clone(),
            })
        })
        .collect()
}

/// Which of `tenants` may have rows due now, found without a tenant
/// operation each: on PostgreSQL and Oracle one statement of index probes
/// per [`PROBE_CHUNK`] tenants; on SQLite the oldest value of each age
/// column per tenant file, read from the file or, while the file is
/// unchanged, from what an earlier sweep remembered ([`oldest`]; a dry run
/// reads that memory and never writes it). False only for a tenant shown to
/// have none; a tenant whose probe fails (a table, a column or a file
/// missing, a lost connection) is true, so that the sweep visits it and
/// reports why. On SQLite a tenant file holding staged audit rows of a
/// killed run is true too: the visit copies them into the audit log.
pub fn may_have_rows_due(
    db: &crate::db::Database,
    plan: &Plan,
    tenants: &[TenantRecord],
    jobs: usize,
    read_only: bool,
) -> Vec<bool> {
    if plan.tenant_steps().is_empty() {
        return vec![false; tenants.len()];
    }
    let folder = tenants
        .first()
        .and_then(|t| TenantKey::parse(&t.tenant_key, db.dialect()).ok())
        .and_then(|k| db.sqlite_tenant_file(&k))
        .and_then(|f| f.parent().map(std::path::Path::to_path_buf));
    let mut cache = folder
        .as_deref()
        .map(oldest::Cache::load)
        .unwrap_or_default();
    // Files changed since this are read, not remembered (see [`oldest`]).
    let quiet_before = std::time::SystemTime::now() - oldest::QUIET;
    let chunks: Vec<&[TenantRecord]> = tenants.chunks(PROBE_CHUNK).collect();
    let probe = |session: &mut Session<'_>, chunk: &&[TenantRecord]| {
        Ok::<_, crate::db::DbError>(probe_chunk(session, plan, chunk, &cache, quiet_before))
    };
    // A probe only reads.
    let results = crate::parallel::for_each_read_only(db, &chunks, jobs, probe);
    let mut due = Vec::with_capacity(tenants.len());
    for (chunk, result) in chunks.iter().zip(results) {
        let probed = match result {
            Some(Ok(probed)) => probed,
            _ => vec![(true, None); chunk.len()],
        };
        for (tenant, (is_due, entry)) in chunk.iter().zip(probed) {
            due.push(is_due);
            match entry {
                Some(e) => cache.tenants.insert(tenant.tenant_key.clone(), e),
                None => cache.tenants.remove(&tenant.tenant_key),
            };
        }
    }
    if let Some(folder) = folder.filter(|_| !read_only) {
        // A cache: when it cannot be written the next sweep reads every file.
        let _ = cache.save(&folder);
    }
    if db.dialect() != Dialect::Sqlite {
        mark_staged(db, tenants, &mut due);
    }
    due
}

/// Server members: a tenant with audit rows a killed sweep left staged on
/// its member is visited, which copies them to the catalog's log (else they
/// would wait for its next rows due). One read of each member's stage; the
/// catalog's own tenants write theirs directly. A stage that cannot be read
/// makes its tenants visited, where the flush says why.
fn mark_staged(db: &crate::db::Database, tenants: &[TenantRecord], due: &mut [bool]) {
    let Ok(mut session) = db.connect_read_only() else {
        return;
    };
    let mut members: Vec<&str> = tenants
        .iter()
        .map(|t| t.database.as_str())
        .filter(|m| *m != crate::fleet::members::CATALOG)
        .collect();
    members.sort_unstable();
    members.dedup();
    for member in members {
        let staged = match session.database_connection(member) {
            Ok(conn) => audit::staged_entities(conn),
            // Down: its tenants are visited (and fail naming it) anyway.
            Err(_) => continue,
        };
        if staged.as_ref().is_ok_and(Vec::is_empty) {
            continue;
        }
        for (n, t) in tenants
            .iter()
            .enumerate()
            .filter(|(_, t)| t.database == member)
        {
            let Ok(key) = TenantKey::parse(&t.tenant_key, db.dialect()) else {
                continue;
            };
            due[n] |= staged.as_ref().map_or(true, |s| {
                s.iter().any(|e| audit::is_about(e, &t.username, &key))
            });
        }
    }
}

/// Per tenant of the chunk: whether it may have rows due, and on SQLite what
/// to remember of its file (None: forget it).
fn probe_chunk(
    session: &mut Session<'_>,
    plan: &Plan,
    tenants: &[TenantRecord],
    cache: &oldest::Cache,
    quiet_before: std::time::SystemTime,
) -> Vec<(bool, Option<oldest::Entry>)> {
    let dialect = session.dialect();
    let keys: Vec<Option<TenantKey>> = tenants
        .iter()
        .map(|t| TenantKey::parse(&t.tenant_key, dialect).ok())
        .collect();
    if session.tenants_apart() {
        return keys
            .iter()
            .map(|key| match key {
                Some(k) => probe_file(session, plan, k, cache, quiet_before),
                None => (true, None),
            })
            .collect();
    }
    let mut due: Vec<bool> = keys.iter().map(Option::is_none).collect();
    // Each member's tenants are probed on that member (a fleet); one that
    // cannot be reached has its tenants visited, where they fail naming it.
    let mut members: Vec<&str> = tenants.iter().map(|t| t.database.as_str()).collect();
    members.sort_unstable();
    members.dedup();
    for member in members {
        let sets: Vec<(usize, Vec<archive::Probe>)> = keys
            .iter()
            .enumerate()
            .filter(|(n, _)| tenants[*n].database == member)
            .filter_map(|(n, key)| key.as_ref().map(|k| (n, probes(plan, k))))
            .collect();
        match session.database_connection(member) {
            Ok(conn) => probe_together(conn, &sets, &mut due),
            Err(_) => sets.iter().for_each(|(n, _)| due[*n] = true),
        }
    }
    due.into_iter().map(|d| (d, None)).collect()
}

/// One statement for all of `sets`; when it fails (a tenant's table or column
/// is missing) each half is tried on its own, down to the tenant at fault.
fn probe_together(
    conn: &mut dyn Connection,
    sets: &[(usize, Vec<archive::Probe>)],
    due: &mut [bool],
) {
    if sets.is_empty() {
        return;
    }
    let answer = archive::any_older_sql(conn.dialect(), sets)
        .and_then(|(sql, binds)| Ok(conn.query(&sql, &binds)?));
    match answer {
        Ok(rows) => {
            for n in rows.iter().filter_map(|r| r[0].as_i64()) {
                if let Some(d) = due.get_mut(n as usize) {
                    *d = true;
                }
            }
        }
        Err(_) if sets.len() > 1 && !conn.is_closed() => {
            let (a, b) = sets.split_at(sets.len() / 2);
            probe_together(conn, a, due);
            probe_together(conn, b, due);
        }
        Err(_) => {
            for (n, _) in sets {
                due[*n] = true;
            }
        }
    }
}

/// A SQLite tenant file: its remembered oldest values while it is unchanged,
/// else read from it (read-only) and remembered when it had been quiet. A
/// missing file or any error is "visit it".
fn probe_file(
    session: &mut Session<'_>,
    plan: &Plan,
    key: &TenantKey,
    cache: &oldest::Cache,
    quiet_before: std::time::SystemTime,
) -> (bool, Option<oldest::Entry>) {
    let probes = probes(plan, key);
    let name = |p: &archive::Probe| format!("{}.{}", p.table, p.age_column);
    let decide = |entry: &oldest::Entry| -> Option<bool> {
        probes.iter().try_fold(false, |due, p| {
            Some(due || entry.oldest.get(&name(p))?.before(&p.cutoff))
        })
    };
    let Ok(Some(path)) = session.tenant_file(key) else {
        return (true, None);
    };
    let identity = oldest::Identity::of(&path);
    if let Some(entry) = cache.tenants.get(key.as_str())
        && entry.identity == identity
        && let Some(due) = decide(entry)
    {
        return (due, (!due).then(|| entry.clone()));
    }
    let read = (|| -> anyhow::Result<Option<oldest::Entry>> {
        let Some(mut conn) = session.tenant(key, Open::Existing)? else {
            return Ok(None);
        };
        let row = conn.query(&archive::oldest_sql(&probes), &[])?;
        let staged = audit::has_staged(&mut *conn)?;
        let oldest = probes
            .iter()
            .zip(row.first().map(|r| r.as_slice()).unwrap_or(&[]))
            .map(|(p, min)| (name(p), oldest::Oldest::of(min)))
            .collect();
        Ok((!staged).then_some(oldest::Entry { identity, oldest }))
    })();
    match read {
        Ok(Some(entry)) => match decide(&entry) {
            Some(false) => {
                let quiet = entry.identity.quiet_since(quiet_before);
                (false, quiet.then_some(entry))
            }
            _ => (true, None),
        },
        _ => (true, None),
    }
}

/// The report of a tenant the probes showed to have nothing due: what a
/// visit would have reported.
pub fn nothing_due(
    plan: &Plan,
    tenant: &TenantRecord,
    dialect: crate::db::dialect::Dialect,
) -> UnitReport {
    let mut report = UnitReport::new(&Unit::Tenant(Box::new(tenant.clone())));
    if let Ok(key) = TenantKey::parse(&tenant.tenant_key, dialect) {
        for (def, policies) in plan.tenant_steps() {
            let table = key.object(def.name);
            report
                .tables
                .extend(policies.iter().map(|p| TableReport::new(&table, p)));
        }
    }
    report
}

/// The policies a run completed: every unit that sweeps one of its tables
/// is done. (Only a run over all tenants completes a policy.)
pub fn completed_policies(plan: &Plan, reports: &[UnitReport]) -> Vec<String> {
    plan.policies
        .iter()
        .filter(|p| {
            let tenant = p.targets.iter().any(|t| matches!(t, Target::Tenant(_)));
            let system = p.targets.iter().any(|t| matches!(t, Target::System(_)));
            reports.iter().all(|r| {
                let covers = if r.username.is_some() { tenant } else { system };
                !covers || r.status == UnitStatus::Done
            }) && (!system || reports.iter().any(|r| r.username.is_none()))
        })
        .map(|p| p.policy.name.clone())
        .collect()
}

// ---------------------------------------------------------------------------
// Restore

/// Which archived rows to bring back.
#[derive(Debug, Clone)]
pub enum Selection {
    Ids(Vec<String>),
    /// Rows archived at or after this time (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
    Since(String),
}

/// One restored table.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub table: String,
    pub rows: u64,
    pub batches: u64,
}

fn texts(rows: Vec<crate::db::Row>) -> Vec<String> {
    rows.into_iter().map(|r| r[0].to_text()).collect()
}

/// Chunks of at most 1000 binds, for queries on many ids.
fn query_ids(
    conn: &mut dyn Connection,
    sql_for: impl Fn(&str) -> String,
    ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(1000) {
        let list = format!("({})", vec!["?"; chunk.len()].join(", "));
        let binds: Vec<Value> = chunk.iter().map(|i| Value::Text(i.clone())).collect();
        out.extend(texts(conn.query(&sql_for(&list), &binds)?));
    }
    Ok(out)
}

fn sample(ids: &[String]) -> String {
    crate::error::listed(ids, 10)
}

/// Moves archived rows of `tables` back to the live tables, parents first,
/// in batches that each insert and remove the same rows in one transaction.
/// Everything is checked before the first row moves: each row is archived
/// once (else `--archived-since` picks a generation), no id is live again,
/// and every parent a row points at is live or restored with it.
pub fn restore(
    session: &mut Session<'_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
    tables: &[&'static TableDef],
    selection: &Selection,
    batch_size: u64,
) -> anyhow::Result<Vec<Restored>> {
    let name = tenant.username.as_str();
    let Some(mut op) = TenantOp::begin(
        session,
        name,
        "tenant.restore",
        "retention restore",
        Guard::Wait,
    )?
    else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(tenant.user_id.clone());
    let result = restore_steps(&mut op, renderer, tenant, tables, selection, batch_size);
    op.finish(result, |_, _| Ok(()))
}

fn restore_steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    tenant: &TenantRecord,
    tables: &[&'static TableDef],
    selection: &Selection,
    batch_size: u64,
) -> anyhow::Result<Vec<Restored>> {
    let name = tenant.username.as_str();
    let status = op
        .registry(|sys| registry::get(sys, name))?
        .map(|r| r.status);
    if status != Some(Status::Active) {
        bail!(
            "tenant {name} is {}, not active: rows are restored into active tenants only{}",
            status.map(|s| s.to_string()).unwrap_or("gone".into()),
            if status == Some(Status::Deprovisioned) {
                format!(
                    " (provision it again first: `pathfinder-db provision {name} --take-archives` takes up its kept archives)"
                )
            } else {
                String::new()
            }
        );
    }
    let key = TenantKey::parse(&tenant.tenant_key, op.session().dialect())?;
    // Parents first.
    let mut tables: Vec<&'static TableDef> = tables.to_vec();
    tables.sort_by_key(|t| TABLES.iter().position(|d| d.name == t.name));
    tables.dedup_by_key(|t| t.name);
    let since = match selection {
        Selection::Since(ts) => Some(ts.clone()),
        Selection::Ids(_) => None,
    };
    let planned: Vec<(ArchiveTable, Vec<String>)> = op
        .tenant(&key, Open::Existing, |conn| {
            let dialect = conn.dialect();
            let live = archive::live_tables(conn, &key)?;
            let catalog = conn.columns(&key.prefix())?;
            let mut planned: Vec<(ArchiveTable, Vec<String>)> = Vec::new();
            for def in &tables {
                let archive_name = key.object(&format!("{}_archive", def.name));
                if !catalog.iter().any(|c| c.table == archive_name) {
                    return Err(UsageError::new(format!(
                        "{} has no archive table ({archive_name}): nothing of it was archived",
                        key.object(def.name)
                    ))
                    .into());
                }
                let Some(columns) = live.iter().find(|(d, _)| d.name == def.name) else {
                    bail!("{} does not exist", key.object(def.name));
                };
                let t = archive::prepare(conn, renderer, &key, std::slice::from_ref(columns))?
                    .remove(0);
                let (condition, binds): (String, Vec<Value>) = match selection {
                    Selection::Ids(ids) => (
                        format!("id IN ({})", vec!["?"; ids.len().max(1)].join(", ")),
                        ids.iter().map(|i| Value::Text(i.clone())).collect(),
                    ),
                    Selection::Since(ts) => (
                        format!("archived_at >= {}", dialect.timestamp_bind()),
                        vec![Value::Text(ts.clone())],
                    ),
                };
                let mut ids: Vec<String> = Vec::new();
                let rows = if let Selection::Ids(all) = selection {
                    query_ids(
                        conn,
                        |list| format!("SELECT id FROM {} WHERE id IN {list} ORDER BY id", t.archive),
                        all,
                    )?
                } else {
                    texts(conn.query(
                        &format!("SELECT id FROM {} WHERE {condition} ORDER BY id", t.archive),
                        &binds,
                    )?)
                };
                let mut twice = Vec::new();
                for id in rows {
                    if ids.last() == Some(&id) {
                        if twice.last() != Some(&id) {
                            twice.push(id);
                        }
                    } else {
                        ids.push(id);
                    }
                }
                if !twice.is_empty() {
                    bail!(
                        "{} holds more than one archived copy of {} (archived at different times): choose one with --archived-since; nothing was restored",
                        t.archive,
                        sample(&twice)
                    );
                }
                let live_again = query_ids(
                    conn,
                    |list| format!("SELECT id FROM {} WHERE id IN {list} ORDER BY id", t.live),
                    &ids,
                )?;
                if !live_again.is_empty() {
                    bail!(
                        "{} of the rows to restore are live again in {} ({}): nothing was restored; leave them out (--ids), or remove the live rows first",
                        live_again.len(),
                        t.live,
                        sample(&live_again)
                    );
                }
                for (child, fk, parent) in FOREIGN_KEYS.iter().filter(|(c, _, _)| *c == def.name) {
                    let parents_restored: Vec<&String> = planned
                        .iter()
                        .filter(|(p, _)| p.def.is_some_and(|d| d.name == *parent))
                        .flat_map(|(_, ids)| ids)
                        .collect();
                    let orphans: Vec<String> = query_ids(
                        conn,
                        |list| {
                            format!(
                                "SELECT DISTINCT a.{fk} FROM {archive} a WHERE a.id IN {list} AND a.{fk} IS NOT NULL \
                                 AND NOT EXISTS (SELECT 1 FROM {parent_live} p WHERE p.id = a.{fk}) ORDER BY 1",
                                archive = t.archive,
                                parent_live = key.object(parent),
                            )
                        },
                        &ids,
                    )?
                    .into_iter()
                    .filter(|id| !parents_restored.contains(&id))
                    .collect();
                    if !orphans.is_empty() {
                        bail!(
                            "rows of {child} to restore point at {parent} that are not live ({}): restore those first (--table {parent}) or together (--table {parent} --table {child}); nothing was restored",
                            sample(&orphans)
                        );
                    }
                }
                planned.push((t, ids));
            }
            if let Selection::Ids(wanted) = selection {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|w| !planned.iter().any(|(_, ids)| ids.contains(w)))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(UsageError::new(format!(
                        "not in the archive of {}: {}; nothing was restored",
                        tables.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
                        sample(&missing)
                    ))
                    .into());
                }
            }
            Ok(planned)
        })?
        .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
    op.checkpoint()?;

    let mut out = Vec::new();
    for (t, ids) in &planned {
        let mut restored = Restored {
            table: t.live.clone(),
            rows: 0,
            batches: 0,
        };
        for chunk in ids.chunks(batch_size.max(1) as usize) {
            let binds: Vec<Value> = chunk.iter().map(|id| Value::Text(id.clone())).collect();
            let batch_started = Instant::now();
            // Each batch audited in the transaction that commits it:
            // `restored` is the batch's rows, `table_restored` the table's so far.
            let audit = |n: &u64| {
                let mut entry =
                    AuditEntry::new("retention.restore", "table", &t.live, "retention restore");
                entry.started = batch_started;
                entry.user_id = tenant.user_id.clone();
                let details = serde_json::json!({
                    "username": name,
                    "tenant_key": key.as_str(),
                    "table": t.live,
                    "restored": n,
                    "table_restored": restored.rows + n,
                    "batches": restored.batches + 1,
                });
                Some((entry, details.to_string()))
            };
            let n = op
                .tenant_audited(
                    &key,
                    |conn| archive::restore_batch(conn, t, &binds, since.as_deref()),
                    audit,
                )?
                .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
            restored.rows += n;
            restored.batches += 1;
            op.checkpoint()?;
        }
        out.push(restored);
    }
    Ok(out)
}
