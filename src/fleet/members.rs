//! The member databases (`pf_databases`): where tenants' tables may live.
//!
//! A member's URL is stored without a password; the password comes from the
//! member's own environment variable ([`password_env`]), `~/.pgpass`-style
//! trust or the Oracle wallet. SQLite members are folders that hold tenant
//! files (several disks for one deployment).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::db::{Connection, Database, DbError, DbErrorKind, Session, Tx, Value};
use crate::error::UsageError;
use crate::fleet::identity::{self, Identity};
use crate::schema::tenant::TenantKey;

/// The name under which the catalog is listed as a member.
pub const CATALOG: &str = "catalog";

/// Longest member name (the registry's `database_name` column).
const NAME_MAX: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// New tenants may be placed here.
    Open,
    /// No new tenants; `rebalance` moves the ones it has elsewhere.
    Draining,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Open => "open",
            MemberState::Draining => "draining",
        }
    }
}

/// One row of `pf_databases`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub name: String,
    /// The stored URL (never with a password); None for the catalog itself.
    pub url: Option<String>,
    pub state: MemberState,
    /// How many live tenants it may hold; None: no limit.
    pub capacity: Option<i64>,
    pub created_at: String,
}

impl Member {
    pub fn is_catalog(&self) -> bool {
        self.url.is_none()
    }

    /// Free places for tenants (None: no limit), given the live tenants it holds.
    pub fn free(&self, tenants: i64) -> Option<i64> {
        self.capacity.map(|c| (c - tenants).max(0))
    }
}

/// A member's name: a lower-case identifier, like a tenant's, so it is safe
/// in messages, environment variable names and folder names.
pub fn validate_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "member name {name:?} is not valid: use 1-{NAME_MAX} lower-case letters, digits and _, starting with a letter (e.g. pg2)"
        )))
    }
}

/// The environment variable that holds member `name`'s password.
pub fn password_env(name: &str) -> String {
    format!("PATHFINDER_DATABASE_{}_PASSWORD", name.to_ascii_uppercase())
}

const COLUMNS: &str = "name, url, state, capacity, created_at";

fn from_row(r: &[Value]) -> Member {
    Member {
        name: r[0].to_text(),
        url: (!r[1].is_null()).then(|| r[1].to_text()),
        state: if r[2].to_text() == "draining" {
            MemberState::Draining
        } else {
            MemberState::Open
        },
        capacity: r[3].as_i64(),
        created_at: crate::catalog::registry::iso_utc(&r[4].to_text()),
    }
}

/// Every member, the catalog included, by name. A system schema older than
/// version 7 has only the catalog.
pub fn list(sys: &mut dyn Connection) -> Result<Vec<Member>, DbError> {
    match sys.query(
        &format!("SELECT {COLUMNS} FROM pf_databases ORDER BY name"),
        &[],
    ) {
        Ok(rows) => Ok(rows.iter().map(|r| from_row(r)).collect()),
        Err(e) if e.kind == DbErrorKind::DoesNotExist => Ok(vec![]),
        Err(e) => Err(e),
    }
}

pub fn get(sys: &mut dyn Connection, name: &str) -> Result<Option<Member>, DbError> {
    let rows = sys.query(
        &format!("SELECT {COLUMNS} FROM pf_databases WHERE name = ?"),
        &[Value::from(name)],
    )?;
    Ok(rows.first().map(|r| from_row(r)))
}

/// The members other than the catalog, by name: (name, stored URL). Empty on
/// a system schema older than version 7, or before the first `databases add`.
pub fn remote(sys: &mut dyn Connection) -> Result<Vec<(String, String)>, DbError> {
    match sys.query(
        "SELECT name, url FROM pf_databases WHERE url IS NOT NULL ORDER BY name",
        &[],
    ) {
        Ok(rows) => Ok(rows
            .iter()
            .map(|r| (r[0].to_text(), r[1].to_text()))
            .collect()),
        Err(e) if e.kind == DbErrorKind::DoesNotExist => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// Adds a member. False when one of that name exists already.
pub fn insert(
    sys: &mut dyn Connection,
    name: &str,
    url: &str,
    capacity: Option<i64>,
) -> Result<bool, DbError> {
    match sys.execute(
        "INSERT INTO pf_databases (name, url, state, capacity) VALUES (?, ?, 'open', ?)",
        &[Value::from(name), Value::from(url), capacity.into()],
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.kind == DbErrorKind::UniqueViolation => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens or drains a member. False when there is none of that name.
pub fn set_state(
    sys: &mut dyn Connection,
    name: &str,
    state: MemberState,
) -> Result<bool, DbError> {
    Ok(sys.execute(
        "UPDATE pf_databases SET state = ?, updated_at = CURRENT_TIMESTAMP WHERE name = ?",
        &[Value::from(state.as_str()), Value::from(name)],
    )? == 1)
}

/// Removes a member row (the caller checked it holds no tenant).
pub fn delete(sys: &mut dyn Connection, name: &str) -> Result<bool, DbError> {
    Ok(sys.execute(
        "DELETE FROM pf_databases WHERE name = ? AND url IS NOT NULL",
        &[Value::from(name)],
    )? == 1)
}

/// [`tenant_counts`] of the members other than the catalog, as the
/// registry's trigger keeps them in `pf_databases` (system version 8): one
/// row per member, whatever the fleet's size. `doctor` checks them against
/// [`tenant_counts`].
pub fn kept_counts(sys: &mut dyn Connection) -> Result<HashMap<String, i64>, DbError> {
    Ok(sys
        .query(
            "SELECT name, tenants FROM pf_databases WHERE name <> ?",
            &[Value::from(CATALOG)],
        )?
        .into_iter()
        .map(|r| (r[0].to_text(), r[1].as_i64().unwrap_or(0)))
        .collect())
}

/// The live tenants of the members in `wanted` (a tenant being copied to
/// one counts there too), for placement, which runs once per tenant placed:
/// the kept counts, and for the catalog, whose own tenants are not kept (a
/// registration on the catalog shares the transaction of the tenant's DDL on
/// PostgreSQL; one kept row would make every provisioner wait for the one
/// before), its count from the registry, read only when it is wanted.
pub fn placement_counts(
    sys: &mut dyn Connection,
    wanted: &[&Member],
) -> Result<HashMap<String, i64>, DbError> {
    let mut counts = kept_counts(sys)?;
    if wanted.iter().any(|m| m.is_catalog()) {
        let rows = sys.query(
            "SELECT COUNT(*) FROM pf_tenants WHERE status <> 'deprovisioned' \
             AND (database_name IS NULL OR (status = 'moving' AND claimed_by = ?))",
            &[Value::from(format!(
                "{}{CATALOG}",
                crate::fleet::moves::COPYING
            ))],
        )?;
        let n = rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        counts.insert(CATALOG.to_string(), n);
    }
    Ok(counts)
}

/// Live tenants (not deprovisioned) per member, from the registry's index;
/// a tenant being copied to a member counts on it too (its place is taken).
/// Exact, and readable on any system version from 7; linear in the fleet.
pub fn tenant_counts(sys: &mut dyn Connection) -> Result<HashMap<String, i64>, DbError> {
    // One pass over the registry: tenants by member, and the (rare) tenants
    // being moved by their claim, which names the target they also count on.
    let rows = sys.query(
        "SELECT database_name, CASE WHEN status = 'moving' THEN claimed_by END, COUNT(*) \
         FROM pf_tenants WHERE status <> 'deprovisioned' \
         GROUP BY database_name, CASE WHEN status = 'moving' THEN claimed_by END",
        &[],
    )?;
    let mut counts: HashMap<String, i64> = HashMap::new();
    for r in rows {
        let n = r[2].as_i64().unwrap_or(0);
        *counts
            .entry(crate::catalog::registry::member_name(r.first()))
            .or_default() += n;
        if let Some(target) = r[1].to_text().strip_prefix(crate::fleet::moves::COPYING) {
            *counts.entry(target.to_string()).or_default() += n;
        }
    }
    Ok(counts)
}

/// The member holding the tenant whose key is `tenant_key` (None: the catalog,
/// or no such tenant).
pub fn member_of_key(
    sys: &mut dyn Connection,
    tenant_key: &str,
) -> Result<Option<String>, DbError> {
    let rows = sys.query(
        "SELECT database_name FROM pf_tenants WHERE tenant_key = ?",
        &[Value::from(tenant_key)],
    )?;
    Ok(rows
        .first()
        .filter(|r| !r[0].is_null())
        .map(|r| r[0].to_text()))
}

/// What `databases list` shows of one member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    #[serde(flatten)]
    pub member: Member,
    /// Live tenants placed on it.
    pub tenants: i64,
    /// Bytes of its tenants' tables (None when it could not be reached).
    pub bytes: Option<u64>,
    pub reachable: bool,
    /// Why it could not be reached.
    pub error: Option<String>,
}

fn audit_change(
    sys: &mut dyn Connection,
    action: &str,
    name: &str,
    started: std::time::Instant,
    error: Option<String>,
) -> Result<(), DbError> {
    crate::catalog::audit::write(
        sys,
        &crate::catalog::audit::AuditEntry {
            action: format!("database.{action}"),
            entity_type: "database".into(),
            entity_id: name.to_string(),
            user_id: None,
            command: "databases".into(),
            started,
            error,
        },
    )
}

/// Whether `message` begins by naming member `name`, as a connection error
/// does (`member pg3 (postgres://...): ...`); a query error does not.
pub fn names_member(name: &str, message: &str) -> bool {
    message
        .strip_prefix("member ")
        .and_then(|rest| rest.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with([' ', ':']))
}

/// `message` about member `name`, naming it once.
pub fn naming_member(name: &str, message: &str) -> String {
    match names_member(name, message) {
        true => message.to_string(),
        false => format!("member {name}: {message}"),
    }
}

/// The URL to store for a new member: refused when it carries a password
/// (stored URLs never do), or is of another dialect than the catalog. A
/// SQLite member is a folder, stored as its absolute path (created 0700 if
/// missing and its parent exists: then also returned, so that a refused add
/// removes it again).
pub fn storable_url(
    catalog: &Database,
    name: &str,
    url: &str,
    deployment: &str,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    if crate::db::redact::redact(url) != url {
        return Err(UsageError::new(format!(
            "the URL of member {name} holds a password, and member URLs are stored without one: remove it from the URL and set {}, or name a password_file under [members.{name}] in the configuration file (or use the Oracle wallet)",
            password_env(name)
        ))
        .into());
    }
    if url.trim().is_empty() {
        return Err(UsageError::new(format!(
            "member {name}: the URL is empty: give the member's database URL (on SQLite a folder)"
        ))
        .into());
    }
    if catalog.dialect() == crate::db::dialect::Dialect::Sqlite {
        // A server URL is another dialect, not a folder to make.
        if let Some((scheme, _)) = url.split_once("://")
            && !scheme.eq_ignore_ascii_case("sqlite")
        {
            return Err(UsageError::new(format!(
                "member {name} is a {scheme} URL and the catalog is sqlite: every member speaks the catalog's dialect (a SQLite member is a folder)"
            ))
            .into());
        }
        // The catalog's SQLite URL takes no options: nor does a member's
        // folder (`?mode=ro` would become part of its name).
        if url.contains('?') {
            return Err(UsageError::new(format!(
                "member {name}: a SQLite member is a folder and takes no `?` options: give the folder's path alone"
            ))
            .into());
        }
        let folder = crate::db::sqlite::member_folder(url);
        if folder.exists() && !folder.is_dir() {
            return Err(UsageError::new(format!(
                "member {name}: {} is a file; a SQLite member is a folder that will hold tenant files",
                folder.display()
            ))
            .into());
        }
        // A folder marked by `databases add` is a member's already (of this
        // deployment, or one forgotten while it could not be reached, whose
        // files would come back as tenants) unless it is the mark of this
        // same add, killed before it recorded the member, on a folder that
        // holds nothing else.
        if folder.join(crate::db::sqlite::MEMBER_MARKER).exists()
            && !killed_add_of(name, deployment, &folder)
        {
            return Err(UsageError::new(format!(
                "member {name}: {} is marked as a member's folder already ({}): if it belongs to no member any more (a member removed while it could not be reached), move its files away and delete that file first",
                folder.display(),
                crate::db::sqlite::MEMBER_MARKER
            ))
            .into());
        }
        let created = !folder.exists();
        // Only the last part is created: a path under a disk that is not
        // mounted (or mistyped) must not become a folder on another disk.
        let parent = match folder.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if created && !parent.is_dir() {
            return Err(UsageError::new(format!(
                "member {name}: {} does not exist, so its folder {} is not created: mount the disk or create the parent folder first, or check the path",
                parent.display(),
                folder.display()
            ))
            .into());
        }
        crate::db::sqlite::create_private_dir(&folder).map_err(|e| {
            anyhow::anyhow!(
                "member {name}: cannot create the folder {}: {e}",
                folder.display()
            )
        })?;
        let folder = folder.canonicalize()?;
        if let Some((_, tenants)) = catalog.sqlite_paths()
            && tenants.canonicalize().ok().as_deref() == Some(folder.as_path())
        {
            return Err(UsageError::new(format!(
                "member {name}: {} is the catalog's own tenant folder: choose another folder",
                folder.display()
            ))
            .into());
        }
        let url = folder.to_string_lossy().into_owned();
        return Ok((url, created.then_some(folder)));
    }
    let dialect = crate::config::dialect_of_url(url)?;
    if dialect != catalog.dialect() {
        return Err(UsageError::new(format!(
            "member {name} is a {dialect} database and the catalog is {}: every member speaks the catalog's dialect",
            catalog.dialect()
        ))
        .into());
    }
    Ok((url.to_string(), None))
}

/// Whether the SQLite `folder` is what an add of member `name` to this
/// deployment leaves when killed before it recorded the member: its own
/// mark and nothing else.
fn killed_add_of(name: &str, deployment: &str, folder: &std::path::Path) -> bool {
    let marker = folder.join(crate::db::sqlite::MEMBER_MARKER);
    let own = std::fs::read_to_string(&marker).ok()
        == Some(crate::db::sqlite::member_marker_text(
            name,
            Some(deployment),
        ));
    let only_marker = std::fs::read_dir(folder).is_ok_and(|entries| {
        entries
            .map(|e| e.map(|e| e.file_name()))
            .all(|n| n.is_ok_and(|n| n == crate::db::sqlite::MEMBER_MARKER))
    });
    own && only_marker
}

/// `databases add`: checks the member (reachable, not a pathfinder-db
/// catalog, the privileges the tool needs), then records it, audited. A
/// refused add leaves no folder it created behind.
pub fn add(
    session: &mut Session<'_>,
    name: &str,
    url: &str,
    capacity: Option<i64>,
) -> anyhow::Result<Member> {
    let mut created = None;
    let result = add_checked(session, name, url, capacity, &mut created);
    if result.is_err()
        && let Some(folder) = created
    {
        // Only while empty (but for its marker): remove_dir refuses a folder
        // that holds anything.
        let _ = std::fs::remove_file(folder.join(crate::db::sqlite::MEMBER_MARKER));
        let _ = std::fs::remove_dir(folder);
    }
    result
}

fn add_checked(
    session: &mut Session<'_>,
    name: &str,
    url: &str,
    capacity: Option<i64>,
    created: &mut Option<PathBuf>,
) -> anyhow::Result<Member> {
    let started = std::time::Instant::now();
    validate_name(name)?;
    if name == CATALOG {
        return Err(
            UsageError::new("the name catalog is the catalog's own: choose another").into(),
        );
    }
    if capacity.is_some_and(|c| c < 0) {
        return Err(UsageError::new("--capacity must be 0 or more").into());
    }
    let deployment = identity::of_catalog(session.system())?;
    let ours = Identity {
        deployment: deployment.clone(),
        member: name.to_string(),
    };
    let db = session.database();
    let (url, made) = storable_url(db, name, url, &deployment)?;
    *created = made;
    let mut member = None;
    if db.dialect() != crate::db::dialect::Dialect::Sqlite {
        let mut conn = db.connect_member(name, &url)?;
        check_member(conn.as_mut(), name)?;
        // The same database under another spelling of its URL (another
        // host name, the port left out) would be two members. What this
        // same add left when killed before it recorded the member (its
        // identity, no tenant) is taken up.
        let found = identity::read(conn.as_mut())?;
        let killed_add = found.as_ref() == Some(&ours)
            && conn
                .table_names(crate::schema::tenant::TENANT_PREFIX, false)?
                .is_empty();
        if !killed_add && (has_stage(conn.as_mut())? || found.is_some()) {
            return Err(UsageError::new(format!(
                "member {name}: this database is a pathfinder-db member already (it holds {} or {}): of this deployment under another URL (`pathfinder-db databases list`), or of another deployment; if it is no one's member any more (a member removed while it could not be reached), drop those tables there first",
                crate::catalog::audit::STAGE,
                identity::TABLE
            ))
            .into());
        }
        member = Some(conn);
    }
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    if let Some(same) = list(&mut *tx)?
        .into_iter()
        .find(|m| m.url.as_deref() == Some(url.as_str()))
    {
        return Err(
            UsageError::new(format!("that database is member {} already", same.name)).into(),
        );
    }
    if !insert(&mut *tx, name, &url, capacity)? {
        return Err(UsageError::new(format!(
            "a member named {name} exists already: `pathfinder-db databases list` shows it"
        ))
        .into());
    }
    audit_change(&mut *tx, "add", name, started, None)?;
    // A SQLite member's folder is marked as the member's, once the add is
    // sure of itself (a refused add marks nothing).
    if db.dialect() == crate::db::dialect::Dialect::Sqlite {
        let folder = std::path::Path::new(&url);
        crate::db::sqlite::mark_member_folder(name, Some(&deployment), folder).map_err(|e| {
            anyhow::anyhow!(
                "member {name}: cannot mark the folder {} as the member's: {e}",
                folder.display()
            )
        })?;
    }
    // The member's audit stage, made only once the add is sure of itself
    // (a refused add leaves nothing on the member).
    if let Some(conn) = member.as_mut() {
        crate::catalog::audit::create_member_stage(conn.as_mut())?;
        identity::write(conn.as_mut(), &ours)?;
    }
    tx.commit()?;
    let sys = session.system();
    Ok(get(sys, name)?.expect("just added"))
}

/// A server member must not hold a pathfinder-db catalog (the catalog
/// itself, or another deployment's), and must pass the backend's preflight
/// (version, privileges to create tables).
pub(crate) fn check_member(conn: &mut dyn Connection, name: &str) -> anyhow::Result<()> {
    match conn.query("SELECT COUNT(*) FROM pf_tenants", &[]) {
        Ok(_) => {
            return Err(UsageError::new(format!(
                "member {name} holds a pathfinder-db catalog (pf_tenants): a member must be a database of its own, not the catalog nor another deployment's"
            ))
            .into());
        }
        Err(e) if e.kind == DbErrorKind::DoesNotExist => {}
        Err(e) => return Err(e.into()),
    }
    // A failed query may have aborted nothing (autocommit), but end any
    // transaction a driver opened.
    let _ = conn.rollback();
    for check in conn.preflight()? {
        if !check.ok {
            anyhow::bail!(
                "member {name}: {}: {}: {}",
                check.check,
                check.detail,
                check.fix.as_deref().unwrap_or("see `pathfinder-db doctor`")
            );
        }
    }
    Ok(())
}

/// Whether a server database holds a member's audit stage, which
/// `databases add` makes there: it is (or was) a pathfinder-db member.
fn has_stage(conn: &mut dyn Connection) -> Result<bool, DbError> {
    let probe = format!(
        "SELECT COUNT(*) FROM {} WHERE 1 = 0",
        crate::catalog::audit::STAGE
    );
    match conn.query(&probe, &[]) {
        Ok(_) => Ok(true),
        Err(e) if e.kind == DbErrorKind::DoesNotExist => {
            let _ = conn.rollback();
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// A server member is recognised by the audit stage `databases add` made in
/// it (one added before the stage existed, by its tenant tables): an empty
/// database made in its place after it was lost is not the member, and is
/// refused as a member that cannot be reached, so that nothing is placed,
/// migrated or judged missing there.
pub fn check_is_member(
    conn: &mut dyn Connection,
    name: &str,
    url: &str,
    deployment: &str,
) -> Result<(), DbError> {
    let ours = Identity {
        deployment: deployment.to_string(),
        member: name.to_string(),
    };
    match identity::read(conn)? {
        Some(found) if found == ours => return Ok(()),
        Some(found) => {
            return Err(DbError::new(
                DbErrorKind::Connection,
                format!(
                    "member {name} ({}): this database is {}, not this deployment's member {name}: point the member at its own database (`pathfinder-db databases set-url {name} URL`)",
                    crate::db::redact_url(url),
                    describe(&found, deployment)
                ),
            ));
        }
        None => {}
    }
    if has_stage(conn)?
        || !conn
            .table_names(crate::schema::tenant::TENANT_PREFIX, false)?
            .is_empty()
    {
        // Added before members recorded who they are: recorded now (best
        // effort: a read-only session leaves it to the next).
        let _ = identity::write(conn, &ours);
        return Ok(());
    }
    Err(DbError::new(
        DbErrorKind::Connection,
        format!(
            "member {name} ({}): this database is not the member: it holds neither the audit stage `databases add` made there nor any tenant table (an empty database made in its place?): restore the member's database, or point the member at its copy (`pathfinder-db databases set-url {name} URL`)",
            crate::db::redact_url(url)
        ),
    ))
}

/// How a member identity reads in a message.
pub fn describe(found: &Identity, deployment: &str) -> String {
    if found.deployment == deployment {
        format!("this deployment's member {}", found.member)
    } else {
        format!(
            "member {} of another deployment ({})",
            found.member, found.deployment
        )
    }
}

/// `databases set-capacity`: how many tenants member `name` may hold (None:
/// no limit), audited. A capacity below its tenants is allowed: it places
/// no more there, and `rebalance` moves the excess away. Returns the
/// member's live tenants.
pub fn set_capacity(
    session: &mut Session<'_>,
    name: &str,
    capacity: Option<i64>,
) -> anyhow::Result<i64> {
    let started = std::time::Instant::now();
    if capacity.is_some_and(|c| c < 0) {
        return Err(UsageError::new("a capacity is 0 or more").into());
    }
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    tx.lock(&crate::db::Lock::Placement)?;
    let changed = tx.execute(
        "UPDATE pf_databases SET capacity = ?, updated_at = CURRENT_TIMESTAMP WHERE name = ?",
        &[
            capacity.map(Value::Int).unwrap_or(Value::Null),
            Value::from(name),
        ],
    )?;
    if changed != 1 {
        return Err(UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
        .into());
    }
    let tenants = tenant_counts(&mut *tx)?.get(name).copied().unwrap_or(0);
    audit_change(&mut *tx, "set-capacity", name, started, None)?;
    tx.commit()?;
    let _ = session.system().unlock(&crate::db::Lock::Placement);
    Ok(tenants)
}

/// `databases drain` / `databases open`. False when no such member.
pub fn change_state(
    session: &mut Session<'_>,
    name: &str,
    state: MemberState,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    if !set_state(&mut *tx, name, state)? {
        return Err(UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
        .into());
    }
    let action = match state {
        MemberState::Open => "open",
        MemberState::Draining => "drain",
    };
    audit_change(&mut *tx, action, name, started, None)?;
    tx.commit()?;
    Ok(())
}

/// `databases recount`: sets each member's kept count to what the registry
/// holds, under the placement lock (as version 8 first set them). What
/// `doctor` advises when the two disagree (a trigger disabled, a count
/// edited by hand). Returns the members whose count changed: (name, kept,
/// counted).
pub fn recount(session: &mut Session<'_>) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let started = std::time::Instant::now();
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    tx.lock(&crate::db::Lock::Placement)?;
    // The catalog's own tenants are counted by placement, not kept.
    let kept = kept_counts(&mut *tx)?;
    let counted = tenant_counts(&mut *tx)?;
    let mut changed: Vec<(String, i64, i64)> = kept
        .iter()
        .map(|(name, &k)| (name.clone(), k, counted.get(name).copied().unwrap_or(0)))
        .filter(|(_, k, c)| k != c)
        .collect();
    changed.sort();
    for (name, _, count) in &changed {
        tx.execute(
            "UPDATE pf_databases SET tenants = ? WHERE name = ?",
            &[Value::Int(*count), Value::from(name.as_str())],
        )?;
        audit_change(&mut *tx, "recount", name, started, None)?;
    }
    tx.commit()?;
    let _ = session.system().unlock(&crate::db::Lock::Placement);
    Ok(changed)
}

/// `databases remove`: refused while the registry places a live tenant on
/// it, or while a deprovisioned tenant recorded there still has objects on
/// it (archives kept by `deprovision --archive`). Deprovisioned tenants with
/// nothing left there are recorded on the catalog instead (they hold nothing
/// anywhere; provisioning one again places it afresh), so that no registry
/// row names a member that is gone.
pub fn remove(session: &mut Session<'_>, name: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if name == CATALOG {
        return Err(UsageError::new("the catalog cannot be removed").into());
    }
    let gone: Vec<TenantKey> = session
        .system()
        .query(
            "SELECT tenant_key FROM pf_tenants WHERE database_name = ? AND status = 'deprovisioned'",
            &[Value::from(name)],
        )?
        .iter()
        .map(|r| TenantKey::parse(&r[0].to_text(), session.dialect()))
        .collect::<Result<_, _>>()?;
    if !gone.is_empty() {
        let kept = crate::fleet::moves::keys_with_objects(session, &gone, name).map_err(|e| {
            e.context(format!(
                "member {name}: cannot check what deprovisioned tenants left there"
            ))
        })?;
        if !kept.is_empty() {
            let names: Vec<String> = kept.iter().map(|k| k.prefix() + "*").collect();
            return Err(UsageError::new(format!(
                "member {name} still holds what {} deprovisioned tenant(s) kept ({}): keep the member, or drop those tables (on SQLite their files) by hand first",
                kept.len(),
                names.join(", ")
            ))
            .into());
        }
    }
    let sys = session.system();
    let mut tx = Tx::begin(sys)?;
    tx.lock(&crate::db::Lock::Placement)?;
    let held = tx.query(
        "SELECT COUNT(*) FROM pf_tenants WHERE database_name = ? AND status <> 'deprovisioned'",
        &[Value::from(name)],
    )?;
    let held = held.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
    if held > 0 {
        return Err(UsageError::new(format!(
            "member {name} still holds {held} tenant(s): drain it (`pathfinder-db databases drain {name}`) and move them away (`pathfinder-db rebalance`) first"
        ))
        .into());
    }
    // Only the tenants checked above move to the catalog: one deprovisioned
    // (with its archives) since then still names the member, and stops this.
    for key in &gone {
        tx.execute(
            "UPDATE pf_tenants SET database_name = NULL, updated_at = CURRENT_TIMESTAMP \
             WHERE database_name = ? AND status = 'deprovisioned' AND tenant_key = ?",
            &[Value::from(name), Value::from(key.as_str())],
        )?;
    }
    let left = tx.query(
        "SELECT COUNT(*) FROM pf_tenants WHERE database_name = ?",
        &[Value::from(name)],
    )?;
    if left.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0 {
        return Err(anyhow::anyhow!(
            "member {name}: a tenant on it was deprovisioned while it was being removed: run `pathfinder-db databases remove {name}` again"
        ));
    }
    let url = get(&mut *tx, name)?.and_then(|m| m.url);
    if !delete(&mut *tx, name)? {
        return Err(UsageError::new(format!(
            "no member database named {name}: `pathfinder-db databases list` shows them"
        ))
        .into());
    }
    audit_change(&mut *tx, "remove", name, started, None)?;
    tx.commit()?;
    let _ = session.system().unlock(&crate::db::Lock::Placement);
    if let Some(url) = url {
        drop_stage(session, name, &url);
    }
    Ok(())
}

/// A removed server member's audit stage and identity go (the stage's rows
/// to the catalog's log first), a SQLite member folder's mark too, so that
/// it can be added again. Best effort: one that cannot be reached keeps
/// them, and `databases add` says to drop them.
fn drop_stage(session: &mut Session<'_>, name: &str, url: &str) {
    let db = session.database();
    if db.dialect() == crate::db::dialect::Dialect::Sqlite {
        let marker = crate::db::sqlite::member_folder(url).join(crate::db::sqlite::MEMBER_MARKER);
        let _ = std::fs::remove_file(marker);
        return;
    }
    let Ok(mut conn) = db.connect_member(name, url) else {
        return;
    };
    if crate::catalog::audit::flush_staged(conn.as_mut(), session.system()).is_ok() {
        let stage = crate::catalog::audit::STAGE;
        let _ = conn.execute(&format!("DROP TABLE {stage}"), &[]);
        identity::forget(conn.as_mut());
    }
}

/// `databases list`: every member with its tenants, and for the others than
/// the catalog whether it answers and the bytes its tenants' tables take.
pub fn report(session: &mut Session<'_>) -> anyhow::Result<Vec<MemberReport>> {
    let sys = session.system();
    let all = list(sys)?;
    let counts = tenant_counts(sys)?;
    let db = session.database();
    let mut out = Vec::new();
    for member in all {
        let tenants = counts.get(&member.name).copied().unwrap_or(0);
        let probe: Result<u64, DbError> = match (&member.url, db.dialect()) {
            (None, crate::db::dialect::Dialect::Sqlite) => match db.sqlite_paths() {
                Some((_, tenants)) if tenants.exists() => folder_bytes(tenants),
                _ => Ok(0),
            },
            // Tenant tables are pf_user_<key>_*; pf_user_sessions is the
            // catalog's own.
            (None, _) => {
                let sys = session.system();
                sys.table_bytes("pf_user_").and_then(|all| {
                    sys.table_bytes("pf_user_sessions")
                        .map(|own| all.saturating_sub(own))
                })
            }
            (Some(url), crate::db::dialect::Dialect::Sqlite) => {
                folder_bytes(&crate::db::sqlite::member_folder(url))
            }
            (Some(url), _) => db
                .connect_member(&member.name, url)
                .and_then(|mut c| c.table_bytes("pf_user_")),
        };
        let (bytes, reachable, error) = match probe {
            Ok(b) => (Some(b), true, None),
            Err(e) => (None, false, Some(e.message)),
        };
        out.push(MemberReport {
            member,
            tenants,
            bytes,
            reachable,
            error,
        });
    }
    Ok(out)
}

/// The bytes of the tenant files in a SQLite member's folder.
fn folder_bytes(folder: &std::path::Path) -> Result<u64, DbError> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        DbError::new(
            DbErrorKind::Connection,
            format!("{}: {e}", folder.display()),
        )
    })?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum())
}

/// SQLite: the folders holding tenant files, by member name: the catalog's
/// own tenants folder, then each member's (empty on server databases).
/// `doctor` and `adopt --scan` look in all of them for files no registry row
/// owns.
pub fn sqlite_folders(session: &mut Session<'_>) -> Result<Vec<(String, PathBuf)>, DbError> {
    let Some((_, own)) = session.database().sqlite_paths() else {
        return Ok(Vec::new());
    };
    let mut folders = vec![(CATALOG.to_string(), own.to_path_buf())];
    folders.extend(
        remote(session.system())?
            .into_iter()
            .map(|(name, url)| (name, crate::db::sqlite::member_folder(&url))),
    );
    Ok(folders)
}

/// The tenant files in a SQLite folder, by name: (the key its name gives,
/// path) for every `<key>.db` (not the `-wal`/`-shm` companions, lock files
/// or a move's `.moving` copy). A folder not made yet holds none.
pub fn tenant_files(folder: &std::path::Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    files_ending(folder, ".db")
}

/// The copies a move writes in a SQLite folder before they are complete
/// (`<key>.db.moving`), by key: left behind by a move that stopped.
pub fn moving_copies(folder: &std::path::Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    files_ending(folder, crate::fleet::moves::MOVING_SUFFIX)
}

/// The files of `folder` whose name ends in `suffix`, by the rest of the name.
fn files_ending(folder: &std::path::Path, suffix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let key = name.strip_suffix(suffix)?.to_string();
            Some((key, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_its_member_once() {
        let refused = "member pg3 (postgres://u@h/db): connection refused";
        assert_eq!(naming_member("pg3", refused), refused);
        assert_eq!(
            naming_member("pg3", "relation does not exist"),
            "member pg3: relation does not exist"
        );
        // pg3 is not pg30.
        assert_eq!(
            naming_member("pg3", "member pg30 (x): refused"),
            "member pg3: member pg30 (x): refused"
        );
        assert!(names_member(
            "d2",
            "member d2 cannot be reached: its folder /x is missing"
        ));
    }
}
