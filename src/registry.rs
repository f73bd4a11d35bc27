//! The tenant registry (`pf_tenants`): one row per tenant, so fleet-wide
//! questions are one query.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::db::{Connection, DbError, Row, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Creation started and has not finished: a re-run completes it.
    Provisioning,
    Active,
    Migrating,
    /// The last provisioning or migration failed; `last_error` says why.
    Failed,
    /// Removal started and has not finished: a re-run completes it.
    Deprovisioning,
    Deprovisioned,
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
        }
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
            other => return Err(format!("unknown tenant status {other:?}")),
        })
    }
}

/// One registry row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantRecord {
    pub username: String,
    pub tenant_key: String,
    pub user_id: Option<String>,
    pub schema_version: i64,
    pub status: Status,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "username, tenant_key, user_id, schema_version, status, last_error, created_at, updated_at";

fn opt_text(v: &Value) -> Option<String> {
    if v.is_null() { None } else { Some(v.to_text()) }
}

fn from_row(r: &Row) -> Result<TenantRecord, DbError> {
    Ok(TenantRecord {
        username: r[0].to_text(),
        tenant_key: r[1].to_text(),
        user_id: opt_text(&r[2]),
        schema_version: r[3].as_i64().unwrap_or(0),
        status: r[4].to_text().parse().map_err(DbError::other)?,
        last_error: opt_text(&r[5]),
        created_at: r[6].to_text(),
        updated_at: r[7].to_text(),
    })
}

pub fn get(conn: &mut dyn Connection, username: &str) -> Result<Option<TenantRecord>, DbError> {
    let rows = conn.query(
        &format!("SELECT {COLUMNS} FROM pf_tenants WHERE username = ?"),
        &[Value::Text(username.into())],
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
        &[Value::Text(tenant_key.into())],
    )?;
    Ok(rows.first().map(|r| r[0].to_text()))
}

/// The `pf_users.id` of `username`, if the application has created that user.
pub fn user_id_of(conn: &mut dyn Connection, username: &str) -> Result<Option<String>, DbError> {
    let rows = conn.query(
        "SELECT id FROM pf_users WHERE username = ?",
        &[Value::Text(username.into())],
    )?;
    Ok(rows.first().map(|r| r[0].to_text()))
}

/// Adds a tenant in status `provisioning`. Returns false when another process
/// registered the same username first.
pub fn insert(
    conn: &mut dyn Connection,
    username: &str,
    tenant_key: &str,
    user_id: Option<&str>,
) -> Result<bool, DbError> {
    let result = conn.execute(
        "INSERT INTO pf_tenants (username, tenant_key, user_id, schema_version, status) VALUES (?, ?, ?, 0, 'provisioning')",
        &[
            Value::Text(username.into()),
            Value::Text(tenant_key.into()),
            user_id.map(|u| Value::Text(u.into())).unwrap_or(Value::Null),
        ],
    );
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind == crate::db::DbErrorKind::UniqueViolation => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets status, version and last error (None clears it).
pub fn set_state(
    conn: &mut dyn Connection,
    username: &str,
    status: Status,
    schema_version: Option<i64>,
    last_error: Option<&str>,
) -> Result<(), DbError> {
    let error = last_error
        .map(|e| Value::Text(e.chars().take(4000).collect()))
        .unwrap_or(Value::Null);
    match schema_version {
        Some(v) => conn.execute(
            "UPDATE pf_tenants SET status = ?, schema_version = ?, last_error = ?, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
            &[Value::Text(status.as_str().into()), Value::Int(v), error, Value::Text(username.into())],
        ),
        None => conn.execute(
            "UPDATE pf_tenants SET status = ?, last_error = ?, updated_at = CURRENT_TIMESTAMP WHERE username = ?",
            &[Value::Text(status.as_str().into()), error, Value::Text(username.into())],
        ),
    }?;
    Ok(())
}

/// Marks a tenant `failed` with `error`, but only while it is `provisioning`.
pub fn mark_failed_if_provisioning(
    conn: &mut dyn Connection,
    username: &str,
    error: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE pf_tenants SET status = 'failed', last_error = ?, updated_at = CURRENT_TIMESTAMP \
         WHERE username = ? AND status = 'provisioning'",
        &[
            Value::Text(error.chars().take(4000).collect()),
            Value::Text(username.into()),
        ],
    )?;
    Ok(())
}

/// Reuses a registry row (a deprovisioned or failed tenant being provisioned again).
pub fn restart_provisioning(
    conn: &mut dyn Connection,
    username: &str,
    tenant_key: &str,
    user_id: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE pf_tenants SET status = 'provisioning', tenant_key = ?, user_id = ?, last_error = NULL, \
         updated_at = CURRENT_TIMESTAMP WHERE username = ?",
        &[
            Value::Text(tenant_key.into()),
            user_id.map(|u| Value::Text(u.into())).unwrap_or(Value::Null),
            Value::Text(username.into()),
        ],
    )?;
    Ok(())
}

/// Tenants with one version and status.
#[derive(Debug, Clone, Serialize)]
pub struct VersionCount {
    pub version: i64,
    pub status: String,
    pub count: i64,
}

/// A failed tenant and why.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTenant {
    pub username: String,
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
    pub failed: Vec<FailedTenant>,
}

/// Counts per version and status (one query), plus the failed tenants and
/// their errors (a second query, only when some failed).
pub fn fleet_status(
    conn: &mut dyn Connection,
    latest: i64,
    failed_limit: usize,
) -> Result<FleetStatus, DbError> {
    let rows = conn.query(
        "SELECT schema_version, status, COUNT(*) FROM pf_tenants GROUP BY schema_version, status ORDER BY schema_version, status",
        &[],
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
    if by_version.iter().any(|v| v.status == "failed") {
        let rows = conn.query(
            "SELECT username, schema_version, last_error FROM pf_tenants WHERE status = 'failed' ORDER BY username",
            &[],
        )?;
        failed = rows
            .iter()
            .take(failed_limit)
            .map(|r| FailedTenant {
                username: r[0].to_text(),
                version: r[1].as_i64().unwrap_or(0),
                error: opt_text(&r[2]),
            })
            .collect();
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
