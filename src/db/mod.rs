//! Database access: one connection type per backend behind one small interface.
//!
//! The rest of the code asks for "a connection for the system tables" and "a
//! connection for tenant X". On PostgreSQL and Oracle these are the same
//! connection; on SQLite each tenant lives in a database file of its own beside
//! the main file (one file with thousands of tenants slows down quadratically,
//! since SQLite re-reads its whole schema), so the tenant connection opens that file.

pub mod dialect;
pub mod oracle;
pub mod pgpass;
pub mod postgres;
pub mod redact;
pub mod sqlite;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::db::dialect::Dialect;
use crate::schema::render::Statement;
use crate::schema::tenant::TenantKey;

/// A bind value. Values always travel as bind variables, never inside SQL text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    /// A BLOB (SQLite's tables accept one in any column).
    #[serde(serialize_with = "serialize_bytes")]
    Blob(Vec<u8>),
    /// Text that is not valid UTF-8 (SQLite stores whatever it is given).
    #[serde(serialize_with = "serialize_bytes")]
    TextBytes(Vec<u8>),
}

fn serialize_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
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
            Value::Blob(b) | Value::TextBytes(b) => String::from_utf8_lossy(b).into_owned(),
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
impl From<Option<&str>> for Value {
    fn from(s: Option<&str>) -> Self {
        s.map(|s| Value::Text(s.to_string())).unwrap_or(Value::Null)
    }
}
impl From<Option<i64>> for Value {
    fn from(i: Option<i64>) -> Self {
        i.map(Value::Int).unwrap_or(Value::Null)
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
    /// The file is not a database, or a damaged one (SQLite).
    Corrupt,
    Other,
}

/// Whether `e` (or a cause of it) says a database cannot be reached, or
/// was lost (a server down, a connection cut, a wrong password), as opposed
/// to a step that failed.
pub fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<DbError>()
            .is_some_and(|d| matches!(d.kind, DbErrorKind::Connection | DbErrorKind::Auth))
    })
}

/// A database error, already on one line, with passwords removed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    /// The message is put on one line and any password in it is redacted.
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        DbError {
            kind,
            message: crate::db::redact::redact(
                &message.split_whitespace().collect::<Vec<_>>().join(" "),
            ),
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
    /// The default expression as the catalog keeps it.
    pub default: Option<String>,
}

impl CatalogColumn {
    /// From a catalog row (table, column, type, nullable as 1/0, position,
    /// default): every backend's catalog query returns this shape.
    pub fn from_row(r: &Row) -> Self {
        CatalogColumn {
            table: r[0].to_text().to_ascii_lowercase(),
            column: r[1].to_text().to_ascii_lowercase(),
            data_type: r[2].to_text().to_lowercase(),
            nullable: r[3].as_i64() == Some(1),
            position: r[4].as_i64().unwrap_or(0),
            default: r
                .get(5)
                .filter(|v| !v.is_null())
                .map(Value::to_text)
                .filter(|d| !d.trim().is_empty()),
        }
    }
}

/// What a [`CatalogConstraint`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    ForeignKey,
    Check,
    /// An index we named (not one behind a key).
    Index,
}

impl ConstraintKind {
    /// From the one-letter code the catalog queries return: p, u, f (Oracle:
    /// r), c, i.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code.trim().to_ascii_lowercase().as_str() {
            "p" => ConstraintKind::PrimaryKey,
            "u" => ConstraintKind::Unique,
            "f" | "r" => ConstraintKind::ForeignKey,
            "c" => ConstraintKind::Check,
            "i" => ConstraintKind::Index,
            _ => return None,
        })
    }
}

/// A key, check or index of a table, with its columns in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogConstraint {
    pub table: String,
    pub name: String,
    pub kind: ConstraintKind,
    /// The key's or index's columns in order; the columns a check reads.
    pub columns: Vec<String>,
    /// A foreign key's parent table.
    pub references: Option<String>,
    /// A foreign key's ON DELETE action (`CASCADE`, `NO ACTION`, ...).
    pub on_delete: Option<String>,
}

/// Groups catalog rows (table, name, kind code, column, position, parent
/// table, ON DELETE), ordered by table, name and position, into one
/// constraint each. Names come back in lower case (Oracle's are upper);
/// rows of unknown kinds are skipped.
pub fn constraints_from_rows(rows: &[Row]) -> Vec<CatalogConstraint> {
    let mut out: Vec<CatalogConstraint> = Vec::new();
    let mut group = ConstraintGroup::default();
    for r in rows {
        out.extend(group.push(r));
    }
    out.extend(group.finish());
    out
}

/// [`constraints_from_rows`] one row at a time, for rows that stream in: a
/// constraint is handed back once a row of another one (or the end) shows
/// that it is complete.
#[derive(Debug, Default)]
pub struct ConstraintGroup {
    current: Option<CatalogConstraint>,
}

impl ConstraintGroup {
    /// Adds a row; returns the constraint it completed, if any.
    pub fn push(&mut self, r: &Row) -> Option<CatalogConstraint> {
        let text = |v: &Value| (!v.is_null()).then(|| v.to_text());
        let kind = ConstraintKind::from_code(&r[2].to_text())?;
        let table = r[0].to_text().to_ascii_lowercase();
        let name = r[1].to_text().to_ascii_lowercase();
        let column = text(&r[3]).map(|c| c.trim().trim_matches('"').to_ascii_lowercase());
        match self.current.as_mut() {
            Some(last) if last.table == table && last.name == name && last.kind == kind => {
                last.columns.extend(column);
                None
            }
            _ => self.current.replace(CatalogConstraint {
                table,
                name,
                kind,
                columns: column.into_iter().collect(),
                references: r.get(5).and_then(text).map(|t| t.to_ascii_lowercase()),
                on_delete: r.get(6).and_then(text),
            }),
        }
    }

    /// The last constraint, once the rows ended.
    pub fn finish(&mut self) -> Option<CatalogConstraint> {
        self.current.take()
    }
}

/// One object of the catalog, as [`Connection::catalog_each`] hands them over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogItem {
    Column(CatalogColumn),
    /// (table, index), as [`Connection::indexes`] gives them.
    Index(String, String),
    Constraint(CatalogConstraint),
    /// (table, trigger): SQLite's value checks (other dialects check
    /// values with constraints and give none).
    Trigger(String, String),
}

/// Rows and bytes of one table, as the catalog reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub table: String,
    /// Exact where the backend counts (SQLite), else the optimizer's estimate
    /// from the last statistics gathering; None when never gathered.
    pub rows: Option<i64>,
    /// Bytes on disk, indexes and LOB segments included; None where the
    /// backend cannot say.
    pub bytes: Option<u64>,
}

/// A schema object as its creating statement (SQLite keeps them: adopt moves
/// a tenant's tables, indexes and triggers into the tenant's own file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Definition {
    /// `table`, `index` or `trigger`.
    pub kind: String,
    pub name: String,
    /// The table it belongs to (itself for a table).
    pub table: String,
    pub sql: String,
}

/// One preflight check (`doctor`): what was checked, whether it passed, what
/// was found, and the fix when it did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: &str, detail: impl Into<String>) -> Self {
        Check {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the catalog says about the application role and its access
/// ([`crate::security::grants`]): read in a few set-based queries for a whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessCatalog {
    pub role: RoleFacts,
    /// Every relation (and, on Oracle, stored unit) named `pf_...`, or the
    /// ones asked for.
    pub objects: Vec<ObjectAccess>,
    /// The row-level security policies on `pf_...` tables.
    pub policies: Vec<PolicyFacts>,
}

/// The application role itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoleFacts {
    pub exists: bool,
    /// PostgreSQL: superuser, or BYPASSRLS (row security does not apply).
    pub superuser: bool,
    pub bypass_rls: bool,
    /// A member of the role pathfinder-db connects as (the owner): it may
    /// act as the owner.
    pub member_of_owner: bool,
    /// Who gives it CREATE on the schema: `role` (granted to it), `PUBLIC`,
    /// or the name of a role it is a member of; empty when nobody.
    pub schema_create: Vec<String>,
    /// PostgreSQL: the same for CREATE on the database (it may create
    /// schemas: one named after the owner shadows the owner's tables).
    pub database_create: Vec<String>,
    /// PostgreSQL: the database's name, for the fixes named.
    pub database: String,
    /// PostgreSQL: the role pathfinder-db connects as may revoke on the
    /// database (it is, or acts as, its owner) and on the schema.
    pub may_revoke_database: bool,
    pub may_revoke_schema: bool,
    /// PostgreSQL: the roles that are members of the application role
    /// (directly or not): the logins the application actually uses.
    pub members: Vec<MemberFacts>,
    /// It owns the schema.
    pub owns_schema: bool,
    /// Objects of the schema it owns (any name), a few.
    pub owned: Vec<String>,
    /// The schema pathfinder-db works in (PostgreSQL), for the fixes named.
    pub schema: String,
    /// Oracle: system privileges granted to the role (CREATE ..., ... ANY
    /// ..., EXEMPT ACCESS POLICY).
    pub system_privileges: Vec<String>,
    /// PostgreSQL: (role, predefined role) for the role and its members
    /// that are members of a predefined role reaching past grants
    /// (`pg_write_all_data`, `pg_read_server_files`, ...).
    pub predefined: Vec<(String, String)>,
}

/// A role that is a member of the application role (a login the
/// application connects as) and what escapes the application's limits
/// through it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemberFacts {
    pub name: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    /// A member of the owner role: it may act as the owner.
    pub member_of_owner: bool,
    /// CREATE granted to it directly on the database, on the schema.
    pub database_create: bool,
    pub schema_create: bool,
}

/// One object and what the application role holds on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectAccess {
    /// Lower case (as our templates write it).
    pub name: String,
    /// `table`, `view`, `materialized view`, `sequence`, `package`,
    /// `function`, `procedure` or `other`.
    pub kind: String,
    pub privileges: Vec<HeldPrivilege>,
    /// PostgreSQL: row-level security enabled (`relrowsecurity`) and forced
    /// on the owner too (`relforcerowsecurity`). Oracle: false (its
    /// policies say whether they are enabled).
    pub row_security: bool,
    pub row_security_forced: bool,
    /// Owned by the application role.
    pub owned_by_role: bool,
}

/// A privilege the application role holds on an object, and through whom.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct HeldPrivilege {
    /// Upper case: `SELECT`, `INSERT`, `TRUNCATE`, `EXECUTE`, ...
    pub privilege: String,
    /// `role` (granted to the role itself), `PUBLIC`, the name of
    /// another role it is a member of, or `member:<name>` (granted to a
    /// role that is a member of it: a login the application uses).
    pub via: String,
    /// WITH GRANT OPTION: it may pass the privilege on.
    pub grantable: bool,
    /// PostgreSQL: a column privilege (`GRANT UPDATE (col) ON ...`), on
    /// this column (quoted where needed); None: on the whole object.
    pub column: Option<String>,
}

/// A row-level security policy (PostgreSQL) or VPD policy (Oracle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFacts {
    pub table: String,
    pub name: String,
    /// PostgreSQL: the command (`ALL`, `SELECT`, ...). Oracle: the
    /// statement types it applies to (`SELECT, INSERT, UPDATE, DELETE`).
    pub command: String,
    /// PostgreSQL: permissive (policies are OR-ed) rather than restrictive.
    /// Oracle: always false (its policies are AND-ed).
    pub permissive: bool,
    pub enabled: bool,
    /// PostgreSQL: the USING and WITH CHECK expressions as the catalog
    /// prints them, and the roles (`public` for all). Oracle: the policy
    /// function in `using`.
    pub using: Option<String>,
    pub check: Option<String>,
    pub roles: Vec<String>,
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
    /// session lock, released by `unlock` or when the session dies. SQLite: an
    /// OS lock on a lock file per tenant, released by `unlock` or when the
    /// process dies (the system schema needs none: `begin` takes the file's
    /// write lock).
    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError>;

    /// Like `lock` but gives up at once; false if another process holds it.
    fn try_lock(&mut self, name: &Lock<'_>) -> Result<bool, DbError>;

    fn unlock(&mut self, name: &Lock<'_>) -> Result<(), DbError>;

    /// Keeps `name`, which the caller holds already (`lock` in the open
    /// transaction), held by this session across the commits that follow,
    /// until [`Connection::release_held`] or the session's end, so that work
    /// in many transactions need not wait for it again after each commit
    /// ([`Connection::holds`] says so). False where the backend has no such
    /// lock (the caller goes on taking `lock` in every transaction): only
    /// PostgreSQL's transaction-level locks need it.
    fn hold(&mut self, _name: &Lock<'_>) -> Result<bool, DbError> {
        Ok(false)
    }

    /// Whether this session holds `name` by [`Connection::hold`].
    fn holds(&self, _name: &Lock<'_>) -> bool {
        false
    }

    /// Ends [`Connection::hold`]; inside a transaction the transaction-level
    /// lock is taken first, so the name stays locked until it ends.
    fn release_held(&mut self, _name: &Lock<'_>) -> Result<(), DbError> {
        Ok(())
    }

    /// Like [`Connection::query`], for a statement the caller runs many
    /// times in a row with other binds (the batches of a sweep): PostgreSQL
    /// keeps the last few such statements prepared, so each run after the
    /// first costs one round trip and no parse. (Other statements on tenant
    /// tables are prepared each time: there are too many of them to keep.)
    fn query_repeated(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        self.query(sql, params)
    }

    /// Commits and opens the next transaction (PostgreSQL: one round trip).
    fn commit_and_begin(&mut self) -> Result<(), DbError> {
        self.commit()?;
        self.begin()
    }

    /// True once the connection is lost; the session should then be replaced.
    fn is_closed(&self) -> bool {
        false
    }

    /// Whether this is a member database's connection (which has no
    /// `pf_audit_log`: audit rows written there are staged).
    fn is_member(&self) -> bool {
        false
    }

    /// Notes that an audit row was staged on this connection (a server
    /// member's `pf_audit_stage`), for [`Connection::take_staged`].
    fn note_staged(&mut self) {}

    /// Whether audit rows were staged here since the last call: the tenant
    /// operation then copies them to the catalog's log once it has committed.
    fn take_staged(&mut self) -> bool {
        false
    }

    /// Erases, as far as the backend can, the bytes of rows of `table` that
    /// committed deletes and updates left in the database's files, and says
    /// what it did (None: the backend offers nothing beyond the commit).
    /// Call outside a transaction. `table` is a name of ours, never input.
    /// SQLite: deleted rows were overwritten as they went (`secure_delete` on
    /// every connection to the main file); the write-ahead log, which still
    /// holds earlier page images, is checkpointed and truncated. PostgreSQL:
    /// `VACUUM FULL` rewrites the table into a new file and drops the old one
    /// (a plain VACUUM leaves removed rows' bytes in the pages' free space),
    /// once no transaction from before the deletion can still see them.
    /// Oracle: nothing (a deleted row stays in its block until the space is
    /// reused, and in undo and redo).
    fn erase_freed(&mut self, _table: &str) -> Result<Option<String>, DbError> {
        Ok(None)
    }

    /// Runs a query and hands each row to `each` as it arrives, so an export of
    /// a large table never holds it in memory.
    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        for row in self.query(sql, params)? {
            each(row)?;
        }
        Ok(())
    }

    /// Bytes the tables whose name starts with `prefix` take (0 where the
    /// backend cannot say cheaply).
    fn table_bytes(&mut self, _prefix: &str) -> Result<u64, DbError> {
        Ok(0)
    }

    /// Keeps writers out of `tables` until the transaction ends, while readers
    /// go on: a copy taken now stays complete until the tables are dropped or
    /// the rows deleted. SQLite: `begin` already took the file's write lock.
    fn freeze_tables(&mut self, _tables: &[String]) -> Result<(), DbError> {
        Ok(())
    }

    /// Undoes [`Connection::freeze_tables`] where it outlives the transaction
    /// (Oracle, where it must survive the commits every DDL makes).
    fn thaw_tables(&mut self, _tables: &[String]) -> Result<(), DbError> {
        Ok(())
    }

    /// Rows and bytes of every table (and materialized view) whose name starts
    /// with `prefix`, from one catalog query, so a fleet costs one round trip
    /// however many tables it has. The default knows the tables but no figures.
    fn table_stats(&mut self, prefix: &str) -> Result<Vec<TableStats>, DbError> {
        let mut tables: Vec<String> = self.columns(prefix)?.into_iter().map(|c| c.table).collect();
        tables.dedup();
        Ok(tables
            .into_iter()
            .map(|table| TableStats {
                table,
                rows: None,
                bytes: None,
            })
            .collect())
    }

    /// Inserts `rows` into `table` (`columns` name each row's values, in
    /// order) with binds; returns how many. The default sends many rows per
    /// statement (a multi-row VALUES list, which PostgreSQL and SQLite take).
    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<u64, DbError> {
        // Below SQLite's and PostgreSQL's limits on binds per statement.
        const MAX_BINDS: usize = 999;
        let per_statement = (MAX_BINDS / columns.len().max(1)).max(1);
        let one = format!("({})", vec!["?"; columns.len()].join(", "));
        let mut inserted = 0;
        for chunk in rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES {}",
                columns.join(", "),
                vec![one.as_str(); chunk.len()].join(", ")
            );
            let binds: Vec<Value> = chunk.iter().flatten().cloned().collect();
            inserted += self.execute(&sql, &binds)?;
        }
        Ok(inserted)
    }

    /// Makes `pf_row_hash(value, ...)` callable in this connection's SQL
    /// where the database has no hash function of its own (SQLite): 64 bits
    /// of the SHA-256 of the values with their storage types, as an integer,
    /// the same for the same values on every connection. Elsewhere nothing:
    /// the server's own functions serve (PostgreSQL `md5`, Oracle
    /// `STANDARD_HASH`). Used by [`crate::tenants::fingerprint`].
    fn enable_row_hash(&mut self) -> Result<(), DbError> {
        Ok(())
    }

    /// Gathers the optimizer's statistics for `tables` (catalog names).
    fn analyze(&mut self, tables: &[String]) -> Result<(), DbError> {
        let statements: Vec<Statement> = tables
            .iter()
            .map(|t| Statement {
                sql: format!("ANALYZE {t}"),
                plsql: false,
            })
            .collect();
        self.run_statements(&statements)
    }

    /// The creating statements of the tables whose name starts with `prefix`
    /// and of their indexes and triggers, tables first (empty where the
    /// backend keeps none: only SQLite does).
    fn definitions(&mut self, _prefix: &str) -> Result<Vec<Definition>, DbError> {
        Ok(Vec::new())
    }

    /// The backend's own preflight checks for `doctor`: server version,
    /// settings and the privileges pathfinder-db needs.
    fn preflight(&mut self) -> Result<Vec<Check>, DbError> {
        Ok(Vec::new())
    }

    /// The application role that the objects pathfinder-db creates are
    /// granted to ([`crate::security::grants`]): the configured one, when it exists in
    /// this database (looked up once per connection). None where the backend
    /// has no roles (SQLite) or no such role exists (yet): then nothing is
    /// granted, and everything works as before.
    fn app_role(&mut self) -> Result<Option<String>, DbError> {
        Ok(None)
    }

    /// What the catalog says about `role` and its access to the objects
    /// named `pf_...` (`names`: only these, exactly). None where the backend
    /// has no roles (SQLite).
    fn access_catalog(
        &mut self,
        _role: &str,
        _names: Option<&[String]>,
    ) -> Result<Option<AccessCatalog>, DbError> {
        Ok(None)
    }

    /// Every column of every table and view whose name starts with `prefix`.
    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError>;

    /// (table, index) for every index on tables whose name starts with `prefix`,
    /// named by us (not the implicit ones behind keys).
    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError>;

    /// The primary, unique and foreign keys, the checks and our own indexes
    /// (with their columns in order) of the tables whose name starts with
    /// `prefix`: what `verify` compares beyond names. Empty by default.
    fn constraints(&mut self, _prefix: &str) -> Result<Vec<CatalogConstraint>, DbError> {
        Ok(Vec::new())
    }

    /// What [`Connection::columns`], [`Connection::indexes`] and
    /// [`Connection::constraints`] return for `prefix`, handed to `each` one
    /// object at a time as the catalog's rows arrive, so that reading a
    /// fleet's catalog never holds it whole. Constraints come as
    /// `constraints` orders them; the columns of a table may come in any
    /// order (each says its position), and tables in any order. The default
    /// asks the three in turn; a backend that can answer with fewer queries
    /// (or stream) does.
    fn catalog_each(
        &mut self,
        prefix: &str,
        each: &mut dyn FnMut(CatalogItem) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        for c in self.columns(prefix)? {
            each(CatalogItem::Column(c))?;
        }
        for (table, index) in self.indexes(prefix)? {
            each(CatalogItem::Index(table, index))?;
        }
        for k in self.constraints(prefix)? {
            each(CatalogItem::Constraint(k))?;
        }
        Ok(())
    }

    /// The names, sorted and each once, of the relations whose name starts
    /// with `prefix`: without `views`, the tables and materialized views
    /// [`Connection::table_stats`] would report (named as it names them);
    /// with `views`, every table and view [`Connection::columns`] would
    /// describe (named as it names them). One catalog query that reads
    /// neither figures nor columns, where the backend has one.
    fn table_names(&mut self, prefix: &str, views: bool) -> Result<Vec<String>, DbError> {
        let mut names: Vec<String> = if views {
            self.columns(prefix)?.into_iter().map(|c| c.table).collect()
        } else {
            self.table_stats(prefix)?
                .into_iter()
                .map(|t| t.table)
                .collect()
        };
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// What a lock protects. Tenants are locked by username: it is what every
/// command is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    Tenant(&'a str),
    System,
    /// Choosing a member for a new tenant ([`crate::fleet::placement`]).
    Placement,
}

impl fmt::Display for Lock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lock::Tenant(username) => write!(f, "pathfinder-db tenant {username}"),
            Lock::System => f.write_str("pathfinder-db system schema"),
            Lock::Placement => f.write_str("pathfinder-db placement"),
        }
    }
}

/// The configured application role of a connection and whether the
/// database has it, asked once: every tenant a worker provisions or migrates
/// would otherwise cost a catalog query.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppRoleSlot {
    name: Option<String>,
    exists: Option<bool>,
}

impl AppRoleSlot {
    pub(crate) fn new(name: Option<String>) -> Self {
        AppRoleSlot { name, exists: None }
    }

    /// The role when it exists; `exists` asks the catalog (the first time).
    pub(crate) fn get(
        &mut self,
        exists: impl FnOnce(&str) -> Result<bool, DbError>,
    ) -> Result<Option<String>, DbError> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        let found = match self.exists {
            Some(found) => found,
            None => {
                let found = exists(name)?;
                self.exists = Some(found);
                found
            }
        };
        Ok(found.then(|| name.clone()))
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

/// The URL (or connection string) with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    crate::db::redact::redact(url)
}

/// The password of this run, resolved at most once: `PATHFINDER_DB_PASSWORD`
/// (empty counts as unset), else a prompt when stdin and stderr are a
/// terminal, else none. Later connections reuse the answer, so `--jobs 8`
/// asks once.
pub fn password_from_env_or_prompt(what: &str) -> Option<String> {
    static PASSWORD: std::sync::Mutex<Option<Option<String>>> = std::sync::Mutex::new(None);
    let mut cached = PASSWORD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pw) = cached.as_ref() {
        return pw.clone();
    }
    let resolved = std::env::var("PATHFINDER_DB_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            use std::io::IsTerminal;
            (std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
                .then(|| {
                    dialoguer::Password::new()
                        .with_prompt(format!("Password for {}", redact_url(what)))
                        .allow_empty_password(true)
                        .interact()
                        .ok()
                })
                .flatten()
        });
    *cached = Some(resolved.clone());
    resolved
}

/// Makes the connections of a [`Database::with_connector`].
pub type Connector = std::sync::Arc<dyn Fn() -> Result<Box<dyn Connection>, DbError> + Send + Sync>;

/// What the configured URL points at.
#[derive(Clone)]
enum Target {
    Sqlite(sqlite::SqliteTarget),
    Postgres(Box<::postgres::Config>),
    Oracle(oracle::OracleTarget),
    /// Connections made by the caller (tests: one that records every
    /// statement a command sends, for a dialect without a server here).
    /// Tenants share the session's connection, as on the servers.
    Connector(Connector),
}

/// An opened database: the means to get connections. Cheap to share between
/// worker threads (`&Database` is `Sync`).
pub struct Database {
    target: Target,
    dialect: Dialect,
    display: String,
    /// The configured application role (`app_role`): the objects
    /// pathfinder-db creates are granted to it when it exists.
    app_role: Option<String>,
    /// Oracle: the pool settings member connections are made with.
    pool: crate::config::PoolConfig,
    /// Members' password files (`[members.NAME] password_file`), by name.
    member_password_files: std::collections::BTreeMap<String, std::path::PathBuf>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({})", self.display)
    }
}

impl Database {
    /// Parses the configured URL. Does not connect yet.
    pub fn open(config: &Config) -> anyhow::Result<Database> {
        let dialect = config.database_dialect()?;
        let url = config.database_url.as_str();
        let target = match dialect {
            Dialect::Sqlite => Target::Sqlite(sqlite::SqliteTarget::from_url(
                url,
                config.sqlite_busy_timeout_ms,
            )?),
            Dialect::Postgres => Target::Postgres(Box::new(postgres::config_of_url(url)?)),
            Dialect::Oracle => Target::Oracle(oracle::OracleTarget::from_url(url, &config.pool)?),
        };
        Ok(Database {
            target,
            dialect,
            display: redact_url(url),
            app_role: Some(config.app_role.clone()),
            pool: config.pool.clone(),
            member_password_files: config
                .members
                .iter()
                .filter_map(|(name, m)| Some((name.clone(), m.password_file.clone()?)))
                .collect(),
        })
    }

    /// A database whose connections `connect` makes, speaking `dialect`:
    /// the seam through which a test runs a command on a connection that
    /// records what it is sent. The command line never takes this path.
    pub fn with_connector(dialect: Dialect, connect: Connector) -> Database {
        Database {
            target: Target::Connector(connect),
            dialect,
            display: format!("{dialect} (connector)"),
            app_role: None,
            pool: crate::config::PoolConfig::default(),
            member_password_files: Default::default(),
        }
    }

    /// The configured application role (`app_role`), whether or not the
    /// database has it; None for a [`Database::with_connector`].
    pub fn app_role(&self) -> Option<&str> {
        self.app_role.as_deref()
    }

    /// The main file and the tenants' folder of a SQLite database (None on
    /// server databases).
    pub fn sqlite_paths(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        match &self.target {
            Target::Sqlite(t) => Some((t.main.as_path(), t.tenant_dir.as_path())),
            _ => None,
        }
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
            Target::Sqlite(t) => t.main.exists(),
            _ => true,
        }
    }

    /// Where a SQLite tenant's file lives (None on server databases).
    pub fn sqlite_tenant_file(&self, key: &TenantKey) -> Option<PathBuf> {
        match &self.target {
            Target::Sqlite(t) => Some(t.tenant_file(key)),
            _ => None,
        }
    }

    /// Refuses to go on where a write would fail half-way or leave debris: a
    /// read-only SQLite file, or one still in the folder layout of the first
    /// release. Called before the first write of a run.
    pub fn check_writable(&self) -> Result<(), DbError> {
        match &self.target {
            Target::Sqlite(t) => t.check_writable(),
            _ => Ok(()),
        }
    }

    /// A new session: one connection to the system tables, plus the means to
    /// reach tenants through it.
    pub fn connect(&self) -> Result<Session<'_>, DbError> {
        self.connect_as(false)
    }

    /// A session that never writes: on SQLite a read-only file is opened
    /// without leaving read-only `-shm`/`-wal` files behind.
    pub fn connect_read_only(&self) -> Result<Session<'_>, DbError> {
        self.connect_as(true)
    }

    /// [`Database::connect_read_only`] when `read_only` (a dry run), else
    /// [`Database::connect`].
    pub fn connect_as(&self, read_only: bool) -> Result<Session<'_>, DbError> {
        let system: Box<dyn Connection> = match &self.target {
            Target::Sqlite(t) => Box::new(t.open_main(read_only)?),
            Target::Postgres(cfg) => {
                Box::new(postgres::PgConnection::connect(cfg)?.with_app_role(self.app_role.clone()))
            }
            Target::Oracle(target) => {
                Box::new(target.connect()?.with_app_role(self.app_role.clone()))
            }
            Target::Connector(connect) => connect()?,
        };
        Ok(Session {
            db: self,
            system,
            read_only,
            members: None,
        })
    }

    /// Opens a connection to member `name` (stored URL `url`), of this
    /// database's dialect. SQLite members are folders: nothing to open.
    pub fn connect_member(&self, name: &str, url: &str) -> Result<Box<dyn Connection>, DbError> {
        let in_member = |e: DbError| {
            DbError::new(
                e.kind,
                format!("member {name} ({}): {}", redact_url(url), e.message),
            )
        };
        let password = self
            .member_password(name)
            .map_err(|e| DbError::other(format!("member {name}: {e}")))?;
        match self.dialect {
            Dialect::Postgres => {
                let cfg = postgres::config_with_password(url, password.as_deref().map(|p| &**p))
                    .map_err(|e| DbError::other(format!("member {name}: {e}")))?;
                Ok(Box::new(
                    postgres::PgConnection::connect_member(&cfg, name)
                        .map_err(in_member)?
                        .with_app_role(self.app_role.clone()),
                ))
            }
            Dialect::Oracle => {
                let target = oracle::OracleTarget::member_from_url(
                    url,
                    &self.pool,
                    password.as_deref().map(|p| &**p),
                )
                .map_err(|e| DbError::other(format!("member {name}: {e}")))?;
                Ok(Box::new(
                    target
                        .connect()
                        .map_err(in_member)?
                        .with_app_role(self.app_role.clone())
                        .as_member(),
                ))
            }
            Dialect::Sqlite => Err(DbError::other(format!(
                "member {name} is a SQLite folder: its tenants' files are opened one by one"
            ))),
        }
    }

    /// Member `name`'s password: its environment variable
    /// (`PATHFINDER_DATABASE_<NAME>_PASSWORD`), else the file its
    /// configuration entry names (owner-only, the first line). None: the
    /// driver's own ways (`~/.pgpass`, trust, the Oracle wallet).
    fn member_password(
        &self,
        name: &str,
    ) -> Result<Option<zeroize::Zeroizing<String>>, crate::error::UsageError> {
        if let Ok(pw) = std::env::var(crate::fleet::members::password_env(name))
            && !pw.is_empty()
        {
            return Ok(Some(zeroize::Zeroizing::new(pw)));
        }
        let Some(path) = self.member_password_files.get(name) else {
            return Ok(None);
        };
        // The caller names the member.
        let text = crate::config::read_private_file(path, "password file")?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(crate::error::UsageError::new(format!(
                "password file {} is empty: put the password on its first line",
                path.display()
            )));
        }
        Ok(Some(zeroize::Zeroizing::new(line.to_string())))
    }

    /// The folder of SQLite member `url` as a target sharing this main file.
    fn sqlite_member(&self, url: &str) -> Option<sqlite::SqliteTarget> {
        match &self.target {
            Target::Sqlite(t) => Some(t.with_tenant_dir(sqlite::member_folder(url))),
            _ => None,
        }
    }

    /// SQLite member `name`'s folder as a target, when the folder is there.
    /// A missing folder is a member that cannot be reached (its disk not
    /// mounted, say), never one to create again: a tenant provisioned into a
    /// new empty folder would land on the wrong disk, and its neighbours
    /// would look lost.
    fn reachable_sqlite_member(
        &self,
        name: &str,
        url: &str,
    ) -> Result<sqlite::SqliteTarget, DbError> {
        let target = self.sqlite_member(url).expect("a SQLite database");
        sqlite::member_folder_present(name, &target.tenant_dir)?;
        Ok(target)
    }

    /// How many sessions may work at once: `requested`, or fewer when the
    /// server would refuse more connections (PostgreSQL's max_connections and
    /// role and database limits, the Oracle pool's maximum). The note says why
    /// it was lowered.
    pub fn cap_jobs(&self, requested: usize) -> Result<(usize, Option<String>), DbError> {
        let allowed = match &self.target {
            Target::Sqlite(_) => None,
            Target::Postgres(_) => {
                let mut session = self.connect_read_only()?;
                postgres::free_connections(session.system())?
            }
            Target::Oracle(t) => Some(t.max_connections()),
            Target::Connector(_) => None,
        };
        Ok(match allowed {
            Some(free) if requested > free.max(1) => (
                free.max(1),
                Some(format!(
                    "--jobs {requested} lowered to {}: the database accepts no more connections",
                    free.max(1)
                )),
            ),
            _ => (requested, None),
        })
    }
}

/// How a tenant's objects are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create them if missing (provisioning): on SQLite the file is created.
    Create,
    /// They must exist already: a missing SQLite file is reported as None,
    /// never created.
    Existing,
}

/// One worker's connection(s).
pub struct Session<'db> {
    db: &'db Database,
    system: Box<dyn Connection>,
    read_only: bool,
    /// The member databases, when the deployment has any besides the
    /// catalog; read from the catalog on first need (None: not yet).
    members: Option<Option<Members>>,
}

/// A session's view of the members: their stored URLs, and the connections
/// opened to them so far (servers; SQLite members are folders).
struct Members {
    urls: HashMap<String, String>,
    conns: HashMap<String, Box<dyn Connection>>,
    /// Members that could not be reached in this session: their tenants
    /// fail at once with the same error instead of each waiting for a
    /// connect timeout.
    down: HashMap<String, DbError>,
}

/// A connection to one tenant's objects: the session's own connection on
/// PostgreSQL and Oracle (the catalog's, or a member's), the tenant's file on
/// SQLite.
pub enum TenantConnection<'s> {
    /// The catalog's connection: the tenant lives beside the registry.
    Catalog(&'s mut dyn Connection),
    /// The session's connection to the member (named) holding the tenant.
    Member(String, &'s mut dyn Connection),
    Own(Box<dyn Connection>),
}

impl TenantConnection<'_> {
    /// Whether the tenant's objects share the catalog's connection (and so
    /// its open transaction).
    pub fn is_catalog(&self) -> bool {
        matches!(self, TenantConnection::Catalog(_))
    }

    /// The member database holding the tenant, when it is a server member.
    pub fn member(&self) -> Option<&str> {
        match self {
            TenantConnection::Member(name, _) => Some(name),
            _ => None,
        }
    }
}

impl<'s> std::ops::Deref for TenantConnection<'s> {
    type Target = dyn Connection + 's;
    fn deref(&self) -> &Self::Target {
        match self {
            TenantConnection::Catalog(c) | TenantConnection::Member(_, c) => &**c,
            TenantConnection::Own(c) => c.as_ref(),
        }
    }
}

impl std::ops::DerefMut for TenantConnection<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            TenantConnection::Catalog(c) | TenantConnection::Member(_, c) => &mut **c,
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

    /// The session's connection to the catalog, kept when the session ends
    /// (a second connection to the catalog database, e.g. for `move`).
    pub fn into_system(self) -> Box<dyn Connection> {
        self.system
    }

    /// Whether the connection was lost (a worker then opens a new session).
    pub fn is_broken(&self) -> bool {
        self.system.is_closed()
    }

    /// True when the tenant's objects live apart from the system tables (SQLite).
    pub fn tenants_apart(&self) -> bool {
        matches!(self.db.target, Target::Sqlite(_))
    }

    /// True when the registry and a tenant's objects change in one transaction
    /// (PostgreSQL without members): a tenant operation is then all or
    /// nothing. Elsewhere it is staged: SQLite keeps the tenant in a file of
    /// its own, Oracle commits every DDL statement, and on a fleet the
    /// tenant's objects may be on another database than the registry.
    pub fn atomic_tenants(&mut self) -> Result<bool, DbError> {
        Ok(match self.db.target {
            Target::Postgres(_) => !self.has_members()?,
            Target::Connector(_) => self.db.dialect == Dialect::Postgres,
            Target::Sqlite(_) | Target::Oracle(_) => false,
        })
    }

    /// The members tenants may live on, read once per session (none on a
    /// deployment without them, or whose system schema predates them).
    fn members(&mut self) -> Result<Option<&mut Members>, DbError> {
        if self.members.is_none() {
            let remote = match &self.db.target {
                Target::Connector(_) => Vec::new(),
                _ => crate::fleet::members::remote(self.system.as_mut())?,
            };
            self.members = Some((!remote.is_empty()).then(|| Members {
                urls: remote.into_iter().collect(),
                conns: HashMap::new(),
                down: HashMap::new(),
            }));
        }
        Ok(self.members.as_mut().and_then(Option::as_mut))
    }

    /// The stored URL of member `name`, if the deployment has it.
    fn member_url(&mut self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self.members()?.and_then(|m| m.urls.get(name).cloned()))
    }

    /// A connection for `key`'s objects. On SQLite the tenant's file, checked
    /// to belong to this database's registry; with [`Open::Existing`] a missing
    /// file is None and never created.
    pub fn tenant(
        &mut self,
        key: &TenantKey,
        open: Open,
    ) -> Result<Option<TenantConnection<'_>>, DbError> {
        let member = self.member_of(key)?;
        match &self.db.target {
            Target::Sqlite(t) => {
                let owner = t.deployment_id(self.system.as_mut())?;
                let conn =
                    match &member {
                        Some((name, url)) => self
                            .db
                            .reachable_sqlite_member(name, url)?
                            .open_tenant(key, open, &owner, self.read_only)?,
                        None => t.open_tenant(key, open, &owner, self.read_only)?,
                    };
                Ok(conn.map(|c| TenantConnection::Own(Box::new(c))))
            }
            _ => match member {
                Some((name, url)) => {
                    let conn = self.member_connection(&name, &url)?;
                    Ok(Some(TenantConnection::Member(name, conn)))
                }
                None => Ok(Some(TenantConnection::Catalog(self.system.as_mut()))),
            },
        }
    }

    /// Where a SQLite tenant's file is, on whichever member holds it (None
    /// on server databases).
    pub fn tenant_file(&mut self, key: &TenantKey) -> Result<Option<PathBuf>, DbError> {
        if !matches!(self.db.target, Target::Sqlite(_)) {
            return Ok(None);
        }
        Ok(match self.member_of(key)? {
            Some((_, url)) => self.db.sqlite_member(&url).map(|t| t.tenant_file(key)),
            None => self.db.sqlite_tenant_file(key),
        })
    }

    /// The connection to the database named `name`: the catalog's own for
    /// [`crate::fleet::members::CATALOG`], else the member's (servers).
    pub fn database_connection(&mut self, name: &str) -> Result<&mut dyn Connection, DbError> {
        if name == crate::fleet::members::CATALOG {
            return Ok(self.system.as_mut());
        }
        let url = self.member_url(name)?.ok_or_else(|| {
            DbError::other(format!(
                "no member database named {name}: `pathfinder-db databases list` shows them"
            ))
        })?;
        self.member_connection(name, &url)
    }

    /// On a server fleet, for a tenant on a member other than the catalog:
    /// the member's connection together with the catalog's (None for a
    /// tenant on the catalog, and on SQLite, whose tenants are apart anyway).
    pub fn member_apart(
        &mut self,
        key: &TenantKey,
    ) -> Result<Option<TenantAndCatalog<'_>>, DbError> {
        if matches!(self.db.target, Target::Sqlite(_)) {
            return Ok(None);
        }
        let Some((name, url)) = self.member_of(key)? else {
            return Ok(None);
        };
        self.member_connection(&name, &url)?;
        let conn = self
            .members
            .as_mut()
            .and_then(Option::as_mut)
            .and_then(|m| m.conns.get_mut(&name))
            .expect("opened above");
        Ok(Some((conn.as_mut(), self.system.as_mut())))
    }

    /// Whether the member holding `key` can be reached: its connection opened
    /// (and kept for the tenant's work), on SQLite its folder there. Nothing
    /// of the tenant is read or made. Ok for a tenant on the catalog.
    pub fn reach_member_of(&mut self, key: &TenantKey) -> Result<(), DbError> {
        let Some((name, url)) = self.member_of(key)? else {
            return Ok(());
        };
        match self.db.target {
            Target::Sqlite(_) => self.db.reachable_sqlite_member(&name, &url).map(|_| ()),
            _ => self.member_connection(&name, &url).map(|_| ()),
        }
    }

    /// Whether the deployment has member databases besides the catalog.
    pub fn has_members(&mut self) -> Result<bool, DbError> {
        Ok(self.members()?.is_some())
    }

    /// The member (name, stored URL) holding the tenant whose key is `key`;
    /// None: the catalog. Read from the registry each time: a move may have
    /// switched it since the last operation.
    fn member_of(&mut self, key: &TenantKey) -> Result<Option<(String, String)>, DbError> {
        if !self.has_members()? {
            return Ok(None);
        }
        let Some(name) = crate::fleet::members::member_of_key(self.system.as_mut(), key.as_str())?
        else {
            return Ok(None);
        };
        let url = self.member_url(&name)?.ok_or_else(|| {
                DbError::other(format!(
                    "tenant {key} is on member {name}, which `pathfinder-db databases list` does not show: add it again with `pathfinder-db databases add {name} URL`"
                ))
            })?;
        Ok(Some((name, url)))
    }

    /// The session's connection to member `name`, opened on first use and
    /// opened again when it was lost.
    pub fn member_connection(
        &mut self,
        name: &str,
        url: &str,
    ) -> Result<&mut dyn Connection, DbError> {
        let db = self.db;
        let opened = self
            .members
            .as_ref()
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.conns.get(name).is_some_and(|c| !c.is_closed()));
        // Whose member it must say it is, read only when one is opened.
        let deployment = match opened {
            true => String::new(),
            false => crate::fleet::identity::of_catalog(self.system.as_mut())?,
        };
        let members = self
            .members()?
            .ok_or_else(|| DbError::other("this deployment has no member databases"))?;
        if let Some(e) = members.down.get(name) {
            return Err(e.clone());
        }
        if members.conns.get(name).is_none_or(|c| c.is_closed()) {
            let conn = match db.connect_member(name, url).and_then(|mut conn| {
                crate::fleet::members::check_is_member(conn.as_mut(), name, url, &deployment)?;
                Ok(conn)
            }) {
                Ok(conn) => conn,
                Err(e) => {
                    if matches!(e.kind, DbErrorKind::Connection | DbErrorKind::Auth) {
                        members.down.insert(name.to_string(), e.clone());
                    }
                    return Err(e);
                }
            };
            members.conns.insert(name.to_string(), conn);
        }
        Ok(members
            .conns
            .get_mut(name)
            .map(|c| c.as_mut())
            .expect("opened above"))
    }
}

/// A tenant's own connection and the session's system connection (SQLite).
pub type TenantAndSystem<'s> = (Box<dyn Connection>, &'s mut dyn Connection);

/// A member's connection and the catalog's ([`Session::member_apart`]).
pub type TenantAndCatalog<'s> = (&'s mut dyn Connection, &'s mut dyn Connection);

impl Session<'_> {
    /// On SQLite, where a tenant lives in a file of its own: that file's
    /// connection together with the main file's (None elsewhere, or when the
    /// tenant has no file). Never creates the file.
    pub fn tenant_apart(
        &mut self,
        key: &TenantKey,
    ) -> Result<Option<TenantAndSystem<'_>>, DbError> {
        let Target::Sqlite(t) = &self.db.target else {
            return Ok(None);
        };
        let member = self.member_of(key)?;
        let owner = t.deployment_id(self.system.as_mut())?;
        let target = match &member {
            Some((name, url)) => self.db.reachable_sqlite_member(name, url)?,
            None => t.clone(),
        };
        let Some(conn) = target.open_tenant(key, Open::Existing, &owner, self.read_only)? else {
            return Ok(None);
        };
        Ok(Some((Box::new(conn), self.system.as_mut())))
    }
}

/// A transaction that rolls back unless committed: dropping the guard on an
/// early return or an error ends it, so no caller has to remember to.
pub struct Tx<'c> {
    conn: &'c mut dyn Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    pub fn begin(conn: &'c mut dyn Connection) -> Result<Self, DbError> {
        conn.begin()?;
        Ok(Tx { conn, open: true })
    }

    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        self.conn.commit()
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.rollback();
        }
    }
}

impl<'c> std::ops::Deref for Tx<'c> {
    type Target = dyn Connection + 'c;
    fn deref(&self) -> &Self::Target {
        &*self.conn
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.conn
    }
}
