//! PostgreSQL through the `postgres` crate (synchronous client, no TLS).

use std::error::Error as StdError;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::{
    AccessCatalog, AppRoleSlot, CatalogColumn, CatalogConstraint, CatalogItem, Check, Connection,
    DbError, DbErrorKind, HeldPrivilege, Lock, MemberFacts, ObjectAccess, PolicyFacts, RoleFacts,
    Row, TableStats, Value, bind_placeholders,
};
use crate::db::dialect::Dialect;
use crate::error::UsageError;
use crate::schema::render::Statement;

/// Parses a `postgres://` URL or a key=value string; a missing password comes from
/// `PATHFINDER_DB_PASSWORD` or a prompt on a terminal.
pub fn config_of_url(url: &str) -> Result<postgres::Config, UsageError> {
    let password = std::env::var("PATHFINDER_DB_PASSWORD").ok();
    config_with_password(url, password.as_deref())
}

/// Parses `url` (a member's stored URL, or the catalog's); the password is
/// the URL's, else `password` (a member's: its environment variable or
/// password file), else `~/.pgpass`'s line for it.
pub fn config_with_password(
    url: &str,
    password: Option<&str>,
) -> Result<postgres::Config, UsageError> {
    let expected = "expected postgres://USER@HOST:PORT/DATABASE (options after `?`) or key=value pairs (host=H dbname=D); put the password in PATHFINDER_DB_PASSWORD";
    // The URL is never echoed: a value typed under a wrong name (`passwrod=`)
    // is still a password. Unknown options are named, all of them at once.
    let mut known = crate::db::redact::POSTGRES_OPTIONS.to_vec();
    known.push("password");
    let unknown = if crate::config::is_key_value_string(url) {
        let mut names = Vec::new();
        for key in crate::db::redact::key_value_keys(url) {
            let name = crate::db::redact::option_name(&key);
            if !known.contains(&key.as_str()) && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    } else {
        crate::db::redact::unknown_options(url, &known)
    };
    if !unknown.is_empty() {
        return Err(UsageError::new(format!(
            "the PostgreSQL connection string has unknown option(s) {} (values are not shown): the options are {}; {expected}",
            unknown.join(", "),
            crate::db::redact::POSTGRES_OPTIONS.join(", ")
        )));
    }
    let mut cfg = postgres::Config::from_str(url).map_err(|e| {
        UsageError::new(format!(
            "invalid PostgreSQL connection string: {} (values are not shown); {expected}",
            parse_error_without_values(&e.to_string())
        ))
    })?;
    // A password holding an `@` not written as %40 ends the user part at
    // that `@`: the rest of the password would be taken for (and shown as)
    // the host.
    if cfg
        .get_hosts()
        .iter()
        .any(|h| matches!(h, postgres::config::Host::Tcp(h) if h.contains('@')))
    {
        return Err(UsageError::new(format!(
            "the PostgreSQL URL holds more than one `@` before its host (values are not shown): a password holding `@` must be written %40, or better left out of the URL and set in PATHFINDER_DB_PASSWORD; {expected}"
        )));
    }
    if cfg.get_password().is_none()
        && let Some(pw) = password.filter(|p| !p.is_empty())
    {
        cfg.password(pw);
    }
    if cfg.get_password().is_none()
        && let Some(pw) = password_from_file(&cfg)
    {
        cfg.password(pw);
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    cfg.application_name("pathfinder-db");
    // Timestamps are stored and compared as UTC (`TIMESTAMP` columns defaulting to
    // CURRENT_TIMESTAMP, cutoffs, the audit log), whatever zone the server or the database
    // is set to: the session's zone is part of the connection request (no round trip).
    // JIT off: the tool's statements are catalog reads and short batches,
    // whose cost estimates at fleet scale (hundreds of thousands of
    // relations) pass the JIT threshold and then spend seconds compiling
    // (1.5 s of a 1.9 s grants query at 10,000 tenants) for nothing.
    let options = match cfg.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c TimeZone=UTC -c jit=off"),
        _ => "-c TimeZone=UTC -c jit=off".to_string(),
    };
    cfg.options(&options);
    Ok(cfg)
}

/// The password `~/.pgpass` (or `PGPASSFILE`) gives for the connection, as
/// libpq would find it: first host, first port (5432), the database (else
/// the user's name), the user.
fn password_from_file(cfg: &postgres::Config) -> Option<String> {
    let user = cfg.get_user()?;
    let host = match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.as_str(),
        // A Unix socket (or none: the driver's default) matches `localhost`.
        _ => "localhost",
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    crate::db::pgpass::lookup(&crate::db::pgpass::Target {
        host,
        port,
        database: cfg.get_dbname().unwrap_or(user),
        user,
    })
}

/// The driver's parse error with the character it quotes from the input
/// removed (`expected `=` but got `s``: the `s` may start a password). Its
/// other messages name options only (`unknown option `passwrod``).
fn parse_error_without_values(message: &str) -> String {
    let message = message
        .strip_prefix("invalid connection string: ")
        .unwrap_or(message);
    match message.find(" but got `") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

pub struct PgConnection {
    client: Client,
    target: String,
    /// Set when an error said the connection is gone (the client may not know yet).
    broken: bool,
    /// A member database's connection (not the catalog's).
    member: bool,
    /// An audit row was staged here (a member) and not yet copied.
    staged: bool,
    /// Whether we opened a transaction (so a stray COMMIT/ROLLBACK costs no round trip).
    in_transaction: bool,
    /// Prepared statements for the shared tables, reused so that a query costs
    /// one round trip instead of two (prepare + execute).
    prepared: std::collections::HashMap<String, postgres::Statement>,
    /// The configured application role, and whether the server has it.
    app_role: AppRoleSlot,
    /// Advisory locks taken outside a transaction: held by the session until
    /// [`Connection::unlock`] (or until the connection ends).
    session_locks: std::collections::HashSet<String>,
    /// The statements of [`Connection::query_repeated`], oldest first.
    repeated: Vec<(String, postgres::Statement)>,
}

/// Statements kept by [`Connection::query_repeated`]: a sweep runs one at a
/// time per table.
const MAX_REPEATED: usize = 4;

/// Queries on tenant tables differ per tenant: caching them would only grow the cache.
const MAX_PREPARED: usize = 64;

const AUTH_HINT: &str = ": check the user and PATHFINDER_DB_PASSWORD";
const NO_DATABASE_HINT: &str = ": create the database first (createdb) or fix the URL";

/// A member's connection error, with the hints that fit a member: its own
/// password, and never an empty database made in the place of one that
/// held tenants (it would pass for the member).
fn for_member(e: DbError, member: &str) -> DbError {
    let message = if let Some(cause) = e.message.strip_suffix(NO_DATABASE_HINT) {
        format!(
            "{cause}: restore the member's database, or point the member at its copy elsewhere (`pathfinder-db databases set-url {member} URL`); an empty database made in its place is not the member (for a new member: create the database, or fix the URL)"
        )
    } else if let Some(cause) = e.message.strip_suffix(AUTH_HINT) {
        format!(
            "{cause}: check the user and {} (or the member's password_file, or ~/.pgpass)",
            crate::fleet::members::password_env(member)
        )
    } else {
        return e;
    };
    DbError::new(e.kind, message)
}

fn classify(err: &postgres::Error, target: &str) -> DbError {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let kind = match code {
            "42P07" | "42710" | "42701" => DbErrorKind::AlreadyExists,
            "42P01" | "42704" => DbErrorKind::DoesNotExist,
            "23505" => DbErrorKind::UniqueViolation,
            "28P01" | "28000" => DbErrorKind::Auth,
            "25006" => DbErrorKind::ReadOnly,
            "55P03" | "40P01" => DbErrorKind::Busy,
            c if c.starts_with("08") || c == "57P01" || c == "3D000" => DbErrorKind::Connection,
            _ => DbErrorKind::Other,
        };
        let hint = match kind {
            DbErrorKind::Auth => AUTH_HINT,
            DbErrorKind::Connection if code == "3D000" => NO_DATABASE_HINT,
            _ => "",
        };
        return DbError::new(
            kind,
            format!(
                "PostgreSQL {target}: {} (SQLSTATE {code}){hint}",
                db.message()
            ),
        );
    }
    let kind = if err.is_closed() || err.source().is_some_and(|s| s.is::<std::io::Error>()) {
        DbErrorKind::Connection
    } else {
        DbErrorKind::Other
    };
    let mut text = err.to_string();
    if let Some(source) = err.source() {
        let s = source.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
    }
    let hint = if kind == DbErrorKind::Connection {
        ": is the server running and the URL right? (check host, port and network)"
    } else {
        ""
    };
    DbError::new(kind, format!("PostgreSQL {target}: {text}{hint}"))
}

/// `host:port/database`; every host of a multi-host URL (the error may be
/// any one's), each with its port (one port given serves them all).
fn describe(cfg: &postgres::Config) -> String {
    let ports = cfg.get_ports();
    let mut hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports
                .get(i)
                .or(if ports.len() == 1 {
                    ports.first()
                } else {
                    None
                })
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    if hosts.is_empty() {
        hosts.push(format!(
            "localhost:{}",
            ports.first().copied().unwrap_or(5432)
        ));
    }
    format!("{}/{}", hosts.join(","), cfg.get_dbname().unwrap_or(""))
}

/// Whether the server asked for a password that the configuration lacks.
fn password_missing(err: &postgres::Error) -> bool {
    err.to_string().contains("password missing")
}

impl PgConnection {
    /// Connects; a password is asked for (once per run) only when the server
    /// wants one and the URL and environment gave none.
    pub fn connect(cfg: &postgres::Config) -> Result<Self, DbError> {
        Self::connect_as(cfg, None)
    }

    /// Connects to member database `member`: its password comes only from
    /// its own environment variable, never a prompt nor the catalog's.
    pub fn connect_member(cfg: &postgres::Config, member: &str) -> Result<Self, DbError> {
        Self::connect_as(cfg, Some(member))
    }

    fn connect_as(cfg: &postgres::Config, member: Option<&str>) -> Result<Self, DbError> {
        let target = describe(cfg);
        let client = match cfg.connect(NoTls) {
            Ok(client) => client,
            Err(e) if cfg.get_password().is_none() && password_missing(&e) && member.is_some() => {
                let member = member.unwrap_or_default();
                return Err(DbError::new(
                    DbErrorKind::Auth,
                    format!(
                        "member {member} (PostgreSQL {target}): the server asks for a password: set {}, or name a password_file under [members.{member}] in the configuration file, or add its line to ~/.pgpass",
                        crate::fleet::members::password_env(member)
                    ),
                ));
            }
            Err(e) if cfg.get_password().is_none() && password_missing(&e) => {
                let Some(pw) = super::password_from_env_or_prompt(&format!("PostgreSQL {target}"))
                else {
                    return Err(DbError::new(
                        DbErrorKind::Auth,
                        format!(
                            "PostgreSQL {target}: the server asks for a password: set PATHFINDER_DB_PASSWORD or put it in the URL"
                        ),
                    ));
                };
                let mut with_password = cfg.clone();
                with_password.password(pw);
                with_password
                    .connect(NoTls)
                    .map_err(|e| classify(&e, &target))?
            }
            Err(e) => {
                let e = classify(&e, &target);
                return Err(match member {
                    Some(member) => for_member(e, member),
                    None => e,
                });
            }
        };
        let mut conn = PgConnection {
            client,
            target,
            broken: false,
            member: member.is_some(),
            staged: false,
            in_transaction: false,
            prepared: Default::default(),
            app_role: AppRoleSlot::default(),
            session_locks: Default::default(),
            repeated: Vec::new(),
        };
        conn.pin_search_path()?;
        Ok(conn)
    }

    /// Makes the session's unqualified names mean the schema pathfinder-db
    /// works in, and only it: one query, on connecting. It refuses a schema
    /// of the search_path that the connecting role does not own and that
    /// comes before a schema holding pathfinder-db's tables: whoever made it
    /// (a role with CREATE on the database makes one named after the owner,
    /// the default path's `"$user"`) would have its tables used in their
    /// place (the audit log written into a table it owns, tenants created in
    /// its schema). Then the search_path is that schema alone (it is what
    /// `current_schema()`, which every catalog query reads, names), so no
    /// other schema of the path can lend a table, function or type.
    fn pin_search_path(&mut self) -> Result<(), DbError> {
        let rows = self.simple_rows(SEARCH_PATH)?;
        let text = |r: &Row, i: usize| r[i].to_text();
        let holds = |r: &Row| text(r, 3) == "1";
        let Some(last) = rows.iter().rposition(holds) else {
            return Ok(());
        };
        if let Some((i, r)) = rows[..last]
            .iter()
            .enumerate()
            .find(|(_, r)| text(r, 2) != "1")
        {
            let home = rows[i + 1..]
                .iter()
                .find(|r| holds(r))
                .unwrap_or(&rows[last]);
            let (user, home) = (text(r, 4), text(home, 0));
            return Err(DbError::other(format!(
                "PostgreSQL {}: schema {} (owned by {}) comes before schema {home}, which holds pathfinder-db's tables, on the search_path of role {user}: its tables and functions would be used in their place; fix: ALTER ROLE {user} SET search_path = {home} (then look at what that schema holds, drop it, and revoke CREATE on the database from whoever made it: `pathfinder-db grants check` names it)",
                self.target,
                text(r, 0),
                text(r, 1)
            )));
        }
        Ok(())
    }

    /// The application role the objects this connection creates are granted to.
    pub fn with_app_role(mut self, role: Option<String>) -> Self {
        self.app_role = AppRoleSlot::new(role);
        self
    }

    /// Classifies an error and remembers a lost connection.
    fn fail(&mut self, err: &postgres::Error) -> DbError {
        let e = classify(err, &self.target);
        if e.kind == DbErrorKind::Connection || self.client.is_closed() {
            self.broken = true;
        }
        e
    }
}

/// The schemas of the session's search_path, in order (quoted where
/// needed), their owner, whether the connecting role owns them (1), whether
/// they hold pathfinder-db's tables (1: refinery's history or a `pf_...`
/// relation, found through the index on names: first the tables a catalog
/// or a member always has, exact look-ups; only a schema holding none of
/// them is searched for any `pf_` name), the connecting role; and
/// the search_path set to the first of them holding pathfinder-db's tables
/// (none yet: the first). Text (the simple protocol: one round trip).
const SEARCH_PATH: &str = "WITH p AS (SELECT s.ord, n.nspname, n.nspowner, \
          CASE WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname IN \
                 ('refinery_schema_history', 'pf_tenants', 'pf_audit_log', 'pf_member_identity')) THEN true \
               ELSE EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid \
                 AND c.relname >= 'pf_' AND c.relname < 'pf`') END AS holds \
        FROM unnest(current_schemas(false)) WITH ORDINALITY s(nsp, ord) \
        JOIN pg_namespace n ON n.nspname = s.nsp), \
     pin AS (SELECT nspname FROM p ORDER BY NOT holds, ord LIMIT 1) \
     SELECT quote_ident(p.nspname), pg_get_userbyid(p.nspowner), \
        CASE WHEN p.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN 1 ELSE 0 END, \
        CASE WHEN p.holds THEN 1 ELSE 0 END, quote_ident(current_user), \
        (SELECT set_config('search_path', quote_ident(nspname), false) FROM pin) \
     FROM p ORDER BY p.ord";

/// How many more connections the server accepts from this role to this
/// database: the smallest of max_connections (less the reserved ones) and the
/// role's and database's own limits, less the connections already open.
pub fn free_connections(conn: &mut dyn Connection) -> Result<Option<usize>, DbError> {
    let rows = conn.query(
        "SELECT LEAST(
            current_setting('max_connections')::int
              - current_setting('superuser_reserved_connections')::int
              - (SELECT count(*) FROM pg_stat_activity)::int,
            COALESCE(NULLIF((SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), -1)
              - (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user)::int, 1000000),
            COALESCE(NULLIF((SELECT datconnlimit FROM pg_database WHERE datname = current_database()), -1)
              - (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())::int, 1000000))::int8",
        &[],
    )?;
    // This session counts as open but is closed before the workers start.
    Ok(rows
        .first()
        .and_then(|r| r[0].as_i64())
        .map(|n| (n + 1).max(1) as usize))
}

/// Binds our `Value` to whatever type the server expects for the parameter.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::NUMERIC => Decimal::from(*i).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().to_sql(&Type::TEXT, out),
            },
            Value::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::NUMERIC => decimal_of_float(*f)?.to_sql(ty, out),
                Type::INT2 | Type::INT4 | Type::INT8 if f.fract() == 0.0 => {
                    Value::Int(*f as i64).to_sql(ty, out)
                }
                _ => f.to_string().to_sql(&Type::TEXT, out),
            },
            Value::Text(s) => match *ty {
                // The whole text must be the date: a time after it would be lost.
                Type::DATE => parse_date(s)?.to_sql(ty, out),
                Type::TIMESTAMP => parse_timestamp(s)?.to_sql(ty, out),
                Type::TIMESTAMPTZ => parse_timestamp(s)?.assume_utc().to_sql(ty, out),
                Type::NUMERIC => Decimal::from_str(s.trim())?.to_sql(ty, out),
                Type::INT2 | Type::INT4 | Type::INT8 => {
                    Value::Int(s.trim().parse()?).to_sql(ty, out)
                }
                Type::FLOAT4 | Type::FLOAT8 => Value::Float(s.trim().parse()?).to_sql(ty, out),
                _ => s.as_str().to_sql(&Type::TEXT, out),
            },
            Value::Blob(b) | Value::TextBytes(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("a binary value cannot go into a {ty} column").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The decimal a float stands for: its shortest round-trip text (`0.1`, not
/// the binary value's `0.1000000000000000055511151231`), so a number read from
/// SQLite or an export keeps its digits in a NUMERIC column.
fn decimal_of_float(f: f64) -> Result<Decimal, rust_decimal::Error> {
    Decimal::from_str(&f.to_string()).or_else(|_| Decimal::try_from(f))
}

/// A NUMERIC as a float correctly rounded from its exact decimal text
/// (`Decimal::to_f64` adds the integer and fraction parts in floating point,
/// which can be one unit off in the last place).
fn float_of_decimal(d: &Decimal) -> f64 {
    d.to_string()
        .parse()
        .unwrap_or_else(|_| d.to_f64().unwrap_or(f64::NAN))
}

fn parse_date(s: &str) -> Result<Date, time::error::Parse> {
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]"))
}

/// A timestamp as text: RFC 3339 (converted to UTC), `YYYY-MM-DD HH:MM:SS[.f]`
/// (`T` or a space between), or a bare date.
pub fn parse_timestamp(s: &str) -> Result<PrimitiveDateTime, time::error::Parse> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        let utc = t.to_offset(UtcOffset::UTC);
        return Ok(PrimitiveDateTime::new(utc.date(), utc.time()));
    }
    let s = s.replacen('T', " ", 1);
    PrimitiveDateTime::parse(
        &s,
        format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
        ),
    )
    .or_else(|_| parse_date(&s).map(|d| d.midnight()))
}

/// `YYYY-MM-DD HH:MM:SS`, with the fraction when there is one (no trailing zeros).
pub fn timestamp_text(t: PrimitiveDateTime) -> String {
    let (d, c) = (t.date(), t.time());
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year(),
        d.month() as u8,
        d.day(),
        c.hour(),
        c.minute(),
        c.second()
    );
    if c.nanosecond() != 0 {
        let fraction = format!("{:09}", c.nanosecond());
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out
}

/// A row's values; a value that cannot be read (a date of `infinity`) is
/// named by its column and the row's id.
fn read_row(row: &postgres::Row, target: &str) -> Result<Row, DbError> {
    (0..row.len())
        .map(|i| read_value(row, i).map_err(|e| unreadable(row, i, &e, target)))
        .collect()
}

/// Any value's bytes as the server sent them.
struct Raw(Vec<u8>);

impl<'a> postgres::types::FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn unreadable(row: &postgres::Row, i: usize, err: &postgres::Error, target: &str) -> DbError {
    let column = &row.columns()[i];
    let ty = column.type_();
    let raw = row.try_get::<_, Option<Raw>>(i).ok().flatten().map(|r| r.0);
    // PostgreSQL sends ±infinity as the extreme values of the binary form.
    let infinite = match raw.as_deref() {
        Some(b) if *ty == Type::DATE => [i32::MAX.to_be_bytes(), i32::MIN.to_be_bytes()]
            .contains(&<[u8; 4]>::try_from(b).unwrap_or_default()),
        Some(b) if *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ => {
            [i64::MAX.to_be_bytes(), i64::MIN.to_be_bytes()]
                .contains(&<[u8; 8]>::try_from(b).unwrap_or_default())
        }
        _ => false,
    };
    let id = row
        .columns()
        .iter()
        .position(|c| c.name() == "id")
        .and_then(|k| row.try_get::<_, Option<String>>(k).ok().flatten())
        .map(|id| format!(" of the row with id {id:?}"))
        .unwrap_or_default();
    let what = if infinite {
        format!("the {ty} 'infinity' (or '-infinity'), which has no date to export")
    } else {
        format!(
            "a {ty} value that cannot be read ({})",
            classify(err, target)
        )
    };
    DbError::new(
        DbErrorKind::Other,
        format!(
            "PostgreSQL {target}: column {}{id} holds {what}: set it to a real value (or NULL) and run again",
            column.name()
        ),
    )
}

fn read_value(row: &postgres::Row, i: usize) -> Result<Value, postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Int),
        Type::OID => row
            .try_get::<_, Option<u32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map_or(Value::Null, |v| Value::Float(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, Value::Float),
        Type::NUMERIC => match row.try_get::<_, Option<Decimal>>(i)? {
            None => Value::Null,
            Some(d) if d.fract().is_zero() && d.to_i64().is_some() => {
                Value::Int(d.to_i64().unwrap_or_default())
            }
            Some(d) => Value::Float(float_of_decimal(&d)),
        },
        Type::DATE => row.try_get::<_, Option<Date>>(i)?.map_or(Value::Null, |d| {
            Value::Text(format!(
                "{:04}-{:02}-{:02}",
                d.year(),
                d.month() as u8,
                d.day()
            ))
        }),
        Type::TIMESTAMP => row
            .try_get::<_, Option<PrimitiveDateTime>>(i)?
            .map_or(Value::Null, |d| Value::Text(timestamp_text(d))),
        Type::TIMESTAMPTZ => {
            row.try_get::<_, Option<OffsetDateTime>>(i)?
                .map_or(Value::Null, |d| {
                    let utc = d.to_offset(UtcOffset::UTC);
                    Value::Text(timestamp_text(PrimitiveDateTime::new(
                        utc.date(),
                        utc.time(),
                    )))
                })
        }
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Value::Null, Value::Blob),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text),
    })
}

impl PgConnection {
    fn params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
    }
}

impl PgConnection {
    /// The prepared statement for `sql` (`?` placeholders), from the cache when
    /// it is a query on the shared tables.
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(stmt) = self.prepared.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self
            .client
            .prepare(&bind_placeholders(sql, Dialect::Postgres))
            .map_err(|e| self.fail(&e))?;
        if !sql.contains(crate::schema::tenant::TENANT_PREFIX) {
            if self.prepared.len() >= MAX_PREPARED {
                self.prepared.clear();
            }
            self.prepared.insert(sql.to_string(), stmt.clone());
        }
        Ok(stmt)
    }
}

impl PgConnection {
    fn simple_rows(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let messages = self.client.simple_query(sql).map_err(|e| self.fail(&e))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map_or(Value::Null, |v| Value::Text(v.into())))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// `<rel>.relname` starts with `prefix`: the exact test, plus a range on the
/// name that pg_class's index on relname serves, so finding one tenant's
/// relations does not read the whole catalog (it grows with every tenant).
/// The binds are the prefix twice and the range's bounds.
fn relname_prefix(rel: &str, prefix: &str) -> (String, Vec<Value>) {
    let mut binds = vec![Value::Text(prefix.into()), Value::Text(prefix.into())];
    let mut sql = format!("left({rel}.relname, length(?)) = ?");
    // Names compare bytewise (the C collation): every name with the prefix
    // lies in [prefix, prefix with its last byte raised by one).
    if let Some(last) = prefix.bytes().last().filter(|b| b.is_ascii() && *b < 0x7f) {
        let upper = format!("{}{}", &prefix[..prefix.len() - 1], (last + 1) as char);
        sql.push_str(&format!(" AND {rel}.relname >= ? AND {rel}.relname < ?"));
        binds.push(Value::Text(prefix.into()));
        binds.push(Value::Text(upper));
    }
    (sql, binds)
}

/// The application role: its attributes, its rights on the schema and the
/// database, what it owns there (a few names), and whether the role
/// pathfinder-db connects as may revoke on the database and the schema (it
/// acts as their owner). No row when the role does not exist.
const ROLE_FACTS: &str = "SELECT r.rolsuper, r.rolbypassrls, pg_has_role(r.oid, current_user, 'MEMBER'), \
        n.nspowner = r.oid, has_schema_privilege(r.oid, n.oid, 'CREATE'), \
        (SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = r.oid THEN 'role' \
                                ELSE pg_get_userbyid(a.grantee) END, chr(30)) \
           FROM aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a \
          WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner \
            AND (a.grantee = 0 OR pg_has_role(r.oid, a.grantee, 'USAGE'))), \
        array_to_string(ARRAY(SELECT c.relname::text FROM pg_class c \
            WHERE c.relnamespace = n.oid AND c.relowner = r.oid ORDER BY 1 LIMIT 20), ','), \
        n.nspname::text, d.datname::text, \
        (SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = r.oid THEN 'role' \
                                ELSE pg_get_userbyid(a.grantee) END, chr(30)) \
           FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a \
          WHERE a.privilege_type = 'CREATE' AND a.grantee <> d.datdba \
            AND (a.grantee = 0 OR pg_has_role(r.oid, a.grantee, 'USAGE'))), \
        pg_has_role(current_user, d.datdba, 'USAGE'), pg_has_role(current_user, n.nspowner, 'USAGE') \
     FROM pg_roles r, pg_namespace n, pg_database d \
     WHERE r.rolname = ? AND n.nspname = current_schema() AND d.datname = current_database()";

/// The roles that are members of the application role, directly or through
/// others (`pg_auth_members`; the role pathfinder-db connects as left out):
/// their attributes, membership in the owner role, and CREATE granted to
/// them on the database and the schema.
/// The application role and its members (not superusers, reported as
/// such) that are members of a predefined role reaching past grants.
const PREDEFINED: &str = "WITH RECURSIVE m(oid) AS ( \
        SELECT oid FROM pg_roles WHERE rolname = ? \
        UNION SELECT am.member FROM pg_auth_members am JOIN m ON am.roleid = m.oid) \
     SELECT r.rolname::text, p.rolname::text FROM m JOIN pg_roles r ON r.oid = m.oid \
     JOIN pg_roles p ON p.rolname IN ('pg_read_all_data', 'pg_write_all_data', \
          'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program') \
     WHERE NOT r.rolsuper AND pg_has_role(r.oid, p.oid, 'MEMBER') ORDER BY 1, 2";

const MEMBERS: &str = "WITH RECURSIVE m(oid) AS ( \
        SELECT am.member FROM pg_auth_members am JOIN pg_roles a ON a.oid = am.roleid WHERE a.rolname = ? \
        UNION SELECT am.member FROM pg_auth_members am JOIN m ON am.roleid = m.oid) \
     SELECT r.rolname::text, r.rolsuper, r.rolbypassrls, pg_has_role(r.oid, current_user, 'MEMBER'), \
        EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() \
                  AND a.grantee = r.oid AND a.privilege_type = 'CREATE'), \
        EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = current_schema() \
                  AND a.grantee = r.oid AND a.privilege_type = 'CREATE') \
     FROM m JOIN pg_roles r ON r.oid = m.oid WHERE r.rolname <> current_user ORDER BY 1";

/// What the roles that count hold in the ACL `acl` (an `aclexplode` as
/// `a`, `extra`: more conditions), as a scalar subquery: PUBLIC where
/// `public` holds, the application role, a role it is a member of, a role
/// that is a member of it; `privilege<US>via<US>grantable[<US>column]` (US:
/// chr(31)), entries separated by chr(30). `owner`'s own entries left out.
/// Needs the CTEs of [`ACCESS_ROLES`].
fn acl_entries(owner: &str, public: &str, column: Option<&str>, acl: &str, extra: &str) -> String {
    let column = column
        .map(|c| format!(" || chr(31) || quote_ident({c})"))
        .unwrap_or_default();
    format!(
        "(SELECT string_agg(a.privilege_type || chr(31) || CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
              WHEN a.grantee = (SELECT oid FROM app) THEN 'role' \
              WHEN a.grantee IN (SELECT oid FROM members) THEN 'member:' || pg_get_userbyid(a.grantee) \
              ELSE pg_get_userbyid(a.grantee) END \
           || chr(31) || CASE WHEN a.is_grantable THEN '1' ELSE '0' END{column}, chr(30) \
           ORDER BY a.privilege_type) \
         FROM {acl} a WHERE a.grantee <> {owner} AND ((a.grantee = 0 AND {public}) \
           OR a.grantee IN (SELECT oid FROM members) \
           OR (EXISTS (SELECT 1 FROM app) AND pg_has_role((SELECT oid FROM app), a.grantee, 'USAGE'))){extra})"
    )
}

/// The CTEs naming the application role (`app`) and the roles that are
/// members of it, directly or not (`members`, the connecting role left out).
const ACCESS_ROLES: &str = "WITH RECURSIVE app AS (SELECT oid FROM pg_roles WHERE rolname = ?), \
     members(oid) AS (SELECT am.member FROM pg_auth_members am WHERE am.roleid = (SELECT oid FROM app) \
        UNION SELECT am.member FROM pg_auth_members am JOIN members m ON am.roleid = m.oid)";

/// Every `pf_...` relation of the schema (and refinery's history), and any
/// other relation of the schema the application may use, with what the
/// application role holds on it: directly, through PUBLIC, through a role
/// it is a member of, or granted to a role that is a member of it (the
/// owner's own entries left out); on the whole relation and (column
/// privileges) on its columns; its row security and whether the role owns
/// it. PUBLIC's privileges on a relation that is not the tool's count only
/// on a view (not `security_invoker`) or materialized view reading a
/// `pf_...` relation: it reads with its owner's rights. One pass over
/// pg_class for the whole fleet.
fn object_access_sql() -> String {
    let ours = "(left(c.relname, 3) = 'pf_' OR c.relname = 'refinery_schema_history')";
    let public = format!(
        "({ours} OR (c.relkind IN ('v', 'm') \
           AND NOT EXISTS (SELECT 1 FROM unnest(c.reloptions) o \
                 WHERE lower(o) ~ '^security_invoker=(t|tr|tru|true|y|ye|yes|on|1)$') \
           AND EXISTS (SELECT 1 FROM pg_rewrite rw \
                 JOIN pg_depend dp ON dp.classid = 'pg_rewrite'::regclass AND dp.objid = rw.oid \
                  AND dp.refclassid = 'pg_class'::regclass \
                 JOIN pg_class t ON t.oid = dp.refobjid \
                 WHERE rw.ev_class = c.oid AND t.oid <> c.oid AND left(t.relname, 3) = 'pf_')))"
    );
    let relation = acl_entries("c.relowner", &public, None, "aclexplode(c.relacl)", "");
    let column_acl = acl_entries(
        "c.relowner",
        &public,
        Some("at.attname"),
        "pg_attribute at, aclexplode(at.attacl)",
        " AND at.attrelid = c.oid AND at.attnum > 0 AND NOT at.attisdropped AND at.attacl IS NOT NULL",
    );
    // Column privileges are read only where they can be (pg_attribute is
    // the largest catalog of a fleet: reading it for every table made the
    // check six times slower): the tables a role of the application holds
    // a column privilege on (pg_shdepend records each, by role, through
    // its index), and the tool's own shared tables, whose PUBLIC column
    // privileges (PUBLIC is no role there) are looked for too.
    let columns = format!(
        "CASE WHEN c.oid IN (SELECT d.objid FROM pg_shdepend d \
              WHERE d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND d.classid = 'pg_class'::regclass AND d.objsubid > 0 AND d.deptype = 'a' \
                AND d.refclassid = 'pg_authid'::regclass \
                AND (d.refobjid IN (SELECT oid FROM app) OR d.refobjid IN (SELECT oid FROM members) \
                     OR (EXISTS (SELECT 1 FROM app) AND pg_has_role((SELECT oid FROM app), d.refobjid, 'USAGE')))) \
            OR (left(c.relname, 3) = 'pf_' AND left(c.relname, 8) <> 'pf_user_') \
         THEN {column_acl} END"
    );
    format!(
        "{ACCESS_ROLES} \
         SELECT x.name, x.kind, x.rls, x.forced, x.owned, x.privileges, x.columns FROM ( \
           SELECT quote_ident(c.relname) AS name, c.relname AS relname, c.relkind::text AS kind, \
             c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, \
             COALESCE(c.relowner = (SELECT oid FROM app), false) AS owned, {ours} AS ours, \
             {relation} AS privileges, {columns} AS columns \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
         ) x WHERE (x.ours OR x.privileges IS NOT NULL OR x.columns IS NOT NULL)"
    )
}

/// The functions and procedures of the schema the application may execute
/// (directly, through PUBLIC, as for [`object_access_sql`]) that matter: the
/// tool's own (`pf_...`), and any SECURITY DEFINER one owned by a role that
/// row-level security does not hold (the connecting role, a superuser, a
/// BYPASSRLS role): it runs with its owner's rights. A function someone made
/// that runs with its caller's rights is left alone: PostgreSQL lets PUBLIC
/// execute every new function, and the caller's grants and policies apply.
fn function_access_sql() -> String {
    let entries = acl_entries(
        "p.proowner",
        "true",
        None,
        "aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner)))",
        "",
    );
    format!(
        "{ACCESS_ROLES} \
         SELECT x.name, x.kind, x.privileges FROM ( \
           SELECT p.oid::regprocedure::text AS name, \
             CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END AS kind, \
             {entries} AS privileges \
           FROM pg_proc p JOIN pg_roles o ON o.oid = p.proowner \
           WHERE p.pronamespace = {SCHEMA} AND p.prokind IN ('f', 'p') \
             AND (left(p.proname, 3) = 'pf_' OR (p.prosecdef AND (o.rolname = current_user \
                  OR o.rolsuper OR o.rolbypassrls))) \
         ) x WHERE x.privileges IS NOT NULL ORDER BY 1"
    )
}

/// The row-level security policies on `pf_...` tables.
const POLICIES: &str = "SELECT c.relname::text, p.polname::text, \
        CASE p.polcmd WHEN '*' THEN 'ALL' WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' \
             WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' END, \
        p.polpermissive, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), \
        array_to_string(ARRAY(SELECT CASE WHEN o = 0 THEN 'public' ELSE pg_get_userbyid(o) END \
                              FROM unnest(p.polroles) o ORDER BY 1), ',') \
     FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = current_schema() AND left(c.relname, 3) = 'pf_' ORDER BY 1, 2";

fn relkind_name(kind: &str) -> &'static str {
    match kind {
        "r" | "p" | "f" => "table",
        "v" => "view",
        "m" => "materialized view",
        "S" => "sequence",
        _ => "other",
    }
}

fn flag(v: &Value) -> bool {
    v.as_i64() == Some(1)
}

fn text_list(v: &Value) -> Vec<String> {
    if v.is_null() {
        return Vec::new();
    }
    v.to_text()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The entries [`acl_entries`] joins: `privilege<US>via<US>grantable`, with
/// `<US>column` for a column privilege.
fn held_privileges(v: &Value) -> Vec<HeldPrivilege> {
    if v.is_null() {
        return Vec::new();
    }
    v.to_text()
        .split('\u{1e}')
        .filter_map(|entry| {
            let mut parts = entry.split('\u{1f}');
            let privilege = parts.next()?.to_ascii_uppercase();
            let via = parts.next()?.to_string();
            let grantable = parts.next()? == "1";
            let column = parts.next().map(str::to_string);
            Some(HeldPrivilege {
                privilege,
                via,
                grantable,
                column,
            })
        })
        .collect()
}

/// Entries separated by chr(30).
fn record_list(v: &Value) -> Vec<String> {
    if v.is_null() {
        return Vec::new();
    }
    v.to_text()
        .split('\u{1e}')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl PgConnection {
    fn read_access_catalog(
        &mut self,
        role: &str,
        names: Option<&[String]>,
    ) -> Result<AccessCatalog, DbError> {
        let facts = self.query(ROLE_FACTS, &[Value::Text(role.into())])?;
        let mut role_facts = match facts.first() {
            None => RoleFacts::default(),
            Some(r) => RoleFacts {
                exists: true,
                superuser: flag(&r[0]),
                bypass_rls: flag(&r[1]),
                member_of_owner: flag(&r[2]),
                owns_schema: flag(&r[3]),
                schema_create: if flag(&r[4]) {
                    record_list(&r[5])
                } else {
                    Vec::new()
                },
                owned: text_list(&r[6]),
                schema: r[7].to_text(),
                database: r[8].to_text(),
                database_create: record_list(&r[9]),
                may_revoke_database: flag(&r[10]),
                may_revoke_schema: flag(&r[11]),
                members: Vec::new(),
                system_privileges: Vec::new(),
                predefined: Vec::new(),
            },
        };
        if role_facts.exists {
            role_facts.members = self
                .query(MEMBERS, &[Value::Text(role.into())])?
                .iter()
                .map(|r| MemberFacts {
                    name: r[0].to_text(),
                    superuser: flag(&r[1]),
                    bypass_rls: flag(&r[2]),
                    member_of_owner: flag(&r[3]),
                    database_create: flag(&r[4]),
                    schema_create: flag(&r[5]),
                })
                .collect();
            role_facts.predefined = self
                .query(PREDEFINED, &[Value::Text(role.into())])?
                .iter()
                .map(|r| (r[0].to_text(), r[1].to_text()))
                .collect();
        }
        let mut binds = vec![Value::Text(role.into())];
        let mut sql = object_access_sql();
        if let Some(names) = names {
            sql.push_str(" AND x.relname = ANY(string_to_array(?, ','))");
            binds.push(Value::Text(names.join(",")));
        }
        sql.push_str(" ORDER BY 1");
        let mut objects: Vec<ObjectAccess> = self
            .query(&sql, &binds)?
            .iter()
            .map(|r| {
                let mut privileges = held_privileges(&r[5]);
                privileges.extend(held_privileges(&r[6]));
                ObjectAccess {
                    name: r[0].to_text(),
                    kind: relkind_name(&r[1].to_text()).into(),
                    row_security: flag(&r[2]),
                    row_security_forced: flag(&r[3]),
                    owned_by_role: flag(&r[4]),
                    privileges,
                }
            })
            .collect();
        if names.is_none() {
            objects.extend(
                self.query(&function_access_sql(), &[Value::Text(role.into())])?
                    .iter()
                    .map(|r| ObjectAccess {
                        name: r[0].to_text(),
                        kind: r[1].to_text(),
                        row_security: false,
                        row_security_forced: false,
                        owned_by_role: false,
                        privileges: held_privileges(&r[2]),
                    }),
            );
        }
        let policies = self
            .query(POLICIES, &[])?
            .iter()
            .map(|r| PolicyFacts {
                table: r[0].to_text(),
                name: r[1].to_text(),
                command: r[2].to_text(),
                permissive: flag(&r[3]),
                enabled: true,
                using: (!r[4].is_null()).then(|| r[4].to_text()),
                check: (!r[5].is_null()).then(|| r[5].to_text()),
                roles: text_list(&r[6]),
            })
            .collect();
        Ok(AccessCatalog {
            role: role_facts,
            objects,
            policies,
        })
    }
}

/// The schema's oid, found once per query (an InitPlan) rather than joined
/// to every relation: with it the index on (relname, relnamespace) serves
/// the whole condition.
const SCHEMA: &str = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())";

/// Every column of the tables and views under `prefix` (table, column,
/// type, nullable, position, default); `ordered` by table and position.
/// A default is deparsed without its table unless it is a generated
/// column's (the only defaults that name columns): with a table,
/// `pg_get_expr` opens it, which at a fleet's size costs more than the rest
/// of the query, and the text is the same.
fn columns_sql(prefix: &str, ordered: bool) -> (String, Vec<Value>) {
    // pg_attribute, not information_schema: materialized views are not in the latter.
    let (prefixed, binds) = relname_prefix("c", prefix);
    let order = if ordered {
        " ORDER BY c.relname, a.attnum"
    } else {
        ""
    };
    (
        format!(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                NOT a.attnotnull, a.attnum::int8, \
                CASE WHEN a.atthasdef THEN (SELECT pg_get_expr(d.adbin, \
                     CASE WHEN a.attgenerated = '' THEN 0 ELSE d.adrelid END) \
                  FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) END \
         FROM pg_class c \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ('r', 'm', 'v', 'p') \
           AND {prefixed}{order}"
        ),
        binds,
    )
}

/// The keys, checks and own indexes of the tables under `prefix`, one row
/// per column in order (see [`super::constraints_from_rows`]).
/// pg_constraint and pg_index are reached through the table's oid
/// (conrelid, indrelid: both indexed), never scanned; an index behind a key
/// is told apart by a constraint of the same table naming it; a parent
/// table is looked up for foreign keys only. An index column is named from
/// pg_attribute (as `pg_get_indexdef` names it, quoted where needed); only
/// an expression is deparsed, since `pg_get_indexdef` opens the table (at a
/// fleet's size, that cost more than all the rest).
fn constraints_sql(prefix: &str) -> (String, Vec<Value>) {
    let (tables, mut binds) = relname_prefix("c", prefix);
    let (indexed, more) = relname_prefix("c", prefix);
    binds.extend(more);
    (
        format!(
            "SELECT c.relname::text, k.conname::text, k.contype::text, a.attname::text, u.o::int8, \
                CASE WHEN k.contype = 'f' THEN \
                     (SELECT f.relname::text FROM pg_class f WHERE f.oid = k.confrelid) END, \
                CASE k.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' \
                     WHEN 'd' THEN 'SET DEFAULT' WHEN 'r' THEN 'RESTRICT' WHEN 'a' THEN 'NO ACTION' END \
         FROM pg_class c \
         JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype IN ('p', 'u', 'f', 'c') \
         LEFT JOIN LATERAL unnest(k.conkey) WITH ORDINALITY u(attnum, o) ON true \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum \
         WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ('r', 'p') AND {tables} \
         UNION ALL \
         SELECT c.relname::text, i.relname::text, 'i', \
                CASE WHEN x.indkey[g.n - 1] <> 0 THEN \
                     (SELECT quote_ident(a.attname) FROM pg_attribute a \
                       WHERE a.attrelid = x.indrelid AND a.attnum = x.indkey[g.n - 1]) \
                     ELSE pg_get_indexdef(x.indexrelid, g.n, true) END, \
                g.n::int8, NULL, NULL \
         FROM pg_class c \
         JOIN pg_index x ON x.indrelid = c.oid \
         JOIN pg_class i ON i.oid = x.indexrelid \
         CROSS JOIN LATERAL generate_series(1, x.indnkeyatts) g(n) \
         LEFT JOIN pg_constraint k ON k.conrelid = x.indrelid AND k.conindid = x.indexrelid \
         WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ('r', 'm', 'p') AND {indexed} \
           AND k.oid IS NULL \
         ORDER BY 1, 2, 5"
        ),
        binds,
    )
}

impl Connection for PgConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let stmt = self.statement(sql)?;
        self.client
            .execute(&stmt, &Self::params(params))
            .map_err(|e| self.fail(&e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        if params.is_empty()
            && sql.contains(crate::schema::tenant::SCHEMA_HISTORY)
            && sql.contains(crate::schema::tenant::TENANT_PREFIX)
        {
            // A tenant's migration history is read once per tenant: the simple
            // protocol takes one round trip where prepare + execute take two.
            // Values come back as text (NULL stays NULL), which the history
            // reader parses.
            return self.simple_rows(sql);
        }
        let stmt = self.statement(sql)?;
        let rows = self
            .client
            .query(&stmt, &Self::params(params))
            .map_err(|e| self.fail(&e))?;
        rows.iter().map(|row| read_row(row, &self.target)).collect()
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        if statements.is_empty() {
            return Ok(());
        }
        // One round trip for the whole batch, as psql -1 -f would need many.
        let batch = statements
            .iter()
            .map(|s| s.sql.as_str())
            .collect::<Vec<_>>()
            .join(";\n");
        self.client.batch_execute(&batch).map_err(|e| self.fail(&e))
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.client
            .batch_execute("BEGIN")
            .map_err(|e| self.fail(&e))?;
        self.in_transaction = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        if !self.in_transaction {
            return Ok(());
        }
        self.in_transaction = false;
        self.client
            .batch_execute("COMMIT")
            .map_err(|e| self.fail(&e))
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if !self.in_transaction || self.client.is_closed() {
            self.in_transaction = false;
            return Ok(());
        }
        self.in_transaction = false;
        self.client
            .batch_execute("ROLLBACK")
            .map_err(|e| self.fail(&e))
    }

    fn erase_freed(&mut self, table: &str) -> Result<Option<String>, DbError> {
        if self.in_transaction {
            return Err(DbError::other(
                "VACUUM FULL cannot run inside a transaction (a bug: erase after the commit)",
            ));
        }
        // VACUUM FULL copies every row version a snapshot may still see, its
        // own snapshot included. So first wait (a bounded time) until nothing
        // older than now holds the removal horizon back: no transaction
        // running anywhere on the server (the oldest xid a new snapshot
        // sees), no session of this database holding an older snapshot, no
        // replication slot.
        let rows = self.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])?;
        let now: u64 = rows
            .first()
            .and_then(|r| r[0].to_text().parse().ok())
            .ok_or_else(|| DbError::other("pg_current_snapshot() returned no xmax"))?;
        let holders = format!(
            "SELECT 'session ' || pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND (age(backend_xid) > age('{now}'::xid8::xid) OR (datname = current_database() \
             AND age(backend_xmin) > age('{now}'::xid8::xid))) \
             UNION ALL SELECT 'replication slot ' || slot_name FROM pg_replication_slots \
             WHERE age(xmin) > age('{now}'::xid8::xid) \
             UNION ALL SELECT 'a transaction' WHERE pg_snapshot_xmin(pg_current_snapshot()) < '{now}'::xid8"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.query(&holders, &[])?;
            if found.is_empty() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let mut names: Vec<String> = found.iter().map(|r| r[0].to_text()).collect();
                names.dedup();
                return Err(DbError::new(
                    DbErrorKind::Busy,
                    format!(
                        "PostgreSQL {}: {} opened before the deletion and still open, so the old row versions cannot be removed yet: run `pathfinder-db keys erase` once they ended",
                        self.target,
                        names.join(", ")
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Sessions of other roles hide their snapshots unless this role may
        // read all statistics: say so rather than claim more than was seen.
        let hidden = self.query(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state IS NULL",
            &[],
        )?;
        let hidden = hidden.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        // VACUUM FULL holds an exclusive lock on the table while it copies
        // it: wait a bounded time for it, so the application's readers are
        // never queued behind a long wait.
        let result = self
            .client
            .batch_execute("SET lock_timeout = '10s'")
            .and_then(|()| self.client.batch_execute(&format!("VACUUM FULL {table}")));
        let reset = self.client.batch_execute("RESET lock_timeout");
        result.and(reset).map_err(|e| {
            let err = self.fail(&e);
            match err.kind {
                DbErrorKind::Busy => DbError::new(
                    err.kind,
                    format!(
                        "PostgreSQL {}: VACUUM FULL waited 10 s for open transactions that use {table} and gave up: run `pathfinder-db keys erase` once they ended",
                        self.target
                    ),
                ),
                _ => err,
            }
        })?;
        let mut done = "VACUUM FULL (the table was rewritten into a new file)".to_string();
        if hidden > 0 {
            done.push_str(&format!(
                "; {hidden} session(s) of other roles could not be checked for older snapshots (grant pg_read_all_stats to this role so that erasing waits for them)"
            ));
        }
        Ok(Some(done))
    }

    // Advisory locks are per server: the key includes the database and schema,
    // so two deployments on one server never block each other. Inside a
    // transaction a lock ends with it; outside one (a tenant operation whose
    // steps commit one by one, on a fleet) it is the session's until unlocked.
    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        if self.in_transaction {
            return self
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
                    &[Value::Text(name.to_string())],
                )
                .map(|_| ());
        }
        let key = name.to_string();
        if self.session_locks.contains(&key) {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_lock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
            &[Value::Text(key.clone())],
        )?;
        self.session_locks.insert(key);
        Ok(())
    }

    fn try_lock(&mut self, name: &Lock<'_>) -> Result<bool, DbError> {
        if self.in_transaction {
            let rows = self.query(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
                &[Value::Text(name.to_string())],
            )?;
            return Ok(rows.first().and_then(|r| r[0].as_i64()) == Some(1));
        }
        let key = name.to_string();
        if self.session_locks.contains(&key) {
            return Ok(true);
        }
        let rows = self.query(
            "SELECT pg_try_advisory_lock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
            &[Value::Text(key.clone())],
        )?;
        let got = rows.first().and_then(|r| r[0].as_i64()) == Some(1);
        if got {
            self.session_locks.insert(key);
        }
        Ok(got)
    }

    fn table_bytes(&mut self, prefix: &str) -> Result<u64, DbError> {
        let (prefixed, binds) = relname_prefix("c", prefix);
        let rows = self.query(
            &format!(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
             WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ('r', 'm', 'p') \
               AND {prefixed}",
            ),
            &binds,
        )?;
        Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0).max(0) as u64)
    }

    fn freeze_tables(&mut self, tables: &[String]) -> Result<(), DbError> {
        if tables.is_empty() {
            return Ok(());
        }
        // EXCLUSIVE blocks every writer until the transaction ends; readers go on.
        self.client
            .batch_execute(&format!(
                "LOCK TABLE {} IN EXCLUSIVE MODE",
                tables.join(", ")
            ))
            .map_err(|e| self.fail(&e))
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        use postgres::fallible_iterator::FallibleIterator;
        let stmt = self.statement(sql)?;
        let mut rows = self
            .client
            .query_raw(&stmt, params.iter().map(|v| v as &dyn ToSql))
            .map_err(|e| classify(&e, &self.target))?;
        loop {
            let next = rows.next().map_err(|e| classify(&e, &self.target));
            let row = match next {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    drop(rows);
                    if e.kind == DbErrorKind::Connection {
                        self.broken = true;
                    }
                    return Err(e);
                }
            };
            each(read_row(&row, &self.target)?)?;
        }
        Ok(())
    }

    fn unlock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        // Transaction-level advisory locks end with the transaction; a
        // session-level one is released here.
        let key = name.to_string();
        if !self.session_locks.remove(&key) {
            return Ok(());
        }
        self.execute(
            "SELECT pg_advisory_unlock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
            &[Value::Text(key)],
        )
        .map(|_| ())
    }

    // The same key as `lock`, at the session level: session and transaction
    // advisory locks on one key exclude each other across sessions, and a
    // session holding one level is granted the other at once.
    fn hold(&mut self, name: &Lock<'_>) -> Result<bool, DbError> {
        let name = name.to_string();
        if self.session_locks.contains(&name) {
            return Ok(true);
        }
        self.execute(
            "SELECT pg_advisory_lock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))",
            &[Value::Text(name.clone())],
        )?;
        self.session_locks.insert(name);
        Ok(true)
    }

    fn holds(&self, name: &Lock<'_>) -> bool {
        self.session_locks.contains(&name.to_string())
    }

    fn release_held(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        let name = name.to_string();
        if !self.session_locks.remove(&name) {
            return Ok(());
        }
        let sql = if self.in_transaction {
            "SELECT pg_advisory_xact_lock(k), pg_advisory_unlock(k) FROM              (SELECT hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0) AS k) n"
        } else {
            "SELECT pg_advisory_unlock(hashtextextended(current_database() || '/' || current_schema() || '/' || ?, 0))"
        };
        let released = self.query(sql, &[Value::Text(name)]);
        if released.is_err() {
            // Still held, by a session that goes on to other work: give the
            // session up instead (the lock ends with it).
            self.broken = true;
        }
        released.map(|_| ())
    }

    fn query_repeated(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let stmt = match self.repeated.iter().find(|(s, _)| s == sql) {
            Some((_, stmt)) => stmt.clone(),
            None => {
                let stmt = self
                    .client
                    .prepare(&bind_placeholders(sql, Dialect::Postgres))
                    .map_err(|e| self.fail(&e))?;
                if self.repeated.len() >= MAX_REPEATED {
                    // Dropped, the statement is closed with the next message.
                    self.repeated.remove(0);
                }
                self.repeated.push((sql.to_string(), stmt.clone()));
                stmt
            }
        };
        let rows = self
            .client
            .query(&stmt, &Self::params(params))
            .map_err(|e| self.fail(&e))?;
        rows.iter().map(|row| read_row(row, &self.target)).collect()
    }

    fn commit_and_begin(&mut self) -> Result<(), DbError> {
        if !self.in_transaction {
            return self.begin();
        }
        // On an error the transaction is left open or aborted, or rolled
        // back: a ROLLBACK after it is harmless either way.
        let done = self.client.batch_execute("COMMIT; BEGIN");
        done.map_err(|e| self.fail(&e))
    }

    fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    fn is_member(&self) -> bool {
        self.member
    }

    fn note_staged(&mut self) {
        self.staged = true;
    }

    fn take_staged(&mut self) -> bool {
        std::mem::take(&mut self.staged)
    }

    fn table_stats(&mut self, prefix: &str) -> Result<Vec<TableStats>, DbError> {
        // reltuples is -1 until the table was first analyzed or vacuumed.
        let (prefixed, binds) = relname_prefix("c", prefix);
        let rows = self.query(
            &format!(
            "SELECT c.relname::text, CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END, \
                    pg_total_relation_size(c.oid)::int8 \
             FROM pg_class c \
             WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ('r', 'm', 'p') \
               AND {prefixed} \
             ORDER BY 1",
            ),
            &binds,
        )?;
        Ok(rows
            .iter()
            .map(|r| TableStats {
                table: r[0].to_text(),
                rows: r[1].as_i64(),
                bytes: r[2].as_i64().map(|b| b.max(0) as u64),
            })
            .collect())
    }

    fn analyze(&mut self, tables: &[String]) -> Result<(), DbError> {
        if tables.is_empty() {
            return Ok(());
        }
        // One statement for all of them: one round trip.
        self.client
            .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
            .map_err(|e| self.fail(&e))
    }

    fn preflight(&mut self) -> Result<Vec<Check>, DbError> {
        let rows = self.query(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int8, \
                    current_user::text, current_schema()::text, \
                    CASE WHEN current_schema() IS NULL THEN 0 \
                         WHEN has_schema_privilege(current_schema(), 'CREATE') THEN 1 ELSE 0 END",
            &[],
        )?;
        let Some(r) = rows.first() else {
            return Ok(Vec::new());
        };
        let (version, number, user) = (r[0].to_text(), r[1].as_i64().unwrap_or(0), r[2].to_text());
        let mut checks = vec![if number >= 130000 {
            Check::ok(
                "server",
                format!("PostgreSQL {version} (13 or newer is needed)"),
            )
        } else {
            Check::fail(
                "server",
                format!("PostgreSQL {version} is older than 13"),
                "upgrade the server to PostgreSQL 13 or newer",
            )
        }];
        checks.push(match (r[3].is_null(), r[4].as_i64() == Some(1)) {
            (true, _) => Check::fail(
                "grants",
                format!("no schema of the search_path exists for role {user}"),
                format!("create the schema (CREATE SCHEMA {user}) or set search_path to an existing one"),
            ),
            (false, true) => Check::ok(
                "grants",
                format!("role {user} may create tables and materialized views in schema {}", r[3].to_text()),
            ),
            (false, false) => Check::fail(
                "grants",
                format!("role {user} may not CREATE in schema {}: provisioning and migrations would fail", r[3].to_text()),
                format!("as the schema's owner: GRANT CREATE ON SCHEMA {} TO {user}", r[3].to_text()),
            ),
        });
        Ok(checks)
    }

    fn app_role(&mut self) -> Result<Option<String>, DbError> {
        let mut slot = std::mem::take(&mut self.app_role);
        let found = slot.get(|name| {
            let rows = self.query(
                "SELECT 1 FROM pg_roles WHERE rolname = ?",
                &[Value::Text(name.into())],
            )?;
            Ok(!rows.is_empty())
        });
        self.app_role = slot;
        found
    }

    fn access_catalog(
        &mut self,
        role: &str,
        names: Option<&[String]>,
    ) -> Result<Option<AccessCatalog>, DbError> {
        self.read_access_catalog(role, names).map(Some)
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let (sql, binds) = columns_sql(prefix, true);
        let rows = self.query(&sql, &binds)?;
        Ok(rows.iter().map(CatalogColumn::from_row).collect())
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let (prefixed, binds) = relname_prefix("t", prefix);
        let rows = self.query(
            &format!(
                "SELECT t.relname::text, i.relname::text \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             LEFT JOIN pg_constraint k ON k.conrelid = x.indrelid AND k.conindid = x.indexrelid \
             WHERE t.relnamespace = {SCHEMA} AND {prefixed} AND k.oid IS NULL \
             ORDER BY 1, 2",
            ),
            &binds,
        )?;
        Ok(rows
            .into_iter()
            .map(|r| (r[0].to_text(), r[1].to_text()))
            .collect())
    }

    fn constraints(&mut self, prefix: &str) -> Result<Vec<CatalogConstraint>, DbError> {
        let (sql, binds) = constraints_sql(prefix);
        let rows = self.query(&sql, &binds)?;
        Ok(super::constraints_from_rows(&rows))
    }

    fn catalog_each(
        &mut self,
        prefix: &str,
        each: &mut dyn FnMut(CatalogItem) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        // Two queries, not three: our indexes are the constraint query's
        // index rows. Columns unordered (a fleet's are many: the server
        // would sort them on disk), streamed like the constraints.
        let (sql, binds) = columns_sql(prefix, false);
        self.query_each(&sql, &binds, &mut |r| {
            each(CatalogItem::Column(CatalogColumn::from_row(&r)))
        })?;
        let (sql, binds) = constraints_sql(prefix);
        let mut group = super::ConstraintGroup::default();
        let mut last_index: Option<(String, String)> = None;
        self.query_each(&sql, &binds, &mut |r| {
            if r[2].to_text() == "i" {
                let index = (r[0].to_text(), r[1].to_text());
                if last_index.as_ref() != Some(&index) {
                    last_index = Some(index.clone());
                    each(CatalogItem::Index(index.0, index.1))?;
                }
            }
            match group.push(&r) {
                Some(done) => each(CatalogItem::Constraint(done)),
                None => Ok(()),
            }
        })?;
        match group.finish() {
            Some(done) => each(CatalogItem::Constraint(done)),
            None => Ok(()),
        }
    }

    fn table_names(&mut self, prefix: &str, views: bool) -> Result<Vec<String>, DbError> {
        let (prefixed, binds) = relname_prefix("c", prefix);
        // With views: the relations `columns` describes (those with a
        // column), named as it names them (lower case).
        let (kinds, has_column) = if views {
            (
                "'r', 'm', 'v', 'p'",
                " AND EXISTS (SELECT 1 FROM pg_attribute a \
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)",
            )
        } else {
            ("'r', 'm', 'p'", "")
        };
        let rows = self.query(
            &format!(
                "SELECT c.relname::text FROM pg_class c \
             WHERE c.relnamespace = {SCHEMA} AND c.relkind IN ({kinds}) AND {prefixed}{has_column}"
            ),
            &binds,
        )?;
        let mut names: Vec<String> = rows
            .iter()
            .map(|r| {
                let name = r[0].to_text();
                if views {
                    name.to_ascii_lowercase()
                } else {
                    name
                }
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}
