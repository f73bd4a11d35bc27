//! Oracle (19c, 23ai, Autonomous Database) through the `oracle` crate.
//!
//! The crate builds without Oracle Instant Client; the client library is loaded
//! when the first connection is made. Without it the connection fails with
//! DPI-1047, which we turn into a one-line error that says how to install it.

use std::sync::OnceLock;
use std::time::Duration;

use oracle::pool::{Pool, PoolBuilder};
use oracle::sql_type::{OracleType, ToSql};

use super::{CatalogColumn, Connection, DbError, DbErrorKind, Lock, Row, Value, bind_placeholders};
use crate::config::PoolConfig;
use crate::dialect::Dialect;
use crate::error::UsageError;
use crate::render::Statement;

/// Oracle error codes that mean "this step was done before" for DDL, so a
/// repeated CREATE/ALTER/DROP counts as done. 955: name already used;
/// 1408: column list already indexed; 1430: column already exists; 2260/2261/
/// 2275: key already exists; 2264: constraint name in use; 942: table or view
/// does not exist; 1418: index does not exist; 12003: materialized view does not exist.
const ALREADY_DONE_CREATE: &[i32] = &[955, 1408, 1430, 2260, 2261, 2264, 2275];
const ALREADY_DONE_DROP: &[i32] = &[942, 1418, 12003, 904];

const CLIENT_HELP: &str = "the Oracle client library (Oracle Instant Client) is not installed or not found (DPI-1047): install Instant Client Basic or Basic Light for this platform and add its directory to LD_LIBRARY_PATH (macOS: DYLD_LIBRARY_PATH; Windows: PATH)";

/// Connection details parsed from `oracle://user[:password]@connect_string`, where
/// the connect string is `host:port/service`, an Easy Connect string or a TNS
/// alias (with TNS_ADMIN pointing at an Autonomous Database wallet).
#[derive(Clone)]
pub struct OracleTarget {
    user: String,
    password: Option<String>,
    connect_string: String,
    pool_config: PoolConfig,
    pool: std::sync::Arc<OnceLock<Pool>>,
}

impl OracleTarget {
    pub fn from_url(url: &str, pool: &PoolConfig) -> Result<Self, UsageError> {
        let bad = || {
            UsageError::new(format!(
                "invalid Oracle URL {:?}: expected oracle://USER@HOST:PORT/SERVICE or oracle://USER@TNS_ALIAS",
                super::redact_url(url)
            ))
        };
        let rest = url.strip_prefix("oracle://").ok_or_else(bad)?;
        let (userinfo, connect) = rest.rsplit_once('@').ok_or_else(bad)?;
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(percent_decode(p))),
            None => (userinfo, None),
        };
        if user.is_empty() || connect.is_empty() {
            return Err(bad());
        }
        Ok(OracleTarget {
            user: percent_decode(user),
            password,
            connect_string: connect.to_string(),
            pool_config: pool.clone(),
            pool: Default::default(),
        })
    }

    fn pool(&self) -> Result<&Pool, DbError> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let password = self
            .password
            .clone()
            .or_else(|| {
                super::password_from_env_or_prompt(&format!(
                    "Oracle {}@{}",
                    self.user, self.connect_string
                ))
            })
            .unwrap_or_default();
        let cfg = &self.pool_config;
        let mut builder = PoolBuilder::new(
            self.user.as_str(),
            password.as_str(),
            self.connect_string.as_str(),
        );
        builder
            .min_connections(cfg.min)
            .max_connections(cfg.max.max(cfg.min).max(1))
            .connection_increment(cfg.increment.max(1));
        if cfg.connection_timeout > 0 {
            // Wait this long for a free pooled connection, then fail.
            builder.get_mode(oracle::pool::GetMode::TimedWait(Duration::from_secs(
                cfg.connection_timeout.into(),
            )));
        }
        if cfg.timeout > 0 {
            builder
                .timeout(Duration::from_secs(cfg.timeout.into()))
                .map_err(|e| classify(&e, &self.connect_string))?;
        }
        let pool = builder
            .build()
            .map_err(|e| classify(&e, &self.connect_string))?;
        let _ = self.pool.set(pool);
        Ok(self.pool.get().expect("pool was just set"))
    }

    pub fn connect(&self) -> Result<OracleConnection, DbError> {
        let conn = self
            .pool()?
            .get()
            .map_err(|e| classify(&e, &self.connect_string))?;
        Ok(OracleConnection {
            conn,
            target: self.connect_string.clone(),
            held_locks: Vec::new(),
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn ora_code(err: &oracle::Error) -> Option<i32> {
    err.db_error().map(|e| e.code())
}

fn classify(err: &oracle::Error, target: &str) -> DbError {
    let text = err.to_string();
    if text.contains("DPI-1047") {
        return DbError::new(DbErrorKind::ClientMissing, CLIENT_HELP);
    }
    let kind = match ora_code(err) {
        Some(955) | Some(1408) | Some(1430) | Some(2260) | Some(2261) | Some(2264) | Some(2275) => {
            DbErrorKind::AlreadyExists
        }
        Some(942) | Some(12003) | Some(1418) => DbErrorKind::DoesNotExist,
        Some(1) => DbErrorKind::UniqueViolation,
        Some(1017) | Some(28000) | Some(28001) => DbErrorKind::Auth,
        Some(16000) | Some(1552) => DbErrorKind::ReadOnly,
        Some(54) | Some(30006) | Some(4021) => DbErrorKind::Busy,
        Some(12154) | Some(12514) | Some(12541) | Some(12543) | Some(12170) | Some(3113)
        | Some(3114) | Some(3135) | Some(12537) | Some(12545) | Some(28547) => {
            DbErrorKind::Connection
        }
        _ => DbErrorKind::Other,
    };
    let hint = match kind {
        DbErrorKind::Auth => ": check the user and PATHFINDER_DB_PASSWORD",
        DbErrorKind::Connection => {
            ": check the connect string, the listener and TNS_ADMIN (wallet) settings"
        }
        _ => "",
    };
    DbError::new(kind, format!("Oracle {target}: {text}{hint}"))
}

pub struct OracleConnection {
    conn: oracle::Connection,
    target: String,
    /// DBMS_LOCK handles held by this session, by lock name.
    held_locks: Vec<(String, String)>,
}

fn as_to_sql(v: &Value) -> Box<dyn ToSql + '_> {
    match v {
        Value::Null => Box::new(None::<String>),
        Value::Int(i) => Box::new(*i),
        Value::Float(f) => Box::new(*f),
        Value::Text(s) => Box::new(s.as_str()),
        Value::Blob(b) | Value::TextBytes(b) => Box::new(b.as_slice()),
    }
}

fn read_row(row: &oracle::Row) -> Result<Row, oracle::Error> {
    let mut out = Vec::with_capacity(row.column_info().len());
    for (i, info) in row.column_info().iter().enumerate() {
        let text: Option<String> = row.get(i)?;
        out.push(match (text, info.oracle_type()) {
            (None, _) => Value::Null,
            (Some(t), OracleType::Number(_, _) | OracleType::Int64 | OracleType::UInt64) => t
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| t.parse::<f64>().map(Value::Float))
                .unwrap_or(Value::Text(t)),
            (
                Some(t),
                OracleType::BinaryDouble | OracleType::BinaryFloat | OracleType::Float(_),
            ) => t.parse::<f64>().map(Value::Float).unwrap_or(Value::Text(t)),
            (Some(t), _) => Value::Text(t),
        });
    }
    Ok(out)
}

impl OracleConnection {
    fn is_ddl(sql: &str) -> Option<bool> {
        let head = sql.trim_start().to_ascii_uppercase();
        if head.starts_with("CREATE") || head.starts_with("ALTER") {
            Some(true)
        } else if head.starts_with("DROP") {
            Some(false)
        } else {
            None
        }
    }
}

impl Connection for OracleConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Oracle
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let sql = bind_placeholders(sql, Dialect::Oracle);
        let boxed: Vec<Box<dyn ToSql + '_>> = params.iter().map(as_to_sql).collect();
        let refs: Vec<&dyn ToSql> = boxed.iter().map(|b| b.as_ref()).collect();
        let stmt = self
            .conn
            .execute(&sql, &refs)
            .map_err(|e| classify(&e, &self.target))?;
        stmt.row_count().map_err(|e| classify(&e, &self.target))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = bind_placeholders(sql, Dialect::Oracle);
        let boxed: Vec<Box<dyn ToSql + '_>> = params.iter().map(as_to_sql).collect();
        let refs: Vec<&dyn ToSql> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self
            .conn
            .query(&sql, &refs)
            .map_err(|e| classify(&e, &self.target))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| classify(&e, &self.target))?;
            out.push(read_row(&row).map_err(|e| classify(&e, &self.target))?);
        }
        Ok(out)
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        for stmt in statements {
            match self.conn.execute(&stmt.sql, &[]) {
                Ok(_) => {}
                Err(e) => {
                    let code = ora_code(&e).unwrap_or(0);
                    let done = match Self::is_ddl(&stmt.sql) {
                        Some(true) => ALREADY_DONE_CREATE.contains(&code),
                        Some(false) => ALREADY_DONE_DROP.contains(&code),
                        None => false,
                    };
                    if !done {
                        let first_line = stmt.sql.lines().next().unwrap_or("");
                        return Err(DbError::new(
                            classify(&e, &self.target).kind,
                            format!("{} (in: {first_line})", classify(&e, &self.target).message),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        // Oracle starts a transaction implicitly with the first DML.
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.conn.commit().map_err(|e| classify(&e, &self.target))
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.conn.rollback().map_err(|e| classify(&e, &self.target))
    }

    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        if self.request_lock(name, 86_400)? {
            Ok(())
        } else {
            Err(DbError::new(
                DbErrorKind::Busy,
                format!(
                    "Oracle {}: timed out waiting for the lock {name}",
                    self.target
                ),
            ))
        }
    }

    fn try_lock(&mut self, name: &Lock<'_>) -> Result<bool, DbError> {
        self.request_lock(name, 0)
    }

    fn unlock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        let name = name.to_string();
        let Some(pos) = self.held_locks.iter().position(|(k, _)| *k == name) else {
            return Ok(());
        };
        let (_, handle) = self.held_locks.remove(pos);
        self.conn
            .execute(
                "DECLARE r INTEGER; BEGIN r := DBMS_LOCK.RELEASE(:1); END;",
                &[&handle],
            )
            .map_err(|e| classify(&e, &self.target))?;
        Ok(())
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let rows = self.query(
            "SELECT table_name, column_name, \
                    LOWER(data_type || CASE \
                        WHEN data_type IN ('VARCHAR2', 'CHAR', 'NVARCHAR2') THEN '(' || char_length || ')' \
                        WHEN data_type = 'NUMBER' AND data_precision IS NOT NULL \
                            THEN '(' || data_precision || ',' || NVL(data_scale, 0) || ')' \
                        END), \
                    CASE nullable WHEN 'Y' THEN 1 ELSE 0 END, column_id \
             FROM user_tab_columns WHERE SUBSTR(table_name, 1, LENGTH(?)) = ? \
             ORDER BY table_name, column_id",
            &[
                Value::Text(prefix.to_ascii_uppercase()),
                Value::Text(prefix.to_ascii_uppercase()),
            ],
        )?;
        Ok(rows.iter().map(CatalogColumn::from_row).collect())
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = self.query(
            "SELECT i.table_name, i.index_name FROM user_indexes i \
             WHERE SUBSTR(i.table_name, 1, LENGTH(?)) = ? \
               AND NOT EXISTS (SELECT 1 FROM user_constraints c WHERE c.index_name = i.index_name) \
               AND i.index_type <> 'LOB' \
             ORDER BY 1, 2",
            &[
                Value::Text(prefix.to_ascii_uppercase()),
                Value::Text(prefix.to_ascii_uppercase()),
            ],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r[0].to_text().to_ascii_lowercase(),
                    r[1].to_text().to_ascii_lowercase(),
                )
            })
            .collect())
    }
}

impl OracleConnection {
    /// DBMS_LOCK in exclusive mode, held by the session (not released at commit,
    /// since every DDL commits); the server frees it when the session dies.
    fn request_lock(&mut self, lock: &Lock<'_>, timeout_secs: i64) -> Result<bool, DbError> {
        let name = lock.to_string();
        let stmt = self
            .conn
            .execute_named(
                "DECLARE h VARCHAR2(128); BEGIN DBMS_LOCK.ALLOCATE_UNIQUE(:name, h); \
                 :result := DBMS_LOCK.REQUEST(h, DBMS_LOCK.X_MODE, :timeout, FALSE); :handle := h; END;",
                &[
                    ("name", &name),
                    ("timeout", &timeout_secs),
                    ("result", &OracleType::Number(0, 0)),
                    ("handle", &OracleType::Varchar2(128)),
                ],
            )
            .map_err(|e| classify(&e, &self.target))?;
        let result: i64 = stmt
            .bind_value("result")
            .map_err(|e| classify(&e, &self.target))?;
        let handle: String = stmt
            .bind_value("handle")
            .map_err(|e| classify(&e, &self.target))?;
        match result {
            // 0: granted; 4: this session already holds it.
            0 | 4 => {
                if !self.held_locks.iter().any(|(k, _)| *k == name) {
                    self.held_locks.push((name, handle));
                }
                Ok(true)
            }
            1 => Ok(false),
            other => Err(DbError::other(format!(
                "Oracle {}: DBMS_LOCK.REQUEST for {lock} returned {other}",
                self.target
            ))),
        }
    }
}

impl OracleTarget {
    /// The most connections the pool hands out (a cap for --jobs).
    pub fn max_connections(&self) -> usize {
        self.pool_config.max.max(self.pool_config.min).max(1) as usize
    }
}
