//! Tenant lifecycle: provision (create a user's tables) and deprovision (remove
//! them, optionally archiving or exporting the rows first). How each backend
//! makes this safe (one transaction, a file per tenant, staged commits) is
//! decided by [`TenantOp`].

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Serialize;

use crate::catalog::registry::{self, Changes, RegisterError, Status, TenantRecord};
use crate::db::dialect::Dialect;
use crate::db::{DbError, DbErrorKind, Open, Session};
use crate::error::UsageError;
use crate::jobs::archive;
use crate::migrate;
use crate::schema::render::Renderer;
use crate::schema::tenant::{TenantKey, Username};
use crate::tenants::export::{ExportTarget, Header};
use crate::tenants::operation::{Guard, TenantOp};

/// A user to provision, and the tenant key the DBA chose, if any.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub username: Username,
    pub tenant_key: Option<String>,
    /// Provision at this version instead of the latest (staged rollouts, tests).
    pub target_version: Option<u32>,
    /// Wraps the user's new encryption key (when a `pf_users` row exists);
    /// None: no key is created (`keys ensure` makes it later).
    pub master_key: Option<std::sync::Arc<crate::security::crypto::MasterKey>>,
    /// The member database to place a new tenant on (`--database`); None:
    /// the open member with the most free places.
    pub database: Option<String>,
    /// A deprovisioned user's kept archives are taken up by the user's new
    /// tenant (`--take-archives`: the same person is back).
    pub take_archives: bool,
}

/// What provisioning did for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProvisionOutcome {
    /// This run created (or finished creating) the tenant.
    Created { tenant_key: String, version: u32 },
    /// The tenant was there already; nothing was changed. `by_another_run`:
    /// it was not there when this run looked, another run (provisioning the
    /// same user at the same time) created it meanwhile.
    Exists {
        tenant_key: String,
        version: u32,
        by_another_run: bool,
        /// The member that holds it.
        database: String,
    },
}

impl ProvisionOutcome {
    pub fn tenant_key(&self) -> &str {
        match self {
            ProvisionOutcome::Created { tenant_key, .. }
            | ProvisionOutcome::Exists { tenant_key, .. } => tenant_key,
        }
    }
}

/// Decides the tenant key: the registry's (a username keeps its key for life),
/// else the one asked for, else the username; checked against the dialect.
fn resolve_key(
    record: Option<&TenantRecord>,
    req: &ProvisionRequest,
    dialect: Dialect,
) -> anyhow::Result<TenantKey> {
    let registered = record
        .filter(|r| r.status != Status::Deprovisioned)
        .map(|r| r.tenant_key.as_str());
    match (registered, req.tenant_key.as_deref()) {
        (Some(have), Some(asked)) if have != asked => Err(UsageError::new(format!(
            "user {} is registered with tenant key {have:?}, not {asked:?}: drop --tenant-key or deprovision first",
            req.username
        ))
        .into()),
        (Some(have), _) => Ok(TenantKey::parse(have, dialect)?),
        (None, Some(asked)) => Ok(TenantKey::parse(asked, dialect)?),
        (None, None) => Ok(TenantKey::for_username(&req.username, dialect)?),
    }
}

/// Validates a request before any database is touched: the explicit key, or
/// (without one) that the username fits the dialect. A username that does not
/// fit may still be registered with a key: that is `NeedsRegisteredKey`.
pub fn check_request(req: &ProvisionRequest, dialect: Dialect) -> Result<(), NameCheck> {
    match &req.tenant_key {
        Some(k) => TenantKey::parse(k, dialect)
            .map(|_| ())
            .map_err(|e| NameCheck::Invalid(UsageError::new(e.to_string()))),
        None => match TenantKey::for_username(&req.username, dialect) {
            Ok(_) => Ok(()),
            Err(e @ crate::schema::tenant::NameError::TooLongForDialect { .. }) => Err(
                NameCheck::NeedsRegisteredKey(UsageError::new(e.to_string())),
            ),
            Err(e) => Err(NameCheck::Invalid(UsageError::new(e.to_string()))),
        },
    }
}

/// Why a request did not pass [`check_request`].
#[derive(Debug)]
pub enum NameCheck {
    /// Refused whatever the registry says.
    Invalid(UsageError),
    /// Too long for the dialect: fine only if the registry holds a key for it.
    NeedsRegisteredKey(UsageError),
}

/// Places the tenant `name` (registered by this run, still `provisioning`,
/// nothing of it made) again while its member cannot be reached (a server
/// down, a SQLite folder whose disk is not mounted), passing over each such
/// member; the member's error when no other can take it. A kill between
/// the two commits leaves the row `provisioning` on one member or the
/// other, and a re-run provisions it there.
fn place_on_reachable(
    op: &mut TenantOp<'_, '_>,
    name: &str,
    key: &TenantKey,
) -> anyhow::Result<()> {
    let mut passed_over: Vec<String> = Vec::new();
    loop {
        let Err(e) = op.session().reach_member_of(key) else {
            return Ok(());
        };
        if !matches!(e.kind, DbErrorKind::Connection | DbErrorKind::Auth) {
            return Err(e.into());
        }
        let Some(record) = op.registry(|sys| registry::get(sys, name))? else {
            return Err(e.into());
        };
        passed_over.push(record.database);
        let placed = op.registry(|sys| -> Result<bool, DbError> {
            match crate::fleet::placement::choose(sys, None, &passed_over) {
                Ok(next) => registry::set_database(sys, name, next.as_deref()),
                Err(_) => Ok(false),
            }
        });
        crate::fleet::placement::release(op.session().system());
        if !placed? {
            return Err(e.into());
        }
    }
}

/// A registration lost a race for a unique key (the username or the tenant
/// key) and the backend cannot go on in the same transaction.
#[derive(Debug, thiserror::Error)]
#[error("tenant key \"{0}\" was taken by a concurrent registration")]
struct KeyTaken(String);

/// Creates one tenant at the latest (or the requested) version. Safe to call
/// concurrently for the same user from several processes, and to re-run
/// after a crash: a re-run completes a half-created tenant.
pub fn provision(
    session: &mut Session<'_>,
    renderer: &Renderer,
    req: &ProvisionRequest,
) -> anyhow::Result<ProvisionOutcome> {
    let name = req.username.as_str();
    // What the registry says before waiting for the tenant's lock: a tenant
    // that is active once we hold it was provisioned by whoever held it.
    let seen = registry::get(session.system(), name)?.map(|r| r.status);
    let Some(mut op) =
        TenantOp::begin(session, name, "tenant.provision", "provision", Guard::Wait)?
    else {
        bail!("tenant {name} is locked by another process");
    };
    let mut registered = false;
    let result = provision_steps(&mut op, renderer, req, seen, &mut registered);
    let result = op.finish(result, |sys, message| {
        // Only the row this run registered: never another process's.
        if registered {
            registry::mark_failed(sys, name, &[Status::Provisioning], message)?;
        }
        Ok(())
    });
    match result {
        Err(e) if e.is::<KeyTaken>() => {
            // The transaction that saw the conflict is gone: ask who has the key.
            let key = e
                .downcast_ref::<KeyTaken>()
                .map(|k| k.0.clone())
                .unwrap_or_default();
            match registry::key_owner(session.system(), &key)? {
                Some(owner) if owner != name => Err(UsageError::new(format!(
                    "tenant key \"{key}\" already belongs to user {owner}: choose another --tenant-key"
                ))
                .into()),
                _ => provision(session, renderer, req),
            }
        }
        other => other,
    }
}

/// A deprovisioned tenant whose archives were kept (`deprovision
/// --archive`) holds the departed user's rows under the key a new tenant of
/// the same name would get: they are not handed to whoever has the name now,
/// unless it is the same user (the same `pf_users` id) or `--take-archives`
/// says so; then the new tenant is placed on the member that holds them
/// (returned), so that they stay the tenant's. A member that cannot be
/// reached is not asked (the tenant is then placed elsewhere).
fn kept_archives_on(
    op: &mut TenantOp<'_, '_>,
    record: &TenantRecord,
    key: &TenantKey,
    user_id: Option<&str>,
    req: &ProvisionRequest,
) -> anyhow::Result<Option<String>> {
    let archives: std::collections::HashSet<String> = crate::schema::tenant::TENANT_TABLES
        .iter()
        .map(|t| format!("{}_archive", key.object(t)))
        .collect();
    let prefix = format!("{}{}_", crate::schema::tenant::TENANT_PREFIX, key.as_str());
    let kept = match op.tenant(key, Open::Existing, |conn| {
        Ok(conn
            .table_names(&prefix, false)?
            .into_iter()
            .filter(|t| archives.contains(&t.to_ascii_lowercase()))
            .count())
    }) {
        Ok(found) => found.unwrap_or(0),
        Err(e) if crate::db::unreachable(&e) => 0,
        Err(e) => return Err(e),
    };
    if kept == 0 {
        return Ok(None);
    }
    let name = record.username.as_str();
    let same_user = user_id.is_some() && record.user_id.as_deref() == user_id;
    if same_user || req.take_archives {
        if let Some(asked) = req.database.as_deref().filter(|d| *d != record.database) {
            return Err(UsageError::new(format!(
                "user {name}'s kept archives are on member {}, not {asked}: provision {name} there (drop --database), then `pathfinder-db move {name} --to {asked}`",
                record.database
            ))
            .into());
        }
        return Ok(Some(record.database.clone()));
    }
    Err(UsageError::new(format!(
        "user {name}'s earlier tenant was deprovisioned with its archives kept ({kept} table(s) pf_user_{key}_*_archive): a new user of that name would get them; for a new person give the tenant another key (`pathfinder-db provision {name} --tenant-key {key}2`), or, if the same user is back, `pathfinder-db provision {name} --take-archives`"
    ))
    .into())
}

fn provision_steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    req: &ProvisionRequest,
    seen: Option<Status>,
    registered: &mut bool,
) -> anyhow::Result<ProvisionOutcome> {
    let dialect = op.session().dialect();
    let name = req.username.as_str();
    let record = op.registry(|sys| registry::get(sys, name))?;
    let key = resolve_key(record.as_ref(), req, dialect)?;
    let exists = |r: &TenantRecord| ProvisionOutcome::Exists {
        tenant_key: r.tenant_key.clone(),
        version: r.schema_version.max(0) as u32,
        by_another_run: !matches!(seen, Some(Status::Active | Status::Migrating)),
        database: r.database.clone(),
    };
    let from = match &record {
        Some(r) if matches!(r.status, Status::Active | Status::Migrating) => return Ok(exists(r)),
        Some(r) if r.status == Status::Deprovisioning => bail!(
            "tenant {name} is being deprovisioned: finish with `{}`, or take it back with `pathfinder-db deprovision {name} --cancel`",
            finish_command(name, r.claimed_by.as_deref())
        ),
        // Completing it here would make it active without its rows.
        Some(r) if r.status == Status::Importing => {
            bail!(crate::tenants::import::being_imported(name))
        }
        Some(r) => Some(r.status),
        None => None,
    };
    if let Some(owner) = op
        .registry(|sys| registry::key_owner(sys, key.as_str()))?
        .filter(|o| o != name)
    {
        return Err(UsageError::new(format!(
            "tenant key \"{key}\" already belongs to user {owner}: choose another --tenant-key"
        ))
        .into());
    }
    let user_id = op.registry(|sys| registry::user_id_of(sys, name))?;
    op.set_user_id(user_id.clone());
    // A deprovisioned tenant's kept archives: refused to anyone else, and
    // the same user's tenant goes where they are.
    let archives_on = match record
        .as_ref()
        .filter(|r| r.status == Status::Deprovisioned && r.tenant_key == key.as_str())
    {
        Some(r) => kept_archives_on(op, r, &key, user_id.as_deref(), req)?,
        None => None,
    };

    // Register as `provisioning` (its own commit unless the backend is atomic).
    let atomic = op.atomic();
    // A new (or deprovisioned) tenant is placed on a member in the same
    // transaction, under the placement lock.
    let requested = req.database.as_deref().or(archives_on.as_deref());
    let place = |sys: &mut dyn crate::db::Connection| {
        crate::fleet::placement::choose(sys, requested, &[]).map_err(RegisterError::Refused)
    };
    let registration = op.registry(|sys| match from {
        None => {
            let database = place(sys)?;
            registry::insert(
                sys,
                name,
                key.as_str(),
                user_id.as_deref(),
                database.as_deref(),
            )
            .map(|()| true)
        }
        Some(status) => {
            // A deprovisioned tenant is placed afresh, before its row is back
            // to `provisioning` (so that it does not count on its old member).
            let placed = if status == Status::Deprovisioned {
                Some(place(sys)?)
            } else {
                None
            };
            let restarted = registry::restart_provisioning(
                sys,
                name,
                status,
                key.as_str(),
                user_id.as_deref(),
            )?;
            if restarted && let Some(database) = placed {
                registry::set_database(sys, name, database.as_deref())?;
            }
            Ok(restarted)
        }
    });
    crate::fleet::placement::release(op.session().system());
    match registration {
        Ok(true) => *registered = true,
        // Another process changed the row meanwhile: see what it is now.
        Ok(false) => return rejoin(op, renderer, req, seen, registered),
        Err(RegisterError::Taken) if atomic => return Err(KeyTaken(key.to_string()).into()),
        Err(RegisterError::Taken) => {
            if op
                .registry(|sys| registry::key_owner(sys, key.as_str()))?
                .is_some_and(|o| o != name)
            {
                return Err(KeyTaken(key.to_string()).into());
            }
            return rejoin(op, renderer, req, seen, registered);
        }
        Err(RegisterError::Db(e)) => return Err(e.into()),
        Err(RegisterError::Refused(e)) => return Err(e),
    }

    // Placed by this run (no --database), or left by a provisioning that
    // failed or was killed before any table (version 0): nothing of the
    // tenant exists on its member, so one that cannot be reached is passed
    // over. (On Oracle, whose DDL commits statement by statement, what such
    // a run made there stays as tables no tenant owns, which `doctor` lists.)
    let unmade = record.as_ref().is_some_and(|r| {
        r.schema_version == 0 && matches!(r.status, Status::Provisioning | Status::Failed)
    });
    if requested.is_none() && (unmade || matches!(from, None | Some(Status::Deprovisioned))) {
        place_on_reachable(op, name, &key)?;
    }

    // The tenant's objects and history (SQLite: its file's write lock guards
    // it), granted to the application role when there is one.
    let (_, version) = op
        .tenant(&key, Open::Create, |conn| {
            let applied = migrate::apply_tenant(conn, renderer, &key, req.target_version, false)?;
            crate::security::grants::grant_tenant(
                conn,
                renderer,
                &key,
                applied.1,
                (name, user_id.as_deref(), "provision"),
            )?;
            Ok(applied)
        })?
        .ok_or_else(|| anyhow::anyhow!("the tenant file of {name} could not be created"))?;

    // Active, audited in the same transaction; a concurrent run that finished
    // first makes this one "exists".
    let done = op.complete(|sys| {
        if registry::transition(
            sys,
            name,
            &[Status::Provisioning],
            Status::Active,
            &Changes {
                schema_version: Some(version as i64),
                last_error: Some(None),
                ..Changes::default()
            },
        )? {
            // The user's encryption key, in the same transaction.
            crate::security::keys::create_on_provision(
                sys,
                name,
                user_id.as_deref(),
                req.master_key.as_deref(),
            )?;
            Ok(())
        } else {
            // Not ours to record (nor to audit): see below.
            Err(Changed.into())
        }
    });
    match done {
        Ok(()) => Ok(ProvisionOutcome::Created {
            tenant_key: key.to_string(),
            version,
        }),
        Err(e) if e.is::<Changed>() => match op.registry(|sys| registry::get(sys, name))? {
            Some(r) if r.status == Status::Active => Ok(ProvisionOutcome::Exists {
                tenant_key: r.tenant_key,
                version: r.schema_version.max(0) as u32,
                by_another_run: true,
                database: r.database,
            }),
            other => bail!(
                "tenant {name} changed while it was being provisioned (now {}): run again",
                other.map(|r| r.status.to_string()).unwrap_or("gone".into())
            ),
        },
        Err(e) => Err(e),
    }
}

/// The registry row was changed by another command between two steps.
#[derive(Debug, thiserror::Error)]
#[error("the tenant was changed by another command meanwhile")]
struct Changed;

/// Another process registered the same user a moment ago: go on from what
/// the registry says now (its work and ours are serialized per tenant).
fn rejoin(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    req: &ProvisionRequest,
    seen: Option<Status>,
    registered: &mut bool,
) -> anyhow::Result<ProvisionOutcome> {
    let name = req.username.as_str();
    match op.registry(|sys| registry::get(sys, name))? {
        Some(r) if r.status == Status::Provisioning || r.status == Status::Failed => {
            provision_steps(op, renderer, req, seen, registered)
        }
        Some(r) if r.status == Status::Active => Ok(ProvisionOutcome::Exists {
            tenant_key: r.tenant_key,
            version: r.schema_version.max(0) as u32,
            by_another_run: true,
            database: r.database,
        }),
        other => bail!(
            "tenant {name} changed while it was being provisioned (now {}): run again",
            other.map(|r| r.status.to_string()).unwrap_or("gone".into())
        ),
    }
}

// ---------------------------------------------------------------------------
// Deprovisioning

/// What to do with a tenant's rows before its tables are dropped.
#[derive(Debug, Clone, Default)]
pub struct DeprovisionOptions {
    /// Copy every row into the tenant's archive tables, which are kept.
    pub archive: bool,
    /// Write every row (archives included) to this file first.
    pub export: Option<PathBuf>,
    /// Replace an existing export file.
    pub force: bool,
    /// Where the templates are (`--templates`), for the export's shape check.
    pub templates_dir: Option<PathBuf>,
}

/// What a deprovisioning will do, found out before anything changes.
#[derive(Debug)]
pub struct DeprovisionPlan {
    pub record: TenantRecord,
    pub key: TenantKey,
    /// False when an earlier, interrupted run already dropped the tables.
    pub tables_present: bool,
    pub export: Option<ExportTarget>,
    /// The export file is the complete one an interrupted run of this same
    /// deprovisioning wrote: it is kept as it is.
    pub reused_export: bool,
    /// Taking back an import: the user's key is never the import's (it makes
    /// one only as it completes), so it stays whatever the options.
    pub keeps_keys: bool,
    /// Tenant tables that are not there (dropped outside pathfinder-db):
    /// their rows cannot be archived or exported.
    pub missing_tables: Vec<String>,
}

/// Whether `path` is a complete, intact export written by the deprovisioning
/// `record` is in the middle of (same user, same generation).
fn is_export_of_this_run(path: &Path, record: &TenantRecord) -> bool {
    let Some(generation) = claimed_generation(record.claimed_by.as_deref()) else {
        return false;
    };
    matches!(
        crate::tenants::export::verify(path),
        Ok((header, _)) if header.username == record.username
            && header.tenant_key == record.tenant_key
            && header.exported_at == registry::iso_utc(generation)
    )
}

/// The command that finishes the deprovisioning `claimed_by` records, with
/// the flags it was started with.
pub fn finish_command(name: &str, claimed_by: Option<&str>) -> String {
    match started_with(claimed_by) {
        Some(flags) => format!("pathfinder-db deprovision {name} {flags} --yes"),
        None => format!("pathfinder-db deprovision {name} --yes"),
    }
}

/// Checks everything that can be checked before a deprovisioning changes
/// anything: the user exists, the tenant's objects can be read (a missing
/// or damaged SQLite file is named as such), the export path is writable and
/// free (unless forced) and has room. None: already deprovisioned.
pub fn plan_deprovision(
    session: &mut Session<'_>,
    username: &Username,
    options: &DeprovisionOptions,
) -> anyhow::Result<Option<DeprovisionPlan>> {
    plan_removal(session, username, options, false)
}

/// [`plan_deprovision`] for `import`, taking back a tenant it left
/// `importing` (anyone else is sent to `import --cancel`).
pub(crate) fn plan_import_take_back(
    session: &mut Session<'_>,
    username: &Username,
) -> anyhow::Result<Option<DeprovisionPlan>> {
    plan_removal(session, username, &DeprovisionOptions::default(), true)
}

fn plan_removal(
    session: &mut Session<'_>,
    username: &Username,
    options: &DeprovisionOptions,
    importing: bool,
) -> anyhow::Result<Option<DeprovisionPlan>> {
    let name = username.as_str();
    let Some(record) = registry::get(session.system(), name)? else {
        return Err(UsageError::new(format!(
            "no tenant named {name}: `pathfinder-db tenants` lists them"
        ))
        .into());
    };
    if record.status == Status::Deprovisioned {
        // Only --archive needs the tenant's member (a plain re-run never does).
        let archives = match options.archive {
            true => {
                let key = TenantKey::parse(&record.tenant_key, session.dialect())?;
                match session.tenant(&key, Open::Existing)? {
                    Some(mut conn) => kept_archive_tables(&mut *conn, &key)?,
                    None => 0,
                }
            }
            false => 0,
        };
        check_kept(&record, options, archives)?;
        return Ok(None);
    }
    if record.status == Status::Moving {
        // Its tables may be on two members: the move finishes or cancels first.
        return Err(UsageError::new(format!(
            "tenant {name} is moving to member {}: end the move first: {}",
            crate::fleet::moves::target_of(&record),
            crate::fleet::moves::ways_forward(&record)
        ))
        .into());
    }
    if record.status == Status::Importing && !importing {
        // Its way back is the import's: `deprovision --cancel` would make it active.
        return Err(UsageError::new(crate::tenants::import::being_imported(name)).into());
    }
    if record.status == Status::Deprovisioning && !importing {
        let asked = if options.archive {
            Some("--archive")
        } else if options.export.is_some() {
            Some("--export FILE")
        } else {
            None
        };
        let claimed = record.claimed_by.as_deref();
        let known = claimed.is_some_and(|c| !c.starts_with(DEPROVISION_CLAIM));
        let started = started_with(claimed);
        if known && started != asked {
            return Err(UsageError::new(format!(
                "tenant {name}'s deprovisioning was started {} and stopped half-way: finish it the same way, `{}`, or take it back with `pathfinder-db deprovision {name} --cancel`",
                started.map_or("without --archive or --export".to_string(), |f| format!("with {f}")),
                finish_command(name, claimed)
            ))
            .into());
        }
    }
    let key = TenantKey::parse(&record.tenant_key, session.dialect())?;
    let file = session.tenant_file(&key)?;
    let mut missing_tables = Vec::new();
    let (tables_present, bytes) = {
        let tenant = session.tenant(&key, Open::Existing).map_err(|e| {
            let hint = match e.kind {
                DbErrorKind::Corrupt => format!(
                    ": if its data is not needed, delete {} and run `pathfinder-db deprovision {name} --yes` again",
                    file.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
                ),
                _ => String::new(),
            };
            anyhow::anyhow!("cannot read the tables of tenant {name}: {e}{hint}")
        })?;
        match tenant {
            None => (false, 0),
            Some(mut conn) => {
                let live = archive::live_tables(&mut *conn, &key)?;
                let present = !live.is_empty();
                if present && record.status != Status::Deprovisioning {
                    missing_tables = crate::schema::tenant::TENANT_TABLES
                        .iter()
                        .filter(|t| !live.iter().any(|(d, _)| d.name == **t))
                        .map(|t| t.to_string())
                        .collect();
                }
                if present && options.export.is_some() {
                    // The export would be the only copy: a file that import
                    // would refuse is refused before anything is dropped.
                    let exported = crate::tenants::export::tenant_tables(&mut *conn, &key, &live)?;
                    crate::tenants::export::check_importable(
                        name,
                        record.schema_version,
                        &exported,
                        options.templates_dir.as_deref(),
                    )?;
                }
                let bytes = match &file {
                    Some(f) => std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
                    None => conn.table_bytes(&key.prefix())?,
                };
                (present, bytes)
            }
        }
    };
    if !tables_present
        && record.status != Status::Deprovisioning
        && !importing
        && (options.archive || options.export.is_some())
    {
        // No earlier run dropped them: there is nothing to keep, and a
        // success would say rows were kept that never were.
        return Err(UsageError::new(format!(
            "tenant {name} has no tables{}: nothing to archive or export (`pathfinder-db verify {name}` says more). If they were dropped on purpose, `pathfinder-db deprovision {name} --yes` takes it out of the registry",
            match record.database.as_str() {
                crate::fleet::members::CATALOG => String::new(),
                member => format!(" on member {member}"),
            }
        ))
        .into());
    }
    let mut reused_export = false;
    let export = match &options.export {
        Some(path) if tables_present => {
            let ours = is_export_of_this_run(path, &record);
            if record.status == Status::Deprovisioning && ours {
                // An interrupted run of this same deprovisioning wrote it
                // completely (Oracle, where the drops commit one by one and
                // some tables may remain): keep it, never overwrite it with
                // the rest.
                reused_export = true;
                None
            } else {
                // A run whose last commit failed wrote it, and the tenant
                // stayed as it was (and may have changed since): a fresh
                // export replaces it. Any other file needs --force.
                Some(ExportTarget::check(path, options.force || ours, bytes)?)
            }
        }
        _ => None,
    };
    Ok(Some(DeprovisionPlan {
        record,
        key,
        tables_present,
        export,
        reused_export,
        keeps_keys: importing,
        missing_tables,
    }))
}

/// How many archive tables a deprovisioned tenant kept.
fn kept_archive_tables(
    conn: &mut dyn crate::db::Connection,
    key: &TenantKey,
) -> anyhow::Result<usize> {
    Ok(conn
        .table_names(&key.prefix(), false)?
        .iter()
        .filter(|t| t.to_ascii_lowercase().ends_with("_archive"))
        .count())
}

/// A user deprovisioned already (by an earlier run, or another one just
/// now): "nothing to do" only when what `options` asks to keep was kept,
/// the export file being this user's intact export, or archive tables
/// (`archives`) being there. Otherwise the rows are gone and the caller is
/// told so, rather than a success that wrote nothing.
fn check_kept(
    record: &TenantRecord,
    options: &DeprovisionOptions,
    archives: usize,
) -> anyhow::Result<()> {
    let name = &record.username;
    if let Some(path) = &options.export {
        let ours = crate::tenants::export::verify(path).is_ok_and(|(header, _)| {
            header.username == *name && header.tenant_key == record.tenant_key
        });
        if !ours {
            return Err(UsageError::new(format!(
                "{name} was deprovisioned already and {} is not its export: its rows are no longer here to export (nothing was changed)",
                path.display()
            ))
            .into());
        }
    }
    if options.archive && archives == 0 {
        return Err(UsageError::new(format!(
            "{name} was deprovisioned already without --archive: none of its rows were kept here (nothing was changed)"
        ))
        .into());
    }
    Ok(())
}

/// What deprovisioning did for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeprovisionOutcome {
    Removed {
        tenant_key: String,
        archived_rows: u64,
        exported_rows: u64,
        /// An earlier, interrupted run had dropped the tables already: this
        /// one finished the deprovisioning and wrote no export.
        finished_earlier_run: bool,
        /// The tenant had no tables, and no deprovisioning had begun (they
        /// were dropped outside pathfinder-db): only its registry entry went.
        had_no_tables: bool,
        /// Encryption key rows deleted (crypto-shredding; 0 when the rows
        /// were kept by --archive or --export). The caller erases their bytes
        /// once every tenant of the run is done.
        keys_shredded: u64,
    },
    AlreadyRemoved,
}

/// The generation (archived_at) of a deprovisioning is kept in the registry
/// while it runs, so a run that finishes an interrupted one copies as the
/// same generation and never twice.
const DEPROVISION_CLAIM: &str = "deprovision@";

/// The claim of a deprovisioning that keeps the rows (`--archive`,
/// `--export`): a run finishing it must keep them the same way, or the
/// rows and the key would go.
const ARCHIVE_CLAIM: &str = "deprovision-archive@";
const EXPORT_CLAIM: &str = "deprovision-export@";

/// The claim a deprovisioning with `options` writes, for `generation`.
fn deprovision_claim(options: &DeprovisionOptions, generation: &str) -> String {
    let prefix = if options.archive {
        ARCHIVE_CLAIM
    } else if options.export.is_some() {
        EXPORT_CLAIM
    } else {
        DEPROVISION_CLAIM
    };
    format!("{prefix}{generation}")
}

/// The generation of a deprovisioning's claim, whichever its kind.
fn claimed_generation(claimed_by: Option<&str>) -> Option<&str> {
    let claim = claimed_by?;
    [ARCHIVE_CLAIM, EXPORT_CLAIM, DEPROVISION_CLAIM]
        .iter()
        .find_map(|p| claim.strip_prefix(p))
}

/// How the deprovisioning that `claimed_by` records was started, as its
/// flags read (`--archive`, `--export FILE`, none); None: not known (a run
/// of an earlier version).
pub fn started_with(claimed_by: Option<&str>) -> Option<&'static str> {
    let claim = claimed_by?;
    if claim.starts_with(ARCHIVE_CLAIM) {
        Some("--archive")
    } else if claim.starts_with(EXPORT_CLAIM) {
        Some("--export FILE")
    } else {
        None
    }
}

/// Removes a tenant's objects after [`plan_deprovision`] passed. Resumable:
/// where the backend cannot do it in one transaction the registry says
/// `deprovisioning` until every object is gone, and the same command finishes
/// it. A failure that dropped nothing puts the tenant back as it was.
pub fn deprovision(
    session: &mut Session<'_>,
    renderer: &Renderer,
    plan: &DeprovisionPlan,
    options: &DeprovisionOptions,
) -> anyhow::Result<DeprovisionOutcome> {
    let name = plan.record.username.clone();
    // Taking back an import is the import's undoing, audited as such.
    let (action, command) = match plan.keeps_keys {
        true => ("tenant.import_cancel", "import"),
        false => ("tenant.deprovision", "deprovision"),
    };
    let Some(mut op) = TenantOp::begin(session, &name, action, command, Guard::Wait)? else {
        bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(plan.record.user_id.clone());
    let mut undo: Option<(Status, Vec<String>)> = None;
    let mut exported: Option<String> = None;
    let result = deprovision_steps(&mut op, renderer, plan, options, &mut undo, &mut exported);
    op.finish(result, |sys, message| {
        match &undo {
            // Nothing was dropped: the tenant is as it was.
            Some((previous, frozen)) => {
                sys.thaw_tables(frozen)?;
                registry::transition(
                    sys,
                    &name,
                    &[Status::Deprovisioning],
                    *previous,
                    &Changes {
                        claimed_by: Some(None),
                        ..Changes::default()
                    },
                )?;
            }
            None => registry::note_error(sys, &name, message)?,
        }
        // The export is in place although the run failed (its last commit,
        // say): the generation is kept so that a re-run knows the file.
        if let Some(claim) = &exported {
            registry::remember_claim(sys, &name, claim)?;
        }
        Ok(())
    })
}

fn deprovision_steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    plan: &DeprovisionPlan,
    options: &DeprovisionOptions,
    undo: &mut Option<(Status, Vec<String>)>,
    exported: &mut Option<String>,
) -> anyhow::Result<DeprovisionOutcome> {
    let name = plan.record.username.clone();
    let key = &plan.key;
    // Read again under the lock: another command may have changed it.
    let Some(record) = op.registry(|sys| registry::get(sys, &name))? else {
        bail!("tenant {name} disappeared from the registry");
    };
    if record.status == Status::Deprovisioned {
        // Another run got there first, perhaps keeping the rows otherwise.
        let archives = match options.archive {
            true => op
                .tenant(key, Open::Existing, |conn| kept_archive_tables(conn, key))?
                .unwrap_or(0),
            false => 0,
        };
        check_kept(&record, options, archives)?;
        return Ok(DeprovisionOutcome::AlreadyRemoved);
    }
    // Audit rows a killed sweep left staged in the tenant's file (SQLite)
    // go to pf_audit_log before the file goes.
    op.flush_audit(key)?;
    let generation = match claimed_generation(record.claimed_by.as_deref()) {
        Some(generation) if record.status == Status::Deprovisioning => generation.to_string(),
        _ => {
            let generation = archive::generation_now();
            let claim = deprovision_claim(options, &generation);
            let moved = op.registry(|sys| {
                registry::transition(
                    sys,
                    &name,
                    &[record.status],
                    Status::Deprovisioning,
                    &Changes {
                        claimed_by: Some(Some(&claim)),
                        ..Changes::default()
                    },
                )
            })?;
            if !moved {
                bail!("tenant {name} changed while it was being deprovisioned: run again");
            }
            generation
        }
    };
    let previous = match record.status {
        Status::Deprovisioning => Status::Active,
        other => other,
    };
    *undo = Some((previous, Vec::new()));

    let transactional_ddl = op.session().dialect().transactional_ddl();
    let header = Header::for_tenant(
        &name,
        key.as_str(),
        record.schema_version,
        op.session().dialect(),
        registry::iso_utc(&generation),
    );
    let mut counts = (0u64, 0u64);
    let dropped_here = op.tenant(key, Open::Existing, |conn| {
        let tables = archive::live_tables(conn, key)?;
        if tables.is_empty() {
            // An earlier run dropped them (Oracle commits each DROP; SQLite
            // may have stopped before removing the file).
            return Ok(false);
        }
        let live: Vec<String> = tables.iter().map(|(d, _)| key.object(d.name)).collect();
        let archives = if options.archive {
            archive::prepare(conn, renderer, key, &tables)?
        } else {
            Vec::new()
        };
        conn.freeze_tables(&live)?;
        if let Some((_, frozen)) = undo.as_mut() {
            *frozen = live.clone();
        }
        if let Some(target) = &plan.export {
            // The user's archived rows go too (they are dropped with the rest).
            let rows = crate::tenants::export::tenant_tables(conn, key, &tables)?;
            counts.1 = target.write(conn, &header, &rows)?.rows;
            *exported = Some(deprovision_claim(options, &generation));
        }
        for t in &archives {
            archive::copy(conn, t, archive::Rows::All, &generation)?;
            counts.0 += archive::verify_copy(conn, t, &generation)?;
        }
        let drop = if options.archive {
            renderer.drop_tenant_keeping_archives(key)?
        } else {
            renderer.drop_tenant(key)?
        };
        if !transactional_ddl {
            // From here on objects go one commit at a time: no way back.
            *undo = None;
        }
        conn.run_statements(&drop)?;
        // The kept archives are no longer the application's to read.
        let kept: Vec<String> = archives.iter().map(|t| t.archive.clone()).collect();
        crate::security::grants::revoke_kept_archives(
            conn,
            &kept,
            (&name, record.user_id.as_deref(), "deprovision"),
        )?;
        Ok(true)
    })?;
    let dropped_here = dropped_here.unwrap_or(false);
    // The tenant's tables are gone (committed): nothing to put back any more.
    *undo = None;
    if let Some(file) = op.session().tenant_file(key)?
        && !options.archive
    {
        remove_sqlite_file(&file)?;
    }
    let keys_shredded = op.complete(|sys| {
        let done = registry::transition(
            sys,
            &name,
            &[Status::Deprovisioning],
            Status::Deprovisioned,
            &Changes {
                schema_version: Some(0),
                last_error: Some(None),
                claimed_by: Some(None),
            },
        )?;
        if !done {
            bail!("tenant {name} changed while it was being deprovisioned: run again");
        }
        // Crypto-shredding: unless the rows were kept (archive, export), the
        // user's key goes with the tables, so copies of their encrypted
        // fields in backups can no longer be read.
        if !options.archive && options.export.is_none() && !plan.keeps_keys {
            return crate::security::keys::shred_on_deprovision(
                sys,
                &name,
                record.user_id.as_deref(),
            );
        }
        Ok(0)
    })?;
    Ok(DeprovisionOutcome::Removed {
        tenant_key: key.to_string(),
        archived_rows: counts.0,
        exported_rows: counts.1,
        finished_earlier_run: !dropped_here && record.status == Status::Deprovisioning,
        had_no_tables: !dropped_here && record.status != Status::Deprovisioning,
        keys_shredded,
    })
}

/// Takes back a deprovisioning that stopped half-way, while every table is
/// still there: the tenant is active again (Oracle: writable again).
pub fn cancel_deprovision(session: &mut Session<'_>, username: &Username) -> anyhow::Result<()> {
    let name = username.as_str();
    let Some(mut op) = TenantOp::begin(
        session,
        name,
        "tenant.deprovision_cancel",
        "deprovision",
        Guard::Wait,
    )?
    else {
        bail!("tenant {name} is locked by another process");
    };
    let result = (|| -> anyhow::Result<()> {
        let Some(record) = op.registry(|sys| registry::get(sys, name))? else {
            return Err(UsageError::new(format!(
                "no tenant named {name}: `pathfinder-db tenants` lists them"
            ))
            .into());
        };
        if record.status != Status::Deprovisioning {
            return Err(UsageError::new(format!(
                "tenant {name} is {}, not deprovisioning: nothing to cancel",
                record.status
            ))
            .into());
        }
        op.set_user_id(record.user_id.clone());
        let key = TenantKey::parse(&record.tenant_key, op.session().dialect())?;
        let live = op
            .tenant(&key, Open::Existing, |conn| {
                let tables = archive::live_tables(conn, &key)?;
                let names: Vec<String> = tables.iter().map(|(d, _)| key.object(d.name)).collect();
                if tables.len() == crate::schema::tenant::TABLES.len() {
                    conn.thaw_tables(&names)?;
                }
                Ok(tables.len())
            })?
            .unwrap_or(0);
        if live < crate::schema::tenant::TABLES.len() {
            bail!(
                "cannot cancel: some of {name}'s tables are dropped already; finish with `{}`",
                finish_command(name, record.claimed_by.as_deref())
            );
        }
        op.complete(|sys| {
            Ok(registry::transition(
                sys,
                name,
                &[Status::Deprovisioning],
                Status::Active,
                &Changes {
                    claimed_by: Some(None),
                    last_error: Some(None),
                    ..Changes::default()
                },
            )?)
        })?;
        Ok(())
    })();
    op.finish(result, |_, _| Ok(()))
}

fn remove_sqlite_file(file: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", file.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot remove {}", path.display()))
                );
            }
        }
    }
    Ok(())
}
