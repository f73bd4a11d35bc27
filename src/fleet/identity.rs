//! What a server member database says of itself: which deployment (the
//! catalog's `pf_deployment.id`) holds it as which member. Written by
//! `databases add` (and, for a member added before it existed, on first
//! use), so that another deployment's member, or an empty database made in
//! a lost member's place, is never taken for this one's; and read by
//! `databases set-url` to accept only a copy of the member itself.

use crate::db::dialect::Dialect;
use crate::db::{Connection, DbError, DbErrorKind, Value};

pub const TABLE: &str = "pf_member_identity";

/// The deployment and member a member database belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub deployment: String,
    pub member: String,
}

/// The catalog's deployment id.
pub fn of_catalog(sys: &mut dyn Connection) -> Result<String, DbError> {
    let rows = sys.query("SELECT id FROM pf_deployment", &[])?;
    rows.first()
        .map(|r| r[0].to_text())
        .ok_or_else(|| DbError::other("pf_deployment is empty: run `pathfinder-db init`"))
}

/// The identity `conn` records (None: none recorded).
pub fn read(conn: &mut dyn Connection) -> Result<Option<Identity>, DbError> {
    match conn.query(
        &format!("SELECT deployment_id, member_name FROM {TABLE}"),
        &[],
    ) {
        Ok(rows) => Ok(rows.first().map(|r| Identity {
            deployment: r[0].to_text(),
            member: r[1].to_text(),
        })),
        Err(e) if e.kind == DbErrorKind::DoesNotExist => {
            let _ = conn.rollback();
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn ddl(dialect: Dialect) -> String {
    let text = match dialect {
        Dialect::Oracle => "VARCHAR2(64)",
        Dialect::Postgres | Dialect::Sqlite => "TEXT",
    };
    format!(
        "CREATE TABLE {TABLE} (deployment_id {text} NOT NULL, member_name {text} NOT NULL, nonce {text})"
    )
}

/// Records `identity` in `conn` (the table made if missing; Oracle's
/// "exists" counts as done, as `run_statements` takes it).
pub fn write(conn: &mut dyn Connection, identity: &Identity) -> Result<(), DbError> {
    if read(conn).is_ok_and(|found| found.is_none()) {
        let _ = conn.run_statements(&[crate::schema::render::Statement {
            sql: ddl(conn.dialect()),
            plsql: false,
        }]);
    }
    conn.execute(&format!("DELETE FROM {TABLE}"), &[])?;
    conn.execute(
        &format!("INSERT INTO {TABLE} (deployment_id, member_name) VALUES (?, ?)"),
        &[
            Value::from(identity.deployment.as_str()),
            Value::from(identity.member.as_str()),
        ],
    )?;
    Ok(())
}

/// Removes the record (a member removed: the database may be added again).
pub fn forget(conn: &mut dyn Connection) {
    let _ = conn.execute(&format!("DROP TABLE {TABLE}"), &[]);
}

/// Whether `a` and `b` are connections to the same database, not a copy:
/// a value written through `a` is read back through `b`.
pub fn same_database(a: &mut dyn Connection, b: &mut dyn Connection) -> Result<bool, DbError> {
    let nonce = uuid::Uuid::new_v4().to_string();
    a.execute(
        &format!("UPDATE {TABLE} SET nonce = ?"),
        &[Value::from(nonce.as_str())],
    )?;
    let seen = match b.query(&format!("SELECT nonce FROM {TABLE}"), &[]) {
        Ok(rows) => rows.iter().any(|r| r[0].to_text() == nonce),
        Err(e) if e.kind == DbErrorKind::DoesNotExist => false,
        Err(e) => return Err(e),
    };
    Ok(seen)
}

#[cfg(test)]
mod tests {
    /// The identity's statements parse as Oracle SQL (binds as `:n`).
    #[test]
    fn statements_parse_as_oracle() {
        use crate::db::bind_placeholders;
        use sqlparser::dialect::OracleDialect;
        use sqlparser::parser::Parser;
        let table = super::TABLE;
        for sql in [
            super::ddl(super::Dialect::Oracle),
            format!("SELECT deployment_id, member_name FROM {table}"),
            format!("INSERT INTO {table} (deployment_id, member_name) VALUES (?, ?)"),
            format!("UPDATE {table} SET nonce = ?"),
            format!("DELETE FROM {table}"),
        ] {
            let oracle = bind_placeholders(&sql, super::Dialect::Oracle);
            Parser::parse_sql(&OracleDialect {}, &oracle)
                .unwrap_or_else(|e| panic!("{oracle}: {e}"));
        }
    }
}
