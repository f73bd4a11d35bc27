//! The one way rows reach archive tables (and come back): whole-table copies
//! for `deprovision --archive`, batched moves for retention sweeps and
//! `retention restore`.
//!
//! An archive table has the live table's columns plus `archived_at`, keyed by
//! `(id, archived_at)`. Every copy is tagged with a generation (the
//! `archived_at` of the run that made it): a copy repeated after a crash
//! skips the rows its generation already holds, and a later generation (a
//! user archived, provisioned again, archived again) never collides with an
//! earlier one. A copy is verified by counting before anything is deleted.
//!
//! A batch copies and deletes the same rows in the caller's transaction and
//! checks that both touched as many rows: a row is in the live table or in
//! the archive, never in both or neither, at every commit. On PostgreSQL
//! every batch of a sweep is the oldest due rows found through the age
//! column's index and taken by row address ([`sweep_oldest`]). Elsewhere a
//! batch is either every due row ([`sweep_all_due`]) or the oldest due rows
//! up to a bound row in (age column, id) order ([`sweep_batch`]): two set
//! statements (INSERT ... SELECT, then DELETE with the same condition) under
//! a lock that keeps writers out of the table for the batch; a large backlog
//! goes in chunks of listed ids instead ([`due_ids`], [`move_ids`]: rows
//! locked and checked again), so a table is not read again for every batch.
//! [`restore_batch`] is the way back, by ids.

use anyhow::bail;
use serde::Serialize;

use crate::db::dialect::Dialect;
use crate::db::{CatalogColumn, Connection, Value};
use crate::schema::render::{Renderer, Statement};
use crate::schema::tenant::{TableDef, TenantKey, tables_children_first};

/// A live table and its archive, ready for copies.
#[derive(Debug, Clone)]
pub struct ArchiveTable {
    /// The tenant table (None for a system table such as `pf_audit_log`).
    pub def: Option<&'static TableDef>,
    pub live: String,
    pub archive: String,
    /// The live table's columns, in order.
    pub columns: Vec<String>,
}

/// A generation: the `archived_at` of one run, `YYYY-MM-DD HH:MM:SS.ffffff` UTC.
pub fn generation_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    timestamp_text(time::PrimitiveDateTime::new(now.date(), now.time()))
}

/// A UTC time as timestamps are bound: `YYYY-MM-DD HH:MM:SS.ffffff`.
pub fn timestamp_text(t: time::PrimitiveDateTime) -> String {
    let (d, c) = (t.date(), t.time());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        d.year(),
        d.month() as u8,
        d.day(),
        c.hour(),
        c.minute(),
        c.second(),
        c.microsecond()
    )
}

/// The tenant's live tables that exist, children first, with their columns
/// (one catalog query).
pub fn live_tables(
    conn: &mut dyn Connection,
    key: &TenantKey,
) -> anyhow::Result<Vec<(&'static TableDef, Vec<CatalogColumn>)>> {
    let catalog = conn.columns(&key.prefix())?;
    Ok(live_tables_in(key, &catalog))
}

/// [`live_tables`] from a catalog read already (`columns(key.prefix())`).
pub fn live_tables_in(
    key: &TenantKey,
    catalog: &[CatalogColumn],
) -> Vec<(&'static TableDef, Vec<CatalogColumn>)> {
    tables_children_first()
        .filter_map(|def| {
            let name = key.object(def.name);
            let columns: Vec<CatalogColumn> = catalog
                .iter()
                .filter(|c| c.table == name)
                .cloned()
                .collect();
            (!columns.is_empty()).then_some((def, columns))
        })
        .collect()
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
    let catalog = conn.columns(&key.prefix())?;
    prepare_in(conn, renderer, key, tables, &catalog)
}

/// [`prepare`] with the tenant's catalog read already, in the same
/// transaction (a sweep reads it once per tenant).
pub fn prepare_in(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
    tables: &[(&'static TableDef, Vec<CatalogColumn>)],
    catalog: &[CatalogColumn],
) -> anyhow::Result<Vec<ArchiveTable>> {
    let archive_of = |def: &TableDef| key.object(&format!("{}_archive", def.name));
    // The index list matters only for archives that exist already.
    let indexes = if tables
        .iter()
        .any(|(def, _)| catalog.iter().any(|c| c.table == archive_of(def)))
    {
        conn.indexes(&key.prefix())?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (def, live_columns) in tables {
        let live = key.object(def.name);
        let archive = key.object(&format!("{}_archive", def.name));
        let archived: Vec<&CatalogColumn> = catalog.iter().filter(|c| c.table == archive).collect();
        if archived.is_empty() {
            conn.run_statements(&renderer.archive_table(key, def)?)?;
            // The application may read it (when it has a role of its own).
            crate::security::grants::grant_archive(conn, &archive)?;
        } else {
            align(conn, &live, &archive, live_columns, &archived)?;
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
            def: Some(def),
            live,
            archive,
            columns: live_columns.iter().map(|c| c.column.clone()).collect(),
        });
    }
    Ok(out)
}

/// The archive of `pf_audit_log`, ready for moves: created from its template
/// when missing (system version 4 creates it), given the columns the live
/// table gained since, refused when its columns no longer fit.
pub fn prepare_audit_log(
    conn: &mut dyn Connection,
    renderer: &Renderer,
) -> anyhow::Result<ArchiveTable> {
    const LIVE: &str = "pf_audit_log";
    const ARCHIVE: &str = "pf_audit_log_archive";
    let catalog = conn.columns(LIVE)?;
    let live_columns: Vec<CatalogColumn> = catalog
        .iter()
        .filter(|c| c.table == LIVE)
        .cloned()
        .collect();
    if live_columns.is_empty() {
        bail!("{LIVE} does not exist: run `pathfinder-db init`");
    }
    let archived: Vec<&CatalogColumn> = catalog.iter().filter(|c| c.table == ARCHIVE).collect();
    if archived.is_empty() {
        conn.run_statements(&renderer.audit_log_archive()?)?;
    } else {
        align(conn, LIVE, ARCHIVE, &live_columns, &archived)?;
    }
    Ok(ArchiveTable {
        def: None,
        live: LIVE.into(),
        archive: ARCHIVE.into(),
        columns: live_columns.iter().map(|c| c.column.clone()).collect(),
    })
}

/// Checks an existing archive against its live table (like pt-archiver's
/// --check-columns) and adds the columns the live table gained since (a later
/// version). Refuses when the archive has columns the live table lacks, or
/// of another type: rows would not fit, and guessing could lose data.
fn align(
    conn: &mut dyn Connection,
    live: &str,
    archive: &str,
    live_columns: &[CatalogColumn],
    archived: &[&CatalogColumn],
) -> anyhow::Result<()> {
    let dialect = conn.dialect();
    let foreign: Vec<&str> = archived
        .iter()
        .filter(|a| a.column != "archived_at")
        .filter(|a| {
            !live_columns
                .iter()
                .any(|l| l.column == a.column && same_type(dialect, &l.data_type, &a.data_type))
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
    Ok(())
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

// ---------------------------------------------------------------------------
// Batched moves: retention sweeps and restores.

/// What a sweep does with the rows it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Copy into the archive and delete from the live table, in one transaction.
    Move,
    /// Delete without keeping a copy.
    Delete,
    /// Copy into the archive and keep the live row; a row is copied once.
    Copy,
}

impl Action {
    /// From a policy's flags; None when it would do nothing.
    pub fn of(archive: bool, delete: bool) -> Option<Action> {
        match (archive, delete) {
            (true, true) => Some(Action::Move),
            (false, true) => Some(Action::Delete),
            (true, false) => Some(Action::Copy),
            (false, false) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Move => "move",
            Action::Delete => "delete",
            Action::Copy => "copy",
        }
    }

    /// Whether the live rows go away.
    pub fn deletes(self) -> bool {
        matches!(self, Action::Move | Action::Delete)
    }
}

/// A child table whose rows point at the swept table's ids: a row that a
/// child row still points at stays (deleting it would cascade to the child,
/// or fail where there is no cascade).
#[derive(Debug, Clone)]
pub struct Child {
    pub table: String,
    pub fk: &'static str,
    /// For counting ahead (`--dry-run`): (age column, cutoff) of the
    /// policies that will remove child rows first; such a child row does not
    /// hold its parent back. Empty in a real sweep, which has handled the
    /// children already: every child row left holds its parent.
    pub removed_by: Vec<(String, String)>,
}

/// One table swept under one policy.
#[derive(Debug, Clone)]
pub struct Sweep<'a> {
    pub live: &'a str,
    /// The archive, for [`Action::Move`] and [`Action::Copy`].
    pub archive: Option<&'a ArchiveTable>,
    pub age_column: &'a str,
    /// Rows whose age column is before this (`YYYY-MM-DD HH:MM:SS.ffffff`
    /// UTC, fixed when the run starts) are due; NULL is never due.
    pub cutoff: &'a str,
    pub children: &'a [Child],
    /// For counting ahead: (age column, cutoff) of the policies that take
    /// rows from this table earlier in the same run; rows they take are not
    /// counted again. Empty in a real sweep, where those rows are gone.
    pub earlier: &'a [(String, String)],
    pub action: Action,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// Rows the batch took (0: nothing left to do).
    pub selected: u64,
    pub archived: u64,
    pub deleted: u64,
}

/// `column IN (?, ...)` for `n` binds, split into lists of 1000 (Oracle's
/// limit, ORA-01795).
fn in_list(column: &str, n: usize) -> String {
    if n == 0 {
        return "1 = 0".into();
    }
    let lists: Vec<String> = (0..n)
        .step_by(1000)
        .map(|start| {
            let len = (n - start).min(1000);
            format!("{column} IN ({})", vec!["?"; len].join(", "))
        })
        .collect();
    if lists.len() == 1 {
        lists.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", lists.join(" OR "))
    }
}

impl Sweep<'_> {
    fn archive(&self) -> anyhow::Result<&ArchiveTable> {
        self.archive.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no archive table to {} into",
                self.live,
                self.action.as_str()
            )
        })
    }

    /// The condition on alias `s` that makes a row due, with its binds.
    fn due(&self, dialect: Dialect) -> anyhow::Result<(String, Vec<Value>)> {
        let mut binds = Vec::new();
        let mut sql = before(
            dialect,
            self.live,
            &format!("s.{}", self.age_column),
            self.cutoff,
            &mut binds,
        )?;
        for child in self.children {
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {} c WHERE c.{} = s.id",
                child.table, child.fk
            ));
            if !child.removed_by.is_empty() {
                let removed =
                    any_before(dialect, &child.table, "c", &child.removed_by, &mut binds)?;
                sql.push_str(&format!(" AND NOT ({removed})"));
            }
            sql.push(')');
        }
        if !self.earlier.is_empty() {
            let taken = any_before(dialect, self.live, "s", self.earlier, &mut binds)?;
            sql.push_str(&format!(" AND NOT ({taken})"));
        }
        // A copy is made once (a dry run before the archive exists counts all).
        if let (Action::Copy, Some(t)) = (self.action, self.archive) {
            sql.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM {} a WHERE a.id = s.id)",
                t.archive
            ));
        }
        Ok((sql, binds))
    }
}

/// `column < cutoff`, the cutoff (`YYYY-MM-DD HH:MM:SS.ffffff` UTC) bound
/// in the column's own type so that an index on it serves the range: a DATE
/// column of `table` gets a DATE ([`Dialect::date_bind`]) of the cutoff
/// rounded up to the next whole second, which keeps the same rows (a DATE
/// holds whole seconds: d < t exactly when d < t rounded up).
fn before(
    dialect: Dialect,
    table: &str,
    column: &str,
    cutoff: &str,
    binds: &mut Vec<Value>,
) -> anyhow::Result<String> {
    let bare = column.rsplit('.').next().unwrap_or(column);
    if dialect == Dialect::Oracle && crate::jobs::policy::is_date_column(table, bare) {
        binds.push(Value::Text(whole_seconds_up(cutoff)?));
        Ok(format!("{column} < {}", dialect.date_bind()))
    } else {
        binds.push(Value::Text(cutoff.into()));
        Ok(format!("{column} < {}", dialect.timestamp_bind()))
    }
}

/// Rows of `table` (as `alias`) that one of the (column, cutoff) pairs takes:
/// `(a.c IS NOT NULL AND a.c < cutoff) OR ...`.
fn any_before(
    dialect: Dialect,
    table: &str,
    alias: &str,
    pairs: &[(String, String)],
    binds: &mut Vec<Value>,
) -> anyhow::Result<String> {
    let mut taken = Vec::new();
    for (column, cutoff) in pairs {
        let column = format!("{alias}.{column}");
        let before = before(dialect, table, &column, cutoff, binds)?;
        taken.push(format!("({column} IS NOT NULL AND {before})"));
    }
    Ok(taken.join(" OR "))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` rounded up to a whole second, without the fraction.
fn whole_seconds_up(cutoff: &str) -> anyhow::Result<String> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let at = time::PrimitiveDateTime::parse(cutoff, format)
        .map_err(|e| anyhow::anyhow!("cutoff {cutoff:?} is not a timestamp: {e}"))?;
    let up = if at.nanosecond() > 0 {
        at.replace_nanosecond(0)?
            .saturating_add(time::Duration::SECOND)
    } else {
        at
    };
    Ok(up.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))?)
}

/// A table, an age column and a cutoff: "is any row of this table older
/// than the cutoff?", answered by one index range probe that stops at the
/// first row.
#[derive(Debug, Clone)]
pub struct Probe {
    pub table: String,
    pub age_column: String,
    pub cutoff: String,
}

/// One statement over many sets of probes: it returns the number `n` of each
/// `(n, probes)` for which a probe finds a row. A sweep's rows due are among
/// those rows (children and earlier policies only hold rows back), so a set
/// it does not return has nothing due. `n` is a number the caller chose, never
/// text, so no name travels as a literal; the cutoffs are binds.
pub fn any_older_sql(
    dialect: Dialect,
    sets: &[(usize, Vec<Probe>)],
) -> anyhow::Result<(String, Vec<Value>)> {
    let from_dual = if dialect == Dialect::Oracle {
        " FROM dual"
    } else {
        ""
    };
    let mut binds = Vec::new();
    let mut arms = Vec::with_capacity(sets.len());
    for (n, probes) in sets {
        let mut exists = Vec::with_capacity(probes.len());
        for p in probes {
            let column = format!("s.{}", p.age_column);
            let older = before(dialect, &p.table, &column, &p.cutoff, &mut binds)?;
            exists.push(format!(
                "EXISTS (SELECT 1 FROM {} s WHERE {older})",
                p.table
            ));
        }
        if !exists.is_empty() {
            arms.push(format!(
                "SELECT {n}{from_dual} WHERE {}",
                exists.join(" OR ")
            ));
        }
    }
    if arms.is_empty() {
        bail!("nothing to probe");
    }
    Ok((arms.join(" UNION ALL "), binds))
}

/// SQLite: one row holding, per probe, the oldest value of its age column
/// (`MIN`, read from the column's index), whatever the cutoff.
pub fn oldest_sql(probes: &[Probe]) -> String {
    let mins: Vec<String> = probes
        .iter()
        .map(|p| format!("(SELECT MIN({}) FROM {})", p.age_column, p.table))
        .collect();
    format!("SELECT {}", mins.join(", "))
}

/// How many rows are due now (what a sweep would take; `--dry-run`, and
/// what a stopped run leaves).
pub fn count_due(conn: &mut dyn Connection, sweep: &Sweep<'_>) -> anyhow::Result<u64> {
    let (sql, binds) = count_sql(conn.dialect(), sweep)?;
    let rows = conn.query(&sql, &binds)?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0).max(0) as u64)
}

// The statements of a batch, built apart from running them so that the
// static checks can parse every one of them for Oracle.

fn count_sql(dialect: Dialect, sweep: &Sweep<'_>) -> anyhow::Result<(String, Vec<Value>)> {
    let (due, binds) = sweep.due(dialect)?;
    Ok((
        format!("SELECT COUNT(*) FROM {} s WHERE {due}", sweep.live),
        binds,
    ))
}

/// The oldest due rows' ids, in (age column, id) order; the row count is a
/// bind at the end. Read without locks: each batch locks its rows and
/// checks them again ([`relock_sql`]).
fn select_sql(dialect: Dialect, sweep: &Sweep<'_>) -> anyhow::Result<(String, Vec<Value>)> {
    let (due, binds) = sweep.due(dialect)?;
    Ok((
        format!(
            "SELECT s.id FROM {live} s WHERE {due} ORDER BY s.{age}, s.id {first}",
            live = sweep.live,
            age = sweep.age_column,
            first = dialect.first_rows(),
        ),
        binds,
    ))
}

/// Locks `n` listed ids and keeps those still due (the ids are the first
/// binds). SQLite has no row locks: its transaction holds the file's only
/// write lock already.
fn relock_sql(
    dialect: Dialect,
    sweep: &Sweep<'_>,
    n: usize,
) -> anyhow::Result<(String, Vec<Value>)> {
    let (due, binds) = sweep.due(dialect)?;
    let lock = if dialect == Dialect::Sqlite {
        ""
    } else {
        " FOR UPDATE"
    };
    Ok((
        format!(
            "SELECT s.id FROM {live} s WHERE {ids} AND {due}{lock}",
            live = sweep.live,
            ids = in_list("s.id", n),
        ),
        binds,
    ))
}

/// Copies `n` rows (the generation first, then the ids).
fn copy_sql(dialect: Dialect, t: &ArchiveTable, live: &str, n: usize) -> String {
    let names = t.columns.join(", ");
    let sourced = t
        .columns
        .iter()
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {archive} ({names}, archived_at) SELECT {sourced}, {ts} FROM {live} s WHERE {ids}",
        archive = t.archive,
        ts = dialect.timestamp_bind(),
        ids = in_list("s.id", n),
    )
}

fn delete_sql(table: &str, n: usize) -> String {
    format!("DELETE FROM {table} WHERE {}", in_list("id", n))
}

/// The last row of the batch of the `limit` oldest due rows, by id: the
/// binds are the condition's, then `limit - 1`. None: fewer are due.
fn bound_sql(dialect: Dialect, sweep: &Sweep<'_>) -> anyhow::Result<(String, Vec<Value>)> {
    let (due, binds) = sweep.due(dialect)?;
    Ok((
        format!(
            "SELECT s.id FROM {live} s WHERE {due} ORDER BY s.{age}, s.id {nth}",
            live = sweep.live,
            age = sweep.age_column,
            nth = dialect.nth_row(),
        ),
        binds,
    ))
}

/// Due rows as one batch, by two set statements: (copy, delete). The caller
/// has locked the table against writers, so both see the same rows. With
/// `bounded`, only the rows up to a bound row in (age column, id) order
/// (its id the last bind); the row is compared by its own values, so no
/// date or timestamp travels as text. The binds: the copy's are the
/// generation, then the condition's; the delete's are the condition's.
fn due_rows_sql(
    dialect: Dialect,
    sweep: &Sweep<'_>,
    bounded: bool,
) -> anyhow::Result<(Option<String>, Option<String>, Vec<Value>)> {
    let (mut due, binds) = sweep.due(dialect)?;
    if bounded {
        due.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM {live} b WHERE b.id = ? AND (s.{age} < b.{age} OR (s.{age} = b.{age} AND s.id <= b.id)))",
            live = sweep.live,
            age = sweep.age_column,
        ));
    }
    let (copy, delete) = copy_and_delete(dialect, sweep, "s", &due)?;
    Ok((copy, delete, binds))
}

/// The copy into the archive (an INSERT ... SELECT whose first bind is the
/// generation) and the delete of the rows of the live table, as `alias`,
/// that `condition` takes, as far as the sweep's action wants each.
fn copy_and_delete(
    dialect: Dialect,
    sweep: &Sweep<'_>,
    alias: &str,
    condition: &str,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let copy = match sweep.action {
        Action::Move | Action::Copy => {
            let t = sweep.archive()?;
            let names = t.columns.join(", ");
            let sourced = t
                .columns
                .iter()
                .map(|c| format!("{alias}.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            Some(format!(
                "INSERT INTO {archive} ({names}, archived_at) SELECT {sourced}, {ts} FROM {live} {alias} WHERE {condition}",
                archive = t.archive,
                live = sweep.live,
                ts = dialect.timestamp_bind(),
            ))
        }
        Action::Delete => None,
    };
    let delete = sweep.action.deletes().then(|| {
        format!(
            "DELETE FROM {} WHERE {condition}",
            dialect.aliased(sweep.live, alias)
        )
    });
    Ok((copy, delete))
}

/// Restores `n` rows: (insert into the live table, delete from the archive);
/// the ids are the first binds, then the generation's lower bound if `since`.
fn restore_sql(dialect: Dialect, t: &ArchiveTable, n: usize, since: bool) -> (String, String) {
    let names = t.columns.join(", ");
    let sourced = t
        .columns
        .iter()
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let generation = |column: &str| {
        if since {
            format!(" AND {column} >= {}", dialect.timestamp_bind())
        } else {
            String::new()
        }
    };
    (
        format!(
            "INSERT INTO {live} ({names}) SELECT {sourced} FROM {archive} a WHERE {ids}{generation}",
            live = t.live,
            archive = t.archive,
            ids = in_list("a.id", n),
            generation = generation("a.archived_at"),
        ),
        format!(
            "DELETE FROM {archive} WHERE {ids}{generation}",
            archive = t.archive,
            ids = in_list("id", n),
            generation = generation("archived_at"),
        ),
    )
}

/// The ids of the oldest `limit` due rows, in (age column, id) order: a
/// sweep lists a chunk of rows with one scan of the table and moves them
/// batch by batch through the primary key ([`move_ids`]), so a table is not
/// scanned again for every batch.
pub fn due_ids(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    limit: u64,
) -> anyhow::Result<Vec<Value>> {
    let (sql, mut binds) = select_sql(conn.dialect(), sweep)?;
    binds.push(Value::Int(limit.min(i64::MAX as u64) as i64));
    Ok(conn
        .query(&sql, &binds)?
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect())
}

/// One batch of a sweep, in the caller's transaction: the rows of `ids`
/// that are still due, copied into the archive as `generation` and/or
/// deleted. The inserted and deleted counts must both equal the batch, else
/// the batch fails (the caller rolls it back). Rows are locked before they
/// are copied (PostgreSQL: the copy is of the rows the DELETE returned), and
/// child tables are kept from gaining rows while their parents move, so a
/// concurrent writer can neither change a row between its copy and its
/// delete nor slip a child under a parent that is being deleted (cascading
/// it away unarchived).
pub fn move_ids(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    ids: &[Value],
    generation: &str,
) -> anyhow::Result<Batch> {
    if ids.is_empty() {
        return Ok(Batch::default());
    }
    let dialect = conn.dialect();
    let children: Vec<String> = sweep.children.iter().map(|c| c.table.clone()).collect();
    if let Some(lock) = dialect.share_lock(&children) {
        conn.execute(&lock, &[])?;
    }
    let (sql, due) = relock_sql(dialect, sweep, ids.len())?;
    let mut binds = ids.to_vec();
    binds.extend(due);
    let ids: Vec<Value> = conn
        .query(&sql, &binds)?
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect();
    if ids.is_empty() {
        return Ok(Batch::default());
    }
    let mut batch = Batch {
        selected: ids.len() as u64,
        ..Batch::default()
    };
    if matches!(sweep.action, Action::Move | Action::Copy) {
        let mut binds = vec![Value::Text(generation.into())];
        binds.extend(ids.iter().cloned());
        batch.archived = conn.execute(
            &copy_sql(dialect, sweep.archive()?, sweep.live, ids.len()),
            &binds,
        )?;
    }
    if sweep.action.deletes() {
        batch.deleted = conn.execute(&delete_sql(sweep.live, ids.len()), &ids)?;
    }
    check_batch(sweep, &batch)?;
    Ok(batch)
}

/// Every due row as one batch, in the caller's transaction, for a caller
/// that counted them ([`count_due`]) and found no more than a batch: no
/// order is needed when one batch takes all that is due.
pub fn sweep_all_due(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    generation: &str,
) -> anyhow::Result<Batch> {
    lock_for_batch(conn, sweep)?;
    set_batch(conn, sweep, None, generation)
}

/// The oldest `limit` due rows, in (age column, id) order, as one batch in
/// the caller's transaction. Returns the batch and whether more rows may be
/// due. Each call sorts the due rows to find the batch's last one, so a
/// large backlog goes on with [`due_ids`] in chunks instead.
pub fn sweep_batch(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    limit: u64,
    generation: &str,
) -> anyhow::Result<(Batch, bool)> {
    lock_for_batch(conn, sweep)?;
    let (sql, mut binds) = bound_sql(conn.dialect(), sweep)?;
    binds.push(Value::Int(
        limit.saturating_sub(1).min(i64::MAX as u64) as i64
    ));
    let bound = conn
        .query(&sql, &binds)?
        .into_iter()
        .next()
        .map(|mut r| r.swap_remove(0));
    let more = bound.is_some();
    Ok((set_batch(conn, sweep, bound, generation)?, more))
}

/// PostgreSQL: the oldest `limit` due rows as one batch in the caller's
/// transaction, found through the age column's index (tenant version 4) and
/// taken by their row addresses (`ctid`), in one statement: the rows the
/// DELETE removes are the rows the INSERT copies (a data-modifying CTE), so
/// both counts agree whatever a concurrent writer does, and a row that a
/// writer changed after it was picked stays for a later batch. Each batch
/// reads only its own rows, whatever the backlog and the batch size. Returns
/// the batch and whether more rows are due (the statement picks one row
/// more than it takes).
///
/// A batch with more to follow commits without waiting for its WAL flush
/// (the statement sets `synchronous_commit` off for its transaction): a
/// server crash can only undo whole batches (copy, delete and audit row
/// together), never split one, and the table's last batch, which has rows,
/// commits synchronously and so flushes every batch before it. A small batch
/// costs no fsync of its own, and what a run reports is durable.
pub fn sweep_oldest(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    limit: u64,
    generation: &str,
) -> anyhow::Result<(Batch, bool)> {
    // A parent's children must not gain rows that point at parents being
    // deleted (cascading them away unarchived).
    let children: Vec<String> = sweep.children.iter().map(|c| c.table.clone()).collect();
    if sweep.action.deletes()
        && let Some(lock) = conn.dialect().share_lock(&children)
    {
        conn.run_statements(&[Statement {
            sql: lock,
            plsql: false,
        }])?;
    }
    let (sql, binds) = oldest_batch_sql(conn.dialect(), sweep, limit, generation)?;
    let row = conn
        .query_repeated(&sql, &binds)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let count = |i: usize| row.get(i).and_then(|v| v.as_i64()).unwrap_or(0).max(0) as u64;
    let picked = count(0);
    let mut batch = Batch {
        selected: count(1),
        ..Batch::default()
    };
    match sweep.action {
        Action::Move => (batch.archived, batch.deleted) = (count(2), count(1)),
        Action::Delete => batch.deleted = count(1),
        Action::Copy => (batch.selected, batch.archived) = (count(2), count(2)),
    }
    check_batch(sweep, &batch)?;
    Ok((batch, picked > limit))
}

/// [`sweep_oldest`]'s statement and its binds. It returns one row: the rows
/// picked (at most `limit + 1`), deleted and copied.
fn oldest_batch_sql(
    dialect: Dialect,
    sweep: &Sweep<'_>,
    limit: u64,
    generation: &str,
) -> anyhow::Result<(String, Vec<Value>)> {
    if dialect != Dialect::Postgres {
        bail!("batches by row address are PostgreSQL's");
    }
    let limit = limit.clamp(1, i32::MAX as u64 - 1) as i64;
    let (due, mut binds) = sweep.due(dialect)?;
    let mut sql = format!(
        "WITH pick AS MATERIALIZED (SELECT ARRAY(SELECT s.ctid FROM {live} s WHERE {due} \
         ORDER BY s.{age}, s.id LIMIT ?) AS a)",
        live = sweep.live,
        age = sweep.age_column,
    );
    binds.push(Value::Int(limit + 1));
    let taken = "o.ctid = ANY((SELECT p.a[1:?] FROM pick p)::tid[])";
    let sourced = |t: &ArchiveTable| {
        t.columns
            .iter()
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if sweep.action.deletes() {
        let returning = if sweep.action == Action::Move {
            sourced(sweep.archive()?)
        } else {
            "1".into()
        };
        sql.push_str(&format!(
            ", moved AS (DELETE FROM {live} o WHERE {taken} RETURNING {returning})",
            live = sweep.live,
        ));
        binds.push(Value::Int(limit));
    }
    if sweep.action != Action::Delete {
        let t = sweep.archive()?;
        let names = t.columns.join(", ");
        let ts = dialect.timestamp_bind();
        if sweep.action == Action::Move {
            sql.push_str(&format!(
                ", copied AS (INSERT INTO {archive} ({names}, archived_at) SELECT {names}, {ts} FROM moved RETURNING 1)",
                archive = t.archive,
            ));
            binds.push(Value::Text(generation.into()));
        } else {
            sql.push_str(&format!(
                ", copied AS (INSERT INTO {archive} ({names}, archived_at) SELECT {sourced}, {ts} FROM {live} o WHERE {taken} RETURNING 1)",
                archive = t.archive,
                live = sweep.live,
                sourced = sourced(t),
            ));
            binds.push(Value::Text(generation.into()));
            binds.push(Value::Int(limit));
        }
    }
    let counted = |cte: &str, present: bool| {
        if present {
            format!("(SELECT COUNT(*) FROM {cte})")
        } else {
            "0".into()
        }
    };
    sql.push_str(&format!(
        " SELECT p.n, {moved}, {copied}, CASE WHEN p.n > ? THEN set_config('synchronous_commit', 'off', true) END \
         FROM (SELECT cardinality(a) AS n FROM pick) p",
        moved = counted("moved", sweep.action.deletes()),
        copied = counted("copied", sweep.action != Action::Delete),
    ));
    binds.push(Value::Int(limit));
    Ok((sql, binds))
}

/// Keeps writers out of what a batch reads: the table itself when rows are
/// copied and deleted (readers go on; SQLite's transaction holds the file's
/// write lock already), and the child tables, which must not gain rows that
/// point at parents being deleted (cascading them away unarchived).
fn lock_for_batch(conn: &mut dyn Connection, sweep: &Sweep<'_>) -> anyhow::Result<()> {
    let dialect = conn.dialect();
    if sweep.action == Action::Move
        && let Some(lock) = dialect.exclusive_lock(sweep.live)
    {
        conn.execute(&lock, &[])?;
    }
    let children: Vec<String> = sweep.children.iter().map(|c| c.table.clone()).collect();
    if let Some(lock) = dialect.share_lock(&children) {
        conn.execute(&lock, &[])?;
    }
    Ok(())
}

/// The due rows (up to `bound`, by id) copied and/or deleted by two set
/// statements under [`lock_for_batch`]; their counts must agree.
fn set_batch(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    bound: Option<Value>,
    generation: &str,
) -> anyhow::Result<Batch> {
    let (copy, delete, mut binds) = due_rows_sql(conn.dialect(), sweep, bound.is_some())?;
    binds.extend(bound);
    copy_then_delete(conn, sweep, copy, delete, &binds, generation)
}

/// Runs a batch's copy (the generation bound first) and delete with the
/// same `binds`; their counts must agree.
fn copy_then_delete(
    conn: &mut dyn Connection,
    sweep: &Sweep<'_>,
    copy: Option<String>,
    delete: Option<String>,
    binds: &[Value],
    generation: &str,
) -> anyhow::Result<Batch> {
    let mut batch = Batch::default();
    if let Some(copy) = copy {
        let mut with_generation = vec![Value::Text(generation.into())];
        with_generation.extend(binds.iter().cloned());
        batch.archived = conn.execute(&copy, &with_generation)?;
        batch.selected = batch.archived;
    }
    if let Some(delete) = delete {
        batch.deleted = conn.execute(&delete, binds)?;
        batch.selected = batch.deleted;
    }
    check_batch(sweep, &batch)?;
    Ok(batch)
}

fn check_batch(sweep: &Sweep<'_>, b: &Batch) -> anyhow::Result<()> {
    let archived_ok = match sweep.action {
        Action::Move | Action::Copy => b.archived == b.selected,
        Action::Delete => b.archived == 0,
    };
    let deleted_ok = match sweep.action {
        Action::Move | Action::Delete => b.deleted == b.selected,
        Action::Copy => b.deleted == 0,
    };
    if !(archived_ok && deleted_ok) {
        bail!(
            "a batch of {} rows of {} copied {} and deleted {}: rolled back, nothing of it was changed; run again",
            b.selected,
            sweep.live,
            b.archived,
            b.deleted
        );
    }
    Ok(())
}

/// Moves archived rows back to the live table, in the caller's transaction:
/// the rows of `ids` (each once in the archive, as the caller checked),
/// restricted to generations from `since` on. The live table's insert and
/// the archive's delete must both touch exactly these rows.
pub fn restore_batch(
    conn: &mut dyn Connection,
    t: &ArchiveTable,
    ids: &[Value],
    since: Option<&str>,
) -> anyhow::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let (insert, delete) = restore_sql(conn.dialect(), t, ids.len(), since.is_some());
    let mut binds = ids.to_vec();
    if let Some(since) = since {
        binds.push(Value::Text(since.into()));
    }
    let inserted = conn.execute(&insert, &binds)?;
    let deleted = conn.execute(&delete, &binds)?;
    let n = ids.len() as u64;
    if inserted != n || deleted != n {
        bail!(
            "a restore batch of {n} rows of {} inserted {inserted} and removed {deleted} from the archive: rolled back, nothing of it was changed",
            t.live
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::bind_placeholders;

    #[test]
    fn in_lists_stay_within_oracles_limit() {
        assert_eq!(in_list("id", 0), "1 = 0");
        assert_eq!(in_list("id", 2), "id IN (?, ?)");
        let long = in_list("s.id", 2500);
        assert_eq!(long.matches('?').count(), 2500);
        assert_eq!(long.matches(" IN (").count(), 3);
        assert!(long.starts_with("(s.id IN (") && long.contains(") OR s.id IN ("));
    }

    fn parse(dialect: Dialect, sql: &str) {
        use sqlparser::dialect::{OracleDialect, PostgreSqlDialect, SQLiteDialect};
        let sql = bind_placeholders(sql, dialect);
        let parsed = match dialect {
            Dialect::Oracle => sqlparser::parser::Parser::parse_sql(&OracleDialect {}, &sql),
            Dialect::Postgres => sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, &sql),
            Dialect::Sqlite => sqlparser::parser::Parser::parse_sql(&SQLiteDialect {}, &sql),
        };
        let parsed = parsed.unwrap_or_else(|e| panic!("{dialect}: {e}\n{sql}"));
        assert_eq!(parsed.len(), 1, "{sql}");
    }

    /// On Oracle a cutoff on a DATE column is bound as a DATE (rounded up
    /// to the whole second, which keeps the same rows), so the column is
    /// not widened to TIMESTAMP and its index serves the range; a TIMESTAMP
    /// column keeps its TIMESTAMP bind. PostgreSQL and SQLite are unchanged.
    #[test]
    fn cutoffs_are_bound_in_the_age_columns_type() {
        let children = [Child {
            table: "pf_user_a_skills".into(),
            fk: "experience_id",
            removed_by: vec![("last_used".into(), "2020-01-01 00:00:00.000000".into())],
        }];
        let sweep = |age_column| Sweep {
            live: "pf_user_a_experiences",
            archive: None,
            age_column,
            cutoff: "2021-03-04 05:06:07.250000",
            children: &children,
            earlier: &[],
            action: Action::Delete,
        };
        let (sql, binds) = count_sql(Dialect::Oracle, &sweep("start_date")).unwrap();
        assert_eq!(
            sql,
            "SELECT COUNT(*) FROM pf_user_a_experiences s WHERE s.start_date < TO_DATE(?, 'YYYY-MM-DD HH24:MI:SS') \
             AND NOT EXISTS (SELECT 1 FROM pf_user_a_skills c WHERE c.experience_id = s.id \
             AND NOT ((c.last_used IS NOT NULL AND c.last_used < TO_DATE(?, 'YYYY-MM-DD HH24:MI:SS'))))"
        );
        assert_eq!(
            binds,
            vec![
                Value::Text("2021-03-04 05:06:08".into()),
                Value::Text("2020-01-01 00:00:00".into())
            ]
        );
        parse(Dialect::Oracle, &sql);
        let (sql, binds) = count_sql(Dialect::Oracle, &sweep("created_at")).unwrap();
        assert!(
            sql.starts_with(
                "SELECT COUNT(*) FROM pf_user_a_experiences s WHERE s.created_at < TO_TIMESTAMP(?, 'YYYY-MM-DD HH24:MI:SS.FF6')"
            ),
            "{sql}"
        );
        assert_eq!(binds[0], Value::Text("2021-03-04 05:06:07.250000".into()));
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let (sql, binds) = count_sql(dialect, &sweep("start_date")).unwrap();
            assert!(!sql.contains("TO_DATE"), "{sql}");
            assert_eq!(binds[0], Value::Text("2021-03-04 05:06:07.250000".into()));
        }
    }

    /// Every statement a sweep or a restore sends parses in its dialect
    /// (Oracle has no server here: this is its check), with as many binds
    /// as the code gives it.
    #[test]
    fn batch_statements_parse_in_every_dialect() {
        let t = ArchiveTable {
            def: None,
            live: "pf_user_a_experiences".into(),
            archive: "pf_user_a_experiences_archive".into(),
            columns: vec!["id".into(), "title".into(), "created_at".into()],
        };
        let children = [Child {
            table: "pf_user_a_skills".into(),
            fk: "experience_id",
            removed_by: vec![("created_at".into(), "2020-01-01 00:00:00.000000".into())],
        }];
        let earlier = [(
            "updated_at".to_string(),
            "2020-01-01 00:00:00.000000".to_string(),
        )];
        for dialect in Dialect::ALL {
            for action in [Action::Move, Action::Delete, Action::Copy] {
                let sweep = Sweep {
                    live: &t.live,
                    archive: Some(&t),
                    age_column: "created_at",
                    cutoff: "2020-01-01 00:00:00.000000",
                    children: &children,
                    earlier: &earlier,
                    action,
                };
                let binds = |sql: &str| sql.matches('?').count();
                let (sql, b) = count_sql(dialect, &sweep).unwrap();
                parse(dialect, &sql);
                assert_eq!(binds(&sql), b.len(), "{sql}");
                let (sql, b) = select_sql(dialect, &sweep).unwrap();
                parse(dialect, &sql);
                assert_eq!(binds(&sql), b.len() + 1, "{sql}");
                assert!(!sql.contains("FOR UPDATE"), "listing locks nothing: {sql}");
                let (sql, b) = relock_sql(dialect, &sweep, 3).unwrap();
                parse(dialect, &sql);
                assert_eq!(binds(&sql), b.len() + 3, "{sql}");
                let sql = copy_sql(dialect, &t, &t.live, 3);
                parse(dialect, &sql);
                assert_eq!(binds(&sql), 4, "{sql}");
                parse(dialect, &delete_sql(&t.live, 1200));
                for bounded in [false, true] {
                    let (copy, delete, b) = due_rows_sql(dialect, &sweep, bounded).unwrap();
                    assert_eq!(copy.is_some(), action != Action::Delete);
                    assert_eq!(delete.is_some(), action != Action::Copy);
                    for sql in copy.iter() {
                        parse(dialect, sql);
                        assert_eq!(binds(sql), b.len() + 1 + bounded as usize, "{sql}");
                    }
                    for sql in delete.iter() {
                        parse(dialect, sql);
                        assert_eq!(binds(sql), b.len() + bounded as usize, "{sql}");
                    }
                }
                let (sql, b) = bound_sql(dialect, &sweep).unwrap();
                parse(dialect, &sql);
                assert_eq!(binds(&sql), b.len() + 1, "{sql}");
                for since in [false, true] {
                    let (insert, delete) = restore_sql(dialect, &t, 2, since);
                    parse(dialect, &insert);
                    parse(dialect, &delete);
                    assert_eq!(binds(&insert), 2 + since as usize, "{insert}");
                }
                let oldest = oldest_batch_sql(dialect, &sweep, 1000, "2020-01-01 00:00:00");
                if dialect == Dialect::Postgres {
                    let (sql, b) = oldest.unwrap();
                    parse(dialect, &sql);
                    assert_eq!(binds(&sql), b.len(), "{sql}");
                    assert_eq!(sql.contains("DELETE"), action != Action::Copy, "{sql}");
                    assert_eq!(sql.contains("INSERT"), action != Action::Delete, "{sql}");
                    // Picks one row more than it takes, to know whether more are due.
                    assert!(b.contains(&Value::Int(1001)) && b.contains(&Value::Int(1000)));
                } else {
                    assert!(oldest.is_err());
                }
            }
            let probe = |table: &str, column: &str| Probe {
                table: table.into(),
                age_column: column.into(),
                cutoff: "2020-01-01 00:00:00.250000".into(),
            };
            let sets = vec![
                (
                    0,
                    vec![
                        probe("pf_user_a_chat_messages", "created_at"),
                        probe("pf_user_a_career_analytics", "metric_date"),
                    ],
                ),
                (7, vec![probe("pf_user_b_chat_messages", "deleted_at")]),
            ];
            let (sql, b) = any_older_sql(dialect, &sets).unwrap();
            parse(dialect, &sql);
            assert_eq!(sql.matches('?').count(), b.len(), "{sql}");
            assert_eq!(b.len(), 3);
            assert!(sql.contains("SELECT 7"), "{sql}");
            if let Some(lock) = dialect.share_lock(&["a".into(), "b".into()]) {
                assert_eq!(lock, "LOCK TABLE a, b IN SHARE MODE");
            }
            if let Some(lock) = dialect.exclusive_lock("a") {
                parse(dialect, &lock);
            }
        }
    }
}
