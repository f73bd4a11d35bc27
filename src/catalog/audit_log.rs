//! Reading `pf_audit_log` (the `audit` command): filtered, newest first, from
//! the log's indexes, and the polling behind `audit --follow`.
//!
//! Every query ranges over `created_at` (`pf_audit_created_ix`): the newest
//! rows come from a backward scan of that index that stops after `limit`
//! rows, whatever the size of the log. `created_at IS NOT NULL` is always
//! part of the condition: Oracle leaves rows whose key is NULL out of a
//! B-tree index, so only with it may the optimizer read the order from the
//! index (the tool never writes such rows).

use std::collections::HashMap;

use serde::Serialize;
use time::PrimitiveDateTime;

use crate::db::dialect::Dialect;
use crate::db::{Connection, DbError, Row, Value};
use crate::schema::tenant::{TABLES, TenantKey, Username};

/// The system schema version that added `pf_audit_log.details`.
const DETAILS_VERSION: u32 = 4;

/// How far back each `--follow` poll looks again behind the newest row it
/// saw. An audit row can become visible after newer ones: PostgreSQL stamps
/// `created_at` with the time its transaction began, so a row committed late
/// is older than rows already shown. Rows already printed are remembered by
/// id, so none is printed twice.
pub const FOLLOW_LOOKBACK: time::Duration = time::Duration::minutes(1);

/// Which actions to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// `tenant.provision`.
    Exact(String),
    /// `retention.` or `tenant.*`: every action that starts with the text.
    Prefix(String),
}

impl ActionFilter {
    /// An action (`tenant.provision`), or a prefix: one that ends with `.`
    /// (`retention.`) or `*` (`tenant.*`, `key*`). Actions are lowercase
    /// letters, digits, `_` and `.`.
    pub fn parse(text: &str) -> Result<ActionFilter, String> {
        let bad = || {
            format!(
                "{text:?} is not an action: use one such as tenant.provision, or a prefix ending in . or * such as retention. or tenant.*"
            )
        };
        let (name, prefix) = match text.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (text, text.ends_with('.')),
        };
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.';
        if name.is_empty() || name.len() > 50 || !name.chars().all(allowed) {
            return Err(bad());
        }
        Ok(if prefix {
            ActionFilter::Prefix(name.to_string())
        } else {
            ActionFilter::Exact(name.to_string())
        })
    }
}

/// The rows about one user: the ones naming the user (tenant operations,
/// keys), the ones naming one of the user's tables (retention sweeps and
/// restores), and the ones carrying the user's `pf_users.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFilter {
    pub entity_ids: Vec<String>,
    pub user_ids: Vec<String>,
}

impl UserFilter {
    /// Looks the user up in the tenant registry (deprovisioned tenants
    /// included: their rows stay in the log) and in `pf_users`. A user known
    /// to neither still matches the rows that name it.
    pub fn of(conn: &mut dyn Connection, user: &Username) -> anyhow::Result<UserFilter> {
        let name = user.as_str();
        let record = crate::catalog::registry::get(conn, name)?;
        let mut entity_ids = vec![name.to_string()];
        if let Some(r) = &record {
            let key = TenantKey::parse(&r.tenant_key, conn.dialect())?;
            entity_ids.extend(TABLES.iter().map(|t| key.object(t.name)));
        }
        let mut user_ids: Vec<String> = record.and_then(|r| r.user_id).into_iter().collect();
        if let Some(id) = crate::catalog::registry::user_id_of(conn, name)?
            && !user_ids.contains(&id)
        {
            user_ids.push(id);
        }
        Ok(UserFilter {
            entity_ids,
            user_ids,
        })
    }
}

/// What to show. Times are UTC; `since` is inclusive, `until` exclusive, so
/// `--since 2026-01-30 --until 2026-01-31` is exactly one day.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<UserFilter>,
    pub action: Option<ActionFilter>,
    pub since: Option<PrimitiveDateTime>,
    pub until: Option<PrimitiveDateTime>,
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub id: String,
    /// ISO 8601, UTC.
    pub created_at: String,
    pub action: String,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub user_id: Option<String>,
    /// The subcommand that made the change (`request_path`).
    pub command: Option<String>,
    /// `ok` (response status 200), `failed` (500) or the status as text.
    pub outcome: String,
    pub response_status: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The JSON document of `details` (a retention sweep's counts), or its
    /// text where it is not JSON.
    pub details: Option<serde_json::Value>,
    #[serde(skip)]
    stamp: Option<PrimitiveDateTime>,
}

/// Whether the log has the `details` column (system version 4 or later):
/// the command reads older schemas too, since it changes nothing.
fn has_details(conn: &mut dyn Connection) -> Result<bool, DbError> {
    let applied = crate::migrate::engine::applied_versions(conn, crate::migrate::SYSTEM_HISTORY)?;
    Ok(applied.iter().any(|(v, _, _)| *v >= DETAILS_VERSION))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NewestFirst,
    OldestFirst,
}

/// `text` as the operand of `LIKE ... ESCAPE '\'` that matches what starts
/// with it: `_` and `%` are wildcards in LIKE, so they are escaped.
fn like_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The query and its binds: rows of `filter` at or after `from` (follow's
/// window) in `order`, the first `limit` of them.
fn select_sql(
    dialect: Dialect,
    filter: &Filter,
    from: Option<PrimitiveDateTime>,
    details: bool,
    order: Order,
    limit: Option<u64>,
) -> (String, Vec<Value>) {
    let ts = dialect.timestamp_bind();
    let mut conditions = vec!["created_at IS NOT NULL".to_string()];
    let mut binds = Vec::new();
    for (op, at) in [(">=", filter.since), (">=", from), ("<", filter.until)] {
        if let Some(at) = at {
            conditions.push(format!("created_at {op} {ts}"));
            binds.push(Value::Text(crate::db::postgres::timestamp_text(at)));
        }
    }
    match &filter.action {
        Some(ActionFilter::Exact(a)) => {
            conditions.push("action = ?".into());
            binds.push(Value::Text(a.clone()));
        }
        Some(ActionFilter::Prefix(p)) => {
            conditions.push("action LIKE ? ESCAPE '\\'".into());
            binds.push(Value::Text(like_prefix(p)));
        }
        None => {}
    }
    if let Some(user) = &filter.user {
        let mut any = Vec::new();
        for (column, values) in [("entity_id", &user.entity_ids), ("user_id", &user.user_ids)] {
            if !values.is_empty() {
                any.push(format!(
                    "{column} IN ({})",
                    vec!["?"; values.len()].join(", ")
                ));
                binds.extend(values.iter().cloned().map(Value::Text));
            }
        }
        conditions.push(format!("({})", any.join(" OR ")));
    }
    let direction = match order {
        Order::NewestFirst => "DESC",
        Order::OldestFirst => "ASC",
    };
    // SQLite stamps whole seconds: rows of one second keep the order they
    // were written in (whichever index the query reads).
    let tie = if dialect == Dialect::Sqlite {
        format!(", rowid {direction}")
    } else {
        String::new()
    };
    let mut sql = format!(
        "SELECT id, created_at, action, entity_type, entity_id, user_id, request_path, \
         response_status, execution_time_ms, error_message, {} FROM pf_audit_log \
         WHERE {} ORDER BY created_at {direction}{tie}",
        if details { "details" } else { "NULL" },
        conditions.join(" AND ")
    );
    if let Some(limit) = limit {
        sql.push(' ');
        sql.push_str(dialect.first_rows());
        binds.push(Value::Int(limit.min(i64::MAX as u64) as i64));
    }
    (sql, binds)
}

fn text(v: &Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_text())
}

fn entry(row: &Row) -> LogEntry {
    let stored = row[1].to_text();
    let status = row[7].as_i64();
    LogEntry {
        id: row[0].to_text(),
        created_at: crate::catalog::registry::iso_utc(&stored),
        action: row[2].to_text(),
        entity_type: text(&row[3]),
        entity_id: text(&row[4]),
        user_id: text(&row[5]),
        command: text(&row[6]),
        outcome: match status {
            Some(200) => "ok".into(),
            Some(500) => "failed".into(),
            Some(s) => s.to_string(),
            None => "?".into(),
        },
        response_status: status,
        duration_ms: row[8].as_i64(),
        error: text(&row[9]),
        details: text(&row[10])
            .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d))),
        stamp: crate::db::postgres::parse_timestamp(&stored).ok(),
    }
}

/// The newest `limit` rows of `filter`, newest first.
pub fn newest(
    conn: &mut dyn Connection,
    filter: &Filter,
    limit: u64,
) -> Result<Vec<LogEntry>, DbError> {
    let details = has_details(conn)?;
    let (sql, binds) = select_sql(
        conn.dialect(),
        filter,
        None,
        details,
        Order::NewestFirst,
        Some(limit),
    );
    Ok(conn.query(&sql, &binds)?.iter().map(entry).collect())
}

/// Watches the log for rows of a filter that appear after it started.
pub struct Follower {
    filter: Filter,
    details: bool,
    /// The newest `created_at` of the whole log at the last poll.
    newest: Option<PrimitiveDateTime>,
    /// Rows printed that are still inside the look-back window.
    seen: HashMap<String, PrimitiveDateTime>,
}

impl Follower {
    /// Starts after every row the log holds now: those are either shown
    /// already (the newest page, passed to [`Follower::shown`]) or left out
    /// on purpose (beyond the page's limit). Start before reading that page,
    /// so a row written in between is in the page or in the next poll.
    pub fn start(conn: &mut dyn Connection, filter: Filter) -> Result<Follower, DbError> {
        let mut follower = Follower {
            filter,
            details: has_details(conn)?,
            newest: None,
            seen: HashMap::new(),
        };
        // The rows of the look-back window count as printed.
        follower.newest = follower.newest_in_log(conn)?;
        follower.poll(conn)?;
        Ok(follower)
    }

    /// Rows printed outside [`Follower::poll`] (the first page).
    pub fn shown(&mut self, entries: &[LogEntry]) {
        self.remember(entries);
    }

    /// The log's newest time: `MAX` over the indexed column, read from the
    /// end of the index. A row stamped in the future (the application may
    /// write one) is left out: following from it would show no new row.
    fn newest_in_log(
        &self,
        conn: &mut dyn Connection,
    ) -> Result<Option<PrimitiveDateTime>, DbError> {
        let rows = conn.query(
            &format!(
                "SELECT MAX(created_at) FROM pf_audit_log WHERE created_at <= {}",
                conn.dialect().now_with_fraction()
            ),
            &[],
        )?;
        Ok(rows
            .first()
            .and_then(|r| text(&r[0]))
            .and_then(|t| crate::db::postgres::parse_timestamp(&t).ok()))
    }

    fn remember(&mut self, entries: &[LogEntry]) {
        for e in entries {
            if let Some(at) = e.stamp {
                self.seen.insert(e.id.clone(), at);
            }
        }
    }

    /// The rows of the filter that appeared since the last poll, oldest
    /// first. Each poll reads the rows of the last [`FOLLOW_LOOKBACK`] before
    /// the newest row seen (an index range) and keeps those not printed yet.
    pub fn poll(&mut self, conn: &mut dyn Connection) -> Result<Vec<LogEntry>, DbError> {
        // (No newest row yet: the log was empty, so all of it is new.)
        let from = self.newest.map(|t| t - FOLLOW_LOOKBACK);
        // Read before the rows, so a row written in between is in the next
        // poll's window.
        let newest = self.newest_in_log(conn)?;
        let (sql, binds) = select_sql(
            conn.dialect(),
            &self.filter,
            from,
            self.details,
            Order::OldestFirst,
            None,
        );
        let fresh: Vec<LogEntry> = conn
            .query(&sql, &binds)?
            .iter()
            .map(entry)
            .filter(|e| !self.seen.contains_key(&e.id))
            .collect();
        self.remember(&fresh);
        if newest.is_some() {
            self.newest = newest.max(self.newest);
        }
        if let Some(floor) = self.newest.map(|t| t - FOLLOW_LOOKBACK) {
            self.seen.retain(|_, at| *at >= floor);
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::bind_placeholders;

    #[test]
    fn actions_are_exact_or_prefixes() {
        let exact = |s: &str| Ok(ActionFilter::Exact(s.into()));
        let prefix = |s: &str| Ok(ActionFilter::Prefix(s.into()));
        assert_eq!(
            ActionFilter::parse("tenant.provision"),
            exact("tenant.provision")
        );
        assert_eq!(ActionFilter::parse("retention."), prefix("retention."));
        assert_eq!(ActionFilter::parse("tenant.*"), prefix("tenant."));
        assert_eq!(ActionFilter::parse("key*"), prefix("key"));
        for bad in [
            "",
            "*",
            "tenant%",
            "ten*ant",
            "Tenant.provision",
            "a b",
            "x'--",
        ] {
            let err = ActionFilter::parse(bad).unwrap_err();
            assert!(err.contains("is not an action"), "{bad}: {err}");
        }
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_prefix("tenant.deprovision_"), "tenant.deprovision\\_%");
        assert_eq!(like_prefix("a%b\\"), "a\\%b\\\\%");
    }

    fn at(s: &str) -> PrimitiveDateTime {
        crate::db::postgres::parse_timestamp(s).unwrap()
    }

    /// Every query the command sends parses in its dialect (Oracle has no
    /// server here: this is its check), with as many binds as it is given,
    /// and orders by the indexed column alone.
    #[test]
    fn queries_parse_in_every_dialect() {
        use sqlparser::dialect::{OracleDialect, PostgreSqlDialect, SQLiteDialect};
        let full = Filter {
            user: Some(UserFilter {
                entity_ids: vec!["alice".into(), "pf_user_alice_experiences".into()],
                user_ids: vec!["u1".into()],
            }),
            action: Some(ActionFilter::Prefix("tenant.".into())),
            since: Some(at("2026-01-30")),
            until: Some(at("2026-01-31 10:00:00.5")),
        };
        let no_ids = Filter {
            user: Some(UserFilter {
                entity_ids: vec!["bob".into()],
                user_ids: vec![],
            }),
            action: Some(ActionFilter::Exact("tenant.provision".into())),
            ..Filter::default()
        };
        for dialect in Dialect::ALL {
            for filter in [&full, &no_ids, &Filter::default()] {
                for (from, order, limit) in [
                    (None, Order::NewestFirst, Some(50)),
                    (Some(at("2026-01-31")), Order::OldestFirst, None),
                ] {
                    for details in [true, false] {
                        let (sql, binds) = select_sql(dialect, filter, from, details, order, limit);
                        assert_eq!(sql.matches('?').count(), binds.len(), "{sql}");
                        assert!(sql.contains("created_at IS NOT NULL"), "{sql}");
                        assert!(
                            sql.contains("ORDER BY created_at DESC")
                                || sql.contains("ORDER BY created_at ASC"),
                            "{sql}"
                        );
                        let sql = bind_placeholders(&sql, dialect);
                        let parsed = match dialect {
                            Dialect::Oracle => {
                                sqlparser::parser::Parser::parse_sql(&OracleDialect {}, &sql)
                            }
                            Dialect::Postgres => {
                                sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, &sql)
                            }
                            Dialect::Sqlite => {
                                sqlparser::parser::Parser::parse_sql(&SQLiteDialect {}, &sql)
                            }
                        };
                        let parsed = parsed.unwrap_or_else(|e| panic!("{dialect}: {e}\n{sql}"));
                        assert_eq!(parsed.len(), 1, "{sql}");
                        if dialect == Dialect::Oracle && limit.is_some() {
                            assert!(
                                sql.ends_with("FETCH FIRST :") || sql.contains("FETCH FIRST :"),
                                "{sql}"
                            );
                            assert!(!sql.contains("LIMIT"), "{sql}");
                        }
                    }
                }
            }
        }
    }

    /// Bound times compare with what each backend stores: SQLite keeps
    /// `created_at` as `YYYY-MM-DD HH:MM:SS` text, so a whole second is bound
    /// without a fraction (`...:00.000000` would sort after `...:00`).
    #[test]
    fn whole_seconds_are_bound_without_a_fraction() {
        let (_, binds) = select_sql(
            Dialect::Sqlite,
            &Filter {
                since: Some(at("2026-01-31T10:00:00Z")),
                ..Filter::default()
            },
            None,
            false,
            Order::NewestFirst,
            Some(1),
        );
        assert_eq!(binds[0], Value::Text("2026-01-31 10:00:00".into()));
    }
}
