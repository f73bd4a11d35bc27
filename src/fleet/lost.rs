//! A member lost for good (its server gone, its disk dead) and the two ways
//! forward from it:
//!
//! - **`databases set-url NAME URL`**: the member's copy restored elsewhere
//!   (a backup on a new server, the disk mounted at another path) becomes
//!   the member, once it is checked as `databases add` checks a member and
//!   found to hold its tenants' tables;
//! - **`databases remove NAME --forget-tenants`**: no copy is left, and the
//!   tenants placed there are forgotten (deprovisioned in the registry; their
//!   keys and catalog rows stay), so that `provision USER` can start them
//!   afresh. A move caught half-way is taken back to the side that still
//!   holds the tenant.
//!
//! Both are refused while the member still answers where it is recorded:
//! what was written there since a backup would be stranded, and a member
//! that answers has `move` and `deprovision` for its tenants.

use std::time::Instant;

use serde::Serialize;

use crate::catalog::audit::{self, AuditEntry};
use crate::catalog::registry::{self, Status, TenantRecord};
use crate::db::dialect::Dialect;
use crate::db::{Connection, DbErrorKind, Session, Tx, Value};
use crate::error::UsageError;
use crate::fleet::identity::{self, Identity};
use crate::fleet::members::{self, CATALOG, Member};
use crate::fleet::moves::{self, Phase};
use crate::schema::tenant::TenantKey;

/// Whether member `m` answers at the place recorded for it: its server
/// takes a connection, its SQLite folder is there. The error says why not.
fn answers(session: &mut Session<'_>, m: &Member) -> Result<(), String> {
    let url = m.url.as_deref().unwrap_or_default();
    let db = session.database();
    match db.dialect() {
        Dialect::Sqlite => {
            // The reason only: the helper's advice (mount the disk) is not
            // what this command is about.
            let folder = crate::db::sqlite::member_folder(url);
            crate::db::sqlite::member_folder_present(&m.name, &folder).map_err(|_| {
                let state = match folder.is_dir() {
                    true => "is empty and not marked as the member's",
                    false => "is missing",
                };
                format!("member {}: its folder {} {state}", m.name, folder.display())
            })
        }
        // An empty database made in its place does not count.
        _ => identity::of_catalog(session.system())
            .and_then(|deployment| {
                let mut c = db.connect_member(&m.name, url)?;
                members::check_is_member(c.as_mut(), &m.name, url, &deployment)
            })
            .map_err(|e| members::naming_member(&m.name, &e.message)),
    }
}

/// `--force`: whether the member's recorded place and `url` are the same
/// database (a server seen through both addresses: a value written through
/// one is read through the other; a SQLite folder: the same directory on
/// disk), not a copy.
fn same_place(
    session: &mut Session<'_>,
    name: &str,
    old_url: &str,
    url: &str,
    new: Option<&mut Box<dyn Connection>>,
    ours: &Identity,
) -> anyhow::Result<bool> {
    let Some(new) = new else {
        return Ok(same_directory(
            &crate::db::sqlite::member_folder(old_url),
            &crate::db::sqlite::member_folder(url),
        )?);
    };
    let mut old = session.database().connect_member(name, old_url)?;
    if identity::read(old.as_mut())?.is_none() {
        identity::write(old.as_mut(), ours)?;
    }
    Ok(identity::same_database(old.as_mut(), new.as_mut())?)
}

/// Whether two paths name the same directory on disk (a bind mount or a
/// second mount point as well as a symbolic link).
#[cfg(unix)]
fn same_directory(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    Ok(id(a)? == id(b)?)
}

#[cfg(not(unix))]
fn same_directory(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<bool> {
    Ok(a.canonicalize()? == b.canonicalize()?)
}

fn member(session: &mut Session<'_>, name: &str, what: &str) -> anyhow::Result<Member> {
    if name == CATALOG {
        return Err(UsageError::new(format!(
            "the catalog is where --database-url points: {what} is for members"
        ))
        .into());
    }
    members::get(session.system(), name)?.ok_or_else(|| {
        UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
        .into()
    })
}

/// The live tenants the registry places on member `name`.
fn placed_on(session: &mut Session<'_>, name: &str) -> anyhow::Result<Vec<TenantRecord>> {
    Ok(registry::list(session.system(), false)?
        .into_iter()
        .filter(|t| t.database == name)
        .collect())
}

fn keys(session: &Session<'_>, tenants: &[&TenantRecord]) -> anyhow::Result<Vec<TenantKey>> {
    tenants
        .iter()
        .map(|t| Ok(TenantKey::parse(&t.tenant_key, session.dialect())?))
        .collect()
}

fn audit_entry(action: &str, entity_type: &str, id: &str, user: Option<String>) -> AuditEntry {
    AuditEntry {
        action: action.to_string(),
        entity_type: entity_type.into(),
        entity_id: id.to_string(),
        user_id: user,
        command: "databases".into(),
        started: Instant::now(),
        error: None,
    }
}

/// What `databases set-url` did.
#[derive(Debug, Clone, Serialize)]
pub struct Relocated {
    pub name: String,
    /// The new URL, without a password.
    pub url: String,
    /// Live tenants whose tables were found at the new URL.
    pub tenants: usize,
    /// Live tenants whose tables were not there (`--allow-missing`).
    pub missing: Vec<String>,
    /// Tenants the copy holds at an older version than the registry said
    /// (now recorded at it: `migrate --all` brings them up).
    pub older: Vec<OlderCopy>,
    /// The member was recorded at this URL already.
    pub unchanged: bool,
}

/// A tenant a copy holds at an older version than the registry recorded.
#[derive(Debug, Clone, Serialize)]
pub struct OlderCopy {
    pub username: String,
    /// The version its history holds (now recorded).
    pub version: i64,
    /// The version the registry had.
    pub recorded: i64,
}

/// What `databases set-url` is told to accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allow {
    /// The recorded place answers, and is the same database as the new URL.
    pub force: bool,
    /// This catalog is a restored copy: its members' originals answer.
    pub clone: bool,
    /// The copy lacks some tenants' tables.
    pub missing: bool,
}

/// `databases set-url NAME URL`: points member `name` at a copy of it
/// elsewhere. Refused while the recorded place answers (unless `force`:
/// the same database under another address; or `clone`), when the new
/// place fails the checks of `databases add` or is not a copy of this
/// member, and when it lacks the tables of a live tenant placed on the
/// member (unless `missing`).
pub fn set_url(
    session: &mut Session<'_>,
    name: &str,
    url: &str,
    allow: Allow,
) -> anyhow::Result<Relocated> {
    let (force, allow_missing) = (allow.force, allow.missing);
    let started = Instant::now();
    let old = member(session, name, "set-url")?;
    let deployment = identity::of_catalog(session.system())?;
    let db = session.database();
    let (url, mut conn): (String, Option<Box<dyn Connection>>) = if db.dialect() == Dialect::Sqlite
    {
        // Never made: a folder that is not there is a path mistyped or a
        // disk not mounted, not a restored member.
        let folder = crate::db::sqlite::member_folder(url);
        if !folder.is_dir() {
            return Err(UsageError::new(format!(
                    "member {name}: {} is not a folder: set-url points a member at the folder that holds its tenant files (restored, or its disk mounted elsewhere), and makes none",
                    folder.display()
                ))
                .into());
        }
        let folder = folder.canonicalize()?;
        (folder.to_string_lossy().into_owned(), None)
    } else {
        let (url, _) = members::storable_url(db, name, url, &deployment)?;
        let mut conn = db.connect_member(name, &url)?;
        members::check_member(conn.as_mut(), name)?;
        (url, Some(conn))
    };
    let shown = crate::db::redact_url(&url);
    if old.url.as_deref() == Some(url.as_str()) {
        return Ok(Relocated {
            name: name.to_string(),
            url: shown,
            tenants: 0,
            missing: Vec::new(),
            older: Vec::new(),
            unchanged: true,
        });
    }
    if let Some(same) = members::list(session.system())?
        .into_iter()
        .find(|m| m.url.as_deref() == Some(url.as_str()))
    {
        return Err(UsageError::new(format!(
            "that database is member {} already: point {name} at its own copy",
            same.name
        ))
        .into());
    }
    if let Some((_, tenants)) = db.sqlite_paths()
        && tenants
            .canonicalize()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            == Some(url.clone())
    {
        return Err(UsageError::new(format!(
            "member {name}: {url} is the catalog's own tenant folder: choose the member's copy"
        ))
        .into());
    }
    let ours = Identity {
        deployment: deployment.clone(),
        member: name.to_string(),
    };
    // Only a copy of this member: never another member of this deployment
    // (under another spelling of its URL) nor another deployment's.
    if let Some(c) = conn.as_mut()
        && let Some(found) = identity::read(c.as_mut())?
        && found != ours
    {
        return Err(UsageError::new(format!(
            "{shown} is {}, not a copy of member {name}: point {name} at its own copy",
            members::describe(&found, &deployment)
        ))
        .into());
    }
    let old_url = old.url.clone().unwrap_or_default();
    if !allow.clone && answers(session, &old).is_ok() {
        let unless = format!(
            "member {name} still answers at {}: pointing it elsewhere would strand what was written there since the copy was made; move its tenants with `pathfinder-db move`, or stop that server (unmount that disk) first",
            crate::db::redact_url(&old_url)
        );
        if !force {
            return Err(UsageError::new(format!(
                "{unless}; --force if {shown} is the same database under another address (--clone if this catalog is itself a restored copy)"
            ))
            .into());
        }
        // --force: the same database, seen through both addresses.
        if !same_place(session, name, &old_url, &url, conn.as_mut(), &ours)? {
            return Err(UsageError::new(format!(
                "{unless}: {shown} is a copy of it, not the same database (--force is only for the same database under another address)"
            ))
            .into());
        }
    }
    // Which live tenants' tables the new place holds: one read of it.
    let placed = placed_on(session, name)?;
    // A provisioning that failed before any table has nothing to find.
    let live: Vec<&TenantRecord> = placed
        .iter()
        .filter(|t| {
            !(t.schema_version == 0 && matches!(t.status, Status::Provisioning | Status::Failed))
        })
        .collect();
    let wanted = keys(session, &live)?;
    let held = match conn.as_mut() {
        Some(c) => moves::keys_held_by(c.as_mut(), &wanted)?,
        None => {
            let folder = std::path::Path::new(&url);
            let mut held = Vec::new();
            for key in &wanted {
                let file = folder.join(format!("{key}.db"));
                if !file.exists() {
                    continue;
                }
                // Each file says which deployment made it.
                match crate::db::sqlite::SqliteConnection::file_owner(&file)? {
                    Some(owner) if owner != deployment => {
                        return Err(UsageError::new(format!(
                            "{} belongs to another deployment ({owner}), not to this one: {shown} is not a copy of member {name}",
                            file.display()
                        ))
                        .into());
                    }
                    _ => held.push(key.clone()),
                }
            }
            held
        }
    };
    if held.is_empty() && !live.is_empty() {
        return Err(UsageError::new(format!(
            "{shown} holds none of member {name}'s {} tenant(s): not a copy of {name}; point it at the member's copy",
            live.len()
        ))
        .into());
    }
    let found: std::collections::HashSet<&str> = held.iter().map(TenantKey::as_str).collect();
    let missing: Vec<String> = live
        .iter()
        .zip(&wanted)
        .filter(|(_, k)| !found.contains(k.as_str()))
        .map(|(t, _)| t.username.clone())
        .collect();
    if !missing.is_empty() && !allow_missing {
        return Err(UsageError::new(format!(
            "{shown} lacks the tables of {} of member {name}'s {} tenant(s) ({}): not a copy of {name}, or one older than them; point it at a complete copy, or pass --allow-missing and then `pathfinder-db deprovision` them (and `provision` them afresh)",
            missing.len(),
            live.len(),
            crate::error::listed(&missing, 10)
        ))
        .into());
    }
    // A copy older than the registry (a backup from before a migration) is
    // recorded at the version its tenants' history holds, so that `migrate`
    // brings them up again instead of taking them for done.
    let mut older = Vec::new();
    for (t, key) in live
        .iter()
        .zip(&wanted)
        .filter(|(_, k)| found.contains(k.as_str()))
    {
        let history = key.object(crate::schema::tenant::SCHEMA_HISTORY);
        let applied = match conn.as_mut() {
            Some(c) => crate::migrate::engine::applied_versions(c.as_mut(), &history)?,
            None => {
                let file = std::path::Path::new(&url).join(format!("{key}.db"));
                let mut f =
                    crate::db::sqlite::SqliteConnection::open_read_only(&file, 5_000, false)?;
                crate::migrate::engine::applied_versions(&mut f, &history)?
            }
        };
        let found = applied.last().map(|(v, _, _)| i64::from(*v)).unwrap_or(0);
        if found < t.schema_version {
            older.push(OlderCopy {
                username: t.username.clone(),
                version: found,
                recorded: t.schema_version,
            });
        }
    }
    let details = serde_json::json!({
        "from": crate::db::redact_url(old.url.as_deref().unwrap_or_default()),
        "to": shown,
        "tenants": held.len(),
        "missing": missing,
        "older": older.iter().map(|o| &o.username).collect::<Vec<_>>(),
    })
    .to_string();
    let mut tx = Tx::begin(session.system())?;
    let changed = tx.execute(
        "UPDATE pf_databases SET url = ?, updated_at = CURRENT_TIMESTAMP WHERE name = ? AND url = ?",
        &[
            Value::from(url.as_str()),
            Value::from(name),
            Value::from(old.url.as_deref().unwrap_or_default()),
        ],
    )?;
    if changed != 1 {
        return Err(anyhow::anyhow!(
            "member {name} changed while it was checked: run the same command again"
        ));
    }
    for o in &older {
        tx.execute(
            "UPDATE pf_tenants SET schema_version = ?, updated_at = CURRENT_TIMESTAMP \
             WHERE username = ? AND database_name = ?",
            &[
                Value::Int(o.version),
                Value::from(o.username.as_str()),
                Value::from(name),
            ],
        )?;
    }
    audit::write_details(
        &mut *tx,
        &AuditEntry {
            started,
            ..audit_entry("database.set-url", "database", name, None)
        },
        Some(&details),
    )?;
    // A copy made before members recorded who they are, or restored
    // without it, gets its identity and the audit stage its batches write to
    // (a SQLite folder its marker).
    if conn.is_none() {
        crate::db::sqlite::mark_member_folder(
            name,
            Some(&ours.deployment),
            std::path::Path::new(&url),
        )?;
    }
    if let Some(c) = conn.as_mut() {
        identity::write(c.as_mut(), &ours)?;
        match c.query("SELECT COUNT(*) FROM pf_audit_stage", &[]) {
            Ok(_) => {}
            Err(e) if e.kind == DbErrorKind::DoesNotExist => {
                let _ = c.rollback();
                audit::create_member_stage(c.as_mut())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit()?;
    Ok(Relocated {
        name: name.to_string(),
        url: shown,
        tenants: held.len(),
        missing,
        older,
        unchanged: false,
    })
}

/// What `databases remove NAME --forget-tenants` will do, shown before it
/// is confirmed.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetPlan {
    pub name: String,
    /// Why the member cannot be reached.
    pub unreachable: String,
    /// Tenants whose only copy was on the member: deprovisioned.
    pub forgotten: Vec<String>,
    /// Tenants a move had switched to the member while their source still
    /// holds them: back on the source (username, source).
    pub back_to_source: Vec<(String, String)>,
    /// Tenants being copied to the member: active on their source again.
    pub moves_cancelled: Vec<String>,
    /// Forgotten tenants whose unfinished move left an unverified copy on
    /// another member (username, member): left there, untouched.
    pub partial_copies: Vec<(String, String)>,
}

/// Checks and lists what forgetting member `name` means. Refused while it
/// answers.
pub fn plan_forget(session: &mut Session<'_>, name: &str) -> anyhow::Result<ForgetPlan> {
    let m = member(session, name, "--forget-tenants")?;
    let unreachable = match answers(session, &m) {
        Ok(()) => {
            return Err(UsageError::new(format!(
                "member {name} answers at {}: --forget-tenants is only for a member lost for good; move its tenants away (`pathfinder-db databases drain {name}`, `pathfinder-db rebalance`) or deprovision them, then `pathfinder-db databases remove {name}`",
                crate::db::redact_url(m.url.as_deref().unwrap_or_default())
            ))
            .into());
        }
        Err(why) => why,
    };
    let mut plan = ForgetPlan {
        name: name.to_string(),
        unreachable,
        forgotten: Vec::new(),
        back_to_source: Vec::new(),
        moves_cancelled: Vec::new(),
        partial_copies: Vec::new(),
    };
    let copying_here = format!("{}{name}", moves::COPYING);
    for t in registry::list(session.system(), false)? {
        let phase = Phase::of(&t);
        if t.database != name {
            if t.claimed_by.as_deref() == Some(copying_here.as_str()) {
                plan.moves_cancelled.push(t.username);
            }
            continue;
        }
        match phase {
            Some(Phase::Switched { source }) if source_holds(session, &t, &source)? => {
                plan.back_to_source.push((t.username, source));
            }
            Some(Phase::Copying { target }) => {
                plan.partial_copies.push((t.username.clone(), target));
                plan.forgotten.push(t.username);
            }
            _ => plan.forgotten.push(t.username),
        }
    }
    Ok(plan)
}

/// Whether a switched move's source still holds the tenant's tables (the
/// drop is the move's last step).
fn source_holds(session: &mut Session<'_>, t: &TenantRecord, source: &str) -> anyhow::Result<bool> {
    let key = TenantKey::parse(&t.tenant_key, session.dialect())?;
    let found =
        moves::keys_with_objects(session, std::slice::from_ref(&key), source).map_err(|e| {
            e.context(format!(
                "{}: cannot check whether {source} (the source of its move) still holds it",
                t.username
            ))
        })?;
    Ok(!found.is_empty())
}

/// Carries out a confirmed [`plan_forget`] in one catalog transaction:
/// refused if the registry changed since the plan was made.
pub fn forget(session: &mut Session<'_>, plan: &ForgetPlan) -> anyhow::Result<()> {
    let started = Instant::now();
    let name = plan.name.as_str();
    let changed = || {
        anyhow::anyhow!(
            "the tenants of member {name} changed while it was being removed: nothing was changed; run the same command again"
        )
    };
    let users: std::collections::HashMap<String, Option<String>> =
        registry::list(session.system(), false)?
            .into_iter()
            .map(|t| (t.username, t.user_id))
            .collect();
    let user_of = |u: &str| users.get(u).cloned().flatten();
    let note = format!(
        "forgotten with member {name} (`databases remove {name} --forget-tenants`): its tables were lost with it"
    );
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    tx.lock(&crate::db::Lock::Placement)?;
    for user in &plan.forgotten {
        let done = tx.execute(
            "UPDATE pf_tenants SET status = 'deprovisioned', database_name = NULL, claimed_by = NULL, \
             last_error = ?, updated_at = CURRENT_TIMESTAMP \
             WHERE username = ? AND database_name = ? AND status <> 'deprovisioned'",
            &[
                Value::from(note.as_str()),
                Value::from(user.as_str()),
                Value::from(name),
            ],
        )?;
        if done != 1 {
            return Err(changed());
        }
        audit::write_details(
            &mut *tx,
            &audit_entry("tenant.forget", "tenant", user, user_of(user)),
            Some(&serde_json::json!({ "database": name }).to_string()),
        )?;
    }
    for (user, source) in &plan.back_to_source {
        let claim = format!("{}{source}", moves::SWITCHED);
        if !registry::move_step(
            &mut *tx,
            user,
            &claim,
            Status::Active,
            None,
            Some(Some(source.as_str()).filter(|s| *s != CATALOG)),
        )? {
            return Err(changed());
        }
        audit::write_details(
            &mut *tx,
            &audit_entry("tenant.move.back", "tenant", user, user_of(user)),
            Some(&serde_json::json!({ "from": name, "to": source }).to_string()),
        )?;
    }
    let claim = format!("{}{name}", moves::COPYING);
    for user in &plan.moves_cancelled {
        if !registry::move_step(&mut *tx, user, &claim, Status::Active, None, None)? {
            return Err(changed());
        }
        audit::write_details(
            &mut *tx,
            &audit_entry("tenant.move.cancel", "tenant", user, user_of(user)),
            Some(&serde_json::json!({ "to": name }).to_string()),
        )?;
    }
    // Nothing may be left on it: deprovisioned tenants (their archives went
    // with the member) are recorded on the catalog, as `remove` does.
    tx.execute(
        "UPDATE pf_tenants SET database_name = NULL, updated_at = CURRENT_TIMESTAMP \
         WHERE database_name = ? AND status = 'deprovisioned'",
        &[Value::from(name)],
    )?;
    let left = tx.query(
        "SELECT COUNT(*) FROM pf_tenants WHERE database_name = ? OR claimed_by = ?",
        &[Value::from(name), Value::from(claim.as_str())],
    )?;
    if left.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0 {
        return Err(changed());
    }
    if !members::delete(&mut *tx, name)? {
        return Err(changed());
    }
    let details = serde_json::json!({
        "forget_tenants": true,
        "forgotten": plan.forgotten,
        "back_to_source": plan.back_to_source.iter().map(|(u, _)| u).collect::<Vec<_>>(),
        "moves_cancelled": plan.moves_cancelled,
    })
    .to_string();
    audit::write_details(
        &mut *tx,
        &AuditEntry {
            started,
            ..audit_entry("database.remove", "database", name, None)
        },
        Some(&details),
    )?;
    tx.commit()?;
    let _ = session.system().unlock(&crate::db::Lock::Placement);
    Ok(())
}
