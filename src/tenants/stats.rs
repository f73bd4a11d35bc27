//! `stats`: rows and bytes per tenant and per table, for storage alerts and
//! capacity planning.
//!
//! It must stay fast on big fleets, so the figures come from the catalog, one
//! query per database ([`crate::db::Connection::table_stats`]): on PostgreSQL
//! `pg_total_relation_size` and `pg_class.reltuples`, on Oracle `USER_SEGMENTS`
//! (table, index and LOB segments) and `NUM_ROWS`. Those row counts are the
//! optimizer's estimates from the last statistics gathering (`analyze`);
//! `exact` counts the rows instead (one query per tenant). On SQLite every
//! tenant is a database of its own: its bytes are the size of its file, its
//! tables' bytes come from `dbstat`, and rows are always counted.

use std::collections::HashMap;

use serde::Serialize;

use std::sync::atomic::{AtomicUsize, Ordering};

use super::TenantFailure;
use crate::catalog::registry::TenantRecord;
use crate::db::{Connection, DbError, Open, Session, TableStats};
use crate::migrate::verify::split_name;
use crate::schema::tenant::{TABLES, TENANT_PREFIX, TenantKey};

/// Whether a tenant table (by suffix: `skills`, `skills_archive`) holds the
/// user's data, rather than bookkeeping (`schema_history`, `career_summary`).
pub fn is_user_data(table: &str) -> bool {
    let base = table.strip_suffix("_archive").unwrap_or(table);
    TABLES.iter().any(|t| t.name == base)
}

/// One tenant's storage.
#[derive(Debug, Clone, Serialize)]
pub struct TenantStats {
    pub username: String,
    pub tenant_key: String,
    /// The user's rows: its nine tables and their archives (those whose
    /// count is known). The schema history and the career summary are
    /// bookkeeping, counted apart.
    pub rows: i64,
    /// Rows of the schema history and the career summary.
    pub bookkeeping_rows: i64,
    /// Whether `rows` was counted (else the optimizer's estimate).
    pub rows_exact: bool,
    /// Tables whose rows are unknown: never analyzed.
    pub unanalyzed_tables: usize,
    /// Bytes on disk: the tenant's file on SQLite, else its segments.
    pub bytes: u64,
    /// Per table (by suffix: `experiences`, `skills_archive`, ...), largest first.
    pub tables: Vec<TableStats>,
}

/// The figures of `tenants`, largest first. `fleet`: they are every tenant
/// (one catalog query serves them all on PostgreSQL and Oracle).
pub fn collect(
    session: &mut Session<'_>,
    tenants: &[TenantRecord],
    exact: bool,
    fleet: bool,
) -> anyhow::Result<(Vec<TenantStats>, Vec<TenantFailure>)> {
    let dialect = session.dialect();
    let mut out = Vec::new();
    let mut failed = Vec::new();
    if session.tenants_apart() {
        for t in tenants {
            match sqlite_tenant(session, t) {
                Ok(s) => out.push(s),
                Err(e) => failed.push(TenantFailure {
                    username: t.username.clone(),
                    error: crate::error::one_line(&e),
                }),
            }
        }
    } else if session.has_members()? {
        // A fleet: each member's catalog read once for its tenants; a member
        // that cannot be reached fails its tenants, naming it.
        for ((_, member), group) in crate::fleet::by_member(tenants) {
            let key_set: HashMap<&str, ()> =
                group.iter().map(|t| (t.tenant_key.as_str(), ())).collect();
            let read = (|| -> anyhow::Result<Vec<TenantStats>> {
                let conn = session.database_connection(member)?;
                let catalog = if group.len() <= 20 {
                    let mut all = Vec::new();
                    for t in &group {
                        let key = TenantKey::parse(&t.tenant_key, dialect)?;
                        all.extend(conn.table_stats(&key.prefix())?);
                    }
                    all
                } else {
                    conn.table_stats(crate::schema::tenant::TENANT_PREFIX)?
                };
                let mut by_key = tables_by_key(catalog, &key_set);
                let mut stats = Vec::new();
                for t in &group {
                    let mut tables = by_key.remove(&t.tenant_key).unwrap_or_default();
                    if exact {
                        let key = TenantKey::parse(&t.tenant_key, dialect)?;
                        count_rows(conn, &key, &mut tables)?;
                    }
                    stats.push(summarize(t, tables, None, exact));
                }
                Ok(stats)
            })();
            match read {
                Ok(stats) => out.extend(stats),
                Err(e) => failed.extend(group.iter().map(|t| TenantFailure {
                    username: t.username.clone(),
                    error: crate::fleet::members::naming_member(
                        member,
                        &crate::error::one_line(&e),
                    ),
                })),
            }
        }
    } else {
        let keys: Vec<String> = tenants.iter().map(|t| t.tenant_key.clone()).collect();
        let key_set: HashMap<&str, ()> = keys.iter().map(|k| (k.as_str(), ())).collect();
        // A few named tenants: a query each by their own prefix (the exact
        // suffix list below keeps `pf_user_a_` from claiming tenant `a_b`'s
        // tables); otherwise one query for the whole fleet.
        let catalog: Vec<TableStats> = if !fleet && tenants.len() <= 20 {
            let mut all = Vec::new();
            for t in tenants {
                let key = TenantKey::parse(&t.tenant_key, dialect)?;
                all.extend(session.system().table_stats(&key.prefix())?);
            }
            all
        } else {
            fleet_table_stats(session, &keys)?
        };
        let mut by_key = tables_by_key(catalog, &key_set);
        for t in tenants {
            let mut tables = by_key.remove(&t.tenant_key).unwrap_or_default();
            if exact {
                let key = TenantKey::parse(&t.tenant_key, dialect)?;
                count_rows(session.system(), &key, &mut tables)?;
            }
            out.push(summarize(t, tables, None, exact));
        }
    }
    out.sort_by(|a, b| (b.bytes, b.rows, &a.username).cmp(&(a.bytes, a.rows, &b.username)));
    Ok((out, failed))
}

/// A catalog's tables by the tenant (of `key_set`) they belong to, named by
/// their suffix.
fn tables_by_key(
    catalog: Vec<TableStats>,
    key_set: &HashMap<&str, ()>,
) -> HashMap<String, Vec<TableStats>> {
    let mut by_key: HashMap<String, Vec<TableStats>> = HashMap::new();
    for t in catalog {
        if let Some((key, suffix)) = split_name(&t.table, key_set) {
            let entry = TableStats {
                table: suffix.to_string(),
                ..t.clone()
            };
            by_key.entry(key.to_string()).or_default().push(entry);
        }
    }
    by_key
}

/// Sessions that read a fleet's sizes at once. A table's size is the
/// server's own file lookup (PostgreSQL's `pg_total_relation_size` opens the
/// table, its TOAST table and each index: about 0.1 ms a table, however it
/// is asked), so a fleet's sizes cost time in the server, not round trips;
/// two sessions share it where the server has the cores, as PostgreSQL's
/// default of two workers for one query would.
const SIZE_SESSIONS: usize = 2;

/// The catalog's figures for the tables of the tenants with `keys`: the
/// fleet's names cut into disjoint parts by prefix (see [`name_parts`]),
/// read by [`SIZE_SESSIONS`] sessions at once, this one among them. Every
/// table a tenant owns is in exactly one part, so the rows are those of one
/// query for the whole fleet.
fn fleet_table_stats(
    session: &mut Session<'_>,
    keys: &[String],
) -> Result<Vec<TableStats>, DbError> {
    let parts = name_parts(keys, SIZE_SESSIONS * 8);
    if parts.len() < 2 {
        return session.system().table_stats(TENANT_PREFIX);
    }
    let db = session.database();
    let next = AtomicUsize::new(0);
    let read = |conn: &mut dyn Connection| -> Result<Vec<TableStats>, DbError> {
        let mut out = Vec::new();
        while let Some(part) = parts.get(next.fetch_add(1, Ordering::Relaxed)) {
            out.extend(conn.table_stats(&format!("{TENANT_PREFIX}{part}"))?);
        }
        Ok(out)
    };
    let (mine, theirs) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..SIZE_SESSIONS)
            .map(|_| {
                scope.spawn(|| {
                    let mut helper = db.connect_read_only()?;
                    read(helper.system())
                })
            })
            .collect();
        let mine = read(session.system());
        let theirs: Vec<Result<Vec<TableStats>, DbError>> = helpers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DbError::other("a size reader panicked")))
            })
            .collect();
        (mine, theirs)
    });
    let mut all = mine?;
    for part in theirs {
        all.extend(part?);
    }
    Ok(all)
}

/// About `want` disjoint name prefixes (what follows `pf_user_`) that
/// together hold every object of the tenants with `keys`, with about as
/// many tenants each. A tenant's objects are named `<key>_<suffix>`: they
/// lie under a prefix that begins `<key>_`, and only there. A part is cut
/// into one part per next character only while no tenant's `<key>_` is a
/// beginning of it (such a tenant's objects follow with any suffix); the
/// parts without a tenant are left out: no object of the fleet is there.
fn name_parts(keys: &[String], want: usize) -> Vec<String> {
    let names: Vec<String> = keys.iter().map(|k| format!("{k}_")).collect();
    let under = |part: &str| names.iter().filter(|n| n.starts_with(part)).count();
    let mut parts: Vec<(String, usize)> = vec![(String::new(), names.len())];
    while parts.len() < want {
        let cuttable = |part: &str| !names.iter().any(|n| part.starts_with(n.as_str()));
        let Some(i) = parts
            .iter()
            .enumerate()
            .filter(|(_, (part, count))| *count > 1 && cuttable(part))
            .max_by_key(|(_, (_, count))| *count)
            .map(|(i, _)| i)
        else {
            break;
        };
        let (part, _) = parts.swap_remove(i);
        let mut next: Vec<char> = names
            .iter()
            .filter_map(|n| n.strip_prefix(part.as_str())?.chars().next())
            .collect();
        next.sort_unstable();
        next.dedup();
        for c in next {
            let child = format!("{part}{c}");
            let count = under(&child);
            parts.push((child, count));
        }
    }
    let mut out: Vec<String> = parts.into_iter().map(|(part, _)| part).collect();
    out.sort();
    out
}

fn sqlite_tenant(session: &mut Session<'_>, t: &TenantRecord) -> anyhow::Result<TenantStats> {
    let key = TenantKey::parse(&t.tenant_key, session.dialect())?;
    let file = session.tenant_file(&key)?;
    let tables = {
        let Some(mut conn) = session.tenant(&key, Open::Existing)? else {
            return Err(crate::tenants::operation::missing_tenant(
                session,
                &key,
                &t.username,
            ));
        };
        conn.table_stats(&key.prefix())?
    };
    let file_bytes = file.map(|f| {
        [String::new(), "-wal".into()]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", f.display())).ok())
            .map(|m| m.len())
            .sum()
    });
    let prefix = key.prefix();
    let tables = tables
        .into_iter()
        .map(|s| TableStats {
            table: s
                .table
                .strip_prefix(&prefix)
                .unwrap_or(&s.table)
                .to_string(),
            ..s
        })
        .collect();
    Ok(summarize(t, tables, file_bytes, true))
}

/// Replaces the estimates in `tables` by counts: one query for the tenant.
fn count_rows(
    conn: &mut dyn crate::db::Connection,
    key: &TenantKey,
    tables: &mut [TableStats],
) -> anyhow::Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    // Names are rebuilt from the validated key and a known suffix.
    let sql = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("SELECT {i}, COUNT(*) FROM {}", key.object(&t.table)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    for r in conn.query(&sql, &[])? {
        if let (Some(i), n @ Some(_)) = (r[0].as_i64(), r[1].as_i64()) {
            tables[i as usize].rows = n;
        }
    }
    Ok(())
}

fn summarize(
    t: &TenantRecord,
    mut tables: Vec<TableStats>,
    file_bytes: Option<u64>,
    exact: bool,
) -> TenantStats {
    tables.sort_by(|a, b| (b.bytes, b.rows, &a.table).cmp(&(a.bytes, a.rows, &b.table)));
    TenantStats {
        username: t.username.clone(),
        tenant_key: t.tenant_key.clone(),
        rows: rows_of(&tables, true),
        bookkeeping_rows: rows_of(&tables, false),
        rows_exact: exact,
        unanalyzed_tables: tables.iter().filter(|s| s.rows.is_none()).count(),
        bytes: file_bytes.unwrap_or_else(|| tables.iter().filter_map(|s| s.bytes).sum()),
        tables,
    }
}

/// Rows of the tables that hold the user's data, or of the others.
fn rows_of(tables: &[TableStats], user_data: bool) -> i64 {
    tables
        .iter()
        .filter(|t| is_user_data(&t.table) == user_data)
        .filter_map(|t| t.rows)
        .sum()
}

/// Fleet totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub tenants: usize,
    pub rows: i64,
    pub bytes: u64,
}

pub fn totals(stats: &[TenantStats]) -> Totals {
    Totals {
        tenants: stats.len(),
        rows: stats.iter().map(|s| s.rows).sum(),
        bytes: stats.iter().map(|s| s.bytes).sum(),
    }
}

/// A tenant over an alert threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub username: String,
    pub tenant_key: String,
    pub rows: i64,
    pub bytes: u64,
    /// Which thresholds it is over: `bytes`, `rows`.
    pub over: Vec<&'static str>,
}

/// The tenants over `max_bytes` or `max_rows`.
pub fn alerts(stats: &[TenantStats], max_bytes: Option<u64>, max_rows: Option<i64>) -> Vec<Alert> {
    stats
        .iter()
        .filter_map(|s| {
            let mut over = Vec::new();
            if max_bytes.is_some_and(|m| s.bytes > m) {
                over.push("bytes");
            }
            if max_rows.is_some_and(|m| s.rows > m) {
                over.push("rows");
            }
            (!over.is_empty()).then(|| Alert {
                username: s.username.clone(),
                tenant_key: s.tenant_key.clone(),
                rows: s.rows,
                bytes: s.bytes,
                over,
            })
        })
        .collect()
}

/// `1536` as `1.5 kB` (powers of 1024, as `du -h`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses `10G`, `512M`, `100k` or a plain byte count.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, factor) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let factor: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'b' => 1,
                _ => {
                    return Err(format!(
                        "{text:?}: use a number of bytes, or one with k, M, G or T"
                    ));
                }
            };
            (&t[..i], factor)
        }
        _ => (t, 1),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: use a number of bytes, or one with k, M, G or T"))?;
    if n < 0.0 {
        return Err(format!("{text:?}: a size cannot be negative"));
    }
    Ok((n * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("10M").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5x").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 kB");
        assert_eq!(human_bytes(10 << 20), "10.0 MB");
    }

    /// Every object of every tenant lies under exactly one part, and the
    /// parts are about as many as asked for.
    #[test]
    fn name_parts_hold_each_tenant_object_once() {
        let mut keys: Vec<String> = (1..=300).map(|i| format!("u{i:08}")).collect();
        keys.extend(["a", "a_b", "ab", "b", "x", "x_chat", "zed"].map(str::to_string));
        for want in [1, 2, 16, 64] {
            let parts = name_parts(&keys, want);
            assert!(
                parts.len() >= want.min(keys.len()) || want == 64,
                "{parts:?}"
            );
            for key in &keys {
                for suffix in crate::schema::tenant::TENANT_OBJECT_SUFFIXES {
                    let name = format!("{key}_{suffix}");
                    let holders = parts
                        .iter()
                        .filter(|p| name.starts_with(p.as_str()))
                        .count();
                    assert_eq!(holders, 1, "{name} in {parts:?}");
                }
            }
        }
        assert_eq!(name_parts(&keys, 1), [""]);
        assert_eq!(name_parts(&[], 16), [""]);
    }

    #[test]
    fn bookkeeping_is_not_the_users_data() {
        assert!(is_user_data("experiences"));
        assert!(is_user_data("chat_messages_archive"));
        assert!(!is_user_data("schema_history"));
        assert!(!is_user_data("career_summary"));
    }
}
