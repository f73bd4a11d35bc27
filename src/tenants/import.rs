//! `import`: one tenant's rows from an export ([`crate::tenants::export`]) into this
//! database, whatever dialect wrote the file.
//!
//! Everything that can be checked is checked before anything changes: the
//! file against its manifest (counts and checksums), its schema version
//! against the templates, every table and column against that version, the
//! name against the dialect, and that neither the user nor its tenant key has
//! objects here. Then the tenant is registered as `importing`, created at the
//! file's version and the rows are loaded, parents before children, with
//! binds, in one transaction where the dialect allows it (PostgreSQL; on
//! SQLite one transaction on the tenant's file). It becomes `active` only
//! after that, so a killed import never leaves an active tenant without its
//! rows: running the same import again finishes it, `import --cancel`
//! removes it.
//!
//! After loading, every table is read back and compared with the file, value
//! for value: a value the database could not hold exactly (a timestamp with
//! nanoseconds on PostgreSQL, text with a NUL byte) fails the import instead
//! of being changed silently. Values are compared by what they mean for the
//! column's type: `12.50` and `12.5` are the same number, `2024-01-01T10:00:00.5`
//! and `2024-01-01 10:00:00.500` the same timestamp. Rows are matched by id,
//! not by order (collations differ between databases).
//!
//! On any failure nothing is left behind: the load is rolled back and the
//! half-made tenant deprovisioned (and forgotten, if the registry did not know
//! the user before).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use base64::Engine;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::registry::{self, Changes, Status};
use crate::db::{Connection, Open, Row, Session, Value};
use crate::error::UsageError;
use crate::jobs::archive;
use crate::schema::render::{Renderer, Scope};
use crate::schema::tenant::{TABLES, TenantKey, Username};
use crate::tenants::export::{self, Header, Manifest};
use crate::tenants::operation::{Guard, TenantOp};
use crate::tenants::provision::{self, DeprovisionOptions};

/// What to import, as the command line gives it.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub path: PathBuf,
    /// Import as this user instead of the one in the file (`--as`).
    pub username: Option<String>,
    /// The tenant key naming the tables (`--tenant-key`).
    pub tenant_key: Option<String>,
    /// The member database for a new tenant (`--database`); None: placement.
    pub database: Option<String>,
}

/// One table of the file.
#[derive(Debug, Clone, Serialize)]
pub struct FileTable {
    /// As in the file: `experiences`, `skills_archive`, ...
    pub table: String,
    pub columns: Vec<String>,
    pub rows: u64,
}

/// An import that passed every check, ready to run.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub path: PathBuf,
    pub header: Header,
    pub manifest: Manifest,
    pub username: Username,
    pub key: TenantKey,
    pub version: u32,
    /// In load order: live tables parents first, then archives.
    pub tables: Vec<FileTable>,
    /// The registry did not know the user: a failed import forgets it again.
    pub new_user: bool,
    /// The member database for a new tenant; None: placement decides.
    pub database: Option<String>,
    /// This file was imported as this user already: nothing to do.
    pub already: bool,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub username: String,
    pub tenant_key: String,
    pub schema_version: u32,
    pub rows: u64,
    pub tables: Vec<FileTable>,
    /// No key of the user was here: a new one was made, which cannot open
    /// fields encrypted where the export was taken.
    pub key_created: bool,
}

/// Checks `req` against the file and this database, changing nothing.
pub fn plan(
    session: &mut Session<'_>,
    renderer: &Renderer,
    templates_dir: Option<&Path>,
    req: &ImportRequest,
) -> anyhow::Result<ImportPlan> {
    let path = req.path.clone();
    if !path.is_file() {
        let why = if path.is_dir() {
            "it is a folder: give the export file in it"
        } else {
            "no such file"
        };
        return Err(UsageError::new(format!("cannot import {}: {why}", path.display())).into());
    }
    let (header, manifest) = export::verify(&path).context("the export was refused")?;
    let latest = renderer.latest_version(Scope::Tenant);
    let version = u32::try_from(header.schema_version)
        .ok()
        .filter(|v| (1..=latest).contains(v))
        .ok_or_else(|| {
            UsageError::new(format!(
                "{} holds a tenant at schema version {}, and this pathfinder-db knows versions 1 to {latest}: import it with the pathfinder-db that wrote it",
                path.display(),
                header.schema_version
            ))
        })?;

    let dialect = session.dialect();
    let name = req.username.as_deref().unwrap_or(&header.username);
    let username = Username::parse(name).map_err(|e| {
        let usage = e.usage(Some(dialect));
        if req.username.is_none() {
            // The file's own name: another can be given.
            UsageError::new(format!(
                "{} (the user named in the export): import it under another name with --as USER",
                usage.0
            ))
        } else {
            usage
        }
    })?;
    let key = match (&req.tenant_key, req.username.is_none()) {
        (Some(k), _) => TenantKey::parse(k, dialect)?,
        // The same user keeps the key it had, unless it does not fit here.
        (None, true) if header.tenant_key != header.username => {
            TenantKey::parse(&header.tenant_key, dialect)?
        }
        (None, _) => TenantKey::for_username(&username, dialect)?,
    };

    let tables = file_tables(&path, &manifest)?;
    check_shape(&tables, templates_dir, version)?;

    // Neither the user nor its key may have anything here already, unless an
    // interrupted run of this same import left it `importing`.
    let record = registry::get(session.system(), username.as_str())?;
    let resumes = record.as_ref().is_some_and(|r| {
        r.status == Status::Importing
            && claimed_file(r.claimed_by.as_deref())
                == claimed_file(Some(&import_claim(&header, &manifest, false)))
    });
    if let Some(r) = record
        .as_ref()
        .filter(|r| resumes && r.tenant_key != key.as_str())
    {
        return Err(UsageError::new(format!(
            "the interrupted import of {username} uses tenant key \"{}\": run it again with --tenant-key {}, or remove it with `pathfinder-db import --cancel --as {username}`",
            r.tenant_key, r.tenant_key
        ))
        .into());
    }
    if let Some(r) = record
        .as_ref()
        .filter(|r| r.status == Status::Importing && !resumes)
    {
        return Err(UsageError::new(format!(
            "user {username} is being imported here from another file (tenant {}): finish that import, or remove it with `pathfinder-db import --cancel --as {username}`",
            r.tenant_key
        ))
        .into());
    }
    if let Some(r) = record.as_ref().filter(|r| {
        r.status == Status::Active
            && imported_last_from(
                session,
                &r.username,
                &import_claim(&header, &manifest, false),
            )
            .unwrap_or(false)
    }) {
        // This import finished already (a re-run after a kill past its commit).
        return Ok(ImportPlan {
            path,
            header,
            manifest,
            username,
            key: TenantKey::parse(&r.tenant_key, dialect)?,
            version,
            tables,
            new_user: false,
            database: Some(r.database.clone()),
            already: true,
        });
    }
    if let Some(r) = record
        .as_ref()
        .filter(|r| !matches!(r.status, Status::Deprovisioned | Status::Importing))
    {
        return Err(UsageError::new(format!(
            "user {username} exists already here (tenant {}, {}): import under another name with --as USER, or deprovision it first",
            r.tenant_key, r.status
        ))
        .into());
    }
    if let Some(owner) =
        registry::key_owner(session.system(), key.as_str())?.filter(|o| o != username.as_str())
    {
        return Err(UsageError::new(format!(
            "tenant key \"{key}\" belongs to user {owner} here: choose another with --tenant-key KEY"
        ))
        .into());
    }
    if let Some(found) = existing_objects(session, &key)?.filter(|_| !resumes) {
        return Err(UsageError::new(format!(
            "tenant key \"{key}\" has objects here already ({found}): choose another with --tenant-key KEY, or remove them"
        ))
        .into());
    }
    Ok(ImportPlan {
        path,
        header,
        manifest,
        username,
        key,
        version,
        tables,
        // A resumed import keeps what its first run knew.
        new_user: match &record {
            Some(r) if resumes => claimed_new(r.claimed_by.as_deref()),
            other => other.is_none(),
        },
        database: req.database.clone(),
        already: false,
    })
}

/// Whether the last change of `username`'s tenant as a whole (provision,
/// import, adoption, deprovisioning) was an import of the file `claim`
/// names, which succeeded.
fn imported_last_from(
    session: &mut Session<'_>,
    username: &str,
    claim: &str,
) -> anyhow::Result<bool> {
    let rows = session.system().query(
        "SELECT action, details, created_at FROM pf_audit_log \
         WHERE entity_type = 'tenant' AND entity_id = ? AND response_status = 200 \
           AND action IN ('tenant.provision', 'tenant.import', 'tenant.adopt', \
                          'tenant.deprovision', 'tenant.import_cancel')",
        &[crate::db::Value::Text(username.to_string())],
    )?;
    let last = rows
        .iter()
        .max_by_key(|r| r[2].to_text())
        .filter(|r| r[0].to_text() == "tenant.import");
    let file = |r: &crate::db::Row| {
        serde_json::from_str::<serde_json::Value>(&r[1].to_text())
            .ok()
            .and_then(|d| d["file"].as_str().map(str::to_string))
    };
    Ok(last.and_then(file).as_deref() == claimed_file(Some(claim)))
}

/// Something of `key` that exists in the database, if anything does.
fn existing_objects(session: &mut Session<'_>, key: &TenantKey) -> anyhow::Result<Option<String>> {
    if let Some(file) = session.database().sqlite_tenant_file(key) {
        return Ok(file.exists().then(|| file.display().to_string()));
    }
    let only = HashMap::from([(key.as_str(), ())]);
    Ok(session
        .system()
        .table_stats(&key.prefix())?
        .into_iter()
        .find(|t| crate::migrate::verify::split_name(&t.table, &only).is_some())
        .map(|t| t.table))
}

/// The tables the file holds (from the manifest) with their columns (from
/// each table's first row), in load order.
fn file_tables(path: &Path, manifest: &Manifest) -> anyhow::Result<Vec<FileTable>> {
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    read_rows(path, None, |table, row| {
        if !columns.contains_key(table) {
            let keys = row
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            columns.insert(table.to_string(), keys);
        }
        Ok(())
    })?;
    let order = |name: &str| -> usize {
        let (base, archive) = match name.strip_suffix("_archive") {
            Some(base) => (base, TABLES.len()),
            None => (name, 0),
        };
        archive
            + TABLES
                .iter()
                .position(|t| t.name == base)
                .unwrap_or(TABLES.len())
    };
    let mut tables: Vec<FileTable> = manifest
        .tables
        .iter()
        .map(|t| FileTable {
            table: t.table.clone(),
            columns: columns.remove(&t.table).unwrap_or_default(),
            rows: t.rows,
        })
        .collect();
    tables.sort_by_key(|t| order(&t.table));
    Ok(tables)
}

/// What a tenant at some version could not load from an export.
pub(crate) enum Misfit {
    /// A table (as named in the file) it does not have.
    Table(String),
    /// Columns of a table that the tenant's table does not have.
    Columns { table: String, columns: Vec<String> },
}

/// The first of `tables` (as named in an export, with their columns) that a
/// tenant at `version` could not load, if any.
pub(crate) fn misfit<'a>(
    tables: impl IntoIterator<Item = (&'a str, &'a [String])>,
    templates_dir: Option<&Path>,
    version: u32,
) -> anyhow::Result<Option<Misfit>> {
    let shape = crate::migrate::verify::expected_shape(
        templates_dir,
        crate::db::dialect::Dialect::Sqlite,
        version,
    )?;
    for (table, columns) in tables {
        let base = table.strip_suffix("_archive").unwrap_or(table);
        let known = TABLES.iter().any(|d| d.name == base);
        let Some(expected) = shape.tables.get(base).filter(|_| known) else {
            return Ok(Some(Misfit::Table(table.to_string())));
        };
        let archive = base != table;
        let foreign: Vec<String> = columns
            .iter()
            .filter(|c| !(expected.contains(c) || archive && *c == "archived_at"))
            .cloned()
            .collect();
        if !foreign.is_empty() {
            return Ok(Some(Misfit::Columns {
                table: table.to_string(),
                columns: foreign,
            }));
        }
    }
    Ok(None)
}

/// Every table of the file is a tenant table (or its archive) of `version`,
/// and every column one that table has.
fn check_shape(
    tables: &[FileTable],
    templates_dir: Option<&Path>,
    version: u32,
) -> anyhow::Result<()> {
    let named = tables
        .iter()
        .map(|t| (t.table.as_str(), t.columns.as_slice()));
    match misfit(named, templates_dir, version)? {
        Some(Misfit::Table(table)) => {
            return Err(UsageError::new(format!(
                "the export has a table {table:?} that a tenant at version {version} does not have: it was changed, or not written by pathfinder-db"
            ))
            .into());
        }
        Some(Misfit::Columns { table, columns }) => {
            return Err(UsageError::new(format!(
                "the export's table {table} has column(s) {} that version {version} does not have: it was changed, or written from a tenant with drift (`pathfinder-db verify`)",
                columns.join(", ")
            ))
            .into());
        }
        None => {}
    }
    for t in tables {
        if t.rows > 0 && !t.columns.iter().any(|c| c == "id") {
            return Err(UsageError::new(format!(
                "the export's table {} has no id column: it was changed",
                t.table
            ))
            .into());
        }
    }
    Ok(())
}

/// Hands every row of the file (of `only` that table, or all) to `each`
/// with its table, in file order.
fn read_rows(
    path: &Path,
    only: Option<&str>,
    mut each: impl FnMut(&str, &serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the export {}", path.display()))?;
    // Rows of other tables are skipped without parsing them, as the writer
    // starts each line with its table.
    let quick = only.map(|t| format!("{{\"table\":{},", serde_json::json!(t)));
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read the export {}", path.display()))?;
        // The header; blank lines (after the manifest, as `verify` allows).
        if n == 0 || line.trim().is_empty() {
            continue;
        }
        if let Some(quick) = &quick
            && line.starts_with("{\"table\":")
            && !line.starts_with(quick.as_str())
        {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not JSON", path.display(), n + 1))?;
        let Some(table) = doc.get("table").and_then(|t| t.as_str()) else {
            continue;
        };
        if only.is_some_and(|t| t != table) {
            continue;
        }
        each(table, doc.get("row").unwrap_or(&serde_json::Value::Null))?;
    }
    Ok(())
}

/// What `claimed_by` says while an import runs: the file's identity (so a
/// re-run knows the import as its own) and whether the registry knew the user
/// before (so taking it back forgets a user it made).
fn import_claim(header: &Header, manifest: &Manifest, new_user: bool) -> String {
    let mut h = Sha256::new();
    for part in [&header.username, &header.tenant_key, &header.exported_at] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    for t in &manifest.tables {
        h.update(t.table.as_bytes());
        h.update(b" ");
        h.update(t.sha256.as_bytes());
        h.update(b"\n");
    }
    let digest: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let new = if new_user { "+new" } else { "" };
    format!("{IMPORT_CLAIM}{new}@{digest}")
}

const IMPORT_CLAIM: &str = "import";

/// The file identity in an import's claim (without whether the user was new).
fn claimed_file(claim: Option<&str>) -> Option<&str> {
    claim?
        .strip_prefix(IMPORT_CLAIM)?
        .rsplit_once('@')
        .map(|(_, digest)| digest)
}

/// What other commands say of a tenant that is being imported.
pub fn being_imported(name: &str) -> String {
    format!(
        "tenant {name} is being imported: finish with `pathfinder-db import <file>` (the same file), or remove it with `pathfinder-db import --cancel --as {name}`"
    )
}

/// Whether an import's claim says the registry did not know the user before.
fn claimed_new(claim: Option<&str>) -> bool {
    claim.is_some_and(|c| c.starts_with(&format!("{IMPORT_CLAIM}+new@")))
}

/// Runs a checked plan: registers the tenant as `importing`, creates its
/// objects at the file's version, loads and verifies the rows, and only then
/// makes it active (audited in that same transaction). On PostgreSQL all of it
/// is one transaction; elsewhere a kill leaves the tenant `importing`, which
/// the same import finishes and `import --cancel` removes. On failure
/// everything is taken back. `master_key` wraps the user's new encryption
/// key, as `provision` does.
pub fn import(
    session: &mut Session<'_>,
    renderer: &Renderer,
    plan: &ImportPlan,
    master_key: Option<std::sync::Arc<crate::security::crypto::MasterKey>>,
) -> anyhow::Result<ImportOutcome> {
    let name = plan.username.as_str();
    let Some(mut op) = TenantOp::begin(session, name, "tenant.import", "import", Guard::Wait)?
    else {
        bail!("tenant {name} is locked by another process");
    };
    let mut ours = false;
    let result = import_steps(&mut op, renderer, plan, master_key.as_deref(), &mut ours);
    match op.finish(result, |_, _| Ok(())) {
        Ok((rows, key_created)) => Ok(ImportOutcome {
            username: plan.username.to_string(),
            tenant_key: plan.key.to_string(),
            schema_version: plan.version,
            rows,
            tables: plan.tables.clone(),
            key_created,
        }),
        // Another command has the user: not ours to undo.
        Err(e) if !ours => Err(e),
        Err(e) => match take_back(session, renderer, &plan.username) {
            Ok(_) => Err(e.context(format!(
                "cannot import {}: nothing was kept",
                plan.path.display()
            ))),
            Err(undo) => Err(e.context(format!(
                "cannot import {}, and removing the half-made tenant failed too ({}): run `pathfinder-db import --cancel --as {}`",
                plan.path.display(),
                crate::error::one_line(&undo),
                plan.username
            ))),
        },
    }
}

fn import_steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    plan: &ImportPlan,
    master_key: Option<&crate::security::crypto::MasterKey>,
    ours: &mut bool,
) -> anyhow::Result<(u64, bool)> {
    let name = plan.username.as_str();
    let key = plan.key.as_str();
    // Read again under the lock: another command may have changed it.
    let record = op.registry(|sys| registry::get(sys, name))?;
    let user_id = op.registry(|sys| registry::user_id_of(sys, name))?;
    op.set_user_id(user_id.clone());
    let claim = import_claim(&plan.header, &plan.manifest, plan.new_user);
    let taken = |status: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "user {name} is {status} here now (another command got there first): nothing was imported"
        )
    };
    let registration = match &record {
        // Placed like a new tenant, in the transaction that registers it.
        None => op.registry(|sys| {
            let database = crate::fleet::placement::choose(sys, plan.database.as_deref(), &[])
                .map_err(registry::RegisterError::Refused)?;
            registry::insert_as(
                sys,
                name,
                key,
                user_id.as_deref(),
                Status::Importing,
                Some(&claim),
                database.as_deref(),
            )
            .map(|()| true)
        }),
        // Placed afresh before its row leaves `deprovisioned` (so that it
        // does not count on its old member).
        Some(r) if r.status == Status::Deprovisioned => op.registry(|sys| {
            let database = crate::fleet::placement::choose(sys, plan.database.as_deref(), &[])
                .map_err(registry::RegisterError::Refused)?;
            let restarted = registry::restart_as(
                sys,
                name,
                Status::Deprovisioned,
                Status::Importing,
                key,
                user_id.as_deref(),
                Some(&claim),
            )?;
            if restarted {
                registry::set_database(sys, name, database.as_deref())?;
            }
            Ok(restarted)
        }),
        Some(r)
            if r.status == Status::Importing
                && claimed_file(r.claimed_by.as_deref()) == claimed_file(Some(&claim)) =>
        {
            Ok(true)
        }
        Some(r) => return Err(taken(&r.status)),
    };
    // Oracle keeps the placement lock past the transaction: end it here.
    crate::fleet::placement::release(op.session().system());
    match registration {
        Ok(true) => *ours = true,
        Ok(false) | Err(registry::RegisterError::Taken) => return Err(taken(&"registered")),
        Err(registry::RegisterError::Db(e)) => return Err(e.into()),
        Err(registry::RegisterError::Refused(e)) => return Err(e),
    }
    let resumed = record.is_some_and(|r| r.status == Status::Importing);

    let rows = op
        .tenant(&plan.key, Open::Create, |conn| {
            if resumed {
                // What an interrupted run of this import left: start afresh.
                conn.run_statements(&renderer.drop_tenant(&plan.key)?)?;
            }
            crate::migrate::apply_tenant(conn, renderer, &plan.key, Some(plan.version), false)?;
            crate::security::grants::grant_tenant(
                conn,
                renderer,
                &plan.key,
                plan.version,
                (name, user_id.as_deref(), "import"),
            )?;
            load(conn, renderer, plan)
        })?
        .ok_or_else(|| anyhow::anyhow!("the tenant file of {name} could not be created"))?;

    // Active only now that every row is in and verified, audited in the
    // same transaction, with the file's identity (a re-run finds it there).
    op.set_details(
        serde_json::json!({"file": claimed_file(Some(&claim)), "rows": rows}).to_string(),
    );
    op.complete(|sys| {
        let done = registry::transition(
            sys,
            name,
            &[Status::Importing],
            Status::Active,
            &Changes {
                schema_version: Some(i64::from(plan.version)),
                last_error: Some(None),
                claimed_by: Some(None),
            },
        )?;
        if !done {
            bail!("tenant {name} changed while it was being imported: run the import again");
        }
        let made =
            crate::security::keys::create_on_provision(sys, name, user_id.as_deref(), master_key)?;
        Ok(matches!(
            made,
            crate::security::keys::KeyCreation::Created { .. }
        ))
    })
    .map(|key_created| (rows, key_created))
}

/// Removes what an import made, while the tenant is still `importing` (a
/// failed import, or `import --cancel` after a kill), and forgets a user the
/// registry did not know before. Nothing to do when the user is not importing.
fn take_back(
    session: &mut Session<'_>,
    renderer: &Renderer,
    username: &Username,
) -> anyhow::Result<bool> {
    let Some(record) = registry::get(session.system(), username.as_str())? else {
        return Ok(false);
    };
    if record.status != Status::Importing {
        return Ok(false);
    }
    let new_user = claimed_new(record.claimed_by.as_deref());
    if let Some(p) = provision::plan_import_take_back(session, username)? {
        provision::deprovision(session, renderer, &p, &DeprovisionOptions::default())?;
    }
    if new_user {
        let sys = session.system();
        let mut tx = crate::db::Tx::begin(sys)?;
        registry::forget(&mut *tx, username.as_str())?;
        tx.commit()?;
    }
    Ok(true)
}

/// `import --cancel`: removes the tenant an interrupted import left
/// `importing` (its tables and, for a user the registry did not know before,
/// its registry row).
pub fn cancel(
    session: &mut Session<'_>,
    renderer: &Renderer,
    username: &Username,
) -> anyhow::Result<()> {
    match registry::get(session.system(), username.as_str())? {
        None => Err(UsageError::new(format!(
            "no tenant named {username}: `pathfinder-db tenants` lists them"
        ))
        .into()),
        Some(r) if r.status != Status::Importing => Err(UsageError::new(format!(
            "tenant {username} is {}, not importing: nothing to cancel",
            r.status
        ))
        .into()),
        Some(_) => take_back(session, renderer, username).map(|_| ()),
    }
}

/// Rows are sent in batches of at most this many, or this many bytes.
const BATCH_ROWS: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

/// Sends rows into one table in batches of multi-row INSERTs with binds
/// ([`Connection::insert_rows`]), at most [`BATCH_ROWS`] rows or
/// [`BATCH_BYTES`] bytes at a time: what `import` and `move` load with.
pub struct Loader<'a> {
    object: &'a str,
    columns: &'a [String],
    batch: Vec<Row>,
    bytes: usize,
    sent: u64,
}

impl<'a> Loader<'a> {
    /// For `object` (a catalog name of ours), whose rows give `columns` in order.
    pub fn new(object: &'a str, columns: &'a [String]) -> Self {
        Loader {
            object,
            columns,
            batch: Vec::with_capacity(BATCH_ROWS),
            bytes: 0,
            sent: 0,
        }
    }

    /// Queues `row` (about `bytes` long), sending the batch once it is full.
    pub fn push(
        &mut self,
        conn: &mut dyn Connection,
        row: Row,
        bytes: usize,
    ) -> Result<(), crate::db::DbError> {
        self.bytes += bytes;
        self.batch.push(row);
        if self.batch.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush(conn)?;
        }
        Ok(())
    }

    fn flush(&mut self, conn: &mut dyn Connection) -> Result<(), crate::db::DbError> {
        if !self.batch.is_empty() {
            self.sent += conn.insert_rows(self.object, self.columns, &self.batch)?;
            self.batch.clear();
            self.bytes = 0;
        }
        Ok(())
    }

    /// Sends what is queued; returns the rows inserted in all.
    pub fn finish(mut self, conn: &mut dyn Connection) -> Result<u64, crate::db::DbError> {
        self.flush(conn)?;
        Ok(self.sent)
    }
}

/// Loads every table of the plan into the freshly provisioned tenant and
/// compares what the database holds with the file.
fn load(conn: &mut dyn Connection, renderer: &Renderer, plan: &ImportPlan) -> anyhow::Result<u64> {
    let key = &plan.key;
    let archived: Vec<&str> = plan
        .tables
        .iter()
        .filter_map(|t| t.table.strip_suffix("_archive"))
        .collect();
    if !archived.is_empty() {
        let live: Vec<_> = archive::live_tables(conn, key)?
            .into_iter()
            .filter(|(d, _)| archived.contains(&d.name))
            .collect();
        archive::prepare(conn, renderer, key, &live)?;
    }
    let catalog = conn.columns(&key.prefix())?;
    let mut total = 0;
    for table in plan.tables.iter().filter(|t| t.rows > 0) {
        let object = key.object(&table.table);
        let kinds: Vec<Kind> = table
            .columns
            .iter()
            .map(|c| {
                catalog
                    .iter()
                    .find(|k| k.table == object && &k.column == c)
                    .map(|k| Kind::of(&k.data_type))
                    .ok_or_else(|| anyhow::anyhow!("{object} has no column {c} after provisioning"))
            })
            .collect::<anyhow::Result<_>>()?;
        let id = table.columns.iter().position(|c| c == "id").unwrap_or(0);

        let mut from_file = Fingerprint::new(table.columns.len());
        let mut exact = Sha256::new();
        let mut rows = 0u64;
        let mut loader = Loader::new(&object, &table.columns);
        read_rows(&plan.path, Some(&table.table), |_, row| {
            let object_row = row.as_object().context("a row that is not an object")?;
            if object_row.len() != table.columns.len()
                || !table.columns.iter().all(|c| object_row.contains_key(c))
            {
                bail!(
                    "a row of {} has other columns than the table's first row: the file was changed",
                    table.table
                );
            }
            let text = row.to_string();
            exact.update(text.as_bytes());
            exact.update(b"\n");
            rows += 1;
            let values = table
                .columns
                .iter()
                .map(|c| export::decode(&object_row[c]))
                .collect::<anyhow::Result<Row>>()?;
            from_file.add(&values, &kinds, id);
            loader
                .push(&mut *conn, values, text.len())
                .with_context(|| format!("cannot load {}", table.table))?;
            Ok(())
        })?;
        loader
            .finish(&mut *conn)
            .with_context(|| format!("cannot load {}", table.table))?;
        // The rows loaded are the ones the manifest vouches for (the file
        // could have changed since it was checked).
        let sha: String = exact
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if rows != table.rows
            || plan
                .manifest
                .tables
                .iter()
                .any(|m| m.table == table.table && m.sha256 != sha)
        {
            bail!(
                "{} changed while it was being imported (table {})",
                plan.path.display(),
                table.table
            );
        }

        let mut in_db = Fingerprint::new(table.columns.len());
        let mut read_back = 0u64;
        conn.query_each(
            &format!("SELECT {} FROM {object}", table.columns.join(", ")),
            &[],
            &mut |row| {
                in_db.add(&row, &kinds, id);
                read_back += 1;
                Ok(())
            },
        )?;
        if read_back != rows {
            bail!(
                "table {} holds {read_back} rows after loading the export's {rows}",
                table.table
            );
        }
        let differ: Vec<&str> = from_file
            .differing(&in_db)
            .map(|i| table.columns[i].as_str())
            .collect();
        if !differ.is_empty() {
            bail!(
                "table {}: the database does not hold the export's values exactly in column(s) {} (a value this database cannot store as it is, such as a timestamp finer than its precision or text with a NUL character)",
                table.table,
                differ.join(", ")
            );
        }
        total += rows;
    }
    Ok(total)
}

/// How values of a column compare: by what they mean for its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Number,
    Date,
    Timestamp,
}

impl Kind {
    /// From the catalog's type name (any dialect's spelling).
    pub fn of(data_type: &str) -> Kind {
        let t = data_type.to_ascii_lowercase();
        if t.starts_with("timestamp") {
            Kind::Timestamp
        } else if t == "date" {
            Kind::Date
        } else if ["numeric", "number", "decimal", "real", "double", "float"]
            .iter()
            .any(|n| t.starts_with(n))
            || t.contains("int")
        {
            Kind::Number
        } else {
            Kind::Text
        }
    }
}

/// A value in a form that is equal exactly when the values mean the same for
/// the column's type (None: NULL).
pub fn canonical(value: &Value, kind: Kind) -> Option<String> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let text = match value {
        Value::Null => return None,
        Value::Blob(b) => return Some(format!("blob:{}", b64(b))),
        Value::TextBytes(b) => return Some(format!("bytes:{}", b64(b))),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
    };
    Some(match kind {
        Kind::Text | Kind::Date => text,
        Kind::Number => Decimal::from_str(text.trim())
            .map(|d| d.normalize().to_string())
            .unwrap_or(text),
        Kind::Timestamp => {
            // One spelling for one point in time: nanoseconds always written.
            crate::db::postgres::parse_timestamp(&text)
                .map(|d| {
                    let whole =
                        crate::db::postgres::timestamp_text(d.replace_nanosecond(0).unwrap_or(d));
                    format!("{whole}.{:09}", d.nanosecond())
                })
                .unwrap_or(text)
        }
    })
}

/// An order-independent fingerprint of a table's rows, per column: the sum
/// of a hash of (row id, column, value) over the rows. Two tables with the
/// same ids have the same sums exactly when every value matches.
pub(crate) struct Fingerprint {
    sums: Vec<u128>,
}

impl Fingerprint {
    pub(crate) fn new(columns: usize) -> Self {
        Fingerprint {
            sums: vec![0; columns],
        }
    }

    pub(crate) fn add(&mut self, row: &[Value], kinds: &[Kind], id: usize) {
        let part = |h: &mut Sha256, v: Option<String>| match v {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        };
        let id_value = canonical(&row[id], kinds[id]);
        for (i, (value, kind)) in row.iter().zip(kinds).enumerate() {
            let mut h = Sha256::new();
            part(&mut h, id_value.clone());
            h.update((i as u64).to_le_bytes());
            part(&mut h, canonical(value, *kind));
            let digest = h.finalize();
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            self.sums[i] = self.sums[i].wrapping_add(u128::from_le_bytes(first));
        }
    }

    /// The columns (by index) whose values differ.
    pub(crate) fn differing<'a>(
        &'a self,
        other: &'a Fingerprint,
    ) -> impl Iterator<Item = usize> + 'a {
        (0..self.sums.len()).filter(|&i| self.sums[i] != other.sums[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_claim_names_the_file_and_whether_the_user_was_new() {
        let header = Header::for_tenant(
            "alice",
            "alice",
            3,
            crate::db::dialect::Dialect::Sqlite,
            "2026-01-01T00:00:00Z".into(),
        );
        let manifest = Manifest {
            tables: vec![export::TableSummary {
                table: "experiences".into(),
                rows: 1,
                sha256: "ab".into(),
            }],
            rows: 1,
        };
        let new = import_claim(&header, &manifest, true);
        let known = import_claim(&header, &manifest, false);
        assert!(claimed_new(Some(&new)) && !claimed_new(Some(&known)));
        assert_eq!(claimed_file(Some(&new)), claimed_file(Some(&known)));
        let mut changed = manifest.clone();
        changed.tables[0].sha256 = "cd".into();
        assert_ne!(
            claimed_file(Some(&import_claim(&header, &changed, true))),
            claimed_file(Some(&new))
        );
        // Other claims are not imports.
        assert_eq!(claimed_file(Some("deprovision@2026-01-01 00:00:00")), None);
        assert_eq!(claimed_file(None), None);
    }

    #[test]
    fn values_compare_by_meaning() {
        let n = |v: Value| canonical(&v, Kind::Number);
        assert_eq!(n(Value::Float(12.5)), n(Value::Text("12.50".into())));
        assert_eq!(n(Value::Int(12)), n(Value::Float(12.0)));
        assert_eq!(n(Value::Float(0.1)), Some("0.1".into()));
        assert_ne!(n(Value::Float(0.1)), n(Value::Float(0.1000001)));
        let ts = |s: &str| canonical(&Value::Text(s.into()), Kind::Timestamp);
        assert_eq!(ts("2024-01-01T10:00:00.5"), ts("2024-01-01 10:00:00.500"));
        assert_eq!(ts("2024-01-01"), ts("2024-01-01 00:00:00"));
        assert_ne!(
            ts("2024-01-01 10:00:00.123456789"),
            ts("2024-01-01 10:00:00.123456")
        );
        assert_eq!(canonical(&Value::Null, Kind::Text), None);
        assert_ne!(
            canonical(&Value::Text(String::new()), Kind::Text),
            canonical(&Value::Null, Kind::Text)
        );
        assert_eq!(Kind::of("timestamp without time zone"), Kind::Timestamp);
        assert_eq!(Kind::of("timestamp(6)"), Kind::Timestamp);
        assert_eq!(Kind::of("numeric(3,1)"), Kind::Number);
        assert_eq!(Kind::of("number(10,0)"), Kind::Number);
        assert_eq!(Kind::of("smallint"), Kind::Number);
        assert_eq!(Kind::of("character varying(255)"), Kind::Text);
        assert_eq!(Kind::of("clob"), Kind::Text);
        assert_eq!(Kind::of("date"), Kind::Date);
    }

    #[test]
    fn fingerprints_ignore_order_and_find_the_column() {
        let kinds = [Kind::Text, Kind::Number];
        let row = |id: &str, n: f64| vec![Value::Text(id.into()), Value::Float(n)];
        let mut a = Fingerprint::new(2);
        a.add(&row("x", 1.5), &kinds, 0);
        a.add(&row("y", 2.5), &kinds, 0);
        let mut b = Fingerprint::new(2);
        b.add(&row("y", 2.5), &kinds, 0);
        b.add(&row("x", 1.5), &kinds, 0);
        assert_eq!(a.differing(&b).count(), 0);
        let mut c = Fingerprint::new(2);
        c.add(&row("y", 2.5), &kinds, 0);
        c.add(&row("x", 1.25), &kinds, 0);
        assert_eq!(a.differing(&c).collect::<Vec<_>>(), vec![1]);
        // Swapping values between rows is a difference too.
        let mut d = Fingerprint::new(2);
        d.add(&row("x", 2.5), &kinds, 0);
        d.add(&row("y", 1.5), &kinds, 0);
        assert_eq!(a.differing(&d).collect::<Vec<_>>(), vec![1]);
    }
}
