//! SQLite through rusqlite's bundled library: WAL, a busy timeout, foreign keys on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{ErrorCode, OpenFlags, params_from_iter};

use super::{CatalogColumn, Connection, DbError, DbErrorKind, Lock, Row, Value};
use crate::dialect::Dialect;
use crate::error::UsageError;
use crate::render::Statement;

/// `sqlite://pathfinder.db`, `sqlite:///abs/path.db`, `sqlite:file.db`.
pub fn path_of_url(url: &str) -> Result<PathBuf, UsageError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() {
        return Err(UsageError::new(format!(
            "database URL {url:?} names no file: use sqlite://pathfinder.db"
        )));
    }
    Ok(PathBuf::from(rest))
}

/// Tenants of `main.db` live in `main.tenants/<key>.db`.
pub fn tenant_dir_for(main: &Path) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "pathfinder".into());
    main.with_file_name(format!("{stem}.tenants"))
}

pub struct SqliteConnection {
    conn: rusqlite::Connection,
    path: PathBuf,
}

fn classify(err: &rusqlite::Error, path: &Path) -> DbError {
    let code = err.sqlite_error_code();
    let kind = match code {
        Some(ErrorCode::ReadOnly) => DbErrorKind::ReadOnly,
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => DbErrorKind::Busy,
        Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::NotADatabase)
        | Some(ErrorCode::PermissionDenied) => DbErrorKind::Connection,
        Some(ErrorCode::ConstraintViolation) if err.to_string().contains("UNIQUE") => {
            DbErrorKind::UniqueViolation
        }
        _ => {
            let text = err.to_string();
            if text.contains("already exists") {
                DbErrorKind::AlreadyExists
            } else if text.contains("no such table") {
                DbErrorKind::DoesNotExist
            } else {
                DbErrorKind::Other
            }
        }
    };
    let hint = match kind {
        DbErrorKind::ReadOnly => {
            ": the file or its directory is read-only; check the permissions or point --database-url at a writable file"
        }
        DbErrorKind::Busy => {
            ": another process holds the write lock; retry, or raise sqlite_busy_timeout_ms"
        }
        DbErrorKind::Connection => {
            ": check that the path is right and the file is a SQLite database"
        }
        _ => "",
    };
    DbError::new(kind, format!("SQLite {}: {err}{hint}", path.display()))
}

fn to_sql_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Float(f) => rusqlite::types::Value::Real(*f),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

fn from_sql_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

impl SqliteConnection {
    pub fn open(path: &Path, busy_timeout_ms: u64) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(DbError::new(
                DbErrorKind::Connection,
                format!(
                    "SQLite {}: the directory {} does not exist; create it or fix --database-url",
                    path.display(),
                    dir.display()
                ),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            rusqlite::Connection::open_with_flags(path, flags).map_err(|e| classify(&e, path))?;
        conn.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(|e| classify(&e, path))?;
        // WAL lets readers go on while one process writes; NORMAL sync is safe in WAL.
        // A read-only file cannot switch modes: that surfaces at the first write.
        let _ = conn.pragma_update(None, "journal_mode", "WAL");
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| classify(&e, path))?;
        Ok(SqliteConnection {
            conn,
            path: path.to_path_buf(),
        })
    }
}

impl Connection for SqliteConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| classify(&e, &self.path))?;
        let n = stmt
            .execute(params_from_iter(params.iter().map(to_sql_value)))
            .map_err(|e| classify(&e, &self.path))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| classify(&e, &self.path))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_sql_value)))
            .map_err(|e| classify(&e, &self.path))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| classify(&e, &self.path))? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(from_sql_value(
                    row.get_ref(i).map_err(|e| classify(&e, &self.path))?,
                ));
            }
            out.push(values);
        }
        Ok(out)
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        for stmt in statements {
            self.conn
                .execute_batch(&stmt.sql)
                .map_err(|e| classify(&e, &self.path))?;
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| classify(&e, &self.path))
    }

    fn commit(&mut self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| classify(&e, &self.path))
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| classify(&e, &self.path))
    }

    fn lock(&mut self, _name: &Lock<'_>) -> Result<(), DbError> {
        Ok(())
    }

    fn try_lock(&mut self, _name: &Lock<'_>) -> Result<bool, DbError> {
        Ok(true)
    }

    fn unlock(&mut self, _name: &Lock<'_>) -> Result<(), DbError> {
        Ok(())
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let rows = self.query(
            "SELECT m.name, c.name, lower(c.type), c.\"notnull\" = 0, c.cid + 1 \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type IN ('table', 'view') AND substr(m.name, 1, length(?1)) = ?1 \
             ORDER BY m.name, c.cid",
            &[Value::Text(prefix.to_string())],
        )?;
        Ok(rows.iter().map(CatalogColumn::from_row).collect())
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = self.query(
            "SELECT tbl_name, name FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL AND substr(tbl_name, 1, length(?1)) = ?1 \
             ORDER BY tbl_name, name",
            &[Value::Text(prefix.to_string())],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| (r[0].to_text(), r[1].to_text()))
            .collect())
    }
}
