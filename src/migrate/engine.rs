//! refinery as the migration engine, over our own `Connection`.
//!
//! refinery's sync traits are implemented once for every backend, so its
//! history logic (checksums, divergence, missing versions) serves all three
//! dialects. The caller owns the transaction: on PostgreSQL and SQLite a tenant's
//! whole migration runs inside one transaction; on Oracle, where DDL commits,
//! each migration's history row is committed right after its statements.

use std::marker::PhantomData;

use refinery_core::traits::sync::{Migrate, Query, Transaction};
use refinery_core::{Migration as RefMigration, Runner, Target};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::dialect::Dialect;
use crate::db::{Connection, DbError};
use crate::schema::render::{Migration, Statement, split_statements};

/// How the history table is created: refinery's own query suits PostgreSQL and
/// SQLite; Oracle has no `IF NOT EXISTS` before 23ai and no `int4`.
pub trait HistoryTable {
    fn create_query(table: &str) -> Option<String>;
}

pub struct StandardHistory;
impl HistoryTable for StandardHistory {
    fn create_query(_table: &str) -> Option<String> {
        None
    }
}

pub struct OracleHistory;
impl HistoryTable for OracleHistory {
    fn create_query(table: &str) -> Option<String> {
        // Re-running it raises ORA-00955, which run_statements counts as done.
        Some(format!(
            "CREATE TABLE {table} (version NUMBER(10) NOT NULL PRIMARY KEY, name VARCHAR2(255), applied_on VARCHAR2(255), checksum VARCHAR2(255))"
        ))
    }
}

/// Our connection as refinery sees it.
pub struct RefineryConnection<'a, H: HistoryTable> {
    conn: &'a mut dyn Connection,
    /// refinery's "create the history table if missing" query, to skip when the
    /// caller knows the table exists (saves a round trip per tenant).
    skip: Option<String>,
    _history: PhantomData<H>,
}

impl<H: HistoryTable> Transaction for RefineryConnection<'_, H> {
    type Error = DbError;

    fn execute<'q, T: Iterator<Item = &'q str>>(&mut self, queries: T) -> Result<usize, DbError> {
        let mut statements: Vec<Statement> = Vec::new();
        let mut count = 0;
        for query in queries {
            count += 1;
            if self.skip.as_deref() == Some(query) {
                continue;
            }
            statements.extend(split_statements(query));
        }
        if statements.is_empty() {
            return Ok(count);
        }
        self.conn.run_statements(&statements)?;
        if !self.conn.dialect().transactional_ddl() {
            self.conn.commit()?;
        }
        Ok(count)
    }
}

impl<H: HistoryTable> Query<Vec<RefMigration>> for RefineryConnection<'_, H> {
    fn query(&mut self, query: &str) -> Result<Vec<RefMigration>, DbError> {
        let rows = self.conn.query(query.trim().trim_end_matches(';'), &[])?;
        rows.iter()
            .map(|r| {
                let version = r[0]
                    .as_i64()
                    .ok_or_else(|| DbError::other("history row without a version"))?;
                let applied_on = OffsetDateTime::parse(&r[2].to_text(), &Rfc3339)
                    .map_err(|e| DbError::other(format!("bad applied_on in history: {e}")))?;
                let checksum = r[3]
                    .to_text()
                    .parse::<u64>()
                    .map_err(|e| DbError::other(format!("bad checksum in history: {e}")))?;
                Ok(RefMigration::applied(
                    version as i32,
                    r[1].to_text(),
                    applied_on,
                    checksum,
                ))
            })
            .collect()
    }
}

impl<H: HistoryTable> Migrate for RefineryConnection<'_, H> {
    fn assert_migrations_table_query(table: &str) -> String {
        H::create_query(table).unwrap_or_else(|| {
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (version INT4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))"
            )
        })
    }
}

/// The statement that creates a history table as refinery would, in
/// `dialect` (for a history written without running the migrations: adopt).
pub fn history_table_ddl(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Oracle => {
            RefineryConnection::<OracleHistory>::assert_migrations_table_query(table)
        }
        Dialect::Postgres | Dialect::Sqlite => {
            RefineryConnection::<StandardHistory>::assert_migrations_table_query(table)
        }
    }
}

/// What a migration run changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Versions applied by this run, in order.
    pub versions: Vec<u32>,
}

/// A template changed after its version was applied, or history names a
/// version the templates no longer have.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DivergenceError(pub String);

fn to_refinery(migrations: &[Migration], dialect: Dialect) -> Result<Vec<RefMigration>, DbError> {
    migrations
        .iter()
        .map(|m| {
            RefMigration::unapplied(&m.name, &m.script(dialect))
                .map_err(|e| DbError::other(format!("migration {}: {e}", m.name)))
        })
        .collect()
}

fn explain(err: refinery_core::Error, what: &str) -> anyhow::Error {
    use refinery_core::error::Kind;
    match err.kind() {
        Kind::DivergentVersion(applied, current) => DivergenceError(format!(
            "{what}: version {} ({}) was applied with checksum {} but the template now renders checksum {}: the template changed after it was applied; restore it and put the change in a new version",
            applied.version(),
            applied.name(),
            applied.checksum(),
            current.checksum()
        ))
        .into(),
        Kind::MissingVersion(m) => DivergenceError(format!(
            "{what}: version {} ({}) is in the history but not in the templates: this pathfinder-db is older than the schema, or a version was skipped",
            m.version(),
            m.name()
        ))
        .into(),
        Kind::Connection(msg, source) => {
            let text = format!("{what}: {msg}: {source}");
            // The database's error stays in the chain: a caller tells a
            // lost connection from a failed statement by its kind.
            match source.downcast_ref::<DbError>() {
                Some(db) => anyhow::Error::new(db.clone()).context(text),
                None => anyhow::anyhow!(text),
            }
        }
        other => anyhow::anyhow!("{what}: {other}"),
    }
}

/// Applies every pending migration up to `target` (all when None), recording
/// them in `history_table`. Runs inside the caller's transaction.
/// `history_exists` skips refinery's create-if-missing step.
pub fn apply(
    conn: &mut dyn Connection,
    migrations: &[Migration],
    history_table: &str,
    target: Option<u32>,
    history_exists: bool,
    what: &str,
) -> anyhow::Result<Applied> {
    let dialect = conn.dialect();
    let refinery_migrations = to_refinery(migrations, dialect)?;
    let mut runner = Runner::new(&refinery_migrations);
    runner.set_migration_table_name(history_table);
    let runner = runner
        .set_abort_divergent(true)
        .set_abort_missing(true)
        // One batch where DDL is transactional; per version (each committed) on Oracle.
        .set_grouped(dialect.transactional_ddl())
        .set_target(match target {
            Some(v) => Target::Version(v as i32),
            None => Target::Latest,
        });
    let skip = |query: String| history_exists.then_some(query);
    let report = match dialect {
        Dialect::Oracle => runner.run(&mut RefineryConnection::<OracleHistory> {
            conn,
            skip: skip(
                RefineryConnection::<OracleHistory>::assert_migrations_table_query(history_table),
            ),
            _history: PhantomData,
        }),
        Dialect::Postgres | Dialect::Sqlite => runner.run(&mut RefineryConnection::<
            StandardHistory,
        > {
            conn,
            skip: skip(
                RefineryConnection::<StandardHistory>::assert_migrations_table_query(history_table),
            ),
            _history: PhantomData,
        }),
    }
    .map_err(|e| explain(e, what))?;
    Ok(Applied {
        versions: report
            .applied_migrations()
            .iter()
            .map(|m| m.version() as u32)
            .collect(),
    })
}

/// The versions recorded in `history_table`, oldest first, with their names
/// and checksums; empty when the table does not exist.
pub fn applied_versions(
    conn: &mut dyn Connection,
    history_table: &str,
) -> Result<Vec<(u32, String, u64)>, DbError> {
    match conn.query(
        &format!("SELECT version, name, checksum FROM {history_table} ORDER BY version"),
        &[],
    ) {
        Ok(rows) => Ok(rows
            .iter()
            .map(|r| {
                (
                    r[0].as_i64().unwrap_or(0) as u32,
                    r[1].to_text(),
                    r[2].to_text().parse().unwrap_or(0),
                )
            })
            .collect()),
        Err(e) if e.kind == crate::db::DbErrorKind::DoesNotExist => Ok(Vec::new()),
        Err(e) if e.message.contains("no such table") || e.message.contains("does not exist") => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// refinery's checksum of a migration, to compare with history.
pub fn checksum(migration: &Migration, dialect: Dialect) -> u64 {
    RefMigration::unapplied(&migration.name, &migration.script(dialect))
        .map(|m| m.checksum())
        .unwrap_or(0)
}
