//! Oracle (19c, 23ai, Autonomous Database) through the `oracle` crate.
//!
//! The crate builds without Oracle Instant Client; the client library is loaded
//! when the first connection is made. Without it the connection fails with
//! DPI-1047, which we turn into a one-line error that says how to install it.
//!
//! Decisions live in pure submodules with their own tests (no server is needed
//! for them): `ddl` (whether a failed DDL step was done before, from the
//! catalog), `errors` (error kinds, lost sessions, redaction), `locks`
//! (DBMS_LOCK names and return codes). This file only talks to the server.

#[path = "oracle_ddl.rs"]
mod ddl;
#[path = "oracle_errors.rs"]
mod errors;
#[path = "oracle_locks.rs"]
mod locks;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oracle::pool::{Pool, PoolBuilder};
use oracle::sql_type::{OracleType, ToSql};
use oracle::{ConnStatus, SqlValue};

use super::{
    AccessCatalog, AppRoleSlot, CatalogColumn, CatalogConstraint, Check, Connection, DbError,
    DbErrorKind, HeldPrivilege, Lock, ObjectAccess, PolicyFacts, RoleFacts, Row, TableStats, Value,
    bind_placeholders,
};
use crate::config::PoolConfig;
use crate::db::dialect::Dialect;
use crate::error::UsageError;
use crate::schema::render::Statement;
use ddl::Verdict;
use errors::ErrorInfo;
use locks::Request;

const CLIENT_HELP: &str = "the Oracle client library (Oracle Instant Client) is not installed or not found (DPI-1047): install Instant Client Basic or Basic Light for this platform and add its directory to LD_LIBRARY_PATH (macOS: DYLD_LIBRARY_PATH; Windows: PATH)";

/// Run once per session, in one round trip: DDL waits up to 30 seconds for the
/// application's open transactions on its table (DDL_LOCK_TIMEOUT) instead of
/// failing at once with ORA-00054 (long enough for ordinary transactions, short
/// enough that a stuck one is reported), and the current schema, which scopes
/// our lock names, comes back.
/// Also: timestamps in UTC, and dates and timestamps read as ISO text (the
/// other backends' form), whatever the client's NLS settings say.
const SESSION_SETUP: &str = "BEGIN \
     EXECUTE IMMEDIATE 'ALTER SESSION SET DDL_LOCK_TIMEOUT = 30'; \
     EXECUTE IMMEDIATE 'ALTER SESSION SET TIME_ZONE = ''UTC'''; \
     EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_DATE_FORMAT = ''YYYY-MM-DD'''; \
     EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_TIMESTAMP_FORMAT = ''YYYY-MM-DD HH24:MI:SS.FF6'''; \
     :schema := SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'); \
     END;";

/// ALLOCATE_UNIQUE commits; in an autonomous transaction (a top-level block
/// with the pragma) that commit cannot touch the caller's open transaction.
const ALLOCATE_LOCK: &str = "DECLARE PRAGMA AUTONOMOUS_TRANSACTION; h VARCHAR2(128); \
     BEGIN DBMS_LOCK.ALLOCATE_UNIQUE(:name, h); COMMIT; :handle := h; END;";

/// Exclusive, held by the session (release_on_commit FALSE), since every DDL commits.
const REQUEST_LOCK: &str =
    "BEGIN :result := DBMS_LOCK.REQUEST(:handle, DBMS_LOCK.X_MODE, :timeout, FALSE); END;";

/// DBMS_LOCK.MAXWAIT: wait as long as it takes (the documented maximum; the
/// day we asked for before lies outside what DBMS_LOCK documents).
const LOCK_WAIT_SECS: i64 = 32767;

const RELEASE_LOCK: &str = "BEGIN :result := DBMS_LOCK.RELEASE(:handle); END;";

const OBJECT_TYPES: &str = "SELECT object_type FROM user_objects WHERE object_name = ?";

const TABLE_COLUMNS: &str = "SELECT column_name, data_type, char_length, data_precision, data_scale \
     FROM user_tab_columns WHERE table_name = ? ORDER BY column_id";

/// The named index and every index on the table, with their columns in order.
const INDEX_COLUMNS: &str = "SELECT i.index_name, i.table_name, i.uniqueness, c.column_name \
     FROM user_indexes i \
     JOIN user_ind_columns c ON c.index_name = i.index_name AND c.table_name = i.table_name \
     WHERE i.index_name = ? OR i.table_name = ? \
     ORDER BY i.index_name, c.column_position";

/// Rows (the optimizer's NUM_ROWS) and bytes of every table with a prefix, in
/// one query: the table's own segments, those of all its indexes (LOB indexes
/// included, which USER_INDEXES lists with their table) and of its LOB
/// segments (CLOB columns). A materialized view's container table is a table.
pub(crate) const TABLE_STATS: &str = "SELECT t.table_name, MAX(t.num_rows), NVL(SUM(s.bytes), 0) \
     FROM user_tables t \
     LEFT JOIN ( \
         SELECT segment_name AS table_name, bytes FROM user_segments \
          WHERE segment_type IN ('TABLE', 'TABLE PARTITION', 'TABLE SUBPARTITION') \
         UNION ALL \
         SELECT i.table_name, g.bytes FROM user_indexes i JOIN user_segments g ON g.segment_name = i.index_name \
         UNION ALL \
         SELECT l.table_name, g.bytes FROM user_lobs l JOIN user_segments g ON g.segment_name = l.segment_name \
     ) s ON s.table_name = t.table_name \
     WHERE SUBSTR(t.table_name, 1, LENGTH(?)) = ? AND t.table_name LIKE ? ESCAPE '\\' \
     GROUP BY t.table_name ORDER BY t.table_name";

/// Keys, checks (with the columns they read) and our own indexes of the
/// tables with a prefix, one row per column in order: (table, name, type,
/// column, position, parent table, ON DELETE, check condition). NOT NULL
/// columns are checks here too; [`constraints_from_rows`] leaves them out.
pub(crate) const CONSTRAINTS: &str = "SELECT c.table_name, c.constraint_name, c.constraint_type, \
            cc.column_name, cc.position, r.table_name, c.delete_rule, c.search_condition_vc \
     FROM user_constraints c \
     LEFT JOIN user_cons_columns cc ON cc.constraint_name = c.constraint_name AND cc.table_name = c.table_name \
     LEFT JOIN user_constraints r ON r.constraint_name = c.r_constraint_name \
     WHERE SUBSTR(c.table_name, 1, LENGTH(?)) = ? AND c.table_name LIKE ? ESCAPE '\\' \
       AND c.constraint_type IN ('P', 'U', 'R', 'C') \
     UNION ALL \
     SELECT i.table_name, i.index_name, 'I', ic.column_name, ic.column_position, NULL, NULL, NULL \
     FROM user_indexes i \
     JOIN user_ind_columns ic ON ic.index_name = i.index_name AND ic.table_name = i.table_name \
     WHERE SUBSTR(i.table_name, 1, LENGTH(?)) = ? AND i.table_name LIKE ? ESCAPE '\\' \
       AND i.index_type <> 'LOB' \
       AND NOT EXISTS (SELECT 1 FROM user_constraints k WHERE k.index_name = i.index_name) \
     ORDER BY 1, 2, 5";

/// The rows of [`CONSTRAINTS`] as constraints, without the checks Oracle
/// makes of NOT NULL columns (`"COL" IS NOT NULL`), which the columns say.
pub(crate) fn constraints_from_rows(rows: &[Row]) -> Vec<CatalogConstraint> {
    let not_null = |r: &Row| {
        let condition = r.get(7).map(Value::to_text).unwrap_or_default();
        let condition = condition.trim();
        r[2].to_text() == "C"
            && condition
                .strip_suffix("IS NOT NULL")
                .map(str::trim)
                .is_some_and(|c| {
                    c.starts_with('"')
                        && c.ends_with('"')
                        && c.len() > 2
                        && !c[1..c.len() - 1].contains('"')
                })
    };
    let kept: Vec<Row> = rows.iter().filter(|r| !not_null(r)).cloned().collect();
    super::constraints_from_rows(&kept)
}

/// Gathers one table's statistics (its indexes too: cascade is the default).
pub(crate) const GATHER_STATS: &str =
    "BEGIN DBMS_STATS.GATHER_TABLE_STATS(ownname => USER, tabname => ?); END;";

/// The server's release and the database's COMPATIBLE setting, which decides
/// whether identifiers may be longer than 30 bytes (12.2 and later).
const DB_VERSION: &str = "BEGIN DBMS_UTILITY.DB_VERSION(:version, :compatible); END;";

/// The system privileges pathfinder-db needs that the session has.
pub(crate) const PRIVILEGES: &str = "SELECT privilege FROM session_privs \
     WHERE privilege IN ('CREATE TABLE', 'CREATE MATERIALIZED VIEW', 'CREATE TRIGGER', 'UNLIMITED TABLESPACE')";

/// The system privileges row-level security (system version 6: a context,
/// its package, the policy function) and `grants apply --create-role` need.
pub(crate) const PRIVILEGES_FOR_RLS: &str = "SELECT privilege FROM session_privs \
     WHERE privilege IN ('CREATE PROCEDURE', 'CREATE ANY CONTEXT', 'CREATE ROLE')";

/// 1 when the session may execute DBMS_RLS (Virtual Private Database).
pub(crate) const DBMS_RLS_VISIBLE: &str = "SELECT COUNT(*) FROM all_objects \
     WHERE owner = 'SYS' AND object_name = 'DBMS_RLS' AND object_type = 'PACKAGE'";

/// 1 when the session may execute DBMS_LOCK (granted directly, through a role
/// or to PUBLIC): ALL_OBJECTS lists only what the user may use.
pub(crate) const DBMS_LOCK_VISIBLE: &str = "SELECT COUNT(*) FROM all_objects \
     WHERE owner = 'SYS' AND object_name = 'DBMS_LOCK' AND object_type = 'PACKAGE'";

/// The default tablespace and the quota there (-1: unlimited; no row: none).
pub(crate) const QUOTA: &str = "SELECT u.default_tablespace, q.max_bytes, q.bytes \
     FROM user_users u LEFT JOIN user_ts_quotas q ON q.tablespace_name = u.default_tablespace";

/// Every column (type, nullability, position, default) of the tables with a prefix.
const COLUMNS: &str = "SELECT table_name, column_name, \
            LOWER(data_type || CASE \
                WHEN data_type IN ('VARCHAR2', 'CHAR', 'NVARCHAR2') THEN '(' || char_length || ')' \
                WHEN data_type = 'NUMBER' AND data_precision IS NOT NULL \
                    THEN '(' || data_precision || ',' || NVL(data_scale, 0) || ')' \
                END), \
            CASE nullable WHEN 'Y' THEN 1 ELSE 0 END, column_id, data_default \
     FROM user_tab_columns \
     WHERE SUBSTR(table_name, 1, LENGTH(?)) = ? AND table_name LIKE ? ESCAPE '\\' \
     ORDER BY table_name, column_id";

/// The binds of a catalog query's test that a name starts with `prefix`
/// (upper case, as Oracle keeps our names): `SUBSTR(name, 1, LENGTH(?)) =
/// ?` is the exact test, and `name LIKE ? ESCAPE '\'` (the prefix's `_`
/// and `%`, wildcards in LIKE, escaped) lets Oracle find the names through
/// the dictionary's index on object names rather than read the catalog of
/// every table in the schema, which grows with the fleet.
fn prefix_binds(prefix: &str) -> Vec<Value> {
    let upper = prefix.to_ascii_uppercase();
    let mut pattern = String::with_capacity(upper.len() + 4);
    for c in upper.chars() {
        if matches!(c, '_' | '%' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    vec![
        Value::Text(upper.clone()),
        Value::Text(upper),
        Value::Text(pattern),
    ]
}

/// The tables with a prefix (a materialized view's container table among
/// them), as [`TABLE_STATS`] names them, without their figures.
const TABLE_NAMES: &str = "SELECT table_name FROM user_tables \
     WHERE SUBSTR(table_name, 1, LENGTH(?)) = ? AND table_name LIKE ? ESCAPE '\\' \
     ORDER BY table_name";

/// The tables and views with a prefix, as [`COLUMNS`] names them, without
/// their columns.
const RELATION_NAMES: &str = "SELECT DISTINCT table_name FROM user_tab_columns \
     WHERE SUBSTR(table_name, 1, LENGTH(?)) = ? AND table_name LIKE ? ESCAPE '\\' \
     ORDER BY table_name";

/// Our own indexes (not those behind keys, nor LOB indexes) of the tables with a prefix.
const INDEXES: &str = "SELECT i.table_name, i.index_name FROM user_indexes i \
     WHERE SUBSTR(i.table_name, 1, LENGTH(?)) = ? AND i.table_name LIKE ? ESCAPE '\\' \
       AND NOT EXISTS (SELECT 1 FROM user_constraints c WHERE c.index_name = i.index_name) \
       AND i.index_type <> 'LOB' \
     ORDER BY 1, 2";

/// Whether a role exists: DBA_ROLES where this user may read it, else the
/// roles granted to this user (the creator of a role holds it).
const ROLE_EXISTS: &str = "SELECT COUNT(*) FROM dba_roles WHERE role = ?";
const ROLE_GRANTED: &str = "SELECT COUNT(*) FROM user_role_privs WHERE granted_role = ?";

/// The system privileges granted to a role (of the roles this user holds).
const ROLE_SYSTEM_PRIVILEGES: &str =
    "SELECT privilege FROM role_sys_privs WHERE role = ? ORDER BY privilege";

/// This schema's `PF_...` objects (and refinery's history table).
const ACCESS_OBJECTS: &str = "SELECT object_name, object_type FROM user_objects \
     WHERE (SUBSTR(object_name, 1, 3) = 'PF_' OR object_name = 'REFINERY_SCHEMA_HISTORY') \
       AND object_type IN ('TABLE', 'VIEW', 'MATERIALIZED VIEW', 'SEQUENCE', 'PACKAGE', 'FUNCTION', 'PROCEDURE') \
     ORDER BY object_name, object_type";

/// What the role (and PUBLIC) holds on this schema's `PF_...` objects.
const ACCESS_PRIVILEGES: &str = "SELECT table_name, privilege, grantee, grantable FROM user_tab_privs \
     WHERE owner = USER AND grantee IN (?, 'PUBLIC') \
       AND (SUBSTR(table_name, 1, 3) = 'PF_' OR table_name = 'REFINERY_SCHEMA_HISTORY') \
     ORDER BY table_name, privilege";

/// The VPD policies on this schema's `PF_...` tables.
const ACCESS_POLICIES: &str = "SELECT object_name, policy_name, enable, sel, ins, upd, del, function \
     FROM user_policies WHERE SUBSTR(object_name, 1, 3) = 'PF_' ORDER BY object_name, policy_name";

/// The objects of [`ACCESS_OBJECTS`] rows (a materialized view is listed as
/// a table too: once, as a materialized view), with what `privileges` rows
/// ([`ACCESS_PRIVILEGES`]) say `role` and PUBLIC hold; `names`: only these.
pub(crate) fn objects_from_rows(
    objects: &[Row],
    privileges: &[Row],
    role: &str,
    names: Option<&[String]>,
) -> Vec<ObjectAccess> {
    let mut out: Vec<ObjectAccess> = Vec::new();
    for r in objects {
        let name = r[0].to_text().to_ascii_lowercase();
        if names.is_some_and(|n| !n.contains(&name)) {
            continue;
        }
        let kind = match r[1].to_text().as_str() {
            "TABLE" => "table",
            "VIEW" => "view",
            "MATERIALIZED VIEW" => "materialized view",
            "SEQUENCE" => "sequence",
            "PACKAGE" => "package",
            "FUNCTION" => "function",
            "PROCEDURE" => "procedure",
            _ => "other",
        };
        match out.last_mut() {
            Some(last) if last.name == name => {
                if kind == "materialized view" {
                    last.kind = kind.into();
                }
            }
            _ => out.push(ObjectAccess {
                name,
                kind: kind.into(),
                privileges: Vec::new(),
                row_security: false,
                row_security_forced: false,
                owned_by_role: false,
            }),
        }
    }
    let role = role.to_ascii_uppercase();
    for r in privileges {
        let name = r[0].to_text().to_ascii_lowercase();
        if let Some(object) = out.iter_mut().find(|o| o.name == name) {
            object.privileges.push(HeldPrivilege {
                privilege: r[1].to_text().to_ascii_uppercase(),
                via: if r[2].to_text() == role {
                    "role".into()
                } else {
                    "PUBLIC".into()
                },
                grantable: r[3].to_text() == "YES",
                column: None,
            });
        }
    }
    out
}

/// The policies of [`ACCESS_POLICIES`] rows: the statement types they apply
/// to as `command`, the policy function in `using`.
pub(crate) fn policies_from_rows(rows: &[Row]) -> Vec<PolicyFacts> {
    rows.iter()
        .map(|r| {
            let types: Vec<&str> = ["SELECT", "INSERT", "UPDATE", "DELETE"]
                .into_iter()
                .zip(&r[3..7])
                .filter(|(_, v)| v.to_text() == "YES")
                .map(|(t, _)| t)
                .collect();
            PolicyFacts {
                table: r[0].to_text().to_ascii_lowercase(),
                name: r[1].to_text().to_ascii_lowercase(),
                command: types.join(", "),
                permissive: false,
                enabled: r[2].to_text() == "YES",
                using: (!r[7].is_null()).then(|| r[7].to_text().to_ascii_lowercase()),
                check: None,
                roles: Vec::new(),
            }
        })
        .collect()
}

/// Makes tables read-only (or writable again): writers stay out across the
/// commits every DDL makes.
fn read_only_sql(table: &str, read_only: bool) -> String {
    let mode = if read_only { "READ ONLY" } else { "READ WRITE" };
    format!("ALTER TABLE {table} {mode}")
}

/// Inserts `rows` one statement each (Oracle before 23ai has no multi-row
/// VALUES) through `conn`; returns how many.
pub fn insert_one_by_one(
    conn: &mut dyn Connection,
    table: &str,
    columns: &[String],
    rows: &[Row],
) -> Result<u64, DbError> {
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    );
    let mut inserted = 0;
    for row in rows {
        inserted += conn.execute(&sql, row)?;
    }
    Ok(inserted)
}

/// Every statement an Oracle connection sends of its own accord, beyond
/// what commands give it: (SQL with `?` binds, whether it is a PL/SQL
/// block). The session setup, the lock calls, the catalog queries and the
/// statistics calls; the tests check each statically, as no Oracle server
/// runs there. Inserts ([`insert_one_by_one`]) and the read-only switch are
/// built per table.
pub fn own_statements() -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = [
        SESSION_SETUP,
        ALLOCATE_LOCK,
        REQUEST_LOCK,
        RELEASE_LOCK,
        GATHER_STATS,
        DB_VERSION,
    ]
    .iter()
    .map(|s| (s.to_string(), true))
    .collect();
    out.extend(
        [
            OBJECT_TYPES,
            TABLE_COLUMNS,
            INDEX_COLUMNS,
            ROLE_EXISTS,
            ROLE_GRANTED,
            ROLE_SYSTEM_PRIVILEGES,
            ACCESS_OBJECTS,
            ACCESS_PRIVILEGES,
            ACCESS_POLICIES,
            PRIVILEGES_FOR_RLS,
            DBMS_RLS_VISIBLE,
            TABLE_STATS,
            CONSTRAINTS,
            PRIVILEGES,
            DBMS_LOCK_VISIBLE,
            QUOTA,
            COLUMNS,
            INDEXES,
            TABLE_NAMES,
            RELATION_NAMES,
        ]
        .iter()
        .map(|s| (s.to_string(), false)),
    );
    for read_only in [true, false] {
        out.push((read_only_sql("pf_user_a_skills", read_only), false));
    }
    out
}

/// The Oracle client library's version; fails with the install hint (DPI-1047)
/// where it is missing. Needs no server.
pub fn client_version() -> Result<String, DbError> {
    oracle::Version::client()
        .map(|v| v.to_string())
        .map_err(|e| errors::classify(&ErrorInfo::of(&e), "client", None))
}

/// Whether `a.b.c` is at least `major.minor`.
fn at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Connection details parsed from `oracle://user[:password]@connect_string`, where
/// the connect string is `host:port/service`, an Easy Connect string or a TNS
/// alias (with TNS_ADMIN pointing at an Autonomous Database wallet).
#[derive(Clone)]
pub struct OracleTarget {
    user: String,
    password: Option<String>,
    connect_string: String,
    /// The connect string as messages show it (any `password=` value removed).
    display: String,
    pool_config: PoolConfig,
    shared: Arc<Shared>,
}

/// What every clone of a target shares: the pool, built once, and the password
/// it was built with (to keep it out of messages).
#[derive(Default)]
struct Shared {
    pool: OnceLock<Pool>,
    secret: OnceLock<String>,
    /// Held while the pool is built, so parallel workers neither ask for the
    /// password twice nor build two pools.
    building: Mutex<()>,
}

/// `%XX` escapes decoded (a `+` stays a `+`: URLs are not form data).
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

impl OracleTarget {
    /// A member database's target: its password only `password` (its
    /// environment variable or password file; None: the wallet), never the
    /// catalog's.
    pub fn member_from_url(
        url: &str,
        pool: &PoolConfig,
        password: Option<&str>,
    ) -> Result<Self, UsageError> {
        let mut target = Self::from_url(url, pool)?;
        // An empty password (external authentication: the wallet) rather than
        // a prompt or the catalog's PATHFINDER_DB_PASSWORD.
        target.password = Some(password.unwrap_or_default().to_string());
        Ok(target)
    }

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
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if user.is_empty() || connect.is_empty() {
            return Err(bad());
        }
        // Easy Connect Plus parameters: unknown ones are refused by name (a
        // misspelled one may carry a password: its value is never shown).
        let unknown =
            crate::db::redact::unknown_options(connect, crate::db::redact::ORACLE_OPTIONS);
        if !unknown.is_empty() {
            return Err(UsageError::new(format!(
                "the Oracle URL has unknown option(s) {} (values are not shown): the Easy Connect options are {}; put the password in PATHFINDER_DB_PASSWORD",
                unknown.join(", "),
                crate::db::redact::ORACLE_OPTIONS.join(", ")
            )));
        }
        let undecodable = |what: &str| {
            UsageError::new(format!(
                "the {what} in the Oracle URL {:?} is not valid UTF-8 once its %XX escapes are decoded: fix the escapes",
                super::redact_url(url)
            ))
        };
        let user = percent_decode(user).ok_or_else(|| undecodable("user name"))?;
        let password = match password {
            Some(p) => Some(percent_decode(p).ok_or_else(|| undecodable("password"))?),
            None => None,
        };
        Ok(OracleTarget {
            user,
            password,
            display: errors::redact(connect, None),
            connect_string: connect.to_string(),
            pool_config: pool.clone(),
            shared: Default::default(),
        })
    }

    /// The password in use, once known (for redaction).
    fn secret(&self) -> Option<&str> {
        self.shared
            .secret
            .get()
            .map(String::as_str)
            .or(self.password.as_deref())
    }

    fn error(&self, err: &oracle::Error) -> DbError {
        errors::classify(&ErrorInfo::of(err), &self.display, self.secret())
    }

    fn pool(&self) -> Result<&Pool, DbError> {
        if let Some(pool) = self.shared.pool.get() {
            return Ok(pool);
        }
        let _building = self
            .shared
            .building
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = self.shared.pool.get() {
            return Ok(pool);
        }
        let password = match self.shared.secret.get() {
            Some(p) => p.clone(),
            None => self
                .password
                .clone()
                .or_else(|| {
                    super::password_from_env_or_prompt(&format!(
                        "Oracle {}@{}",
                        self.user, self.display
                    ))
                })
                .unwrap_or_default(),
        };
        let _ = self.shared.secret.set(password.clone());
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
                .map_err(|e| self.error(&e))?;
        }
        let pool = builder.build().map_err(|e| self.error(&e))?;
        let _ = self.shared.pool.set(pool);
        Ok(self.shared.pool.get().expect("pool was just set"))
    }

    pub fn connect(&self) -> Result<OracleConnection, DbError> {
        let conn = self.pool()?.get().map_err(|e| self.error(&e))?;
        let mut conn = OracleConnection {
            conn,
            target: self.display.clone(),
            secret: self.secret().map(Arc::from),
            broken: Cell::new(false),
            schema: String::new(),
            handles: HashMap::new(),
            held_locks: Vec::new(),
            app_role: AppRoleSlot::default(),
            member: false,
        };
        conn.set_up_session()?;
        Ok(conn)
    }
}

pub struct OracleConnection {
    conn: oracle::Connection,
    /// The connect string as messages show it.
    target: String,
    /// The password, only to remove it from messages.
    secret: Option<Arc<str>>,
    /// Set when an error said the session is gone.
    broken: Cell<bool>,
    /// The current schema, which scopes lock names.
    schema: String,
    /// DBMS_LOCK handles by scoped lock name, allocated once per session.
    handles: HashMap<String, String>,
    /// Scoped names of the locks this session holds.
    held_locks: Vec<String>,
    /// The configured application role, and whether the database has it.
    app_role: AppRoleSlot,
    /// A member database's connection (not the catalog's).
    member: bool,
}

impl OracleConnection {
    /// Marks the connection as a member database's.
    pub fn as_member(mut self) -> Self {
        self.member = true;
        self
    }

    /// The application role the objects this connection creates are granted to.
    pub fn with_app_role(mut self, role: Option<String>) -> Self {
        self.app_role = AppRoleSlot::new(role);
        self
    }

    /// Whether `role` exists (DBA_ROLES, or else the roles this user holds).
    fn role_exists(&mut self, role: &str) -> Result<bool, DbError> {
        let upper = Value::Text(role.to_ascii_uppercase());
        let rows = match self.query(ROLE_EXISTS, std::slice::from_ref(&upper)) {
            Ok(rows) => rows,
            Err(e) if e.kind == DbErrorKind::DoesNotExist => {
                self.query(ROLE_GRANTED, std::slice::from_ref(&upper))?
            }
            Err(e) => return Err(e),
        };
        Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0)
    }
}

/// A text bind sent as VARCHAR2: the crate binds `&str` as NVARCHAR2, and a
/// comparison of a VARCHAR2 column with an NVARCHAR2 value converts the column,
/// so its index cannot be used.
struct Text<'a>(&'a str);

/// VARCHAR2 up to 32767 bytes (the largest VARCHAR2 with MAX_STRING_SIZE =
/// EXTENDED, and ODPI-C's largest fixed buffer); beyond, LONG, which Oracle
/// accepts for CLOB columns in INSERT and UPDATE (the crate binds CLOB data
/// the same way). Over 4000 bytes (standard string sizes) Oracle takes either
/// type as LONG, as it did the NVARCHAR2 binds before: such values only ever
/// go to CLOB columns.
fn text_bind_type(len: usize) -> OracleType {
    const MAX_VARCHAR_BIND: usize = 32767;
    if len <= MAX_VARCHAR_BIND {
        OracleType::Varchar2(len.max(1) as u32)
    } else {
        OracleType::Long
    }
}

impl ToSql for Text<'_> {
    fn oratype(&self, _conn: &oracle::Connection) -> oracle::Result<OracleType> {
        Ok(text_bind_type(self.0.len()))
    }

    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        self.0.to_sql(val)
    }
}

fn as_to_sql(v: &Value) -> Box<dyn ToSql + '_> {
    match v {
        // A NULL needs a type; Oracle converts a VARCHAR2 NULL for any column.
        Value::Null => Box::new(OracleType::Varchar2(1)),
        Value::Int(i) => Box::new(*i),
        Value::Float(f) => Box::new(*f),
        Value::Text(s) => Box::new(Text(s)),
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
    /// The error in our terms; remembers when it says the session is gone.
    fn fail(&self, err: &oracle::Error) -> DbError {
        let info = ErrorInfo::of(err);
        if errors::connection_lost(&info) {
            self.broken.set(true);
        }
        errors::classify(&info, &self.target, self.secret.as_deref())
    }

    fn set_up_session(&mut self) -> Result<(), DbError> {
        let stmt = self
            .conn
            .execute_named(SESSION_SETUP, &[("schema", &OracleType::Varchar2(128))])
            .map_err(|e| self.fail(&e))?;
        self.schema = stmt.bind_value("schema").map_err(|e| self.fail(&e))?;
        Ok(())
    }

    /// `ALTER TABLE ... READ ONLY` / `READ WRITE`; a table already in that
    /// mode is fine (ORA-14139 / ORA-14140), so a re-run goes on.
    fn set_read_only(&mut self, tables: &[String], read_only: bool) -> Result<(), DbError> {
        for table in tables {
            match self.conn.execute(&read_only_sql(table, read_only), &[]) {
                Ok(_) => {}
                Err(e) if matches!(e.db_error().map(|d| d.code()), Some(14139 | 14140)) => {}
                Err(e) => return Err(self.fail(&e)),
            }
        }
        Ok(())
    }

    /// The catalog facts `lookup` asks for.
    fn facts(&mut self, lookup: &ddl::Lookup) -> Result<ddl::Facts, DbError> {
        let mut facts = ddl::Facts::default();
        if let Some(name) = &lookup.object {
            let rows = self.query(OBJECT_TYPES, &[Value::Text(name.clone())])?;
            facts.object_types = ddl::object_types_from_rows(&rows);
        }
        if let Some(table) = &lookup.columns_of {
            let rows = self.query(TABLE_COLUMNS, &[Value::Text(table.clone())])?;
            facts.columns = ddl::columns_from_rows(&rows);
        }
        if let Some((index, table)) = &lookup.indexes {
            let rows = self.query(
                INDEX_COLUMNS,
                &[Value::Text(index.clone()), Value::Text(table.clone())],
            )?;
            facts.indexes = ddl::indexes_from_rows(&rows);
        }
        Ok(facts)
    }

    /// Settles a failed statement: Ok when the catalog shows it was done
    /// before, else the error (or the conflict the catalog shows).
    fn settle(&mut self, stmt: &Statement, err: &oracle::Error) -> Result<(), DbError> {
        let info = ErrorInfo::of(err);
        let error = self.fail(err);
        let in_statement = |e: DbError| {
            let first_line = stmt.sql.lines().next().unwrap_or("");
            DbError::new(e.kind, format!("{} (in: {first_line})", e.message))
        };
        let parsed = ddl::parse(&stmt.sql);
        let lookup = match ddl::lookup_for(&parsed, info.ora) {
            Some(lookup) if !self.broken.get() => lookup,
            _ => return Err(in_statement(error)),
        };
        let facts = self.facts(&lookup).map_err(in_statement)?;
        match ddl::decide(&parsed, &facts, &errors::short_message(&info)) {
            Verdict::Done => Ok(()),
            Verdict::Conflict(message) => {
                let kind = match parsed {
                    ddl::Ddl::Drop { .. } => DbErrorKind::Other,
                    _ => DbErrorKind::AlreadyExists,
                };
                Err(DbError::new(kind, message))
            }
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
        let stmt = self.conn.execute(&sql, &refs).map_err(|e| self.fail(&e))?;
        stmt.row_count().map_err(|e| self.fail(&e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = bind_placeholders(sql, Dialect::Oracle);
        let boxed: Vec<Box<dyn ToSql + '_>> = params.iter().map(as_to_sql).collect();
        let refs: Vec<&dyn ToSql> = boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self.conn.query(&sql, &refs).map_err(|e| self.fail(&e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.fail(&e))?;
            out.push(read_row(&row).map_err(|e| self.fail(&e))?);
        }
        Ok(out)
    }

    /// Every DDL commits, so a repeated run meets the objects of the one
    /// before. A failed step counts as done only when the catalog shows its
    /// object as the statement defines it (or, for a DROP, gone); anything
    /// else fails with the conflict named.
    /// LOCK TABLE would end at the first DDL's commit, so the tables are made
    /// read-only instead (which waits for open transactions, up to the DDL
    /// lock timeout): writers stay out across the commits until the tables
    /// are dropped, or thawed when the work is called off.
    fn freeze_tables(&mut self, tables: &[String]) -> Result<(), DbError> {
        self.set_read_only(tables, true)
    }

    fn thaw_tables(&mut self, tables: &[String]) -> Result<(), DbError> {
        self.set_read_only(tables, false)
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        for stmt in statements {
            if let Err(e) = self.conn.execute(&stmt.sql, &[]) {
                self.settle(stmt, &e)?;
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        // Oracle starts a transaction implicitly with the first DML.
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.conn.commit().map_err(|e| self.fail(&e))
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        self.conn.rollback().map_err(|e| self.fail(&e))
    }

    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        if self.request_lock(name, LOCK_WAIT_SECS)? {
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
        let scoped = locks::scoped_lock_name(&self.schema, &name.to_string());
        let Some(pos) = self.held_locks.iter().position(|k| *k == scoped) else {
            return Ok(());
        };
        self.held_locks.remove(pos);
        self.release(&scoped, &name.to_string())
    }

    fn is_member(&self) -> bool {
        self.member
    }

    fn is_closed(&self) -> bool {
        // The flag covers errors we saw; the status covers a session the
        // client library found dead on its last round trip. A status that
        // cannot be read proves nothing (and must not force a reconnect per tenant).
        self.broken.get()
            || matches!(
                self.conn.status(),
                Ok(ConnStatus::NotConnected | ConnStatus::Closed)
            )
    }

    fn table_stats(&mut self, prefix: &str) -> Result<Vec<TableStats>, DbError> {
        let rows = self.query(TABLE_STATS, &prefix_binds(prefix))?;
        Ok(rows
            .iter()
            .map(|r| TableStats {
                table: r[0].to_text().to_ascii_lowercase(),
                rows: r[1].as_i64(),
                bytes: r[2].as_i64().map(|b| b.max(0) as u64),
            })
            .collect())
    }

    /// One row per statement: Oracle before 23ai has no multi-row VALUES.
    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<u64, DbError> {
        insert_one_by_one(self, table, columns, rows)
    }

    fn analyze(&mut self, tables: &[String]) -> Result<(), DbError> {
        for t in tables {
            self.execute(GATHER_STATS, &[Value::Text(t.to_ascii_uppercase())])?;
        }
        Ok(())
    }

    fn preflight(&mut self) -> Result<Vec<Check>, DbError> {
        let mut checks = Vec::new();
        let (_, banner) = self.conn.server_version().map_err(|e| self.fail(&e))?;
        let stmt = self
            .conn
            .execute_named(
                DB_VERSION,
                &[
                    ("version", &OracleType::Varchar2(64)),
                    ("compatible", &OracleType::Varchar2(64)),
                ],
            )
            .map_err(|e| self.fail(&e))?;
        let version: String = stmt.bind_value("version").map_err(|e| self.fail(&e))?;
        let compatible: String = stmt.bind_value("compatible").map_err(|e| self.fail(&e))?;
        let banner = banner.lines().next().unwrap_or("").to_string();
        checks.push(Check::ok("server", format!("{banner} (release {version})")));
        checks.push(if at_least(&compatible, 12, 2) {
            Check::ok(
                "compatible",
                format!("COMPATIBLE = {compatible}: identifiers up to 128 bytes"),
            )
        } else {
            Check::fail(
                "compatible",
                format!("COMPATIBLE = {compatible}: identifiers are limited to 30 bytes, and tenant names need up to 128"),
                "as SYSDBA: ALTER SYSTEM SET COMPATIBLE = '12.2.0' SCOPE = SPFILE, then restart (it cannot be lowered again)",
            )
        });
        let privileges: Vec<String> = self
            .query(PRIVILEGES, &[])?
            .iter()
            .map(|r| r[0].to_text())
            .collect();
        let user = self.schema.clone();
        // CREATE TRIGGER: the registry's count per member (system version 8).
        let missing: Vec<&str> = ["CREATE TABLE", "CREATE MATERIALIZED VIEW", "CREATE TRIGGER"]
            .into_iter()
            .filter(|p| !privileges.iter().any(|have| have == p))
            .collect();
        checks.push(if missing.is_empty() {
            Check::ok(
                "grants",
                format!("{user} has CREATE TABLE, CREATE MATERIALIZED VIEW and CREATE TRIGGER"),
            )
        } else {
            Check::fail(
                "grants",
                format!("{user} lacks {}", missing.join(" and ")),
                format!("as a DBA: GRANT {} TO {user}", missing.join(", ")),
            )
        });
        let lock_visible = self
            .query(DBMS_LOCK_VISIBLE, &[])?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0)
            > 0;
        checks.push(if lock_visible {
            Check::ok("dbms_lock", format!("{user} may execute DBMS_LOCK (per-tenant locks)"))
        } else {
            Check::fail(
                "dbms_lock",
                format!("{user} may not execute DBMS_LOCK: every tenant operation would fail to lock"),
                format!("as SYS (on Autonomous Database as ADMIN): GRANT EXECUTE ON SYS.DBMS_LOCK TO {user}"),
            )
        });
        let rls: Vec<String> = self
            .query(PRIVILEGES_FOR_RLS, &[])?
            .iter()
            .map(|r| r[0].to_text())
            .collect();
        let rls_visible = self
            .query(DBMS_RLS_VISIBLE, &[])?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(0)
            > 0;
        let mut lacking: Vec<&str> = ["CREATE PROCEDURE", "CREATE ANY CONTEXT"]
            .into_iter()
            .filter(|p| !rls.iter().any(|have| have == p))
            .collect();
        checks.push(if lacking.is_empty() && rls_visible {
            Check::ok(
                "row security",
                format!(
                    "{user} may create the application context, its package and the VPD policies"
                ),
            )
        } else {
            let mut fix = Vec::new();
            if !lacking.is_empty() {
                fix.push(format!("GRANT {} TO {user}", lacking.join(", ")));
            }
            if !rls_visible {
                lacking.push("EXECUTE on DBMS_RLS");
                fix.push(format!("GRANT EXECUTE ON SYS.DBMS_RLS TO {user}"));
            }
            Check::fail(
                "row security",
                format!(
                    "{user} lacks {}: system version 6 (row-level security) would fail",
                    lacking.join(", ")
                ),
                format!("as a DBA: {}", fix.join("; ")),
            )
        });
        let unlimited = privileges.iter().any(|p| p == "UNLIMITED TABLESPACE");
        let quota = self.query(QUOTA, &[])?;
        let (tablespace, max_bytes, used) = quota
            .first()
            .map(|r| (r[0].to_text(), r[1].as_i64(), r[2].as_i64().unwrap_or(0)))
            .unwrap_or_default();
        checks.push(match max_bytes {
            _ if unlimited => Check::ok("quota", format!("{user} has UNLIMITED TABLESPACE")),
            Some(-1) => Check::ok("quota", format!("unlimited quota on {tablespace}")),
            Some(max) if max > used => Check::ok(
                "quota",
                format!("{} MB of {} MB quota left on {tablespace}", (max - used) >> 20, max >> 20),
            ),
            Some(max) => Check::fail(
                "quota",
                format!("the quota of {} MB on {tablespace} is used up", max >> 20),
                format!("as a DBA: ALTER USER {user} QUOTA UNLIMITED ON {tablespace} (or a larger size)"),
            ),
            None => Check::fail(
                "quota",
                format!("{user} has no quota on its default tablespace {tablespace}: every insert would fail (ORA-01950)"),
                format!("as a DBA: ALTER USER {user} QUOTA UNLIMITED ON {tablespace}"),
            ),
        });
        Ok(checks)
    }

    fn app_role(&mut self) -> Result<Option<String>, DbError> {
        let mut slot = std::mem::take(&mut self.app_role);
        let found = slot.get(|name| self.role_exists(name));
        self.app_role = slot;
        found
    }

    /// A role owns nothing on Oracle (objects belong to schemas, i.e.
    /// users): only its grants, system privileges and the policies are read.
    fn access_catalog(
        &mut self,
        role: &str,
        names: Option<&[String]>,
    ) -> Result<Option<AccessCatalog>, DbError> {
        let exists = self.role_exists(role)?;
        let upper = Value::Text(role.to_ascii_uppercase());
        let system_privileges = if exists {
            self.query(ROLE_SYSTEM_PRIVILEGES, std::slice::from_ref(&upper))?
                .iter()
                .map(|r| r[0].to_text())
                .collect()
        } else {
            Vec::new()
        };
        let objects = self.query(ACCESS_OBJECTS, &[])?;
        let privileges = self.query(ACCESS_PRIVILEGES, &[upper])?;
        let policies = self.query(ACCESS_POLICIES, &[])?;
        Ok(Some(AccessCatalog {
            role: RoleFacts {
                exists,
                system_privileges,
                ..RoleFacts::default()
            },
            objects: objects_from_rows(&objects, &privileges, role, names),
            policies: policies_from_rows(&policies),
        }))
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let rows = self.query(COLUMNS, &prefix_binds(prefix))?;
        Ok(rows.iter().map(CatalogColumn::from_row).collect())
    }

    fn constraints(&mut self, prefix: &str) -> Result<Vec<CatalogConstraint>, DbError> {
        let mut binds = prefix_binds(prefix);
        binds.extend(prefix_binds(prefix));
        let rows = self.query(CONSTRAINTS, &binds)?;
        Ok(constraints_from_rows(&rows))
    }

    fn table_names(&mut self, prefix: &str, views: bool) -> Result<Vec<String>, DbError> {
        let sql = if views { RELATION_NAMES } else { TABLE_NAMES };
        let mut names: Vec<String> = self
            .query(sql, &prefix_binds(prefix))?
            .iter()
            .map(|r| r[0].to_text().to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = self.query(INDEXES, &prefix_binds(prefix))?;
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
    /// The session's handle for a scoped lock name, allocated on first use.
    fn lock_handle(&mut self, scoped: &str) -> Result<String, DbError> {
        if let Some(handle) = self.handles.get(scoped) {
            return Ok(handle.clone());
        }
        let stmt = self
            .conn
            .execute_named(
                ALLOCATE_LOCK,
                &[
                    ("name", &Text(scoped)),
                    ("handle", &OracleType::Varchar2(128)),
                ],
            )
            .map_err(|e| self.fail(&e))?;
        let handle: String = stmt.bind_value("handle").map_err(|e| self.fail(&e))?;
        self.handles.insert(scoped.to_string(), handle.clone());
        Ok(handle)
    }

    /// DBMS_LOCK in exclusive mode, held by the session (not released at commit,
    /// since every DDL commits); the server frees it when the session dies.
    fn request_lock(&mut self, lock: &Lock<'_>, timeout_secs: i64) -> Result<bool, DbError> {
        let scoped = locks::scoped_lock_name(&self.schema, &lock.to_string());
        let mut reallocated = false;
        loop {
            let handle = self.lock_handle(&scoped)?;
            let stmt = self
                .conn
                .execute_named(
                    REQUEST_LOCK,
                    &[
                        ("handle", &Text(&handle)),
                        ("timeout", &timeout_secs),
                        ("result", &OracleType::Number(0, 0)),
                    ],
                )
                .map_err(|e| self.fail(&e))?;
            let result: i64 = stmt.bind_value("result").map_err(|e| self.fail(&e))?;
            match locks::request_outcome(result) {
                Request::Granted => {
                    if !self.held_locks.contains(&scoped) {
                        self.held_locks.push(scoped);
                    }
                    return Ok(true);
                }
                Request::Busy => return Ok(false),
                // ALLOCATE_UNIQUE keeps a handle valid for at least ten days;
                // a cached one that expired anyway is allocated again, once.
                Request::IllegalHandle if !reallocated => {
                    self.handles.remove(&scoped);
                    reallocated = true;
                }
                Request::IllegalHandle => {
                    return Err(DbError::other(format!(
                        "Oracle {}: DBMS_LOCK.REQUEST returned 5 (illegal lock handle) for the lock {lock}",
                        self.target
                    )));
                }
                Request::Failed(message) => {
                    return Err(DbError::other(format!(
                        "Oracle {}: {message} for the lock {lock}",
                        self.target
                    )));
                }
            }
        }
    }

    /// Releases a held lock (`lock` names it in messages).
    fn release(&mut self, scoped: &str, lock: &str) -> Result<(), DbError> {
        let Some(handle) = self.handles.get(scoped).cloned() else {
            return Ok(());
        };
        let stmt = self
            .conn
            .execute_named(
                RELEASE_LOCK,
                &[
                    ("handle", &Text(&handle)),
                    ("result", &OracleType::Number(0, 0)),
                ],
            )
            .map_err(|e| self.fail(&e))?;
        let result: i64 = stmt.bind_value("result").map_err(|e| self.fail(&e))?;
        locks::release_outcome(result).map_err(|reason| {
            DbError::other(format!(
                "Oracle {}: {reason} for the lock {lock}",
                self.target
            ))
        })
    }
}

impl Drop for OracleConnection {
    /// The session goes back to the pool, where a lock it still held would
    /// block other processes until the pool closes it: release what is left.
    fn drop(&mut self) {
        if self.broken.get() {
            return;
        }
        for scoped in std::mem::take(&mut self.held_locks) {
            let _ = self.release(&scoped, &scoped);
        }
    }
}

impl OracleTarget {
    /// The most connections the pool hands out (a cap for --jobs).
    pub fn max_connections(&self) -> usize {
        self.pool_config.max.max(self.pool_config.min).max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    /// The Oracle catalog as `grants check` reads it, into the facts it
    /// compares: a materialized view listed once, grants to the role and to
    /// PUBLIC told apart, the statement types and state of each policy; and
    /// what the comparison then finds (a disabled policy, a missing EXECUTE
    /// on the context package, a DELETE granted on the audit log, a system
    /// privilege of the role).
    #[test]
    fn the_access_catalog_reads_into_what_grants_check_compares() {
        use crate::security::grants::{Problem, compare};
        let objects = [
            ("PF_AUDIT_LOG", "TABLE"),
            ("PF_OWN_ROWS_PREDICATE", "FUNCTION"),
            ("PF_REQUEST_CONTEXT", "PACKAGE"),
            ("PF_USER_ALICE_CAREER_SUMMARY", "MATERIALIZED VIEW"),
            ("PF_USER_ALICE_CAREER_SUMMARY", "TABLE"),
            ("PF_USER_ALICE_SKILLS", "TABLE"),
            ("PF_USERS", "TABLE"),
        ]
        .map(|(n, k)| vec![t(n), t(k)]);
        let privileges = [
            ("PF_AUDIT_LOG", "SELECT", "PATHFINDER_APP", "NO"),
            ("PF_AUDIT_LOG", "INSERT", "PATHFINDER_APP", "NO"),
            ("PF_AUDIT_LOG", "DELETE", "PATHFINDER_APP", "NO"),
            (
                "PF_USER_ALICE_CAREER_SUMMARY",
                "SELECT",
                "PATHFINDER_APP",
                "NO",
            ),
            ("PF_USER_ALICE_SKILLS", "SELECT", "PUBLIC", "NO"),
        ]
        .map(|(o, p, g, a)| vec![t(o), t(p), t(g), t(a)]);
        let access = objects_from_rows(&objects, &privileges, "pathfinder_app", None);
        assert_eq!(access.len(), 6, "{access:#?}");
        let summary = access
            .iter()
            .find(|o| o.name == "pf_user_alice_career_summary")
            .unwrap();
        assert_eq!(summary.kind, "materialized view");
        let skills = access
            .iter()
            .find(|o| o.name == "pf_user_alice_skills")
            .unwrap();
        assert_eq!(skills.privileges[0].via, "PUBLIC");
        let only = objects_from_rows(
            &objects,
            &privileges,
            "pathfinder_app",
            Some(&["pf_users".to_string()]),
        );
        assert_eq!(only.len(), 1);

        let policy = |table: &str, enable: &str, types: [&str; 4]| {
            let mut row = vec![t(table), t(&format!("{table}_OWN_ROWS")), t(enable)];
            row.extend(types.map(t));
            row.push(t("PF_OWN_ROWS_PREDICATE"));
            row
        };
        let yes = ["YES"; 4];
        let policies = policies_from_rows(&[
            policy("PF_AUDIT_LOG", "NO", yes),
            policy("PF_USERS", "YES", ["YES", "NO", "NO", "NO"]),
        ]);
        assert_eq!(policies[0].command, "SELECT, INSERT, UPDATE, DELETE");
        assert!(!policies[0].enabled);
        assert_eq!(policies[1].command, "SELECT");

        let catalog = AccessCatalog {
            role: RoleFacts {
                exists: true,
                system_privileges: vec!["CREATE SESSION".into(), "CREATE TABLE".into()],
                ..RoleFacts::default()
            },
            objects: access,
            policies,
        };
        let tenants = std::collections::HashMap::from([("alice".to_string(), true)]);
        let problems = compare(Dialect::Oracle, "pathfinder_app", &catalog, &tenants);
        let has = |p: Problem| assert!(problems.contains(&p), "{p:?} not in {problems:#?}");
        has(Problem::PolicyDisabled {
            table: "pf_audit_log".into(),
            policy: "pf_audit_log_own_rows".into(),
        });
        has(Problem::PolicyChanged {
            table: "pf_users".into(),
            policy: "pf_users_own_rows".into(),
            found: "function pf_own_rows_predicate on SELECT".into(),
        });
        has(Problem::MissingGrant {
            object: "pf_request_context".into(),
            kind: "package".into(),
            privileges: vec!["EXECUTE".into()],
        });
        has(Problem::ExtraPrivilege {
            object: "pf_audit_log".into(),
            kind: "table".into(),
            privileges: vec!["DELETE".into()],
            via: "role".into(),
            grant_option: false,
        });
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::DdlRights { what } if what.contains("CREATE TABLE"))),
            "{problems:#?}"
        );
        assert!(
            !problems.iter().any(
                |p| matches!(p, Problem::DdlRights { what } if what.contains("CREATE SESSION"))
            ),
            "CREATE SESSION is what a login needs"
        );
        // The predicate function itself is nobody's to call.
        assert!(!problems.iter().any(|p| matches!(p,
            Problem::MissingGrant { object, .. } if object == "pf_own_rows_predicate")));
    }

    fn target(url: &str) -> Result<OracleTarget, UsageError> {
        OracleTarget::from_url(url, &PoolConfig::default())
    }

    fn url_error(url: &str) -> String {
        match target(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_easy_connect_options_are_named_never_shown() {
        let e = url_error("oracle://scott@db:1521/svc?passwrod=S3cretPW&connect_timeout=5");
        assert!(e.contains("`passwrod`") && !e.contains("S3cretPW"), "{e}");
        let e = url_error("oracle://scott@db:1521/svc?S3cretPW");
        assert!(!e.contains("S3cretPW"), "{e}");
        assert!(target("oracle://scott@db:1521/svc?connect_timeout=5&SDU=8192").is_ok());
    }

    #[test]
    fn user_and_password_are_percent_decoded_not_form_decoded() {
        let t = target("oracle://app%2Buser:p%40ss+word@db.example.com:1521/svc").unwrap();
        assert_eq!(t.user, "app+user");
        assert_eq!(t.password.as_deref(), Some("p@ss+word"));
        assert_eq!(t.connect_string, "db.example.com:1521/svc");
        // A raw `@` in the password: the last `@` ends the user info.
        let t = target("oracle://scott:ti@ger@tns_alias").unwrap();
        assert_eq!(t.password.as_deref(), Some("ti@ger"));
        assert_eq!(t.connect_string, "tns_alias");
        let t = target("oracle://scott@tns_alias").unwrap();
        assert_eq!(t.password, None);
    }

    #[test]
    fn url_errors_never_echo_the_password() {
        let err = url_error("oracle://scott:s3cret%FF@host/svc");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("password"), "{err}");
        let err = url_error("oracle://:s3cret@host/svc");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("invalid Oracle URL"), "{err}");
    }

    #[test]
    fn the_displayed_target_drops_password_pairs() {
        let t = target("oracle://scott@(DESCRIPTION=(ADDRESS=(HOST=h))(PASSWORD=x1))").unwrap();
        assert!(!t.display.contains("x1"), "{}", t.display);
    }

    /// Each catalog statement the DBA commands send parses as Oracle SQL.
    #[test]
    fn dba_statements_parse_as_oracle() {
        use sqlparser::dialect::OracleDialect;
        use sqlparser::parser::Parser;
        for sql in [
            TABLE_STATS,
            TABLE_NAMES,
            RELATION_NAMES,
            COLUMNS,
            INDEXES,
            CONSTRAINTS,
            PRIVILEGES,
            DBMS_LOCK_VISIBLE,
            QUOTA,
        ] {
            let sql = bind_placeholders(sql, Dialect::Oracle);
            Parser::parse_sql(&OracleDialect {}, &sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        // PL/SQL blocks: a single call between BEGIN and END;.
        for block in [GATHER_STATS, DB_VERSION] {
            let call = block
                .strip_prefix("BEGIN ")
                .and_then(|b| b.strip_suffix(" END;"))
                .expect("BEGIN call; END;");
            let call = bind_placeholders(call.trim_end_matches(';'), Dialect::Oracle);
            Parser::parse_sql(&OracleDialect {}, &format!("CALL {call}"))
                .unwrap_or_else(|e| panic!("{block}: {e}"));
        }
        assert!(at_least("19.0.0", 12, 2));
        assert!(at_least("12.2.0.1", 12, 2));
        assert!(!at_least("12.1.0.2", 12, 2));
        assert!(!at_least("11.2.0", 12, 2));
    }

    /// Each catalog query's prefix test gets its binds: the exact SUBSTR
    /// test and a LIKE whose wildcards in the prefix are escaped.
    #[test]
    fn prefix_tests_bind_an_escaped_like_pattern() {
        assert_eq!(
            prefix_binds("pf_user_a%b_"),
            [
                Value::Text("PF_USER_A%B_".into()),
                Value::Text("PF_USER_A%B_".into()),
                Value::Text("PF\\_USER\\_A\\%B\\_%".into()),
            ]
        );
        let binds = |sql: &str| sql.matches('?').count();
        for sql in [COLUMNS, INDEXES, TABLE_STATS, TABLE_NAMES, RELATION_NAMES] {
            assert_eq!(binds(sql), prefix_binds("x").len(), "{sql}");
            assert!(sql.contains("LIKE ? ESCAPE '\\'"), "{sql}");
        }
        assert_eq!(binds(CONSTRAINTS), 2 * prefix_binds("x").len());
    }

    #[test]
    fn text_binds_are_varchar2_and_large_ones_long() {
        assert_eq!(text_bind_type(0), OracleType::Varchar2(1));
        assert_eq!(text_bind_type(5), OracleType::Varchar2(5));
        assert_eq!(text_bind_type(4000), OracleType::Varchar2(4000));
        assert_eq!(text_bind_type(32767), OracleType::Varchar2(32767));
        assert_eq!(text_bind_type(32768), OracleType::Long);
        assert_eq!(text_bind_type(10_000_000), OracleType::Long);
    }

    #[test]
    fn the_session_setup_sets_the_ddl_lock_timeout_and_reads_the_schema() {
        assert!(SESSION_SETUP.contains("DDL_LOCK_TIMEOUT = 30"));
        assert!(SESSION_SETUP.contains("SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')"));
        // The allocation runs in its own transaction, so its commit is not ours.
        assert!(ALLOCATE_LOCK.starts_with("DECLARE PRAGMA AUTONOMOUS_TRANSACTION;"));
    }
}
