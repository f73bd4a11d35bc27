//! The `pf_audit_log` writer: one row per changed entity for every mutating
//! command, written also when the command fails.

use std::time::Instant;

use crate::db::{Connection, DbError, Value};

/// One audited action on one entity.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// e.g. `tenant.provision`.
    pub action: &'a str,
    /// e.g. `tenant`.
    pub entity_type: &'a str,
    /// e.g. the username.
    pub entity_id: &'a str,
    /// The `pf_users.id` the entity belongs to, when known.
    pub user_id: Option<&'a str>,
    /// The subcommand that made the change (`provision`); never its options,
    /// which may carry a database URL.
    pub command: &'a str,
    pub started: Instant,
    /// None on success, else the error (already free of passwords).
    pub error: Option<&'a str>,
}

/// Inserts the audit row. The caller decides the transaction: inside the
/// tenant's transaction on success, on its own after a rollback.
pub fn write(conn: &mut dyn Connection, entry: &AuditEntry<'_>) -> Result<(), DbError> {
    let elapsed = entry.started.elapsed().as_millis().min(9_999_999_999) as i64;
    let status = if entry.error.is_some() { 500 } else { 200 };
    conn.execute(
        "INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, user_agent, \
         request_method, request_path, response_status, execution_time_ms, error_message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            Value::Text(uuid::Uuid::new_v4().to_string()),
            entry
                .user_id
                .map(|u| Value::Text(u.into()))
                .unwrap_or(Value::Null),
            Value::Text(entry.action.into()),
            Value::Text(entry.entity_type.into()),
            Value::Text(entry.entity_id.into()),
            Value::Text(crate::USER_AGENT.into()),
            Value::Text("CLI".into()),
            Value::Text(entry.command.into()),
            Value::Int(status),
            Value::Int(elapsed),
            entry
                .error
                .map(|e| Value::Text(e.into()))
                .unwrap_or(Value::Null),
        ],
    )?;
    Ok(())
}
