//! The `pf_audit_log` writer: one row per changed entity for every mutating
//! command, written also when the command fails.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::db::dialect::Dialect;
use crate::db::{Connection, DbError, Tx, Value};

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
    insert(
        conn,
        &uuid::Uuid::new_v4().to_string(),
        &Row::of(entry, details),
    )
}

/// An audit row as stored, without its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    user_id: Option<String>,
    action: String,
    entity_type: String,
    entity_id: String,
    command: String,
    execution_time_ms: i64,
    error: Option<String>,
    details: Option<String>,
}

impl Row {
    fn of(entry: &AuditEntry, details: Option<&str>) -> Row {
        Row {
            user_id: entry.user_id.clone(),
            action: entry.action.clone(),
            entity_type: entry.entity_type.clone(),
            entity_id: entry.entity_id.clone(),
            command: entry.command.clone(),
            execution_time_ms: entry.started.elapsed().as_millis().min(9_999_999_999) as i64,
            error: entry.error.as_deref().map(crate::db::redact::redact),
            details: details.map(str::to_string),
        }
    }
}

fn insert(conn: &mut dyn Connection, id: &str, row: &Row) -> Result<(), DbError> {
    let status = if row.error.is_some() { 500 } else { 200 };
    let mut binds = vec![
        Value::Text(id.to_string()),
        row.user_id.clone().into(),
        Value::Text(row.action.clone()),
        Value::Text(row.entity_type.clone()),
        Value::Text(row.entity_id.clone()),
        Value::Text(crate::USER_AGENT.into()),
        Value::Text("CLI".into()),
        Value::Text(row.command.clone()),
        Value::Int(status),
        Value::Int(row.execution_time_ms),
        row.error.clone().into(),
    ];
    // Without details the row is what every version of the table accepts.
    let (extra_column, extra_bind) = match &row.details {
        Some(d) => {
            binds.push(Value::Text(d.clone()));
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

// Audit rows of a SQLite tenant's work. The tenant's rows live in a file of
// their own and pf_audit_log in the main file, and no transaction spans two
// WAL files: so the row is staged in the tenant's file, in the transaction
// that commits the work, then copied to pf_audit_log and removed from the
// stage, each in a transaction of its own. A kill in between leaves it
// staged, and the next flush copies it (once: the id is kept).

/// The stage in a tenant file or a server member (not a tenant table: no
/// `pf_user_` prefix).
pub const STAGE: &str = "pf_audit_stage";

/// The statement that creates the stage. Oracle has no `IF NOT EXISTS`
/// before 23ai: run there through `run_statements`, which counts ORA-00955
/// (the table exists) as done.
pub fn stage_ddl(dialect: Dialect) -> String {
    match dialect {
        Dialect::Oracle => {
            format!("CREATE TABLE {STAGE} (id VARCHAR2(36) PRIMARY KEY, row_json CLOB NOT NULL)")
        }
        Dialect::Postgres | Dialect::Sqlite => {
            format!(
                "CREATE TABLE IF NOT EXISTS {STAGE} (id TEXT PRIMARY KEY, row_json TEXT NOT NULL)"
            )
        }
    }
}

/// Creates the stage of a server member, once, when it is added: outside
/// any batch's transaction (Oracle's DDL would commit it; concurrent
/// `IF NOT EXISTS` on PostgreSQL can collide).
pub fn create_member_stage(member: &mut dyn Connection) -> Result<(), DbError> {
    member.run_statements(&[crate::schema::render::Statement {
        sql: stage_ddl(member.dialect()),
        plsql: false,
    }])
}

/// Stages the audit row of work done in the open transaction of a tenant
/// file (which gets its stage here) or of a server member (whose stage was
/// made when it was added).
/// Returns the staged row's id.
pub fn stage(
    tenant: &mut dyn Connection,
    entry: &AuditEntry,
    details: Option<&str>,
) -> Result<String, DbError> {
    if tenant.dialect() == Dialect::Sqlite {
        tenant.execute(&stage_ddl(Dialect::Sqlite), &[])?;
    }
    let row = serde_json::to_string(&Row::of(entry, details))
        .map_err(|e| DbError::other(e.to_string()))?;
    let id = uuid::Uuid::new_v4().to_string();
    tenant.execute(
        &format!("INSERT INTO {STAGE} (id, row_json) VALUES (?, ?)"),
        &[Value::Text(id.clone()), Value::Text(row)],
    )?;
    tenant.note_staged();
    Ok(id)
}

/// Whether a tenant file holds staged rows that were never copied (a killed run's).
pub fn has_staged(tenant: &mut dyn Connection) -> Result<bool, DbError> {
    match tenant.query(&format!("SELECT 1 FROM {STAGE} LIMIT 1"), &[]) {
        Ok(rows) => Ok(!rows.is_empty()),
        Err(e) if e.kind == crate::db::DbErrorKind::DoesNotExist => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves the rows staged in a tenant file into `pf_audit_log` of the main
/// file `sys`: a row already there (copied before a kill) is not copied again.
pub fn flush_staged(tenant: &mut dyn Connection, sys: &mut dyn Connection) -> Result<(), DbError> {
    flush_staged_of(tenant, sys, None)
}

/// The stage of a server member database, shared by its tenants: only the
/// rows about tenant `username` (key `key`) and its tables are flushed (the
/// caller holds that tenant's lock, so no other process flushes them at the
/// same time).
pub fn flush_member_staged(
    member: &mut dyn Connection,
    sys: &mut dyn Connection,
    username: &str,
    key: &crate::schema::tenant::TenantKey,
) -> Result<(), DbError> {
    flush_staged_of(
        member,
        sys,
        Some(&|_: &str, row: &Row| is_about(&row.entity_id, username, key)),
    )
}

/// Whether an audit row's entity is tenant `username` (key `key`) or one of
/// its tables (archives included).
pub fn is_about(entity: &str, username: &str, key: &crate::schema::tenant::TenantKey) -> bool {
    entity == username
        || entity
            .strip_prefix(key.prefix().as_str())
            .is_some_and(|rest| {
                let table = rest.strip_suffix("_archive").unwrap_or(rest);
                crate::schema::tenant::TABLES
                    .iter()
                    .any(|t| t.name == table)
            })
}

/// The entities of the rows staged on a server member (a killed run's,
/// or a run's in flight): one read, none when it has no stage.
pub fn staged_entities(member: &mut dyn Connection) -> Result<Vec<String>, DbError> {
    let staged = match member.query(&format!("SELECT row_json FROM {STAGE}"), &[]) {
        Ok(rows) => rows,
        Err(e) if e.kind == crate::db::DbErrorKind::DoesNotExist => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    staged
        .iter()
        .map(|r| {
            serde_json::from_str::<Row>(&r[0].to_text())
                .map(|row| row.entity_id)
                .map_err(|e| DbError::other(format!("a staged audit row cannot be read: {e}")))
        })
        .collect()
}

/// Copies the rows a killed run of `command` left staged on a server member
/// to the catalog's log (rows about no tenant, which no tenant's flush takes).
pub fn flush_member_left_by(
    member: &mut dyn Connection,
    sys: &mut dyn Connection,
    command: &str,
) -> Result<(), DbError> {
    flush_staged_of(
        member,
        sys,
        Some(&|_: &str, row: &Row| row.command == command),
    )
}

/// Copies the rows `ids` staged on a server member to the catalog's log
/// and removes them from the stage (rows this process staged itself).
pub fn flush_member_ids(
    member: &mut dyn Connection,
    sys: &mut dyn Connection,
    ids: &[String],
) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    flush_staged_of(
        member,
        sys,
        Some(&|id: &str, _: &Row| ids.iter().any(|i| i == id)),
    )
}

/// Which staged rows a flush takes, by their stage id and contents.
type Keep<'a> = dyn Fn(&str, &Row) -> bool + 'a;

fn flush_staged_of(
    tenant: &mut dyn Connection,
    sys: &mut dyn Connection,
    keep: Option<&Keep>,
) -> Result<(), DbError> {
    // SQLite keeps the order of staging in its rowid; elsewhere the rows'
    // own times order them in the log.
    let order = match tenant.dialect() {
        Dialect::Sqlite => "rowid",
        _ => "id",
    };
    let staged = match tenant.query(
        &format!("SELECT id, row_json FROM {STAGE} ORDER BY {order}"),
        &[],
    ) {
        Ok(rows) => rows,
        Err(e) if e.kind == crate::db::DbErrorKind::DoesNotExist => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut rows = Vec::new();
    for r in staged {
        let id = r[0].to_text();
        let row: Row = serde_json::from_str(&r[1].to_text()).map_err(|e| {
            DbError::other(format!(
                "a staged audit row ({STAGE} {id}) cannot be read: {e}"
            ))
        })?;
        if keep.is_none_or(|keep| keep(&id, &row)) {
            rows.push((r[0].clone(), id, row));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = Tx::begin(sys)?;
    for (_, id, row) in &rows {
        if tx
            .query(
                "SELECT 1 FROM pf_audit_log WHERE id = ?",
                &[Value::Text(id.clone())],
            )?
            .is_empty()
        {
            insert(&mut *tx, id, row)?;
        }
    }
    tx.commit()?;
    let mut tx = Tx::begin(tenant)?;
    for (stored_id, _, _) in &rows {
        tx.execute(
            &format!("DELETE FROM {STAGE} WHERE id = ?"),
            std::slice::from_ref(stored_id),
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::SqliteConnection;

    /// The stage's statements as an Oracle member gets them parse as
    /// Oracle SQL (binds as `:n`).
    #[test]
    fn member_stage_statements_parse_as_oracle() {
        use sqlparser::dialect::OracleDialect;
        use sqlparser::parser::Parser;
        for sql in [
            stage_ddl(Dialect::Oracle),
            format!("INSERT INTO {STAGE} (id, row_json) VALUES (?, ?)"),
            format!("SELECT id, row_json FROM {STAGE} ORDER BY id"),
            format!("DELETE FROM {STAGE} WHERE id = ?"),
        ] {
            let oracle = crate::db::bind_placeholders(&sql, Dialect::Oracle);
            let parsed = Parser::parse_sql(&OracleDialect {}, &oracle);
            assert!(
                matches!(&parsed, Ok(v) if v.len() == 1),
                "{oracle}: {parsed:?}"
            );
        }
        assert!(!stage_ddl(Dialect::Oracle).contains("IF NOT EXISTS"));
    }

    const AUDIT_LOG: &str = "CREATE TABLE pf_audit_log (id TEXT PRIMARY KEY, user_id TEXT, \
        action TEXT, entity_type TEXT, entity_id TEXT, user_agent TEXT, request_method TEXT, \
        request_path TEXT, response_status INTEGER, execution_time_ms INTEGER, \
        error_message TEXT, details TEXT)";

    fn texts(conn: &mut dyn Connection, sql: &str) -> Vec<String> {
        conn.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r[0].to_text())
            .collect()
    }

    #[test]
    fn staged_rows_reach_the_audit_log_once_whenever_a_run_was_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut main = SqliteConnection::open(&dir.path().join("main.db"), 1000).unwrap();
        let mut tenant = SqliteConnection::open(&dir.path().join("t.db"), 1000).unwrap();
        main.execute(AUDIT_LOG, &[]).unwrap();
        // Nothing staged yet (no stage table): nothing to do.
        flush_staged(&mut tenant, &mut main).unwrap();

        let entry = AuditEntry::new("retention.sweep", "table", "pf_user_t_x", "retention");
        let mut tx = Tx::begin(&mut tenant).unwrap();
        stage(&mut *tx, &entry, Some(r#"{"deleted":5}"#)).unwrap();
        tx.commit().unwrap();
        let staged = tenant
            .query(&format!("SELECT id, row_json FROM {STAGE}"), &[])
            .unwrap();
        assert_eq!(staged.len(), 1);

        // Killed after the copy, before the stage was cleared: the next
        // flush finds the row again and does not copy it twice.
        flush_staged(&mut tenant, &mut main).unwrap();
        tenant
            .execute(
                &format!("INSERT INTO {STAGE} (id, row_json) VALUES (?, ?)"),
                &staged[0],
            )
            .unwrap();
        flush_staged(&mut tenant, &mut main).unwrap();

        let id = staged[0][0].to_text();
        assert_eq!(texts(&mut main, "SELECT id FROM pf_audit_log"), vec![id]);
        assert_eq!(
            texts(&mut main, "SELECT details FROM pf_audit_log"),
            vec![r#"{"deleted":5}"#.to_string()]
        );
        assert_eq!(
            texts(
                &mut main,
                "SELECT action || ' ' || entity_id FROM pf_audit_log"
            ),
            vec!["retention.sweep pf_user_t_x".to_string()]
        );
        assert!(texts(&mut tenant, &format!("SELECT id FROM {STAGE}")).is_empty());
    }
}
