//! The `pf_audit_log` writer: one row per changed entity for every mutating
//! command, written also when the command fails.

use std::time::Instant;

use crate::db::{Connection, DbError, Value};

/// One audited action on one entity.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// e.g. `tenant.provision`.
    pub action: String,
    /// e.g. `tenant`.
    pub entity_type: String,
    /// e.g. the username.
    pub entity_id: String,
    /// The `pf_users.id` the entity belongs to, when known.
    pub user_id: Option<String>,
    /// The subcommand that made the change (`provision`); never its options,
    /// which may carry a database URL.
    pub command: String,
    pub started: Instant,
    /// None on success, else the error.
    pub error: Option<String>,
}

impl AuditEntry {
    /// An entry for `action` on `entity_type` `entity_id`, started now.
    pub fn new(action: &str, entity_type: &str, entity_id: &str, command: &str) -> Self {
        AuditEntry {
            action: action.into(),
            entity_type: entity_type.into(),
            entity_id: entity_id.into(),
            user_id: None,
            command: command.into(),
            started: Instant::now(),
            error: None,
        }
    }
}

/// Inserts the audit row. The caller decides the transaction: inside the
/// change's transaction on success, on its own after a rollback. Passwords are
/// redacted from the error text.
pub fn write(conn: &mut dyn Connection, entry: &AuditEntry) -> Result<(), DbError> {
    write_details(conn, entry, None)
}

/// Like [`write()`], with `details` (a JSON document, e.g. the counts of a
/// retention sweep) in the `details` column that system version 4 added.
pub fn write_details(
    conn: &mut dyn Connection,
    entry: &AuditEntry,
    details: Option<&str>,
) -> Result<(), DbError> {
    let elapsed = entry.started.elapsed().as_millis().min(9_999_999_999) as i64;
    let status = if entry.error.is_some() { 500 } else { 200 };
    let mut binds = vec![
        Value::Text(uuid::Uuid::new_v4().to_string()),
        entry.user_id.clone().into(),
        Value::Text(entry.action.clone()),
        Value::Text(entry.entity_type.clone()),
        Value::Text(entry.entity_id.clone()),
        Value::Text(crate::USER_AGENT.into()),
        Value::Text("CLI".into()),
        Value::Text(entry.command.clone()),
        Value::Int(status),
        Value::Int(elapsed),
        entry
            .error
            .as_deref()
            .map(|e| Value::Text(crate::redact::redact(e)))
            .unwrap_or(Value::Null),
    ];
    // Without details the row is what every version of the table accepts.
    let (extra_column, extra_bind) = match details {
        Some(d) => {
            binds.push(Value::Text(d.to_string()));
            (", details", ", ?")
        }
        None => ("", ""),
    };
    conn.execute(
        &format!(
            "INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, user_agent, \
             request_method, request_path, response_status, execution_time_ms, error_message{extra_column}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{extra_bind})"
        ),
        &binds,
    )?;
    Ok(())
}
