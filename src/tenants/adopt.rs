//! `adopt`: registers tenants whose tables exist but that the registry does
//! not know (made by the seed's `create-user-tables.js` before pathfinder-db,
//! or by hand from `render`), like Flyway's `baseline`.
//!
//! A candidate is compared with what each tenant version should have (the
//! shape `verify` uses: tables, columns and tenant-named indexes, and each
//! table's column types, NOT NULL, defaults, keys, foreign keys, checks and
//! index columns, which no repair changes; on SQLite also the value-check
//! triggers) and registered at the highest version it
//! fully matches, with its history written as baselined: the history rows of
//! versions 1 to N, no DDL run. A candidate that matches no version is refused
//! with its drift. The seed named every user's indexes `idx_exp_dates`, ...,
//! which only its first user could get and which carry no tenant's name, and
//! made no career summary: such a tenant matches its version except for those,
//! and `repair` creates the missing tenant-named indexes and the career summary
//! from the templates, so it ends exactly at the version. Indexes not named
//! after the tenant are left as they are (and listed).
//!
//! SQLite keeps each tenant in a file of its own, while the seed kept every
//! user's tables in the one database file: adoption there finds the tables in
//! the main file and moves them (their statements, rows, indexes and triggers)
//! into a new tenant file, which gets its owner record like any provisioned
//! one. The rows are copied in one transaction on the tenant file; then, under
//! the main file's write lock, the originals are compared with what was copied
//! and dropped, and the tenant registered, in one transaction. A run stopped in
//! between leaves the originals in place and a tenant file the registry does
//! not name, which the next run replaces.
//!
//! On a server fleet the tables may be on any member database: `scan` reads
//! each member's table names (one catalog query per member; one that cannot
//! be read is reported, not fatal), and a tenant is analyzed, baselined and
//! repaired on the member where its tables are and registered there. On a
//! SQLite fleet the members are folders of tenant files, which adopt does not
//! take (a file carries its owner record); `scan` lists the unknown ones.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::catalog::registry::{self, Changes, RegisterError, Status};
use crate::db::dialect::Dialect;
use crate::db::{Connection, Definition, Open, Row, Session, Tx, Value};
use crate::error::UsageError;
use crate::fleet::members::CATALOG;
use crate::migrate::engine;
use crate::migrate::verify::{Shape, compare_detail, expected_detail, read_catalog, split_name};
use crate::schema::render::{Renderer, Scope, Statement};
use crate::schema::tenant::{
    CAREER_SUMMARY, SCHEMA_HISTORY, TABLES, TENANT_PREFIX, TenantKey, Username,
};
use crate::tenants::import::{Fingerprint, Kind};
use crate::tenants::operation::{Guard, TenantOp};

/// What each tenant version should have.
pub struct Expectations {
    /// Index 0 is version 1.
    versions: Vec<Expected>,
}

struct Expected {
    shape: Shape,
    /// Trigger suffixes (SQLite's value checks; none elsewhere).
    triggers: BTreeSet<String>,
}

impl Expectations {
    /// Renders every version once (on an in-memory SQLite database, as
    /// `verify` does). Triggers are expected only where `dialect` gets them.
    pub fn new(templates_dir: Option<&Path>, dialect: Dialect) -> anyhow::Result<Self> {
        let renderer = Renderer::new(Dialect::Sqlite, templates_dir)?;
        let key = TenantKey::parse("adopt", Dialect::Sqlite)?;
        let mut versions = Vec::new();
        for version in 1..=renderer.latest_version(Scope::Tenant) {
            let mut conn = crate::db::sqlite::SqliteConnection::open(Path::new(":memory:"), 1000)?;
            conn.begin()?;
            crate::migrate::apply_tenant(&mut conn, &renderer, &key, Some(version), false)?;
            conn.commit()?;
            let (mut shape, triggers) = actual_shape(&mut conn, &key)?;
            shape.tables.remove(SCHEMA_HISTORY);
            // Types, keys and checks as the tenant's own dialect renders them.
            shape.detail = expected_detail(templates_dir, dialect, version)?;
            versions.push(Expected {
                shape,
                triggers: if dialect == Dialect::Sqlite {
                    triggers
                } else {
                    BTreeSet::new()
                },
            });
        }
        Ok(Expectations { versions })
    }

    fn latest(&self) -> u32 {
        self.versions.len() as u32
    }

    fn get(&self, version: u32) -> &Expected {
        &self.versions[version as usize - 1]
    }
}

/// A tenant's tables, columns and tenant-named indexes, and its triggers, as
/// `conn`'s catalog has them.
fn actual_shape(
    conn: &mut dyn Connection,
    key: &TenantKey,
) -> anyhow::Result<(Shape, BTreeSet<String>)> {
    let shape = read_catalog(conn, &key.prefix(), &[key.to_string()])?
        .remove(key.as_str())
        .unwrap_or_default();
    let only = HashMap::from([(key.as_str(), ())]);
    let triggers = conn
        .definitions(&key.prefix())?
        .into_iter()
        .filter(|d| d.kind == "trigger" && split_name(&d.table, &only).is_some())
        .filter_map(|d| split_name(&d.name, &only).map(|(_, s)| s.to_string()))
        .collect();
    Ok((shape, triggers))
}

/// Something `repair` creates.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Repair {
    /// A tenant-named index (by suffix) on a table (by suffix).
    Index {
        table: String,
        index: String,
    },
    CareerSummary,
}

/// How a candidate compares with one version.
struct Comparison {
    blocking: Vec<String>,
    repairs: Vec<Repair>,
}

fn compare(expected: &Expected, actual: &Shape, triggers: &BTreeSet<String>) -> Comparison {
    let mut blocking = Vec::new();
    let mut repairs = Vec::new();
    for (table, columns) in &expected.shape.tables {
        match actual.tables.get(table) {
            None if table == CAREER_SUMMARY => repairs.push(Repair::CareerSummary),
            None => blocking.push(format!("missing table {table}")),
            Some(have) => {
                for c in columns.iter().filter(|c| !have.contains(c)) {
                    blocking.push(format!("missing column {table}.{c}"));
                }
                for c in have.iter().filter(|c| !columns.contains(c)) {
                    blocking.push(format!("extra column {table}.{c}"));
                }
            }
        }
    }
    for table in actual.tables.keys() {
        if !expected.shape.tables.contains_key(table)
            && table != SCHEMA_HISTORY
            && !table.ends_with("_archive")
        {
            blocking.push(format!("extra table {table}"));
        }
    }
    for (table, index) in &expected.shape.indexes {
        if !actual.indexes.contains(&(table.clone(), index.clone()))
            && actual.tables.contains_key(table)
        {
            repairs.push(Repair::Index {
                table: table.clone(),
                index: index.clone(),
            });
        }
    }
    for (table, index) in &actual.indexes {
        if expected.shape.tables.contains_key(table)
            && !expected
                .shape
                .indexes
                .contains(&(table.clone(), index.clone()))
        {
            blocking.push(format!("extra index {index} on {table}"));
        }
    }
    // Types, NOT NULL, defaults, keys, checks, index columns: no repair
    // changes them, so any difference refuses the version.
    blocking.extend(compare_detail(&expected.shape, actual));
    for t in expected.triggers.difference(triggers) {
        blocking.push(format!("missing trigger {t}"));
    }
    for t in triggers.difference(&expected.triggers) {
        blocking.push(format!("extra trigger {t}"));
    }
    Comparison { blocking, repairs }
}

/// A candidate refused: it matches no version (or needs `--repair`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    pub drift: Vec<String>,
}

/// What adopting one tenant did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Adoption {
    pub username: String,
    pub tenant_key: String,
    pub version: u32,
    /// Objects `repair` created (or would create).
    pub created: Vec<String>,
    /// Indexes on the tenant's tables not named after the tenant (the seed's),
    /// left as they are.
    pub kept_indexes: Vec<String>,
    /// SQLite: the tenant file the tables were moved into.
    pub moved_to: Option<String>,
    /// On a fleet: the member database the tenant is registered on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub dry_run: bool,
    /// Registered and active already under the same key (an adoption that
    /// finished, perhaps killed after its commit): nothing was done.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already: bool,
}

/// How to adopt.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub dry_run: bool,
    pub repair: bool,
    /// The member database holding the tables (`--database NAME`, or where
    /// `scan` found them). None: the catalog, or on a server fleet the one
    /// member where they are (see [`adopt`]).
    pub database: Option<&'a str>,
}

/// What `scan` found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Unregistered tenants, as (database, key): every
    /// `pf_user_<key>_experiences` whose eight sibling tables exist under
    /// exactly the same key in the same database. A key found in several
    /// databases is listed once per database.
    pub found: Vec<(String, String)>,
    /// Databases that could not be read, with why (the message names the
    /// member): their tenants could not be looked for.
    pub unreadable: Vec<(String, String)>,
    /// SQLite: tenant files no registry row knows, as (member, key, path),
    /// that are no leftover of an adoption (whose tables are still in the
    /// main file). `adopt` does not take them: they carry no owner record.
    pub files: Vec<(String, String, std::path::PathBuf)>,
}

/// The tenants whose tables exist but that the registry does not know: on
/// SQLite the tables in the main file (and the unknown tenant files of every
/// folder); on a server fleet those of the catalog and of every member (or
/// of `only`), one catalog query per database.
pub fn scan(session: &mut Session<'_>, only: Option<&str>) -> anyhow::Result<Scan> {
    let registered: BTreeSet<String> = registry::list(session.system(), true)?
        .into_iter()
        .map(|t| t.tenant_key)
        .collect();
    let databases: Vec<String> = match only {
        // A SQLite member is a folder: only its files are looked at.
        Some(name) if session.tenants_apart() && name != CATALOG => Vec::new(),
        Some(name) => vec![name.to_string()],
        None => databases(session)?,
    };
    let mut scan = Scan::default();
    for database in databases {
        let read = session
            .database_connection(&database)
            .and_then(|conn| conn.table_names(TENANT_PREFIX, true));
        let names: BTreeSet<String> = match read {
            Ok(names) => names.into_iter().collect(),
            Err(e) => {
                scan.unreadable
                    .push((database.clone(), naming(&database, &e.message)));
                continue;
            }
        };
        scan.found.extend(
            names
                .iter()
                .filter_map(|n| {
                    n.strip_prefix(TENANT_PREFIX)?
                        .strip_suffix(&format!("_{}", TABLES[0].name))
                })
                .filter(|key| {
                    TABLES
                        .iter()
                        .all(|t| names.contains(&format!("{TENANT_PREFIX}{key}_{}", t.name)))
                })
                .filter(|key| !registered.contains(*key))
                .map(|key| (database.clone(), key.to_string())),
        );
    }
    for (member, folder) in crate::fleet::members::sqlite_folders(session)? {
        if only.is_some_and(|o| o != member) {
            continue;
        }
        match crate::fleet::members::tenant_files(&folder) {
            Ok(files) => scan.files.extend(
                files
                    .into_iter()
                    .filter(|(key, _)| {
                        !registered.contains(key) && !scan.found.iter().any(|(_, k)| k == key)
                    })
                    .map(|(key, path)| (member.clone(), key, path)),
            ),
            Err(e) => scan.unreadable.push((
                member.clone(),
                naming(&member, &format!("its folder {}: {e}", folder.display())),
            )),
        }
    }
    Ok(scan)
}

/// The databases tenant tables may be in: the catalog, and on a server fleet
/// every member. SQLite members are folders of tenant files: tables made
/// outside pathfinder-db are in the main file, the catalog.
fn databases(session: &mut Session<'_>) -> anyhow::Result<Vec<String>> {
    let mut all = vec![CATALOG.to_string()];
    if !session.tenants_apart() && session.has_members()? {
        all.extend(
            crate::fleet::members::remote(session.system())?
                .into_iter()
                .map(|(name, _)| name),
        );
    }
    Ok(all)
}

/// An error reading `database`, worded as `doctor` words it.
fn naming(database: &str, message: &str) -> String {
    if database == CATALOG {
        format!("the catalog cannot be read: {message}")
    } else {
        format!("member {database} cannot be read: {message}")
    }
}

/// On a server fleet, the one database holding tables of `key` (any of the
/// nine, named exactly), for a user named without `--database`. Tables on
/// several databases are refused: which copy is the tenant is the DBA's call.
fn locate(session: &mut Session<'_>, key: &TenantKey, name: &str) -> anyhow::Result<String> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for database in databases(session)? {
        match session
            .database_connection(&database)
            .and_then(|conn| conn.table_names(&key.prefix(), true))
        {
            Ok(names) if TABLES.iter().any(|t| names.contains(&key.object(t.name))) => {
                found.push(database)
            }
            Ok(_) => {}
            Err(e) => unreadable.push(naming(&database, &e.message)),
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if unreadable.is_empty() => Err(UsageError::new(format!(
            "no tables {}* of user {name} on any member database: check the name, or give the key its tables carry with --tenant-key KEY",
            key.prefix()
        ))
        .into()),
        0 => bail!(
            "no tables {}* of user {name} on the member databases that could be read; {}: run adopt again when it can be read, or name the member with --database NAME",
            key.prefix(),
            unreadable.join("; ")
        ),
        _ => Err(UsageError::new(format!(
            "tables {}* of user {name} are on more than one member database ({}): name the one to adopt with --database NAME (doctor then lists the other copy as stray)",
            key.prefix(),
            found.join(", ")
        ))
        .into()),
    }
}

/// Where a candidate stands: the version it matches and what `repair` adds.
struct Analysis {
    version: u32,
    repairs: Vec<Repair>,
    kept_indexes: Vec<String>,
    /// Versions its own history table records already.
    history: Vec<u32>,
}

fn analyze(
    conn: &mut dyn Connection,
    expectations: &Expectations,
    renderer: &Renderer,
    key: &TenantKey,
    username: &str,
) -> anyhow::Result<Analysis> {
    let (actual, triggers) = actual_shape(conn, key)?;
    if actual.tables.keys().all(|t| t.ends_with("_archive")) {
        return Err(UsageError::new(format!(
            "no tables {}* of user {username} here: check the name, or give the key its tables carry with --tenant-key KEY",
            key.prefix()
        ))
        .into());
    }
    // A history table of its own (a registry row lost, an adoption stopped
    // half-way on Oracle) decides the version: it must be whole and unchanged.
    let mut history = Vec::new();
    let versions: Vec<u32> = if actual.tables.contains_key(SCHEMA_HISTORY) {
        let migrations = renderer.tenant_migrations(key)?;
        for (version, name, checksum) in
            engine::applied_versions(conn, &key.object(SCHEMA_HISTORY))?
        {
            let known = migrations.iter().find(|m| m.version == version);
            if known.is_none_or(|m| engine::checksum(m, conn.dialect()) != checksum)
                || version != history.len() as u32 + 1
            {
                return Err(Refused {
                    message: format!(
                        "tenant {username} has a history table whose version {version} ({name}) is not this pathfinder-db's: adopt it with the pathfinder-db that wrote it"
                    ),
                    drift: vec![format!("history version {version} ({name})")],
                }
                .into());
            }
            history.push(version);
        }
        if history.is_empty() {
            (1..=expectations.latest()).rev().collect()
        } else {
            vec![*history.last().unwrap_or(&1)]
        }
    } else {
        (1..=expectations.latest()).rev().collect()
    };
    let mut closest: Option<(u32, Vec<String>)> = None;
    // The highest version matched exactly wins; else the highest matched
    // but for what `--repair` creates (tables made at an older version
    // match it exactly, and the next version only with its indexes added).
    let mut matched: Option<(u32, Vec<Repair>)> = None;
    for version in versions {
        let c = compare(expectations.get(version), &actual, &triggers);
        if c.blocking.is_empty() {
            let exact = c.repairs.is_empty();
            if exact || matched.is_none() {
                matched = Some((version, c.repairs));
            }
            if exact {
                break;
            }
            continue;
        }
        if closest
            .as_ref()
            .is_none_or(|(_, b)| c.blocking.len() < b.len())
        {
            closest = Some((version, c.blocking));
        }
    }
    if let Some((version, repairs)) = matched {
        let only = HashMap::from([(key.as_str(), ())]);
        let kept_indexes = conn
            .indexes(&key.prefix())?
            .into_iter()
            .filter(|(t, i)| split_name(t, &only).is_some() && split_name(i, &only).is_none())
            .map(|(_, i)| i)
            .collect();
        return Ok(Analysis {
            version,
            repairs,
            kept_indexes,
            history,
        });
    }
    let (version, drift) = closest.unwrap_or_default();
    Err(Refused {
        message: format!(
            "tenant {username} matches no tenant version; closest is version {version}: {}; fix the tables (`pathfinder-db render {username} --to {version}` shows what they should be), then run adopt again",
            drift.join(", ")
        ),
        drift,
    }
    .into())
}

/// The statements that create the repairs, from the templates of `version`.
fn repair_statements(
    renderer: &Renderer,
    key: &TenantKey,
    version: u32,
    repairs: &[Repair],
) -> anyhow::Result<(Vec<Statement>, Vec<String>)> {
    let mut wanted: Vec<String> = Vec::new();
    for r in repairs {
        wanted.push(match r {
            Repair::Index { index, .. } => key.object(index),
            Repair::CareerSummary => key.object(CAREER_SUMMARY),
        });
    }
    let statements: Vec<Statement> = renderer
        .tenant_migrations(key)?
        .into_iter()
        .filter(|m| m.version <= version)
        .flat_map(|m| m.statements)
        .filter(|s| created_object(&s.sql).is_some_and(|o| wanted.contains(&o)))
        .collect();
    Ok((statements, wanted))
}

/// The object a statement creates or fills (`CREATE [UNIQUE] INDEX x`,
/// `CREATE TABLE x`, `CREATE MATERIALIZED VIEW x`, `INSERT INTO x`).
fn created_object(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let name = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["create", "unique", "index", name, ..] => name,
        ["create", "index", name, ..] => name,
        ["create", "table", name, ..] => name,
        ["create", "materialized", "view", name] => name,
        ["insert", "into", name, ..] => name,
        _ => return None,
    };
    Some(name.trim_end_matches('(').to_string())
}

/// Adopts one tenant: `username`, whose tables carry `key`.
pub fn adopt(
    session: &mut Session<'_>,
    renderer: &Renderer,
    expectations: &Expectations,
    username: &Username,
    key: &TenantKey,
    options: Options,
) -> anyhow::Result<Adoption> {
    let name = username.as_str();
    let previous = registry::get(session.system(), name)?;
    // Asked again after it finished: nothing to do, as provision and move say.
    if let Some(r) = previous
        .as_ref()
        .filter(|r| r.status == Status::Active && r.tenant_key == key.as_str())
    {
        return Ok(Adoption {
            username: name.to_string(),
            tenant_key: r.tenant_key.clone(),
            version: r.schema_version.max(0) as u32,
            created: Vec::new(),
            kept_indexes: Vec::new(),
            moved_to: None,
            database: session.has_members()?.then(|| r.database.clone()),
            dry_run: options.dry_run,
            already: true,
        });
    }
    if let Some(r) = previous
        .as_ref()
        .filter(|r| r.status != Status::Deprovisioned)
    {
        return Err(UsageError::new(format!(
            "user {name} is registered already (tenant {}, {}): nothing to adopt",
            r.tenant_key, r.status
        ))
        .into());
    }
    if let Some(owner) = registry::key_owner(session.system(), key.as_str())?.filter(|o| o != name)
    {
        return Err(UsageError::new(format!(
            "tenant key \"{key}\" belongs to user {owner}: its tables are that tenant's"
        ))
        .into());
    }
    // Where the tables are: named by the DBA or the scan, else found.
    let database = match options.database {
        Some(database) => database.to_string(),
        None if !session.tenants_apart() && session.has_members()? => locate(session, key, name)?,
        None => CATALOG.to_string(),
    };
    if session.tenants_apart() && database != CATALOG {
        return Err(UsageError::new(format!(
            "on SQLite adopt takes tables from the main file and moves them into the catalog's tenants folder, never a member's: adopt {name} without --database, then `pathfinder-db move {name} --to {database}`"
        ))
        .into());
    }
    let analysis = analyze(
        session.database_connection(&database)?,
        expectations,
        renderer,
        key,
        name,
    )?;
    let (statements, created) =
        repair_statements(renderer, key, analysis.version, &analysis.repairs)?;
    let tenant_file = session.database().sqlite_tenant_file(key);
    let mut adoption = Adoption {
        username: name.to_string(),
        tenant_key: key.to_string(),
        version: analysis.version,
        created,
        kept_indexes: analysis.kept_indexes.clone(),
        moved_to: tenant_file.as_ref().map(|f| f.display().to_string()),
        database: session.has_members()?.then(|| database.clone()),
        dry_run: options.dry_run,
        already: false,
    };
    if !options.repair && !adoption.created.is_empty() {
        let drift: Vec<String> = analysis
            .repairs
            .iter()
            .map(|r| match r {
                Repair::Index { table, index } => format!("missing index {index} on {table}"),
                Repair::CareerSummary => format!("missing table {CAREER_SUMMARY}"),
            })
            .collect();
        return Err(Refused {
            message: format!(
                "tenant {name} matches version {} except for {}: `pathfinder-db adopt {name} --repair` creates them",
                analysis.version,
                drift.join(", ")
            ),
            drift,
        }
        .into());
    }
    if options.dry_run {
        return Ok(adoption);
    }
    if previous.is_some() && tenant_file.as_ref().is_some_and(|f| f.exists()) {
        return Err(UsageError::new(format!(
            "the tenant file {} of the deprovisioned user {name} still exists (its archives): move it away first",
            tenant_file.as_ref().map(|f| f.display().to_string()).unwrap_or_default()
        ))
        .into());
    }
    let user_id = registry::user_id_of(session.system(), name)?;
    let moving = session.tenants_apart();
    if moving {
        remove_leftover(session, key)?;
    }
    let mut made_file = false;
    let result = run(
        session,
        renderer,
        key,
        name,
        user_id,
        previous.map(|r| r.status),
        &database,
        &analysis,
        &statements,
        &mut made_file,
    );
    if result.is_err()
        && made_file
        && let Some(file) = &tenant_file
    {
        // The originals are still in the main file: the copy goes.
        let _ = remove_files(file);
    }
    result?;
    if !moving {
        adoption.moved_to = None;
    }
    Ok(adoption)
}

/// A tenant file the registry does not name, left by an adoption that
/// stopped before it was registered: it goes, so the copy starts afresh. A
/// file of another database is refused by opening it.
fn remove_leftover(session: &mut Session<'_>, key: &TenantKey) -> anyhow::Result<()> {
    let Some(file) = session.database().sqlite_tenant_file(key) else {
        return Ok(());
    };
    if !file.exists() {
        return Ok(());
    }
    drop(session.tenant(key, Open::Existing)?);
    remove_files(&file)
}

fn remove_files(file: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = format!("{}{suffix}", file.display());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot remove {path}"))),
        }
    }
    Ok(())
}

/// A table moved into a SQLite tenant file, as it was read.
struct Moved {
    table: String,
    columns: Vec<String>,
    rows: u64,
    fingerprint: Fingerprint,
}

/// Baselines (and repairs) the tenant's tables where they are, in
/// `database`, and registers it there; `previous` is the status of its
/// deprovisioned registry row, if any.
#[allow(clippy::too_many_arguments)]
fn run(
    session: &mut Session<'_>,
    renderer: &Renderer,
    key: &TenantKey,
    name: &str,
    user_id: Option<String>,
    previous: Option<Status>,
    database: &str,
    analysis: &Analysis,
    repairs: &[Statement],
    made_file: &mut bool,
) -> anyhow::Result<()> {
    let db = session.database();
    let mut reader = if session.tenants_apart() {
        Some(db.connect_read_only()?)
    } else {
        None
    };
    let Some(mut op) = TenantOp::begin(session, name, "tenant.adopt", "adopt", Guard::Wait)? else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(user_id.clone());
    let result = (|| -> anyhow::Result<()> {
        let open = if reader.is_some() {
            Open::Create
        } else {
            Open::Existing
        };
        *made_file = reader.is_some();
        let mut step = |conn: &mut dyn Connection| -> anyhow::Result<Vec<Moved>> {
            let moved = match reader.as_mut() {
                Some(reader) => move_tables(reader.system(), conn, key)?,
                None => Vec::new(),
            };
            baseline(conn, renderer, key, analysis)?;
            conn.run_statements(repairs)?;
            // The application role (when there is one) may use them.
            crate::security::grants::grant_tenant(
                conn,
                renderer,
                key,
                analysis.version,
                (name, user_id.as_deref(), "adopt"),
            )?;
            Ok(moved)
        };
        let moved = if database == CATALOG {
            op.tenant(key, open, step)?
                .ok_or_else(|| anyhow::anyhow!("the tables of {name} could not be opened"))?
        } else {
            // The tenant is not registered yet, so the session cannot route
            // to it: its tables are changed on the member where they are, in
            // one transaction there (a server: SQLite adopts into the
            // catalog's folder only). A kill before the registry commits
            // leaves a whole history table, which the next adopt takes.
            (|| {
                let conn = op.session().database_connection(database)?;
                let mut tx = Tx::begin(conn)?;
                let moved = step(&mut *tx)?;
                tx.commit()?;
                anyhow::Ok(moved)
            })()
            .with_context(|| format!("on member {database}"))?
        };
        drop(reader.take());
        op.complete(|sys| {
            if !moved.is_empty() {
                drop_originals(sys, &moved)?;
            }
            register(
                sys,
                name,
                key,
                user_id.as_deref(),
                previous,
                analysis.version,
                (database != CATALOG).then_some(database),
            )
        })
    })();
    op.finish(result, |_, _| Ok(()))
}

/// The history rows of versions 1 to the adopted one, as if they had been
/// applied (refinery's table and checksums), without running them.
fn baseline(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
    analysis: &Analysis,
) -> anyhow::Result<()> {
    let table = key.object(SCHEMA_HISTORY);
    let dialect = conn.dialect();
    conn.run_statements(&[Statement {
        sql: engine::history_table_ddl(dialect, &table),
        plsql: false,
    }])?;
    let applied_on =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    for m in renderer
        .tenant_migrations(key)?
        .iter()
        .filter(|m| m.version <= analysis.version && !analysis.history.contains(&m.version))
    {
        conn.execute(
            &format!(
                "INSERT INTO {table} (version, name, applied_on, checksum) VALUES (?, ?, ?, ?)"
            ),
            &[
                Value::Int(m.version.into()),
                // refinery records the name without its `V<n>__` and compares it.
                Value::Text(
                    m.name
                        .split_once("__")
                        .map_or(m.name.as_str(), |(_, n)| n)
                        .to_string(),
                ),
                Value::Text(applied_on.clone()),
                Value::Text(engine::checksum(m, dialect).to_string()),
            ],
        )?;
    }
    Ok(())
}

/// SQLite: creates the tenant's tables in its own file with the statements
/// that made them, copies their rows (parents first), then their indexes and
/// triggers. Returns what was copied, to compare before the originals go.
fn move_tables(
    main: &mut dyn Connection,
    conn: &mut dyn Connection,
    key: &TenantKey,
) -> anyhow::Result<Vec<Moved>> {
    let only = HashMap::from([(key.as_str(), ())]);
    let definitions: Vec<Definition> = main
        .definitions(&key.prefix())?
        .into_iter()
        .filter(|d| split_name(&d.table, &only).is_some())
        .collect();
    let catalog = main.columns(&key.prefix())?;
    let position = |table: &str| {
        split_name(table, &only)
            .and_then(|(_, s)| TABLES.iter().position(|t| t.name == s))
            .unwrap_or(TABLES.len())
    };
    let mut tables: Vec<&Definition> = definitions.iter().filter(|d| d.kind == "table").collect();
    tables.sort_by_key(|d| position(&d.table));
    let mut moved = Vec::new();
    for def in tables {
        conn.run_statements(&[Statement {
            sql: def.sql.clone(),
            plsql: false,
        }])?;
        let columns: Vec<String> = catalog
            .iter()
            .filter(|c| c.table == def.table)
            .map(|c| c.column.clone())
            .collect();
        let (rows, fingerprint) = copy_rows(main, Some(&mut *conn), &def.table, &columns)?;
        moved.push(Moved {
            table: def.table.clone(),
            columns,
            rows,
            fingerprint,
        });
    }
    let rest: Vec<Statement> = definitions
        .iter()
        .filter(|d| d.kind != "table")
        .map(|d| Statement {
            sql: d.sql.clone(),
            plsql: false,
        })
        .collect();
    conn.run_statements(&rest)?;
    Ok(moved)
}

/// Reads every row of `table` from `from` (inserting it into `to`, if given)
/// and returns the count and a fingerprint of the rows.
fn copy_rows(
    from: &mut dyn Connection,
    mut to: Option<&mut dyn Connection>,
    table: &str,
    columns: &[String],
) -> anyhow::Result<(u64, Fingerprint)> {
    // Values move between two SQLite files as they are: compared as stored.
    let kinds = vec![Kind::Text; columns.len()];
    let id = columns.iter().position(|c| c == "id").unwrap_or(0);
    let mut fingerprint = Fingerprint::new(columns.len());
    let mut rows = 0u64;
    let mut batch: Vec<Row> = Vec::new();
    from.query_each(
        &format!("SELECT {} FROM {table}", columns.join(", ")),
        &[],
        &mut |row| {
            fingerprint.add(&row, &kinds, id);
            rows += 1;
            if let Some(to) = to.as_deref_mut() {
                batch.push(row);
                if batch.len() >= 500 {
                    to.insert_rows(table, columns, &batch)?;
                    batch.clear();
                }
            }
            Ok(())
        },
    )?;
    if let Some(to) = to
        && !batch.is_empty()
    {
        to.insert_rows(table, columns, &batch)?;
    }
    Ok((rows, fingerprint))
}

/// Under the main file's write lock: the originals still hold exactly what
/// was copied; then they are dropped, children first.
fn drop_originals(sys: &mut dyn Connection, moved: &[Moved]) -> anyhow::Result<()> {
    for m in moved {
        let (rows, now) = copy_rows(sys, None, &m.table, &m.columns)?;
        if rows != m.rows || now.differing(&m.fingerprint).next().is_some() {
            bail!(
                "{} was written while it was being moved into the tenant file: nothing was dropped; run adopt again",
                m.table
            );
        }
    }
    let drops: Vec<Statement> = moved
        .iter()
        .rev()
        .map(|m| Statement {
            sql: format!("DROP TABLE {}", m.table),
            plsql: false,
        })
        .collect();
    sys.run_statements(&drops)?;
    Ok(())
}

/// Registers the adopted tenant, active at `version`, on member `database`
/// (None: the catalog).
fn register(
    sys: &mut dyn Connection,
    name: &str,
    key: &TenantKey,
    user_id: Option<&str>,
    previous: Option<Status>,
    version: u32,
    database: Option<&str>,
) -> anyhow::Result<()> {
    let taken = || {
        anyhow::anyhow!(
            "user {name} was registered by another command meanwhile: run adopt again to see"
        )
    };
    let registered = match previous {
        None => registry::insert(sys, name, key.as_str(), user_id, database).map(|()| true),
        Some(status) => registry::restart_provisioning(sys, name, status, key.as_str(), user_id),
    };
    match registered {
        Ok(true) => {}
        Ok(false) | Err(RegisterError::Taken) => return Err(taken()),
        Err(RegisterError::Db(e)) => return Err(e.into()),
        Err(RegisterError::Refused(e)) => return Err(e),
    }
    // A deprovisioned user's row names where its tables were: now they are here.
    if previous.is_some() {
        registry::set_database(sys, name, database)?;
    }
    if !registry::transition(
        sys,
        name,
        &[Status::Provisioning],
        Status::Active,
        &Changes {
            schema_version: Some(version.into()),
            last_error: Some(None),
            ..Changes::default()
        },
    )? {
        return Err(taken());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_what_they_create() {
        assert_eq!(
            created_object(
                "CREATE INDEX pf_user_a_exp_dates_ix ON pf_user_a_experiences (start_date)"
            ),
            Some("pf_user_a_exp_dates_ix".into())
        );
        assert_eq!(
            created_object("CREATE MATERIALIZED VIEW pf_user_a_career_summary\nBUILD IMMEDIATE"),
            Some("pf_user_a_career_summary".into())
        );
        assert_eq!(
            created_object("CREATE TABLE pf_user_a_career_summary (\n x INTEGER)"),
            Some("pf_user_a_career_summary".into())
        );
        assert_eq!(
            created_object("INSERT INTO pf_user_a_career_summary (a) SELECT 1"),
            Some("pf_user_a_career_summary".into())
        );
        assert_eq!(created_object("ALTER TABLE x ADD y INT"), None);
    }

    #[test]
    fn every_version_renders_and_version_two_adds_columns() {
        let e = Expectations::new(None, Dialect::Sqlite).unwrap();
        assert!(e.latest() >= 3);
        let v1 = &e.get(1).shape;
        let v2 = &e.get(2).shape;
        assert!(!v1.tables["chat_messages"].contains(&"deleted_at".to_string()));
        assert!(v2.tables["chat_messages"].contains(&"deleted_at".to_string()));
        assert!(e.get(2).triggers.is_empty());
        assert!(!e.get(3).triggers.is_empty());
        assert!(
            Expectations::new(None, Dialect::Postgres)
                .unwrap()
                .get(3)
                .triggers
                .is_empty()
        );
        // A tenant exactly at version 1 has nothing to repair there.
        let c = compare(e.get(1), v1, &BTreeSet::new());
        assert!(c.blocking.is_empty() && c.repairs.is_empty());
        // Without indexes and summary, it still matches, with repairs.
        let mut bare = v1.clone();
        bare.indexes.clear();
        bare.tables.remove(CAREER_SUMMARY);
        let c = compare(e.get(1), &bare, &BTreeSet::new());
        assert!(c.blocking.is_empty());
        assert!(c.repairs.contains(&Repair::CareerSummary));
        assert_eq!(c.repairs.len(), v1.indexes.len() + 1);
        // Version 2 needs columns it lacks: blocking.
        assert!(
            !compare(e.get(2), &bare, &BTreeSet::new())
                .blocking
                .is_empty()
        );
    }
}
