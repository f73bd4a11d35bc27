//! Database access: one connection type per backend behind one small interface.
//!
//! The rest of the code asks for "a connection for the system tables" and "a
//! connection for tenant X". On PostgreSQL and Oracle these are the same
//! connection; on SQLite each tenant lives in a database file of its own beside
//! the main file (DESIGN.md §8), so the tenant connection opens that file.

pub mod oracle;
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::dialect::Dialect;
use crate::render::Statement;
use crate::tenant::TenantKey;

/// A bind value. Values always travel as bind variables, never inside SQL text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as text, for display.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Text(s) => s.clone(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        s.map(Value::Text).unwrap_or(Value::Null)
    }
}

pub type Row = Vec<Value>;

/// What went wrong, as far as the caller needs to decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The object to create exists already (Oracle ORA-00955 and friends).
    AlreadyExists,
    /// The object to drop or use does not exist (ORA-00942).
    DoesNotExist,
    /// A unique or primary key constraint was violated.
    UniqueViolation,
    /// The server cannot be reached or the connection was lost.
    Connection,
    /// Wrong user name or password.
    Auth,
    /// The database refuses writes (read-only file or transaction).
    ReadOnly,
    /// Another process holds the lock and the wait timed out.
    Busy,
    /// The Oracle client library is not installed (DPI-1047).
    ClientMissing,
    Other,
}

/// A database error, already on one line, with passwords removed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        DbError {
            kind,
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        DbError::new(DbErrorKind::Other, message)
    }
}

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CatalogColumn {
    pub table: String,
    pub column: String,
    /// The type in the database's own words (lower case).
    pub data_type: String,
    pub nullable: bool,
    pub position: i64,
}

impl CatalogColumn {
    /// From a catalog row (table, column, type, nullable as 1/0, position):
    /// every backend's catalog query returns this shape.
    pub fn from_row(r: &Row) -> Self {
        CatalogColumn {
            table: r[0].to_text().to_ascii_lowercase(),
            column: r[1].to_text().to_ascii_lowercase(),
            data_type: r[2].to_text().to_lowercase(),
            nullable: r[3].as_i64() == Some(1),
            position: r[4].as_i64().unwrap_or(0),
        }
    }
}

/// The interface every backend implements. SQL given to `execute` and `query`
/// uses `?` placeholders; each backend turns them into its own syntax.
pub trait Connection: Send {
    fn dialect(&self) -> Dialect;

    /// Runs one statement with bind values; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;

    /// Runs a query with bind values and returns all rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;

    /// Runs rendered statements (DDL) in order. On Oracle, where every DDL
    /// commits, a statement whose object already exists (CREATE, ADD) or is
    /// already gone (DROP) counts as done, so a killed run can simply be repeated.
    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError>;

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE`, which takes the write lock).
    fn begin(&mut self) -> Result<(), DbError>;
    fn commit(&mut self) -> Result<(), DbError>;
    fn rollback(&mut self) -> Result<(), DbError>;

    /// Serializes work on one tenant (or the system schema) across processes.
    /// PostgreSQL: a transaction advisory lock (call inside a transaction;
    /// released at commit or when the connection dies). Oracle: a DBMS_LOCK
    /// session lock, released by `unlock` or when the session dies. SQLite: the
    /// database file's own write lock, taken by `begin`, so nothing to do here.
    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError>;

    /// Like `lock` but gives up at once; false if another process holds it.
    fn try_lock(&mut self, name: &Lock<'_>) -> Result<bool, DbError>;

    fn unlock(&mut self, name: &Lock<'_>) -> Result<(), DbError>;

    /// True once the connection is lost; the session should then be replaced.
    fn is_closed(&self) -> bool {
        false
    }

    /// Every column of every table and view whose name starts with `prefix`.
    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError>;

    /// (table, index) for every index on tables whose name starts with `prefix`,
    /// named by us (not the implicit ones behind keys).
    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError>;
}

/// What a lock protects. Tenants are locked by username: it is what every
/// command is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    Tenant(&'a str),
    System,
}

impl fmt::Display for Lock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lock::Tenant(username) => write!(f, "pathfinder-db tenant {username}"),
            Lock::System => f.write_str("pathfinder-db system schema"),
        }
    }
}

/// Rewrites `?` placeholders (outside string literals) into `dialect`'s syntax.
pub fn bind_placeholders(sql: &str, dialect: Dialect) -> String {
    if dialect == Dialect::Sqlite {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut in_string = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => {
                n += 1;
                out.push_str(&dialect.placeholder(n));
            }
            _ => out.push(c),
        }
    }
    out
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// What the configured URL points at.
#[derive(Clone)]
enum Target {
    Sqlite {
        main: PathBuf,
        tenant_dir: PathBuf,
        busy_timeout_ms: u64,
    },
    Postgres(Box<::postgres::Config>),
    Oracle(oracle::OracleTarget),
}

/// An opened database: the means to get connections. Cheap to share between
/// worker threads (`&Database` is `Sync`).
pub struct Database {
    target: Target,
    dialect: Dialect,
    display: String,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({})", self.display)
    }
}

/// The password for a URL without one: `PATHFINDER_DB_PASSWORD`, else a prompt
/// when stdin is a terminal, else none.
pub fn password_from_env_or_prompt(what: &str) -> Option<String> {
    if let Ok(pw) = std::env::var("PATHFINDER_DB_PASSWORD") {
        return Some(pw);
    }
    use is_terminal::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        return dialoguer::Password::new()
            .with_prompt(format!("Password for {what}"))
            .allow_empty_password(true)
            .interact()
            .ok();
    }
    None
}

impl Database {
    /// Parses the configured URL. Does not connect yet.
    pub fn open(config: &Config) -> anyhow::Result<Database> {
        let dialect = config.database_dialect()?;
        let url = config.database_url.as_str();
        let target = match dialect {
            Dialect::Sqlite => {
                let main = sqlite::path_of_url(url)?;
                let tenant_dir = sqlite::tenant_dir_for(&main);
                Target::Sqlite {
                    main,
                    tenant_dir,
                    busy_timeout_ms: config.sqlite_busy_timeout_ms,
                }
            }
            Dialect::Postgres => Target::Postgres(Box::new(postgres::config_of_url(url)?)),
            Dialect::Oracle => Target::Oracle(oracle::OracleTarget::from_url(url, &config.pool)?),
        };
        Ok(Database {
            target,
            dialect,
            display: redact_url(url),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL as it may be shown (no password).
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// False for a SQLite file that does not exist yet (servers: always true).
    pub fn exists(&self) -> bool {
        match &self.target {
            Target::Sqlite { main, .. } => main.exists(),
            _ => true,
        }
    }

    /// Where a SQLite tenant's file lives (None on server databases).
    pub fn sqlite_tenant_file(&self, key: &TenantKey) -> Option<PathBuf> {
        match &self.target {
            Target::Sqlite { tenant_dir, .. } => Some(tenant_dir.join(format!("{key}.db"))),
            _ => None,
        }
    }

    /// A new session: one connection to the system tables, plus the means to
    /// reach tenants through it.
    pub fn connect(&self) -> Result<Session<'_>, DbError> {
        let system: Box<dyn Connection> = match &self.target {
            Target::Sqlite {
                main,
                busy_timeout_ms,
                ..
            } => Box::new(sqlite::SqliteConnection::open(main, *busy_timeout_ms)?),
            Target::Postgres(cfg) => Box::new(postgres::PgConnection::connect(cfg)?),
            Target::Oracle(target) => Box::new(target.connect()?),
        };
        Ok(Session { db: self, system })
    }
}

/// One worker's connection(s).
pub struct Session<'db> {
    db: &'db Database,
    system: Box<dyn Connection>,
}

/// A connection to one tenant's objects: the session's own connection on
/// PostgreSQL and Oracle, the tenant's file on SQLite.
pub enum TenantConnection<'s> {
    Shared(&'s mut dyn Connection),
    Own(Box<dyn Connection>),
}

impl<'s> std::ops::Deref for TenantConnection<'s> {
    type Target = dyn Connection + 's;
    fn deref(&self) -> &Self::Target {
        match self {
            TenantConnection::Shared(c) => &**c,
            TenantConnection::Own(c) => c.as_ref(),
        }
    }
}

impl std::ops::DerefMut for TenantConnection<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            TenantConnection::Shared(c) => &mut **c,
            TenantConnection::Own(c) => c.as_mut(),
        }
    }
}

impl<'db> Session<'db> {
    pub fn dialect(&self) -> Dialect {
        self.db.dialect
    }

    pub fn database(&self) -> &'db Database {
        self.db
    }

    pub fn system(&mut self) -> &mut dyn Connection {
        self.system.as_mut()
    }

    /// Whether the connection was lost (a worker then opens a new session).
    pub fn is_broken(&self) -> bool {
        self.system.is_closed()
    }

    /// True when the tenant's objects live apart from the system tables (SQLite).
    pub fn tenants_apart(&self) -> bool {
        matches!(self.db.target, Target::Sqlite { .. })
    }

    /// A connection for `key`'s objects. On SQLite, `create` decides whether a
    /// missing tenant file is created or reported as absent (None).
    pub fn tenant(
        &mut self,
        key: &TenantKey,
        create: bool,
    ) -> Result<Option<TenantConnection<'_>>, DbError> {
        match &self.db.target {
            Target::Sqlite {
                tenant_dir,
                busy_timeout_ms,
                ..
            } => {
                let path = tenant_dir.join(format!("{key}.db"));
                if !create && !path.exists() {
                    return Ok(None);
                }
                if create {
                    std::fs::create_dir_all(tenant_dir).map_err(|e| {
                        DbError::new(
                            DbErrorKind::ReadOnly,
                            format!(
                                "cannot create the tenant directory {}: {e}",
                                tenant_dir.display()
                            ),
                        )
                    })?;
                }
                let conn = sqlite::SqliteConnection::open(&path, *busy_timeout_ms)?;
                Ok(Some(TenantConnection::Own(Box::new(conn))))
            }
            _ => Ok(Some(TenantConnection::Shared(self.system.as_mut()))),
        }
    }
}
