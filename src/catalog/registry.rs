//! The tenant registry (`pf_tenants`): one row per tenant, so fleet-wide
//! questions are one query. This module is the only code that reads or writes
//! `pf_tenants`.
//!
//! Every change of state is conditional on the state the caller saw or
//! claimed (`UPDATE ... WHERE status IN (...)`), and says whether it happened:
//! a racing command never resurrects or overwrites another one's result.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::db::{Connection, DbError, DbErrorKind, Row, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Creation started and has not finished: a re-run completes it.
    Provisioning,
    Active,
    Migrating,
    /// The last provisioning or migration failed; `last_error` says why.
    Failed,
    /// Removal started and has not finished: `deprovision` again finishes it,
    /// `deprovision --cancel` takes it back while the tables are all there.
    Deprovisioning,
    Deprovisioned,
    /// An import is loading and verifying the tenant's rows: the tenant is not
    /// active until they are in. Running the same import again finishes it,
    /// `import --cancel` removes it. `claimed_by` names the file.
    Importing,
    /// Being copied to another member database (`move`): writes are refused
    /// until the move ends; `claimed_by` names the target.
    Moving,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "provisioning",
            Status::Active => "active",
            Status::Migrating => "migrating",
            Status::Failed => "failed",
            Status::Deprovisioning => "deprovisioning",
            Status::Deprovisioned => "deprovisioned",
            Status::Importing => "importing",
            Status::Moving => "moving",
        }
    }

    /// A tenant whose tables exist (or are being created or migrated).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Provisioning
                | Status::Active
                | Status::Migrating
                | Status::Failed
                | Status::Importing
                | Status::Moving
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "provisioning" => Status::Provisioning,
            "active" => Status::Active,
            "migrating" => Status::Migrating,
            "failed" => Status::Failed,
            "deprovisioning" => Status::Deprovisioning,
            "deprovisioned" => Status::Deprovisioned,
            "importing" => Status::Importing,
            "moving" => Status::Moving,
            other => return Err(format!("unknown tenant status {other:?}")),
        })
    }
}

/// One registry row. Timestamps are ISO 8601 in UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRecord {
    pub username: String,
    pub tenant_key: String,
    pub user_id: Option<String>,
    pub schema_version: i64,
    pub status: Status,
    pub last_error: Option<String>,
    /// Who holds the tenant: a migrate run's id, or `deprovision@<time>`.
    #[serde(skip)]
    pub claimed_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The member database holding the tenant's tables
    /// ([`crate::fleet::members::CATALOG`]: the catalog itself).
    pub database: String,
}

const COLUMNS: &str = "username, tenant_key, user_id, schema_version, status, last_error, \
                       claimed_by, created_at, updated_at, database_name";

fn opt_text(v: &Value) -> Option<String> {
    if v.is_null() { None } else { Some(v.to_text()) }
}

/// `2026-11-25 13:36:36.123` (as every backend stores a UTC timestamp) as
/// ISO 8601: `2026-11-25T13:36:36.123Z`.
pub fn iso_utc(stored: &str) -> String {
    let s = stored.trim();
    if s.is_empty() {
        return String::new();
    }
    let s = s.replacen(' ', "T", 1);
    if s.ends_with('Z') || s.contains('+') {
        s
    } else {
        format!("{s}Z")
    }
}

fn from_row(r: &Row) -> Result<TenantRecord, DbError> {
    Ok(TenantRecord {
        username: r[0].to_text(),
        tenant_key: r[1].to_text(),
        user_id: opt_text(&r[2]),
        schema_version: r[3].as_i64().unwrap_or(0),
        status: r[4].to_text().parse().map_err(DbError::other)?,
        last_error: opt_text(&r[5]),
        claimed_by: opt_text(&r[6]),
        created_at: iso_utc(&r[7].to_text()),
        updated_at: iso_utc(&r[8].to_text()),
        database: member_name(r.get(9)),
    })
}

/// A stored `database_name` as a member's name (NULL: the catalog).
pub fn member_name(v: Option<&Value>) -> String {
    v.and_then(opt_text)
        .unwrap_or_else(|| crate::fleet::members::CATALOG.to_string())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Errors are kept to 4000 characters (Oracle's VARCHAR2 limit in a bind).
fn error_value(error: Option<&str>) -> Value {
    error
        .map(|e| Value::Text(e.chars().take(4000).collect()))
        .unwrap_or(Value::Null)
}

pub fn get(conn: &mut dyn Connection, username: &str) -> Result<Option<TenantRecord>, DbError> {
    let rows = conn.query(
        &format!("SELECT {COLUMNS} FROM pf_tenants WHERE username = ?"),
        &[text(username)],
    )?;
    rows.first().map(from_row).transpose()
}

/// Every tenant, by username; deprovisioned ones only when asked.
pub fn list(
    conn: &mut dyn Connection,
    include_deprovisioned: bool,
) -> Result<Vec<TenantRecord>, DbError> {
    let filter = if include_deprovisioned {
        ""
    } else {
        " WHERE status <> 'deprovisioned'"
    };
    conn.query(
        &format!("SELECT {COLUMNS} FROM pf_tenants{filter} ORDER BY username"),
        &[],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// The username that owns `tenant_key`, if any.
pub fn key_owner(conn: &mut dyn Connection, tenant_key: &str) -> Result<Option<String>, DbError> {
    let rows = conn.query(
        "SELECT username FROM pf_tenants WHERE tenant_key = ?",
        &[text(tenant_key)],
    )?;
    Ok(rows.first().map(|r| r[0].to_text()))
}

/// The `pf_users.id` of `username`, if the application has created that user.
pub fn user_id_of(conn: &mut dyn Connection, username: &str) -> Result<Option<String>, DbError> {
    let rows = conn.query(
        "SELECT id FROM pf_users WHERE username = ?",
        &[text(username)],
    )?;
    Ok(rows.first().map(|r| r[0].to_text()))
}

/// Why registering a tenant did not happen.
#[derive(Debug)]
pub enum RegisterError {
    /// A unique key was taken by a concurrent registration (the username or
    /// the tenant key). On PostgreSQL the transaction is now aborted: roll
    /// back before asking who has it.
    Taken,
    Db(DbError),
    /// No member may take the tenant (full, draining, unknown): the reason.
    Refused(anyhow::Error),
}

impl From<DbError> for RegisterError {
    fn from(e: DbError) -> Self {
        RegisterError::Db(e)
    }
}

/// Records that `username`'s tables are (to be) on member `database` (None:
/// the catalog).
pub fn set_database(
    conn: &mut dyn Connection,
    username: &str,
    database: Option<&str>,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "UPDATE pf_tenants SET database_name = ?, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
        &[database.into(), text(username)],
    )? == 1)
}

/// Adds a tenant in status `provisioning`.
pub fn insert(
    conn: &mut dyn Connection,
    username: &str,
    tenant_key: &str,
    user_id: Option<&str>,
    database: Option<&str>,
) -> Result<(), RegisterError> {
    insert_as(
        conn,
        username,
        tenant_key,
        user_id,
        Status::Provisioning,
        None,
        database,
    )
}

/// Adds a tenant in `status` (`provisioning`, `importing`), claimed by
/// `claimed_by`, placed on member `database` (None: the catalog).
pub fn insert_as(
    conn: &mut dyn Connection,
    username: &str,
    tenant_key: &str,
    user_id: Option<&str>,
    status: Status,
    claimed_by: Option<&str>,
    database: Option<&str>,
) -> Result<(), RegisterError> {
    conn.execute(
        "INSERT INTO pf_tenants (username, tenant_key, user_id, schema_version, status, claimed_by, database_name) \
         VALUES (?, ?, ?, 0, ?, ?, ?)",
        &[
            text(username),
            text(tenant_key),
            user_id.into(),
            text(status.as_str()),
            claimed_by.into(),
            database.into(),
        ],
    )
    .map(|_| ())
    .map_err(|e| match e.kind {
        DbErrorKind::UniqueViolation => RegisterError::Taken,
        _ => RegisterError::Db(e),
    })
}

/// Takes a registry row that is `from` (a deprovisioned or failed tenant being
/// provisioned again) back to `provisioning`. False when its status changed.
pub fn restart_provisioning(
    conn: &mut dyn Connection,
    username: &str,
    from: Status,
    tenant_key: &str,
    user_id: Option<&str>,
) -> Result<bool, RegisterError> {
    restart_as(
        conn,
        username,
        from,
        Status::Provisioning,
        tenant_key,
        user_id,
        None,
    )
}

/// Like [`restart_provisioning`], to `to` and claimed by `claimed_by` (an
/// import of a deprovisioned user).
pub fn restart_as(
    conn: &mut dyn Connection,
    username: &str,
    from: Status,
    to: Status,
    tenant_key: &str,
    user_id: Option<&str>,
    claimed_by: Option<&str>,
) -> Result<bool, RegisterError> {
    conn.execute(
        "UPDATE pf_tenants SET status = ?, tenant_key = ?, user_id = ?, \
         schema_version = CASE WHEN status = 'deprovisioned' THEN 0 ELSE schema_version END, \
         last_error = NULL, claimed_by = ?, updated_at = CURRENT_TIMESTAMP \
         WHERE username = ? AND status = ?",
        &[
            text(to.as_str()),
            text(tenant_key),
            user_id.into(),
            claimed_by.into(),
            text(username),
            text(from.as_str()),
        ],
    )
    .map(|n| n == 1)
    .map_err(|e| match e.kind {
        DbErrorKind::UniqueViolation => RegisterError::Taken,
        _ => RegisterError::Db(e),
    })
}

/// What a transition sets besides the status.
#[derive(Debug, Clone, Default)]
pub struct Changes<'a> {
    pub schema_version: Option<i64>,
    /// Some(None) clears the last error, None leaves it.
    pub last_error: Option<Option<&'a str>>,
    /// Some(None) clears the claim, None leaves it.
    pub claimed_by: Option<Option<&'a str>>,
}

/// Moves `username` from one of `from` to `to`. False when the tenant was in
/// none of them (another command changed it meanwhile).
pub fn transition(
    conn: &mut dyn Connection,
    username: &str,
    from: &[Status],
    to: Status,
    changes: &Changes<'_>,
) -> Result<bool, DbError> {
    let mut sets = vec![
        "status = ?".to_string(),
        "updated_at = CURRENT_TIMESTAMP".into(),
    ];
    let mut binds = vec![text(to.as_str())];
    if let Some(v) = changes.schema_version {
        sets.push("schema_version = ?".into());
        binds.push(Value::Int(v));
    }
    if let Some(e) = changes.last_error {
        sets.push("last_error = ?".into());
        binds.push(error_value(e));
    }
    if let Some(c) = changes.claimed_by {
        sets.push("claimed_by = ?".into());
        sets.push("claimed_at = CURRENT_TIMESTAMP".into());
        binds.push(c.into());
    }
    binds.push(text(username));
    binds.extend(from.iter().map(|s| text(s.as_str())));
    let n = conn.execute(
        &format!(
            "UPDATE pf_tenants SET {} WHERE username = ? AND status IN ({})",
            sets.join(", "),
            vec!["?"; from.len().max(1)].join(", ")
        ),
        &binds,
    )?;
    Ok(n == 1)
}

/// Marks a tenant `failed` with `error`, only while it is in `from`.
pub fn mark_failed(
    conn: &mut dyn Connection,
    username: &str,
    from: &[Status],
    error: &str,
) -> Result<bool, DbError> {
    transition(
        conn,
        username,
        from,
        Status::Failed,
        &Changes {
            last_error: Some(Some(error)),
            ..Changes::default()
        },
    )
}

/// Records `error` on a tenant without changing its status (a deprovisioning
/// that stopped half-way says why).
pub fn note_error(conn: &mut dyn Connection, username: &str, error: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE pf_tenants SET last_error = ?, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
        &[error_value(Some(error)), text(username)],
    )?;
    Ok(())
}

/// Sets `claimed_by` of a tenant that is not deprovisioned: a deprovisioning
/// whose last commit failed after its export was in place keeps the export's
/// generation, so a re-run knows the file as its own.
pub fn remember_claim(
    conn: &mut dyn Connection,
    username: &str,
    claim: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE pf_tenants SET claimed_by = ?, updated_at = CURRENT_TIMESTAMP \
         WHERE username = ? AND status <> 'deprovisioned'",
        &[text(claim), text(username)],
    )?;
    Ok(())
}

/// Deletes the row of `username` while it is `deprovisioned`: for a command
/// that registered the user and then took everything back (a failed import),
/// so only the audit rows tell of it. False when the tenant is in another state.
pub fn forget(conn: &mut dyn Connection, username: &str) -> Result<bool, DbError> {
    let n = conn.execute(
        "DELETE FROM pf_tenants WHERE username = ? AND status = 'deprovisioned'",
        &[text(username)],
    )?;
    Ok(n == 1)
}

/// Tenants not at rest: stuck or interrupted in provisioning, migrating,
/// deprovisioning or importing, or failed, by username.
pub fn unsettled(conn: &mut dyn Connection) -> Result<Vec<TenantRecord>, DbError> {
    conn.query(
        &format!(
            "SELECT {COLUMNS} FROM pf_tenants \
             WHERE status IN ('provisioning', 'migrating', 'failed', 'deprovisioning', 'importing', 'moving') ORDER BY username"
        ),
        &[],
    )?
    .iter()
    .map(from_row)
    .collect()
}

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

/// A tenant that needs migrating, as the registry has it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    pub username: String,
    pub tenant_key: String,
    pub user_id: Option<String>,
    pub schema_version: i64,
    pub status: Status,
    /// The member holding it (`catalog` when none).
    pub database: String,
}

const PENDING_COLUMNS: &str =
    "username, tenant_key, user_id, schema_version, status, database_name";

/// Live tenants below `target` or not active (failed, or a migration that
/// was interrupted).
const PENDING: &str =
    "status IN ('active', 'failed', 'migrating') AND (schema_version < ? OR status <> 'active')";

fn pending_from_row(r: &[Value]) -> Result<Pending, DbError> {
    Ok(Pending {
        username: r[0].to_text(),
        tenant_key: r[1].to_text(),
        user_id: opt_text(&r[2]),
        schema_version: r[3].as_i64().unwrap_or(0),
        status: r[4].to_text().parse().map_err(DbError::other)?,
        database: member_name(r.get(5)),
    })
}

/// A condition keeping the tenants on member `database` (none: every
/// member), with its binds.
fn on_member(database: Option<&str>) -> (&'static str, Vec<Value>) {
    match database {
        None => ("1 = 1", Vec::new()),
        Some(crate::fleet::members::CATALOG) => ("database_name IS NULL", Vec::new()),
        Some(name) => ("database_name = ?", vec![text(name)]),
    }
}

/// The pending tenants (all, or of `usernames`), in `order`: one query.
pub fn pending(
    conn: &mut dyn Connection,
    target: u32,
    usernames: Option<&[String]>,
    database: Option<&str>,
    order: Order,
    limit: Option<usize>,
) -> Result<Vec<Pending>, DbError> {
    let mut sql = format!("SELECT {PENDING_COLUMNS} FROM pf_tenants WHERE {PENDING}");
    let mut binds = vec![Value::Int(target as i64)];
    let (on_member, member_binds) = on_member(database);
    sql.push_str(&format!(" AND {on_member}"));
    binds.extend(member_binds);
    if let Some(names) = usernames {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        sql.push_str(&format!(
            " AND username IN ({})",
            vec!["?"; names.len()].join(", ")
        ));
        binds.extend(names.iter().map(|n| text(n)));
    }
    sql.push_str(&format!(" ORDER BY {}", order.sql()));
    let mut out = conn
        .query(&sql, &binds)?
        .iter()
        .map(|r| pending_from_row(r))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(limit) = limit {
        out.truncate(limit);
    }
    Ok(out)
}

/// The tenants `migrate --all` to `target` would take (behind `target`,
/// failed, or interrupted), as whole registry rows by username: one query.
pub fn pending_records(
    conn: &mut dyn Connection,
    target: u32,
) -> Result<Vec<TenantRecord>, DbError> {
    conn.query(&pending_records_sql(), &[Value::Int(target as i64)])?
        .iter()
        .map(from_row)
        .collect()
}

fn pending_records_sql() -> String {
    format!("SELECT {COLUMNS} FROM pf_tenants WHERE {PENDING} ORDER BY username")
}

/// A tenant claimed for migration by one run.
#[derive(Debug, Clone)]
pub struct Claim {
    pub tenant: Pending,
    run_id: String,
    /// PostgreSQL: the registry row is locked by the caller's transaction
    /// (`FOR UPDATE`), so nobody can change it until that ends. Elsewhere the
    /// claim is the row's `status = 'migrating'` with this run's id.
    row_locked: bool,
}

/// Claims `username` for migration to `target` if it is still pending and
/// nobody else holds it. None: taken or done.
///
/// With `row_lock` (PostgreSQL, inside the caller's transaction) the row is
/// locked with `FOR UPDATE SKIP LOCKED` until that transaction ends, so a
/// killed process's claims vanish with its connection. Without (SQLite,
/// Oracle), the claim is committed as `migrating` with the run's id, which
/// the final update checks; the caller holds the tenant's lock meanwhile
/// ([`crate::tenants::operation::Guard::Claim`]: a file lock, a DBMS_LOCK session
/// lock), which a run gives up only when it ends or dies. So a `migrating`
/// row whose lock the caller got belongs to no live run, and is taken over.
pub fn claim(
    conn: &mut dyn Connection,
    username: &str,
    target: u32,
    run_id: &str,
    row_lock: bool,
) -> Result<Option<Claim>, DbError> {
    let binds = [Value::Int(target as i64), text(username)];
    if row_lock {
        let rows = conn.query(
            &format!(
                "SELECT {PENDING_COLUMNS} FROM pf_tenants WHERE {PENDING} AND username = ? FOR UPDATE SKIP LOCKED"
            ),
            &binds,
        )?;
        return rows
            .first()
            .map(|r| {
                Ok(Claim {
                    tenant: pending_from_row(r)?,
                    run_id: run_id.to_string(),
                    row_locked: true,
                })
            })
            .transpose();
    }
    // The status before the claim is kept for the report.
    let Some(before) = get(conn, username)? else {
        return Ok(None);
    };
    let n = conn.execute(
        &format!(
            "UPDATE pf_tenants SET status = 'migrating', claimed_by = ?, claimed_at = CURRENT_TIMESTAMP, \
             updated_at = CURRENT_TIMESTAMP WHERE {PENDING} AND username = ?"
        ),
        &[text(run_id), binds[0].clone(), binds[1].clone()],
    )?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Claim {
        tenant: Pending {
            username: before.username,
            tenant_key: before.tenant_key,
            user_id: before.user_id,
            schema_version: before.schema_version,
            status: before.status,
            database: before.database,
        },
        run_id: run_id.to_string(),
        row_locked: false,
    }))
}

/// Ends a claim: `active` at `version`, or `failed` with the error. False
/// when the claim was lost (another run took the tenant over, or it was
/// deprovisioned meanwhile): its result is then not this run's to record.
pub fn finish_claim(
    conn: &mut dyn Connection,
    claim: &Claim,
    outcome: Result<i64, &str>,
) -> Result<bool, DbError> {
    let (status, version, error) = match outcome {
        Ok(v) => ("active", Some(v), None),
        Err(e) => ("failed", None, Some(e)),
    };
    let condition = if claim.row_locked {
        "status IN ('active', 'failed', 'migrating')"
    } else {
        "status = 'migrating' AND claimed_by = ?"
    };
    let mut binds = vec![
        text(status),
        version.map(Value::Int).unwrap_or(Value::Null),
        error_value(error),
        text(&claim.run_id),
        text(&claim.tenant.username),
    ];
    if !claim.row_locked {
        binds.push(text(&claim.run_id));
    }
    let n = conn.execute(
        &format!(
            "UPDATE pf_tenants SET status = ?, schema_version = COALESCE(?, schema_version), \
             last_error = ?, claimed_by = ?, claimed_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP \
             WHERE username = ? AND {condition}"
        ),
        &binds,
    )?;
    Ok(n == 1)
}

/// Tenants with one version and status.
#[derive(Debug, Clone, Serialize)]
pub struct VersionCount {
    pub version: i64,
    pub status: String,
    pub count: i64,
}

/// A failed (or stuck) tenant and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTenant {
    pub username: String,
    pub status: Status,
    pub version: i64,
    pub error: Option<String>,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub latest_version: i64,
    pub tenants: i64,
    /// Live tenants behind the latest version or failed.
    pub pending: i64,
    pub by_version: Vec<VersionCount>,
    /// Tenants that failed, or stopped half-way in deprovisioning.
    pub failed: Vec<FailedTenant>,
}

/// Counts per version and status (one query), plus the failed tenants and
/// their errors (a second query, only when some failed).
pub fn fleet_status(
    conn: &mut dyn Connection,
    latest: i64,
    failed_limit: usize,
    database: Option<&str>,
) -> Result<FleetStatus, DbError> {
    let (on_member, binds) = on_member(database);
    let rows = conn.query(
        &format!(
            "SELECT schema_version, status, COUNT(*) FROM pf_tenants WHERE {on_member} GROUP BY schema_version, status ORDER BY schema_version, status"
        ),
        &binds,
    )?;
    let by_version: Vec<VersionCount> = rows
        .iter()
        .map(|r| VersionCount {
            version: r[0].as_i64().unwrap_or(0),
            status: r[1].to_text(),
            count: r[2].as_i64().unwrap_or(0),
        })
        .collect();
    let live = |s: &str| matches!(s, "active" | "failed" | "migrating");
    let pending = by_version
        .iter()
        .filter(|v| live(&v.status) && (v.version < latest || v.status != "active"))
        .map(|v| v.count)
        .sum();
    let mut failed = Vec::new();
    if by_version
        .iter()
        .any(|v| v.status == "failed" || v.status == "deprovisioning")
    {
        let rows = conn.query(
            &format!(
                "SELECT username, status, schema_version, last_error FROM pf_tenants \
                 WHERE status IN ('failed', 'deprovisioning') AND {on_member} ORDER BY username"
            ),
            &binds,
        )?;
        failed = rows
            .iter()
            .take(failed_limit)
            .map(|r| {
                Ok(FailedTenant {
                    username: r[0].to_text(),
                    status: r[1].to_text().parse().map_err(DbError::other)?,
                    version: r[2].as_i64().unwrap_or(0),
                    error: opt_text(&r[3]),
                })
            })
            .collect::<Result<_, DbError>>()?;
    }
    Ok(FleetStatus {
        latest_version: latest,
        tenants: by_version
            .iter()
            .filter(|v| v.status != "deprovisioned")
            .map(|v| v.count)
            .sum(),
        pending,
        by_version,
        failed,
    })
}

/// A move's step in the registry, conditional on the claim the move holds:
/// `username` must be `moving` and claimed by `claim`. Sets the status to
/// `to`, the claim to `new_claim` (None clears it) and, when `database` is
/// given, the member holding the tables (Some(None): the catalog). False when
/// the tenant is not in that state (another command changed it).
pub fn move_step(
    conn: &mut dyn Connection,
    username: &str,
    claim: &str,
    to: Status,
    new_claim: Option<&str>,
    database: Option<Option<&str>>,
) -> Result<bool, DbError> {
    let mut binds = vec![text(to.as_str()), new_claim.into()];
    if let Some(db) = database {
        binds.push(db.into());
    }
    binds.push(text(username));
    binds.push(text(claim));
    Ok(conn.execute(&move_step_sql(database.is_some()), &binds)? == 1)
}

/// The statement of [`move_step`] (binds: status, claim, [database,]
/// username, the claim held), for the static checks of every dialect.
pub fn move_step_sql(database: bool) -> String {
    format!(
        "UPDATE pf_tenants SET status = ?, claimed_by = ?, claimed_at = CURRENT_TIMESTAMP, last_error = NULL, \
         updated_at = CURRENT_TIMESTAMP{} WHERE username = ? AND status = 'moving' AND claimed_by = ?",
        if database { ", database_name = ?" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::iso_utc;

    /// The statement `tenants --pending` sends parses as Oracle SQL (and as
    /// PostgreSQL's, with its placeholders); SQLite runs it in the tests.
    #[test]
    fn pending_records_sql_parses_as_oracle_and_postgres() {
        use crate::db::bind_placeholders;
        use crate::db::dialect::Dialect;
        use sqlparser::dialect::{OracleDialect, PostgreSqlDialect};
        use sqlparser::parser::Parser;
        let sql = super::pending_records_sql();
        let oracle = bind_placeholders(&sql, Dialect::Oracle);
        assert!(oracle.contains(":1") && !oracle.ends_with(';'), "{oracle}");
        Parser::parse_sql(&OracleDialect {}, &oracle).unwrap_or_else(|e| panic!("{oracle}: {e}"));
        let postgres = bind_placeholders(&sql, Dialect::Postgres);
        Parser::parse_sql(&PostgreSqlDialect {}, &postgres)
            .unwrap_or_else(|e| panic!("{postgres}: {e}"));
    }

    #[test]
    fn stored_timestamps_become_iso_utc() {
        assert_eq!(
            iso_utc("2026-11-25 13:36:36.123"),
            "2026-11-25T13:36:36.123Z"
        );
        assert_eq!(iso_utc("2026-11-25 13:36:36"), "2026-11-25T13:36:36Z");
        assert_eq!(iso_utc(""), "");
    }
}
