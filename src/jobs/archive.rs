//! The one way rows reach a tenant's archive tables, used by
//! `deprovision --archive` (and by retention sweeps).
//!
//! An archive table has the live table's columns plus `archived_at`, keyed by
//! `(id, archived_at)`. Every copy is tagged with a generation (the
//! `archived_at` of the run that made it): a copy repeated after a crash
//! skips the rows its generation already holds, and a later generation (a
//! user archived, provisioned again, archived again) never collides with an
//! earlier one. A copy is verified by counting before anything is deleted.

use anyhow::bail;

use crate::db::{CatalogColumn, Connection, Value};
use crate::dialect::Dialect;
use crate::render::{Renderer, Statement};
use crate::tenant::{TableDef, TenantKey, tables_children_first};

/// A live table and its archive, ready for copies.
#[derive(Debug, Clone)]
pub struct ArchiveTable {
    pub def: &'static TableDef,
    pub live: String,
    pub archive: String,
    /// The live table's columns, in order.
    pub columns: Vec<String>,
}

/// A generation: the `archived_at` of one run, `YYYY-MM-DD HH:MM:SS.ffffff` UTC.
pub fn generation_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let (d, t) = (now.date(), now.time());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        d.year(),
        d.month() as u8,
        d.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The tenant's live tables that exist, children first, with their columns
/// (one catalog query).
pub fn live_tables(
    conn: &mut dyn Connection,
    key: &TenantKey,
) -> anyhow::Result<Vec<(&'static TableDef, Vec<CatalogColumn>)>> {
    let catalog = conn.columns(&key.prefix())?;
    Ok(tables_children_first()
        .filter_map(|def| {
            let name = key.object(def.name);
            let columns: Vec<CatalogColumn> = catalog
                .iter()
                .filter(|c| c.table == name)
                .cloned()
                .collect();
            (!columns.is_empty()).then_some((def, columns))
        })
        .collect())
}

/// Types as the catalog spells them, compared where they are reliable (on
/// SQLite a table made by CREATE TABLE AS declares looser type names).
fn same_type(dialect: Dialect, a: &str, b: &str) -> bool {
    dialect == Dialect::Sqlite || a == b
}

/// Makes the archive tables of `tables` ready: creates a missing one from
/// its template, adds the columns the live table gained since (a later tenant
/// version), and replaces the first release's key on `id` alone. Refuses when
/// the archive has columns the live table lacks, or of another type: rows
/// would not fit, and guessing could lose data.
pub fn prepare(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
    tables: &[(&'static TableDef, Vec<CatalogColumn>)],
) -> anyhow::Result<Vec<ArchiveTable>> {
    let dialect = conn.dialect();
    let catalog = conn.columns(&key.prefix())?;
    let indexes = conn.indexes(&key.prefix())?;
    let mut out = Vec::new();
    for (def, live_columns) in tables {
        let live = key.object(def.name);
        let archive = key.object(&format!("{}_archive", def.name));
        let archived: Vec<&CatalogColumn> = catalog.iter().filter(|c| c.table == archive).collect();
        if archived.is_empty() {
            conn.run_statements(&renderer.archive_table(key, def)?)?;
        } else {
            let foreign: Vec<&str> = archived
                .iter()
                .filter(|a| a.column != "archived_at")
                .filter(|a| {
                    !live_columns.iter().any(|l| {
                        l.column == a.column && same_type(dialect, &l.data_type, &a.data_type)
                    })
                })
                .map(|a| a.column.as_str())
                .collect();
            if !foreign.is_empty() {
                bail!(
                    "archive table {archive} has columns that {live} lacks or types it does not match ({}): rows would not fit; align the columns (ALTER TABLE) or rename {archive} away, then run again",
                    foreign.join(", ")
                );
            }
            for col in live_columns
                .iter()
                .filter(|l| !archived.iter().any(|a| a.column == l.column))
            {
                conn.run_statements(&[Statement {
                    sql: format!("ALTER TABLE {archive} ADD {} {}", col.column, col.data_type),
                    plsql: false,
                }])?;
            }
            let key_name = key.object(&format!("{}_arch_pk", def.short));
            let legacy = key.object(&format!("{}_arch_uq", def.short));
            let has = |name: &str| indexes.iter().any(|(_, i)| i == name);
            if !has(&key_name) {
                let mut statements = Vec::new();
                if has(&legacy) {
                    statements.push(Statement {
                        sql: format!("DROP INDEX {legacy}"),
                        plsql: false,
                    });
                }
                statements.push(Statement {
                    sql: format!("CREATE UNIQUE INDEX {key_name} ON {archive} (id, archived_at)"),
                    plsql: false,
                });
                conn.run_statements(&statements)?;
            }
        }
        out.push(ArchiveTable {
            def,
            live,
            archive,
            columns: live_columns.iter().map(|c| c.column.clone()).collect(),
        });
    }
    Ok(out)
}

/// Which rows of a live table.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    All,
    /// These ids.
    Ids(&'a [Value]),
}

impl Rows<'_> {
    /// `WHERE` condition on alias `s`, with its binds.
    fn condition(&self) -> (String, Vec<Value>) {
        match self {
            Rows::All => ("1 = 1".into(), Vec::new()),
            Rows::Ids(ids) => (
                format!("s.id IN ({})", vec!["?"; ids.len().max(1)].join(", ")),
                if ids.is_empty() {
                    vec![Value::Null]
                } else {
                    ids.to_vec()
                },
            ),
        }
    }
}

/// Copies `rows` of `t` into its archive as `generation`, skipping rows this
/// generation holds already (a re-run after a crash). Returns how many rows
/// this call added.
pub fn copy(
    conn: &mut dyn Connection,
    t: &ArchiveTable,
    rows: Rows<'_>,
    generation: &str,
) -> anyhow::Result<u64> {
    let ts = conn.dialect().timestamp_bind();
    let names = t.columns.join(", ");
    let sourced = t
        .columns
        .iter()
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (condition, ids) = rows.condition();
    let mut binds = vec![Value::Text(generation.into())];
    binds.extend(ids);
    binds.push(Value::Text(generation.into()));
    Ok(conn.execute(
        &format!(
            "INSERT INTO {archive} ({names}, archived_at) SELECT {sourced}, {ts} FROM {live} s \
             WHERE {condition} AND NOT EXISTS (SELECT 1 FROM {archive} a WHERE a.id = s.id AND a.archived_at = {ts})",
            archive = t.archive,
            live = t.live,
        ),
        &binds,
    )?)
}

/// The verified copy: every row of the live table is in the archive as
/// `generation`. Returns the row count.
pub fn verify_copy(
    conn: &mut dyn Connection,
    t: &ArchiveTable,
    generation: &str,
) -> anyhow::Result<u64> {
    let ts = conn.dialect().timestamp_bind();
    let count = |conn: &mut dyn Connection, sql: &str, binds: &[Value]| -> anyhow::Result<i64> {
        Ok(conn
            .query(sql, binds)?
            .first()
            .and_then(|r| r[0].as_i64())
            .unwrap_or(-1))
    };
    let live = count(conn, &format!("SELECT COUNT(*) FROM {}", t.live), &[])?;
    let copied = count(
        conn,
        &format!(
            "SELECT COUNT(*) FROM {live} s WHERE EXISTS (SELECT 1 FROM {archive} a WHERE a.id = s.id AND a.archived_at = {ts})",
            live = t.live,
            archive = t.archive
        ),
        &[Value::Text(generation.into())],
    )?;
    if live != copied {
        bail!(
            "the archive copy of {} holds {copied} of its {live} rows: nothing was dropped; run again",
            t.live
        );
    }
    Ok(live as u64)
}
