//! `fingerprint`: per tenant and table, the row count and an
//! order-independent checksum of the rows, computed in the database (no row
//! travels to this process), and the comparison of two fingerprints.
//!
//! What is covered: the user's data, the tables `export` writes: the
//! tenant's nine tables that exist and their archive tables that exist.
//! Left out: the career summary (derived from the experiences: a refresh
//! rewrites it, so it would differ between two copies of the same rows) and
//! the tenant's schema history (bookkeeping whose timestamps differ between
//! two copies made at different times; `verify` checks the schema).
//!
//! A row's hash is taken over its columns in the order of their names (from
//! the catalog), so two copies whose columns were added in another order
//! still agree; a table's checksum is the sum of its rows' 64-bit hashes
//! modulo 2^64 (16 hex digits), which does not depend on the rows' order.
//! The row hash is each dialect's own:
//! - PostgreSQL: the first 64 bits of `md5(jsonb_build_array(c1, c2, ...)::text)`
//!   (JSON text does not depend on the session's `DateStyle`), summed as
//!   `numeric` (no overflow);
//! - SQLite: `pf_row_hash(c1, c2, ...)`, registered on the connection
//!   ([`crate::db::Connection::enable_row_hash`]): 64 bits of SHA-256 over
//!   each value with its storage class; the high and low 32 bits are summed
//!   apart, so the sums cannot overflow SQLite's 64-bit integer;
//! - Oracle: the first 64 bits of `STANDARD_HASH(..., 'MD5')` over each
//!   column's own MD5 (numbers, dates and timestamps in fixed formats, CLOBs
//!   through `DBMS_CRYPTO.HASH`, which needs EXECUTE on `SYS.DBMS_CRYPTO`),
//!   summed as `NUMBER`.
//!
//! So a fingerprint compares copies in the same dialect: the same rows give
//! different checksums on PostgreSQL and SQLite.
//!
//! Every table of a tenant is read by one statement, so the figures are of
//! one moment (one snapshot on PostgreSQL and Oracle, one read transaction
//! on SQLite).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::catalog::registry::TenantRecord;
use crate::db::dialect::Dialect;
use crate::db::{CatalogColumn, Connection, Open, Session, Value};
use crate::error::UsageError;
use crate::schema::tenant::TenantKey;
use crate::tenants::output_file::parent_dir;

pub const FORMAT: &str = "pathfinder-db-fingerprint";
pub const FORMAT_VERSION: u32 = 1;

/// One table's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFingerprint {
    /// By suffix: `experiences`, `skills_archive`.
    pub table: String,
    pub rows: i64,
    /// 16 hex digits: the sum of the rows' hashes modulo 2^64 (0 for no rows).
    pub checksum: String,
}

/// One tenant's figures, its tables by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantFingerprint {
    pub username: String,
    pub tenant_key: String,
    pub schema_version: i64,
    pub tables: Vec<TableFingerprint>,
}

impl TenantFingerprint {
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// A tenant whose fingerprint could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub username: String,
    pub error: String,
}

/// A fingerprint document: what `--json` prints and `--out` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub format_version: u32,
    pub tool: String,
    /// The dialect the checksums were computed in: only a copy in the same
    /// dialect can be compared with them.
    pub dialect: String,
    /// ISO 8601 UTC.
    pub taken_at: String,
    pub tenants: Vec<TenantFingerprint>,
    #[serde(default)]
    pub failed: Vec<Failure>,
}

impl Document {
    pub fn new(dialect: Dialect, tenants: Vec<TenantFingerprint>, failed: Vec<Failure>) -> Self {
        Document {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            tool: crate::USER_AGENT.into(),
            dialect: dialect.name().into(),
            taken_at: crate::catalog::registry::iso_utc(&crate::jobs::archive::generation_now()),
            tenants,
            failed,
        }
    }

    /// Reads a document written by `--out` (or printed by `--json`).
    pub fn read(path: &Path) -> anyhow::Result<Document> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read the fingerprint {}: {e}",
                path.display()
            ))
        })?;
        let doc: Document = serde_json::from_str(&text).map_err(|e| {
            UsageError::new(format!(
                "{} is not a pathfinder-db fingerprint: {e}",
                path.display()
            ))
        })?;
        if doc.format != FORMAT || doc.format_version != FORMAT_VERSION {
            return Err(UsageError::new(format!(
                "{} is not a pathfinder-db fingerprint of a known format version",
                path.display()
            ))
            .into());
        }
        Ok(doc)
    }
}

/// Takes one tenant's fingerprint, through the session's connection for
/// the tenant (its own file on SQLite, never created). Reads only.
pub fn fingerprint_tenant(
    session: &mut Session<'_>,
    tenant: &TenantRecord,
) -> anyhow::Result<TenantFingerprint> {
    let dialect = session.dialect();
    let key = TenantKey::parse(&tenant.tenant_key, dialect)?;
    let tables = {
        let Some(mut conn) = session.tenant(&key, Open::Existing)? else {
            return Err(crate::tenants::operation::missing_tenant(
                session,
                &key,
                &tenant.username,
            ));
        };
        tenant_tables(&mut *conn, &key, &tenant.username)?
    };
    Ok(TenantFingerprint {
        username: tenant.username.clone(),
        tenant_key: key.as_str().to_string(),
        schema_version: tenant.schema_version,
        tables,
    })
}

/// The figures of `key`'s tables on `conn`, by table name (what `move`
/// compares between the source and the target).
pub fn tenant_tables(
    conn: &mut dyn Connection,
    key: &TenantKey,
    username: &str,
) -> anyhow::Result<Vec<TableFingerprint>> {
    let dialect = conn.dialect();
    // The tables `export` writes, from one catalog read.
    let catalog = conn.columns(&key.prefix())?;
    let live = crate::jobs::archive::live_tables_in(key, &catalog);
    if live.is_empty() {
        bail!(
            "tenant {username} has no tables: `pathfinder-db verify {username}` lists what is missing"
        );
    }
    let tables = crate::tenants::export::tenant_tables_in(key, &live, &catalog);
    let mut selects = Vec::with_capacity(tables.len());
    for (i, (_, object, _)) in tables.iter().enumerate() {
        let columns = columns_by_name(&catalog, object)?;
        selects.push(table_select(dialect, i, object, &columns));
    }
    conn.enable_row_hash()?;
    let sql = selects.join(" UNION ALL ");
    let rows = conn
        .query(&sql, &[])
        .context("cannot compute the checksums")
        .map_err(|e| oracle_hint(dialect, e))?;
    let mut found: Vec<Option<TableFingerprint>> = vec![None; tables.len()];
    for r in rows {
        let i = r.first().and_then(Value::as_i64);
        let Some(i) = i
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < tables.len())
        else {
            bail!("the fingerprint query of tenant {username} answered an unexpected row");
        };
        let rows = r.get(1).and_then(Value::as_i64).unwrap_or(0);
        let sum = match (r.get(2), r.get(3)) {
            (Some(high), Some(low)) => number(high)? * (1i128 << 32) + number(low)?,
            (Some(sum), None) => number(sum)?,
            _ => 0,
        };
        found[i] = Some(TableFingerprint {
            table: tables[i].0.clone(),
            rows,
            checksum: checksum_hex(sum),
        });
    }
    let mut out = Vec::with_capacity(tables.len());
    for (slot, (table, _, _)) in found.into_iter().zip(&tables) {
        match slot {
            Some(t) => out.push(t),
            None => bail!("the fingerprint query of tenant {username} gave no figures for {table}"),
        }
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

/// Oracle's answer when the owner may not call `DBMS_CRYPTO`, with the fix.
fn oracle_hint(dialect: Dialect, e: anyhow::Error) -> anyhow::Error {
    let text = crate::error::one_line(&e);
    if dialect == Dialect::Oracle && text.to_ascii_uppercase().contains("DBMS_CRYPTO") {
        return e.context(
            "hashing CLOB columns needs DBMS_CRYPTO: as an administrator, `GRANT EXECUTE ON SYS.DBMS_CRYPTO TO <owner>`",
        );
    }
    e
}

/// A sum as the database printed it (a number, or its text).
fn number(v: &Value) -> anyhow::Result<i128> {
    match v {
        Value::Null => Ok(0),
        Value::Int(i) => Ok(*i as i128),
        other => {
            let text = other.to_text();
            let text = text.trim();
            text.parse::<i128>()
                .with_context(|| format!("the database answered {text:?} for a checksum"))
        }
    }
}

/// The sum modulo 2^64, as 16 hex digits.
fn checksum_hex(sum: i128) -> String {
    format!("{:016x}", sum.rem_euclid(1i128 << 64) as u64)
}

/// The columns of `object` (catalog name) sorted by name, each a name we
/// may put into SQL: a plain lower-case identifier.
fn columns_by_name(
    catalog: &[CatalogColumn],
    object: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut columns: Vec<(String, String)> = catalog
        .iter()
        .filter(|c| c.table == object)
        .map(|c| (c.column.clone(), c.data_type.clone()))
        .collect();
    columns.sort();
    columns.dedup_by(|a, b| a.0 == b.0);
    for (name, _) in &columns {
        let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            bail!(
                "table {object} has a column {name:?} that is not a plain name: pathfinder-db made no such column"
            );
        }
    }
    Ok(columns)
}

/// One table's part of the tenant's query: `(i, rows, sum)`, or on SQLite
/// `(i, rows, sum of high halves, sum of low halves)`. `object` comes from a
/// validated key and a known suffix, the columns from the catalog (checked
/// by [`columns_by_name`]); no value is in the text.
pub fn table_select(
    dialect: Dialect,
    i: usize,
    object: &str,
    columns: &[(String, String)],
) -> String {
    match dialect {
        Dialect::Postgres => {
            // jsonb_build_array takes at most 100 arguments: nest beyond.
            let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            let array = if names.len() <= 100 {
                format!("jsonb_build_array({})", names.join(", "))
            } else {
                let parts: Vec<String> = names
                    .chunks(100)
                    .map(|c| format!("jsonb_build_array({})", c.join(", ")))
                    .collect();
                format!("jsonb_build_array({})", parts.join(", "))
            };
            format!(
                "SELECT {i}, count(*), coalesce(sum(('x' || substr(md5({array}::text), 1, 16))::bit(64)::bigint), 0)::text FROM {object}"
            )
        }
        Dialect::Sqlite => {
            let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            format!(
                "SELECT {i}, count(*), coalesce(sum((h >> 32) & 4294967295), 0), coalesce(sum(h & 4294967295), 0) \
                 FROM (SELECT pf_row_hash({}) AS h FROM {object})",
                names.join(", ")
            )
        }
        Dialect::Oracle => {
            let parts: Vec<String> = columns
                .iter()
                .map(|(c, ty)| oracle_column_hash(c, ty))
                .collect();
            format!(
                "SELECT {i}, COUNT(*), TO_CHAR(NVL(SUM(TO_NUMBER(SUBSTR(RAWTOHEX(STANDARD_HASH({}, 'MD5')), 1, 16), 'XXXXXXXXXXXXXXXX')), 0)) FROM {object}",
                parts.join(" || '|' || ")
            )
        }
    }
}

/// One column's part of an Oracle row: its MD5 in hex, `N` for NULL. Each
/// column is hashed on its own, so a row's text stays under VARCHAR2's 4000
/// bytes however long its values; numbers, dates and timestamps are put in
/// fixed formats, whatever the session's NLS settings.
fn oracle_column_hash(column: &str, data_type: &str) -> String {
    let ty = data_type.to_ascii_lowercase();
    let hashed = if ty.starts_with("clob") || ty.starts_with("nclob") || ty.starts_with("blob") {
        // STANDARD_HASH takes no LOB. 2 = DBMS_CRYPTO.HASH_MD5.
        format!("RAWTOHEX(DBMS_CRYPTO.HASH({column}, 2))")
    } else {
        let text = if ty.starts_with("number")
            || ty.starts_with("float")
            || ty.starts_with("binary_")
            || ty.starts_with("integer")
        {
            format!("TO_CHAR({column}, 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,''')")
        } else if ty.starts_with("timestamp") {
            format!("TO_CHAR({column}, 'YYYY-MM-DD HH24:MI:SS.FF9')")
        } else if ty.starts_with("date") {
            format!("TO_CHAR({column}, 'YYYY-MM-DD HH24:MI:SS')")
        } else {
            column.to_string()
        };
        format!("RAWTOHEX(STANDARD_HASH({text}, 'MD5'))")
    };
    format!("CASE WHEN {column} IS NULL THEN 'N' ELSE {hashed} END")
}

/// One way two fingerprints differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// In the file, not here (or not in this database's registry).
    TenantMissing { username: String },
    /// Here, not in the file.
    TenantNotInFile { username: String },
    /// At another schema version.
    Version {
        username: String,
        expected: i64,
        found: i64,
    },
    /// A table in the file that the tenant here lacks.
    TableMissing { username: String, table: String },
    /// A table here that the file lacks.
    TableNotInFile { username: String, table: String },
    /// Other rows.
    Table {
        username: String,
        table: String,
        expected_rows: i64,
        found_rows: i64,
        expected_checksum: String,
        found_checksum: String,
    },
}

impl Difference {
    pub fn username(&self) -> &str {
        match self {
            Difference::TenantMissing { username }
            | Difference::TenantNotInFile { username }
            | Difference::Version { username, .. }
            | Difference::TableMissing { username, .. }
            | Difference::TableNotInFile { username, .. }
            | Difference::Table { username, .. } => username,
        }
    }

    /// One line for a person.
    pub fn describe(&self) -> String {
        match self {
            Difference::TenantMissing { username } => {
                format!("{username}: in the fingerprint, missing here")
            }
            Difference::TenantNotInFile { username } => {
                format!("{username}: here, not in the fingerprint")
            }
            Difference::Version {
                username,
                expected,
                found,
            } => format!("{username}: schema version {found}, the fingerprint has {expected}"),
            Difference::TableMissing { username, table } => {
                format!("{username}: table {table}: in the fingerprint, missing here")
            }
            Difference::TableNotInFile { username, table } => {
                format!("{username}: table {table}: here, not in the fingerprint")
            }
            Difference::Table {
                username,
                table,
                expected_rows,
                found_rows,
                expected_checksum,
                found_checksum,
            } => format!(
                "{username}: table {table}: expected {expected_rows} rows, checksum {expected_checksum}; found {found_rows} rows, checksum {found_checksum}"
            ),
        }
    }
}

/// How `found` (taken here) differs from `expected` (the file's). Tenants
/// in `failed` could not be read here: they are failures, not differences.
/// A tenant only in `found` was asked for (by name, or `--all`) and is
/// reported as not in the file.
pub fn compare(
    expected: &[TenantFingerprint],
    found: &[TenantFingerprint],
    failed: &[String],
) -> Vec<Difference> {
    let mut out = Vec::new();
    let here: BTreeMap<&str, &TenantFingerprint> =
        found.iter().map(|t| (t.username.as_str(), t)).collect();
    let there: BTreeMap<&str, &TenantFingerprint> =
        expected.iter().map(|t| (t.username.as_str(), t)).collect();
    let failed: BTreeSet<&str> = failed.iter().map(String::as_str).collect();
    let names: BTreeSet<&str> = here.keys().chain(there.keys()).copied().collect();
    for name in names {
        let username = name.to_string();
        let (e, f) = match (there.get(name), here.get(name)) {
            (Some(e), Some(f)) => (e, f),
            (Some(_), None) if failed.contains(name) => continue,
            (Some(_), None) => {
                out.push(Difference::TenantMissing { username });
                continue;
            }
            (None, _) => {
                out.push(Difference::TenantNotInFile { username });
                continue;
            }
        };
        if e.schema_version != f.schema_version {
            out.push(Difference::Version {
                username: username.clone(),
                expected: e.schema_version,
                found: f.schema_version,
            });
        }
        let et: BTreeMap<&str, &TableFingerprint> =
            e.tables.iter().map(|t| (t.table.as_str(), t)).collect();
        let ft: BTreeMap<&str, &TableFingerprint> =
            f.tables.iter().map(|t| (t.table.as_str(), t)).collect();
        let tables: BTreeSet<&str> = et.keys().chain(ft.keys()).copied().collect();
        for table in tables {
            match (et.get(table), ft.get(table)) {
                (Some(a), Some(b)) => {
                    if a.rows != b.rows || a.checksum != b.checksum {
                        out.push(Difference::Table {
                            username: username.clone(),
                            table: table.to_string(),
                            expected_rows: a.rows,
                            found_rows: b.rows,
                            expected_checksum: a.checksum.clone(),
                            found_checksum: b.checksum.clone(),
                        });
                    }
                }
                // An archive table is made by the first sweep that needs it:
                // one holding no row is the same data as none.
                (Some(t), None) | (None, Some(t)) if t.rows == 0 && table.ends_with("_archive") => {
                }
                (Some(_), None) => out.push(Difference::TableMissing {
                    username: username.clone(),
                    table: table.to_string(),
                }),
                (None, _) => out.push(Difference::TableNotInFile {
                    username: username.clone(),
                    table: table.to_string(),
                }),
            }
        }
    }
    out
}

/// Refuses before any work when `path` cannot take a fingerprint: its
/// folder is missing, it is a folder, or it exists and `force` is not given.
pub fn check_out(path: &Path, force: bool) -> anyhow::Result<()> {
    Ok(crate::tenants::output_file::check(
        path,
        force,
        "fingerprint",
    )?)
}

/// Writes `doc` to `path`: to a temporary file beside it (mode 0600), synced,
/// then renamed into place, never over an existing file unless `force`.
pub fn write_document(path: &Path, force: bool, doc: &Document) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".pathfinder-fingerprint-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut temp = builder
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let text = serde_json::to_string_pretty(doc)?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.write_all(b"\n"))
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write the fingerprint {}", path.display()))?;
    let persisted = if force {
        temp.persist(path).map_err(|e| e.error)
    } else {
        temp.persist_noclobber(path).map_err(|e| e.error)
    };
    persisted.with_context(|| {
        format!(
            "cannot put the fingerprint in place at {} (does it exist now?)",
            path.display()
        )
    })?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(table: &str, rows: i64, checksum: &str) -> TableFingerprint {
        TableFingerprint {
            table: table.into(),
            rows,
            checksum: checksum.into(),
        }
    }

    fn tenant(name: &str, tables: Vec<TableFingerprint>) -> TenantFingerprint {
        TenantFingerprint {
            username: name.into(),
            tenant_key: name.into(),
            schema_version: 4,
            tables,
        }
    }

    #[test]
    fn checksums_wrap_modulo_2_64() {
        assert_eq!(checksum_hex(0), "0000000000000000");
        assert_eq!(checksum_hex(-1), "ffffffffffffffff");
        assert_eq!(checksum_hex((1i128 << 64) + 5), "0000000000000005");
        // SQLite's halves add up to the same as one 64-bit sum.
        let hashes: [u64; 3] = [u64::MAX, 0x8000_0000_0000_0001, 42];
        let whole: i128 = hashes.iter().map(|h| *h as i128).sum();
        let high: i128 = hashes.iter().map(|h| (*h >> 32) as i128).sum();
        let low: i128 = hashes.iter().map(|h| (*h & 0xffff_ffff) as i128).sum();
        assert_eq!(checksum_hex(whole), checksum_hex(high * (1 << 32) + low));
    }

    #[test]
    fn compare_names_every_difference() {
        let expected = vec![
            tenant(
                "alice",
                vec![t("skills", 2, "aa"), t("experiences", 1, "bb")],
            ),
            tenant("bob", vec![t("skills", 0, "00")]),
            tenant("carol", vec![]),
        ];
        let found = vec![
            tenant(
                "alice",
                vec![t("skills", 2, "ab"), t("skills_archive", 1, "cc")],
            ),
            tenant("dave", vec![]),
        ];
        let diffs = compare(&expected, &found, &["carol".to_string()]);
        let lines: Vec<String> = diffs.iter().map(Difference::describe).collect();
        assert_eq!(
            lines,
            vec![
                "alice: table experiences: in the fingerprint, missing here",
                "alice: table skills: expected 2 rows, checksum aa; found 2 rows, checksum ab",
                "alice: table skills_archive: here, not in the fingerprint",
                "bob: in the fingerprint, missing here",
                "dave: here, not in the fingerprint",
            ]
        );
        assert!(compare(&expected, &expected, &[]).is_empty());
        // An empty archive on one side only is the same data as none.
        let swept = vec![tenant(
            "erin",
            vec![t("skills", 1, "aa"), t("skills_archive", 0, "00")],
        )];
        let before = vec![tenant("erin", vec![t("skills", 1, "aa")])];
        assert!(compare(&before, &swept, &[]).is_empty());
        assert!(compare(&swept, &before, &[]).is_empty());
    }

    #[test]
    fn selects_take_columns_as_given_and_no_values() {
        let cols = vec![
            ("id".to_string(), "number".to_string()),
            ("name".to_string(), "varchar2(255)".to_string()),
            ("notes".to_string(), "clob".to_string()),
            ("at".to_string(), "timestamp(6)".to_string()),
        ];
        let pg = table_select(Dialect::Postgres, 0, "pf_user_a_skills", &cols);
        assert!(
            pg.contains("jsonb_build_array(id, name, notes, at)"),
            "{pg}"
        );
        let lite = table_select(Dialect::Sqlite, 1, "pf_user_a_skills", &cols);
        assert!(lite.contains("pf_row_hash(id, name, notes, at)"), "{lite}");
        let ora = table_select(Dialect::Oracle, 2, "pf_user_a_skills", &cols);
        assert!(ora.contains("DBMS_CRYPTO.HASH(notes, 2)"), "{ora}");
        assert!(
            ora.contains("TO_CHAR(at, 'YYYY-MM-DD HH24:MI:SS.FF9')"),
            "{ora}"
        );
        assert!(!ora.contains('?') && !pg.contains('?') && !lite.contains('?'));
    }
}
