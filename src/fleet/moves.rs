//! `move USER --to NAME`: a tenant's tables and rows copied to another
//! member database, verified, switched in the registry, then dropped from
//! the source.
//!
//! Two phases, each recorded in the registry, so that a kill at any moment
//! leaves the tenant whole in exactly one authoritative place:
//!
//! 1. **copying**: status `moving`, `database_name` the source, `claimed_by`
//!    `move to <target>`. The source is authoritative; whatever is on the
//!    target is a partial copy, dropped by a re-run (which starts over) or by
//!    `--cancel` (which makes the tenant active on the source again). The
//!    tenant's tables are created on the target at its schema version, the
//!    rows copied table by table (parents before children), and both sides'
//!    fingerprints compared (rows and checksum of every table). Writers are
//!    kept out of the source from before the rows are read until the
//!    registry is switched: `freeze_tables` in the transaction that reads
//!    them (PostgreSQL, Oracle), the file's write lock (SQLite).
//! 2. **switched**: one catalog transaction sets `database_name` to the
//!    target and `claimed_by` to `move from <source>` (audited). The target
//!    is authoritative; a re-run or `--cancel` drops what is left on the
//!    source and makes the tenant active.
//!
//! SQLite members are folders: the copy is `VACUUM INTO` a temporary file in
//! the target folder (a consistent snapshot), synced, renamed to the
//! tenant's file name; a file already there that the registry does not
//! account for is never overwritten.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::catalog::audit::{self, AuditEntry};
use crate::catalog::registry::{self, Status, TenantRecord};
use crate::db::dialect::Dialect;
use crate::db::{Connection, Lock, Session, Tx};
use crate::error::UsageError;
use crate::fleet::members::{self, MemberState};
use crate::schema::render::Renderer;
use crate::schema::tenant::{TABLES, TenantKey};
use crate::tenants::fingerprint::{TableFingerprint, tenant_tables};
use crate::tenants::operation::{Guard, TenantOp};

/// `claimed_by` while the rows are copied: `move to <target>`.
pub const COPYING: &str = "move to ";
/// `claimed_by` once the registry names the target: `move from <source>`.
pub const SWITCHED: &str = "move from ";

/// Where an interrupted move stands, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The source is authoritative; the target may hold a partial copy.
    Copying { target: String },
    /// The target is authoritative; the source may still hold the tables.
    Switched { source: String },
}

impl Phase {
    pub fn of(record: &TenantRecord) -> Option<Phase> {
        if record.status != Status::Moving {
            return None;
        }
        let claim = record.claimed_by.as_deref()?;
        if let Some(t) = claim.strip_prefix(COPYING) {
            return Some(Phase::Copying {
                target: t.to_string(),
            });
        }
        claim.strip_prefix(SWITCHED).map(|s| Phase::Switched {
            source: s.to_string(),
        })
    }
}

/// Where `record`'s interrupted move goes when finished: the target its
/// claim names while copying, the member the registry names once switched.
pub fn target_of(record: &TenantRecord) -> String {
    match Phase::of(record) {
        Some(Phase::Copying { target }) => target,
        _ => record.database.clone(),
    }
}

/// The two ways forward for a tenant left `moving`, as commands.
pub fn ways_forward(record: &TenantRecord) -> String {
    let name = &record.username;
    format!(
        "`pathfinder-db move {name} --to {}` finishes the move, `pathfinder-db move {name} --cancel` takes it back",
        target_of(record)
    )
}

/// What a move did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    pub username: String,
    pub from: String,
    pub to: String,
    /// Rows copied (0 when a re-run only finished the drop).
    pub rows: u64,
    pub tables: usize,
    pub seconds: f64,
    /// An interrupted move was taken up again.
    pub resumed: bool,
    /// `--cancel`: the tenant stayed (or is again) on `from`.
    pub cancelled: bool,
    /// `--cancel` found the registry switched already: the move was finished.
    pub finished_instead_of_cancel: bool,
    /// The tenant was active on the target already: nothing was done.
    pub nothing_to_do: bool,
    /// The registry named the target already: only what was left on the
    /// source was dropped.
    pub switched_already: bool,
    /// `--cancel` while the target could not be reached: its partial copy
    /// stays there, to be dropped by hand.
    pub partial_copy_left: bool,
}

/// A move refused before anything was claimed because the tenant's tables
/// differ from its version (exit 2): the copy makes the version's tables on
/// the target, so it would fail half-way. `rebalance` skips such a tenant.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct Drifted {
    /// The first differences, on one line.
    pub problems: String,
    source: UsageError,
}

/// `move USER --to NAME` (`to`), or `move USER --cancel` (`to` None).
pub fn run(
    session: &mut Session<'_>,
    renderer: &Renderer,
    templates_dir: Option<&Path>,
    username: &str,
    to: Option<&str>,
) -> anyhow::Result<MoveOutcome> {
    let action = if to.is_some() {
        "tenant.move"
    } else {
        "tenant.move.cancel"
    };
    let Some(mut op) = TenantOp::begin(session, username, action, "move", Guard::Wait)? else {
        bail!("tenant {username} is locked by another process");
    };
    let name = username.to_string();
    let result = steps(&mut op, renderer, templates_dir, username, to);
    // A refused request (exit 2) changed nothing: the registry keeps no trace.
    let refused = result
        .as_ref()
        .is_err_and(|e| crate::error::exit_code(e) == crate::error::EXIT_USAGE);
    let result = op.finish(result, |sys, message| {
        if refused {
            return Ok(());
        }
        registry::note_error(sys, &name, message)
    });
    result.map_err(|e| left_moving(session, username, to.is_none(), e))
}

/// A move that failed half-way (a member down, a disk full) leaves the
/// tenant `moving`: the error then says so and names the way forward other
/// than the command that just failed.
fn left_moving(
    session: &mut Session<'_>,
    username: &str,
    cancelling: bool,
    e: anyhow::Error,
) -> anyhow::Error {
    let text = crate::error::one_line(&e);
    let Some(record) = registry::get(session.system(), username).ok().flatten() else {
        return e;
    };
    if text.contains("--cancel") {
        return e;
    }
    let hint = match Phase::of(&record) {
        Some(Phase::Copying { target }) if cancelling => format!(
            "{username} stays read-only (moving) on {} until the cancel succeeds once the cause is fixed, or `pathfinder-db move {username} --to {target}` finishes the move",
            record.database
        ),
        Some(Phase::Copying { .. }) => format!(
            "{username} stays read-only (moving) on {} until the move succeeds once the cause is fixed, or `pathfinder-db move {username} --cancel` takes it back",
            record.database
        ),
        // Switched: the registry names the target; only the drop is left,
        // and both commands do just that.
        Some(Phase::Switched { source }) => format!(
            "{username} is on {} already and stays read-only (moving) until what is left on {source} is dropped: run the same command again once the cause is fixed",
            record.database
        ),
        None => return e,
    };
    e.context(format!("{text}: {hint}"))
}

fn steps(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    templates_dir: Option<&Path>,
    name: &str,
    to: Option<&str>,
) -> anyhow::Result<MoveOutcome> {
    let started = Instant::now();
    let record = op
        .registry(|sys| registry::get(sys, name))?
        .filter(|r| r.status != Status::Deprovisioned)
        .ok_or_else(|| {
            UsageError::new(format!(
                "no tenant named {name}: `pathfinder-db tenants` lists them"
            ))
        })?;
    op.set_user_id(record.user_id.clone());
    let key = TenantKey::parse(&record.tenant_key, op.session().dialect())?;
    let mut outcome = MoveOutcome {
        username: name.to_string(),
        from: record.database.clone(),
        to: to.unwrap_or_default().to_string(),
        rows: 0,
        tables: 0,
        seconds: 0.0,
        resumed: record.status == Status::Moving,
        cancelled: to.is_none(),
        finished_instead_of_cancel: false,
        nothing_to_do: false,
        switched_already: false,
        partial_copy_left: false,
    };
    match (Phase::of(&record), to) {
        (None, _) if record.status == Status::Moving => bail!(
            "tenant {name} is moving but its claim {:?} is not a move's: ask who changed the registry",
            record.claimed_by.unwrap_or_default()
        ),
        (None, None) => {
            return Err(UsageError::new(format!(
                "tenant {name} is {}, not moving: nothing to cancel",
                record.status
            ))
            .into());
        }
        (None, Some(target)) => {
            if record.status != Status::Active {
                return Err(UsageError::new(format!(
                    "tenant {name} is {}, not active: only an active tenant can move (`pathfinder-db status` says why)",
                    record.status
                ))
                .into());
            }
            // A move that finished (a retry after a kill past its last
            // step) is done: nothing to do, not a wrong request.
            if target == record.database {
                outcome.to = target.to_string();
                outcome.cancelled = false;
                outcome.nothing_to_do = true;
                return Ok(outcome);
            }
            start(op, &record, &key, target, templates_dir)?;
            copy_and_switch(op, renderer, &record, &key, target, &mut outcome)?
                .or_else(|e| take_back(op, renderer, &record, &key, target, &mut outcome, e))?;
            finish(
                op,
                renderer,
                &key,
                &record.database,
                target,
                started,
                &mut outcome,
            )?;
        }
        (Some(Phase::Copying { target }), Some(asked)) => {
            if asked != target {
                return Err(UsageError::new(format!(
                    "tenant {name} is being moved to {target}: run `pathfinder-db move {name} --to {target}` to finish that move, or `pathfinder-db move {name} --cancel`"
                ))
                .into());
            }
            reach_source(op, &key, name)?;
            copy_and_switch(op, renderer, &record, &key, &target, &mut outcome)?
                .or_else(|e| take_back(op, renderer, &record, &key, &target, &mut outcome, e))?;
            finish(
                op,
                renderer,
                &key,
                &record.database,
                &target,
                started,
                &mut outcome,
            )?;
        }
        (Some(Phase::Copying { target }), None) => {
            cancel(op, renderer, &record, &key, &target, started, &mut outcome)?;
        }
        (Some(Phase::Switched { source }), asked) => {
            // The target is authoritative already: finishing is the only way.
            let target = record.database.clone();
            if let Some(asked) = asked
                && asked != target
            {
                return Err(UsageError::new(format!(
                    "tenant {name} was moved to {target} already (its source {source} is being cleaned up): run `pathfinder-db move {name} --to {target}` to finish"
                ))
                .into());
            }
            outcome.from = source.clone();
            outcome.to = target.clone();
            outcome.cancelled = false;
            outcome.finished_instead_of_cancel = asked.is_none();
            outcome.switched_already = true;
            finish(op, renderer, &key, &source, &target, started, &mut outcome)?;
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Takes back a move that is copying: drops the partial copy from the
/// target and makes the tenant active on the source again, audited.
fn cancel(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    record: &TenantRecord,
    key: &TenantKey,
    target: &str,
    started: Instant,
    outcome: &mut MoveOutcome,
) -> anyhow::Result<()> {
    let name = record.username.as_str();
    outcome.to = target.to_string();
    // The source is authoritative: a target that cannot be reached
    // keeps its partial copy (doctor lists it), the cancel goes on.
    match drop_copy(op, renderer, key, target) {
        Ok(()) => {}
        Err(e) if unreachable(&e) => outcome.partial_copy_left = true,
        Err(e) => return Err(e),
    }
    let claim = format!("{COPYING}{target}");
    let done = op.registry(|sys| -> anyhow::Result<bool> {
        let done = registry::move_step(sys, name, &claim, Status::Active, None, None)?;
        if done {
            audit::write_details(
                sys,
                &entry(op_user(record), name, "tenant.move.cancel", started),
                Some(&details(outcome, started)),
            )?;
        }
        Ok(done)
    })?;
    if !done {
        bail!(
            "tenant {name} changed while its move was cancelled: look at `pathfinder-db where {name}`"
        );
    }
    Ok(())
}

/// A copy or verification that failed on its own (a value the target does
/// not take, a fingerprint that differs) fails the same way however often it
/// is run again: the move is taken back as `--cancel` takes it back, so the
/// tenant is not left read-only for nothing. A member that cannot be reached
/// leaves it `moving` (a re-run completes once it is back), and so does a
/// registry that no longer says copying to `target` (the switch committed:
/// the copy is authoritative and is never dropped).
fn take_back(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    record: &TenantRecord,
    key: &TenantKey,
    target: &str,
    outcome: &mut MoveOutcome,
    e: anyhow::Error,
) -> anyhow::Result<()> {
    if unreachable(&e) {
        return Err(e);
    }
    let name = record.username.as_str();
    let copying = Some(Phase::Copying {
        target: target.to_string(),
    });
    let now = op.registry(|sys| registry::get(sys, name));
    if !matches!(now, Ok(Some(r)) if Phase::of(&r) == copying) {
        return Err(e);
    }
    let text = crate::error::one_line(&e);
    let source = &record.database;
    match cancel(op, renderer, record, key, target, Instant::now(), outcome) {
        Ok(()) if outcome.partial_copy_left => Err(e.context(format!(
            "{text}: the move was taken back: {name} stays on {source} (its partial copy stays on {target}, which cannot be reached: `pathfinder-db doctor` lists it once {target} is back, drop it by hand)"
        ))),
        Ok(()) => Err(e.context(format!(
            "{text}: the move was taken back: {name} stays on {source}"
        ))),
        Err(undo) => Err(e.context(format!(
            "{text} (taking the move back failed too: {})",
            crate::error::one_line(&undo)
        ))),
    }
}

/// Whether `e` says a database cannot be reached (a server down, a wrong
/// password, a SQLite member's folder gone), as opposed to a failed step.
fn unreachable(e: &anyhow::Error) -> bool {
    crate::db::unreachable(e)
}

fn op_user(record: &TenantRecord) -> Option<String> {
    record.user_id.clone()
}

fn entry(user_id: Option<String>, name: &str, action: &str, started: Instant) -> AuditEntry {
    AuditEntry {
        action: action.to_string(),
        entity_type: "tenant".into(),
        entity_id: name.to_string(),
        user_id,
        command: "move".into(),
        started,
        error: None,
    }
}

fn details(outcome: &MoveOutcome, started: Instant) -> String {
    serde_json::json!({
        "from": outcome.from,
        "to": outcome.to,
        "rows": outcome.rows,
        "tables": outcome.tables,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "resumed": outcome.resumed,
        "partial_copy_left": outcome.partial_copy_left,
    })
    .to_string()
}

/// Checks the target under the placement lock and claims the tenant for the
/// move (active → moving, `move to <target>`), in one catalog transaction.
fn start(
    op: &mut TenantOp<'_, '_>,
    record: &TenantRecord,
    key: &TenantKey,
    target: &str,
    templates_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let name = record.username.as_str();
    // A copy must never land on objects the registry does not account for.
    if let Some(found) = stray_on_target(op.session(), key, target)? {
        bail!(
            "member {target} already holds {found} by hand before moving {name} there, once you are sure nobody needs it (a move cancelled while {target} could not be reached leaves its partial copy there; `pathfinder-db doctor` lists such leftovers)"
        );
    }
    // The source too, so that a member down leaves the tenant active.
    reach_source(op, key, name)?;
    check_shape(op, record, templates_dir)?;
    let claim = format!("{COPYING}{target}");
    let from = record.database.clone();
    let result = op.registry(|sys| -> anyhow::Result<()> {
        sys.lock(&Lock::Placement)?;
        let Some(member) = members::get(sys, target)? else {
            return Err(UsageError::new(format!(
                "no member database named {target}: `pathfinder-db databases list` shows them"
            ))
            .into());
        };
        if member.state == MemberState::Draining {
            return Err(UsageError::new(format!(
                "member {target} is draining and takes no tenants: `pathfinder-db databases open {target}` opens it again"
            ))
            .into());
        }
        // Moves in progress to the target count on it already.
        let held = members::placement_counts(sys, &[&member])?
            .get(target)
            .copied()
            .unwrap_or(0);
        if member.free(held) == Some(0) {
            return Err(UsageError::new(format!(
                "member {target} is full ({held} tenants, capacity {}): choose another, or raise its capacity (`pathfinder-db databases set-capacity {target} N`)",
                member.capacity.unwrap_or(0)
            ))
            .into());
        }
        let moved = registry::transition(
            sys,
            name,
            &[Status::Active],
            Status::Moving,
            &registry::Changes {
                claimed_by: Some(Some(&claim)),
                last_error: Some(None),
                ..Default::default()
            },
        )?;
        let still_there = registry::get(sys, name)?.map(|r| r.database) == Some(from.clone());
        if !moved || !still_there {
            bail!("tenant {name} changed before its move began: run again");
        }
        Ok(())
    });
    crate::fleet::placement::release(op.session().system());
    result
}

/// Refuses a tenant whose tables differ from its version before it is
/// claimed: the copy makes the version's tables on the target, so a column
/// added or dropped by hand fails it half-way (or, on SQLite, carries the
/// drift along unseen).
fn check_shape(
    op: &mut TenantOp<'_, '_>,
    record: &TenantRecord,
    templates_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let name = record.username.as_str();
    let (drift, failed) =
        crate::migrate::verify::verify(op.session(), templates_dir, std::slice::from_ref(record))?;
    if let Some(f) = failed.first() {
        bail!("cannot move {name}: its tables cannot be read: {}", f.error);
    }
    let Some(d) = drift.first() else {
        return Ok(());
    };
    let mut problems = d
        .problems
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if d.problems.len() > 3 {
        problems.push_str(&format!(" and {} more", d.problems.len() - 3));
    }
    let source = UsageError::new(format!(
        "cannot move {name}: its tables differ from version {} ({problems}): `pathfinder-db verify {name}` lists the drift; repair it, then move again",
        d.version
    ));
    Err(Drifted { problems, source }.into())
}

/// Checks that the source answers (its server, on SQLite its folder and the
/// tenant's file) before the tenant is claimed, so that a member down leaves
/// it active, with the error every command gives for that member.
fn reach_source(op: &mut TenantOp<'_, '_>, key: &TenantKey, name: &str) -> anyhow::Result<()> {
    let session = op.session();
    session.reach_member_of(key)?;
    if let Some(path) = session.tenant_file(key)?
        && !path.exists()
    {
        return Err(crate::tenants::operation::missing_tenant(
            session, key, name,
        ));
    }
    Ok(())
}

/// What of `key` member `target` holds (a file, tables), if anything, said
/// with what to do about it.
fn stray_on_target(
    session: &mut Session<'_>,
    key: &TenantKey,
    target: &str,
) -> anyhow::Result<Option<String>> {
    if session.dialect() == Dialect::Sqlite {
        let path = sqlite_file_reached(session, key, target)?;
        return Ok(path.exists().then(|| {
            format!(
                "the file {}, which the registry does not account for: remove it",
                path.display()
            )
        }));
    }
    let mut conn = connect(session, target)?;
    let found = objects_of(conn.as_mut(), key)?;
    Ok((!found.is_empty()).then(|| {
        format!(
            "the tables {}, which the registry does not account for: drop them",
            found.join(", ")
        )
    }))
}

/// Where `key`'s file is on SQLite member `name`, once its folder is known
/// to be there (gone, the member cannot be reached: a disk not mounted).
fn sqlite_file_reached(
    session: &mut Session<'_>,
    key: &TenantKey,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let path = sqlite_file(session, key, name)?;
    if name != members::CATALOG
        && let Some(folder) = path.parent()
    {
        crate::db::sqlite::member_folder_present(name, folder)?;
    }
    Ok(path)
}

/// Which of `keys` still have objects (a SQLite file; tables, archives
/// included) on member `name`: one catalog read of the member.
pub(crate) fn keys_with_objects(
    session: &mut Session<'_>,
    keys: &[TenantKey],
    name: &str,
) -> anyhow::Result<Vec<TenantKey>> {
    if session.dialect() == Dialect::Sqlite {
        let mut found = Vec::new();
        for key in keys {
            if sqlite_file(session, key, name)?.exists() {
                found.push(key.clone());
            }
        }
        return Ok(found);
    }
    let mut conn = connect(session, name)?;
    keys_held_by(conn.as_mut(), keys)
}

/// Which of `keys` have tables (archives included) on `conn`: one read of
/// its catalog.
pub(crate) fn keys_held_by(
    conn: &mut dyn Connection,
    keys: &[TenantKey],
) -> anyhow::Result<Vec<TenantKey>> {
    let wanted: std::collections::HashMap<&str, ()> =
        keys.iter().map(|k| (k.as_str(), ())).collect();
    let names = conn.table_names(crate::schema::tenant::TENANT_PREFIX, true)?;
    let held: std::collections::HashSet<&str> = names
        .iter()
        .filter_map(|t| crate::migrate::verify::split_name(t, &wanted).map(|(k, _)| k))
        .collect();
    Ok(keys
        .iter()
        .filter(|k| held.contains(k.as_str()))
        .cloned()
        .collect())
}

/// The tables (and views) of `key` on `conn`, named exactly.
fn objects_of(conn: &mut dyn Connection, key: &TenantKey) -> anyhow::Result<Vec<String>> {
    let only = std::collections::HashMap::from([(key.as_str(), ())]);
    Ok(conn
        .table_names(&key.prefix(), true)?
        .into_iter()
        .filter(|t| crate::migrate::verify::split_name(t, &only).is_some())
        .collect())
}

/// A connection of its own to database `name` (the catalog, or a member).
fn connect(session: &mut Session<'_>, name: &str) -> anyhow::Result<Box<dyn Connection>> {
    let db = session.database();
    if name == members::CATALOG {
        return Ok(db.connect()?.into_system());
    }
    let member = members::get(session.system(), name)?.ok_or_else(|| {
        UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
    })?;
    let url = member
        .url
        .ok_or_else(|| anyhow::anyhow!("member {name} has no URL"))?;
    Ok(db.connect_member(name, &url)?)
}

/// Where `key`'s file is on SQLite member `name`.
fn sqlite_file(session: &mut Session<'_>, key: &TenantKey, name: &str) -> anyhow::Result<PathBuf> {
    let db = session.database();
    if name == members::CATALOG {
        return db
            .sqlite_tenant_file(key)
            .ok_or_else(|| anyhow::anyhow!("not a SQLite database"));
    }
    let member = members::get(session.system(), name)?.ok_or_else(|| {
        UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
    })?;
    let url = member
        .url
        .ok_or_else(|| anyhow::anyhow!("member {name} has no URL"))?;
    Ok(crate::db::sqlite::member_folder(&url).join(format!("{key}.db")))
}

/// What a SQLite tenant file's copy is named while it is written.
pub const MOVING_SUFFIX: &str = ".db.moving";

/// The temporary name a SQLite copy is written under.
fn temporary(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.moving", path.display()))
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot remove {}: {e}", path.display())),
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Removes a SQLite file with its `-wal`, `-shm` and rollback `-journal`.
fn remove_sqlite(path: &Path) -> anyhow::Result<()> {
    for suffix in ["-wal", "-shm", "-journal", ""] {
        remove_if_there(&PathBuf::from(format!("{}{suffix}", path.display())))?;
    }
    sync_dir(path);
    Ok(())
}

/// Drops what a move left of `key` on `member` (the partial copy on the
/// target, or the source after the switch).
fn drop_copy(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    key: &TenantKey,
    member: &str,
) -> anyhow::Result<()> {
    let session = op.session();
    if session.dialect() == Dialect::Sqlite {
        let path = sqlite_file_reached(session, key, member)?;
        // The temporary copy with its journal (a killed VACUUM INTO leaves one).
        remove_sqlite(&temporary(&path))?;
        return remove_sqlite(&path);
    }
    let mut conn = connect(session, member)?;
    drop_tables(conn.as_mut(), renderer, key)
}

fn drop_tables(
    conn: &mut dyn Connection,
    renderer: &Renderer,
    key: &TenantKey,
) -> anyhow::Result<()> {
    let statements = renderer.drop_tenant(key)?;
    if conn.dialect() == Dialect::Postgres {
        let mut tx = Tx::begin(conn)?;
        tx.run_statements(&statements)?;
        tx.commit()?;
        return Ok(());
    }
    conn.run_statements(&statements)?;
    Ok(())
}

/// Phase 1 then the switch: copy, verify, and name the target in the
/// registry. The inner error is the copy or its verification failing (for
/// [`take_back`] to judge); the outer one anything else, which leaves the
/// move where it is.
fn copy_and_switch(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    record: &TenantRecord,
    key: &TenantKey,
    target: &str,
    outcome: &mut MoveOutcome,
) -> anyhow::Result<anyhow::Result<()>> {
    let name = record.username.as_str();
    let source = record.database.clone();
    // Audit rows a killed sweep left staged on a server source are copied to
    // the catalog's log first: the member's stage does not move with the
    // tenant (a SQLite file carries its own).
    op.flush_audit(key)?;
    // Whatever an interrupted run left on the target is not authoritative.
    drop_copy(op, renderer, key, target)?;
    let switch = |op: &mut TenantOp<'_, '_>, outcome: &MoveOutcome| -> anyhow::Result<()> {
        let (from, to) = (format!("{COPYING}{target}"), format!("{SWITCHED}{source}"));
        let db_value = (target != members::CATALOG).then_some(target);
        let started = Instant::now();
        let user = op_user(record);
        let done = op.registry(|sys| -> anyhow::Result<bool> {
            let done =
                registry::move_step(sys, name, &from, Status::Moving, Some(&to), Some(db_value))?;
            if done {
                audit::write_details(
                    sys,
                    &entry(user, name, "tenant.move.switch", started),
                    Some(&details(outcome, started)),
                )?;
            }
            Ok(done)
        })?;
        if !done {
            bail!("tenant {name} changed while it was being copied: run the move again");
        }
        Ok(())
    };
    if op.session().dialect() == Dialect::Sqlite {
        let src_path = op
            .session()
            .tenant_file(key)?
            .ok_or_else(|| anyhow::anyhow!("not a SQLite database"))?;
        let dst_path = sqlite_file(op.session(), key, target)?;
        if !src_path.exists() {
            return Err(crate::tenants::operation::missing_tenant(
                op.session(),
                key,
                name,
            ));
        }
        // The write lock on the source keeps writers out until the switch.
        let mut src = crate::db::sqlite::SqliteConnection::open_existing(&src_path, 30_000)?;
        src.begin()?;
        let tmp = temporary(&dst_path);
        // A stale journal beside it would be rolled back into the new copy.
        remove_sqlite(&tmp)?;
        // Made empty and private first: VACUUM INTO fills an empty file and
        // would otherwise create it with the umask's mode.
        crate::db::sqlite::create_private_file(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let copied = (|| -> anyhow::Result<()> {
            let reader = rusqlite::Connection::open_with_flags(
                &src_path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open {}", src_path.display()))?;
            reader
                .execute("VACUUM INTO ?1", [tmp.to_string_lossy().as_ref()])
                .with_context(|| {
                    format!("cannot copy {} to {}", src_path.display(), tmp.display())
                })?;
            drop(reader);
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", tmp.display()))
        })();
        if let Err(e) = copied {
            return Ok(Err(e));
        }
        // Not a failed copy: a file of someone else's, never taken back.
        if dst_path.exists() {
            bail!(
                "{} appeared while {name} was being copied: the registry does not account for it; nothing was overwritten",
                dst_path.display()
            );
        }
        std::fs::rename(&tmp, &dst_path).with_context(|| {
            format!("cannot rename {} to {}", tmp.display(), dst_path.display())
        })?;
        sync_dir(&dst_path);
        let verified = crate::db::sqlite::SqliteConnection::open_existing(&dst_path, 30_000)
            .map_err(anyhow::Error::from)
            .and_then(|mut dst| verify(&mut src, &mut dst, key, name));
        let (rows, tables) = match verified {
            Ok(counts) => counts,
            Err(e) => return Ok(Err(e)),
        };
        outcome.rows = rows;
        outcome.tables = tables;
        switch(op, outcome)?;
        src.rollback()?;
        return Ok(Ok(()));
    }

    let mut src = connect(op.session(), &source)?;
    let mut dst = connect(op.session(), target)?;
    src.begin()?;
    let catalog = src.columns(&key.prefix())?;
    let live = crate::jobs::archive::live_tables_in(key, &catalog);
    if live.is_empty() {
        bail!(
            "tenant {name} has no tables on {source}: `pathfinder-db verify {name}` lists what is missing"
        );
    }
    let frozen: Vec<String> = live.iter().map(|(d, _)| key.object(d.name)).collect();
    src.freeze_tables(&frozen)?;
    let copied = (|| -> anyhow::Result<(u64, usize)> {
        let mut tables = crate::tenants::export::tenant_tables_in(key, &live, &catalog);
        // Parents before children, archives after the live tables.
        let order = |t: &str| -> usize {
            let (base, archive) = match t.strip_suffix("_archive") {
                Some(base) => (base, TABLES.len()),
                None => (t, 0),
            };
            archive
                + TABLES
                    .iter()
                    .position(|d| d.name == base)
                    .unwrap_or(TABLES.len())
        };
        tables.sort_by_key(|(t, _, _)| order(t));
        let version = u32::try_from(record.schema_version).context("schema version")?;
        let rows = {
            let dst = dst.as_mut();
            dst.begin()?;
            let loaded = (|| -> anyhow::Result<u64> {
                crate::migrate::apply_tenant(dst, renderer, key, Some(version), false)?;
                crate::security::grants::grant_tenant(
                    dst,
                    renderer,
                    key,
                    version,
                    (name, record.user_id.as_deref(), "move"),
                )?;
                let archived: Vec<&str> = tables
                    .iter()
                    .filter_map(|(t, _, _)| t.strip_suffix("_archive"))
                    .collect();
                if !archived.is_empty() {
                    let with_archive: Vec<_> = crate::jobs::archive::live_tables(dst, key)?
                        .into_iter()
                        .filter(|(d, _)| archived.contains(&d.name))
                        .collect();
                    crate::jobs::archive::prepare(dst, renderer, key, &with_archive)?;
                }
                let mut total = 0;
                for (table, object, columns) in &tables {
                    let mut loader = crate::tenants::import::Loader::new(object, columns);
                    let select = format!("SELECT {} FROM {object}", columns.join(", "));
                    src.query_each(&select, &[], &mut |row| {
                        let bytes = row.iter().map(|v| v.to_text().len() + 8).sum();
                        loader.push(dst, row, bytes)
                    })
                    .with_context(|| format!("cannot copy {table}"))?;
                    total += loader
                        .finish(dst)
                        .with_context(|| format!("cannot copy {table}"))?;
                }
                dst.run_statements(&renderer.refresh_career_summary(key)?)?;
                Ok(total)
            })();
            match loaded {
                Ok(n) => {
                    dst.commit()?;
                    n
                }
                Err(e) => {
                    let _ = dst.rollback();
                    return Err(e);
                }
            }
        };
        let (checked, tables) = verify(src.as_mut(), dst.as_mut(), key, name)?;
        if checked != rows {
            bail!("{rows} rows were copied but the target holds {checked}");
        }
        Ok((rows, tables))
    })();
    let result = match copied {
        Ok((rows, tables)) => {
            outcome.rows = rows;
            outcome.tables = tables;
            switch(op, outcome).map(Ok)
        }
        Err(e) => Ok(Err(e)),
    };
    if matches!(result, Ok(Ok(()))) {
        // Dropped under the same lock: a writer that ignored `moving` and
        // waited for the source gets "no such table", never a lost write.
        // (If this fails, the switched phase drops the source again.)
        let dropped = renderer
            .drop_tenant(key)
            .map_err(anyhow::Error::from)
            .and_then(|s| src.run_statements(&s).map_err(anyhow::Error::from))
            .and_then(|()| src.commit().map_err(anyhow::Error::from));
        if dropped.is_err() {
            let _ = src.rollback();
        }
    } else {
        let _ = src.rollback();
    }
    let _ = src.thaw_tables(&frozen);
    result
}

/// Compares the fingerprints of `key` on the source and the target: every
/// table's rows and checksum. Returns the rows and tables.
fn verify(
    src: &mut dyn Connection,
    dst: &mut dyn Connection,
    key: &TenantKey,
    name: &str,
) -> anyhow::Result<(u64, usize)> {
    let before = tenant_tables(src, key, name).context("cannot fingerprint the source")?;
    let after = tenant_tables(dst, key, name).context("cannot fingerprint the copy")?;
    if before != after {
        let describe = |t: &[TableFingerprint]| {
            t.iter()
                .map(|f| format!("{} {} rows {}", f.table, f.rows, f.checksum))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "the copy of {name} differs from its source (source: {}; copy: {}): nothing was switched",
            describe(&before),
            describe(&after)
        );
    }
    let rows = before.iter().map(|t| t.rows.max(0) as u64).sum();
    Ok((rows, before.len()))
}

/// Phase 2: drops the source's objects, then makes the tenant active on the
/// target, audited with the rows and seconds.
fn finish(
    op: &mut TenantOp<'_, '_>,
    renderer: &Renderer,
    key: &TenantKey,
    source: &str,
    target: &str,
    started: Instant,
    outcome: &mut MoveOutcome,
) -> anyhow::Result<()> {
    let name = outcome.username.clone();
    drop_copy(op, renderer, key, source)?;
    outcome.from = source.to_string();
    outcome.to = target.to_string();
    let claim = format!("{SWITCHED}{source}");
    let user = op.session().system().query(
        "SELECT user_id FROM pf_tenants WHERE username = ?",
        &[crate::db::Value::from(name.as_str())],
    )?;
    let user = user
        .first()
        .filter(|r| !r[0].is_null())
        .map(|r| r[0].to_text());
    let doc = details(outcome, started);
    let done = op.registry(|sys| -> anyhow::Result<bool> {
        let done = registry::move_step(sys, &name, &claim, Status::Active, None, None)?;
        if done {
            audit::write_details(sys, &entry(user, &name, "tenant.move", started), Some(&doc))?;
        }
        Ok(done)
    })?;
    if !done {
        bail!(
            "tenant {name} changed while its move was finished: look at `pathfinder-db where {name}`"
        );
    }
    Ok(())
}
