//! Users' encryption keys in `pf_encryption_keys`: created when a user is
//! provisioned (or later by `keys ensure`), re-wrapped under a new master key by
//! `keys rotate`, opened by `keys verify`, counted by `keys status`, and
//! deleted when a user is deprovisioned without archive or export
//! (crypto-shredding: copies of their encrypted fields in backups stay unreadable).
//!
//! The wrapping itself is in [`crate::security::crypto`]. Nothing here ever prints, logs
//! or audits key material: only master key ids, user ids and usernames.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::catalog::audit::{self, AuditEntry};
use crate::catalog::registry::{self, Status};
use crate::config::{Config, MasterKeySource};
use crate::db::dialect::Dialect;
use crate::db::{Connection, Database, DbError, Lock, Row, Session, Value};
use crate::error::{PartialFailure, UsageError};
use crate::schema::tenant::Username;
use crate::security::crypto::{self, DataKey, Keyring, MasterKey, MasterKeyId};

/// What a command says when it needs a master key and has none.
pub const MASTER_KEY_HINT: &str = "set PATHFINDER_MASTER_KEY to the base64 text of a 32-byte key, or pass --master-key-file FILE (or set master_key_file in the configuration); `pathfinder-db keys new-master-key --out FILE` creates one";

/// The audit log's `request_path` for every key command.
const AUDIT_COMMAND: &str = "keys";

// ---------------------------------------------------------------------------
// Master keys: where they come from.

/// Reads a master key file: one line of base64. Refused when anyone but the
/// owner may read or write it (like ssh's private keys), or when it is not a
/// regular file.
pub fn read_master_key_file(path: &Path) -> Result<MasterKey, UsageError> {
    let shown = path.display();
    let text = crate::config::read_private_file(path, "master key file")?;
    if text.trim().lines().count() > 1 {
        return Err(UsageError::new(format!(
            "master key file {shown} holds more than one line: it must hold the base64 text of one 32-byte key"
        )));
    }
    MasterKey::from_base64(&text).map_err(|e| {
        UsageError::new(format!(
            "master key file {shown} {e}: it must hold the base64 text of one 32-byte key (`pathfinder-db keys new-master-key --out FILE` creates one)"
        ))
    })
}

/// The master key from `source`.
pub fn load_master_key(source: &MasterKeySource) -> Result<MasterKey, UsageError> {
    match source {
        MasterKeySource::File(path) => read_master_key_file(path),
        MasterKeySource::Env => {
            let text = Zeroizing::new(std::env::var("PATHFINDER_MASTER_KEY").unwrap_or_default());
            MasterKey::from_base64(&text).map_err(|e| {
                UsageError::new(format!(
                    "PATHFINDER_MASTER_KEY {e}: it must be the base64 text of a 32-byte key"
                ))
            })
        }
    }
}

/// The configured master key, if one is configured.
pub fn configured_master_key(config: &Config) -> Result<Option<MasterKey>, UsageError> {
    config.master_key.as_ref().map(load_master_key).transpose()
}

/// The configured master key, or a usage error naming what to set.
pub fn require_master_key(config: &Config, command: &str) -> Result<MasterKey, UsageError> {
    configured_master_key(config)?.ok_or_else(|| {
        UsageError::new(format!(
            "`{command}` needs the master key: {MASTER_KEY_HINT}"
        ))
    })
}

/// Writes a fresh master key to `path` (mode 0600, never over an existing
/// file) and returns its id. The key is written and synced to a temporary file
/// beside `path` first, then hard-linked to `path` (which fails if it exists),
/// so `path` is either absent or a complete key, even after a crash.
pub fn write_new_master_key(path: &Path) -> anyhow::Result<MasterKeyId> {
    let exists = || {
        anyhow::Error::new(UsageError::new(format!(
            "{} exists already: a key file is never overwritten; choose another path",
            path.display()
        )))
    };
    if path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let key = MasterKey::generate()?;
    let name = path
        .file_name()
        .ok_or_else(|| UsageError::new(format!("{} names no file", path.display())))?;
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        let mut line = key.to_base64();
        line.push('\n');
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temp, path)
    })();
    let _ = std::fs::remove_file(&temp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => anyhow::bail!("cannot write the key file {}: {e}", path.display()),
    }
    // The new name is durable once its directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(key.id().clone())
}

// ---------------------------------------------------------------------------
// Helpers.

/// The current UTC time as the dialect writes it into a TIMESTAMP column.
fn utc_now(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Oracle => "SYS_EXTRACT_UTC(SYSTIMESTAMP)",
        Dialect::Postgres => "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')",
        Dialect::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    }
}

/// `LIMIT n` in the dialect's words, after ORDER BY.
fn first_rows(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Oracle => format!("FETCH FIRST {n} ROWS ONLY"),
        Dialect::Postgres | Dialect::Sqlite => format!("LIMIT {n}"),
    }
}

/// A UTC timestamp as read from the database (`2024-05-01 12:00:00.5`) in
/// ISO 8601 (`2024-05-01T12:00:00.5Z`).
fn iso_utc(value: &Value) -> Option<String> {
    if value.is_null() {
        return None;
    }
    let text = value.to_text();
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut iso = text.replacen(' ', "T", 1);
    if !(iso.ends_with('Z') || iso.get(10..).is_some_and(|t| t.contains('+'))) {
        iso.push('Z');
    }
    Some(iso)
}

fn opt_text(value: &Value) -> Option<String> {
    (!value.is_null()).then(|| value.to_text())
}

fn audit_key(
    conn: &mut dyn Connection,
    action: &str,
    entity_id: &str,
    user_id: Option<&str>,
    started: Instant,
    error: Option<&str>,
) -> Result<(), DbError> {
    let mut entry = AuditEntry::new(action, "encryption_key", entity_id, AUDIT_COMMAND);
    entry.user_id = user_id.map(str::to_string);
    entry.started = started;
    entry.error = error.map(str::to_string);
    audit::write(conn, &entry)
}

// ---------------------------------------------------------------------------
// Creating and deleting a user's key (the lifecycle hooks).

/// What happened to a user's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCreation {
    /// A new data key was created and stored wrapped by this master key.
    Created { master_key_id: MasterKeyId },
    /// The user had a key already; it was left alone.
    Exists,
    /// The application has not created the user's `pf_users` row yet.
    NoUserRow,
    /// No master key was configured.
    NoMasterKey,
}

/// Creates the key row of `user_id` unless it has one, with its audit row.
/// Runs in the caller's transaction; the caller serializes per user.
fn create_key_row(
    conn: &mut dyn Connection,
    master: &MasterKey,
    username: &str,
    user_id: &str,
) -> anyhow::Result<KeyCreation> {
    let started = Instant::now();
    let existing = conn.query(
        "SELECT id FROM pf_encryption_keys WHERE user_id = ?",
        &[Value::Text(user_id.into())],
    )?;
    if !existing.is_empty() {
        return Ok(KeyCreation::Exists);
    }
    let wrapped = {
        let data_key = DataKey::generate()?;
        crypto::wrap(master, user_id, &data_key)?
    };
    let dialect = conn.dialect();
    conn.execute(
        &format!(
            "INSERT INTO pf_encryption_keys (id, user_id, key_encrypted, key_salt, algorithm, \
             rotation_count, created_at, master_key_id) VALUES (?, ?, ?, ?, ?, 0, {}, ?)",
            utc_now(dialect)
        ),
        &[
            Value::Text(uuid::Uuid::new_v4().to_string()),
            Value::Text(user_id.into()),
            Value::Text(wrapped.key_encrypted),
            Value::Text(wrapped.key_salt),
            Value::Text(crypto::ALGORITHM.into()),
            Value::Text(wrapped.master_key_id.as_str().into()),
        ],
    )?;
    audit_key(conn, "key.create", username, Some(user_id), started, None)?;
    Ok(KeyCreation::Created {
        master_key_id: wrapped.master_key_id,
    })
}

/// Provisioning hook: creates the user's key when the user has a `pf_users`
/// row and a master key is configured. Runs inside provisioning's transaction,
/// which holds the tenant's lock.
pub fn create_on_provision(
    conn: &mut dyn Connection,
    username: &str,
    user_id: Option<&str>,
    master: Option<&MasterKey>,
) -> anyhow::Result<KeyCreation> {
    let Some(user_id) = user_id else {
        return Ok(KeyCreation::NoUserRow);
    };
    let Some(master) = master else {
        return Ok(KeyCreation::NoMasterKey);
    };
    create_key_row(conn, master, username, user_id)
}

/// Deprovisioning hook: deletes the user's key row (found by the registry's
/// user id and by username) and audits it. Runs in the transaction that marks
/// the tenant deprovisioned, after its tables are gone. Returns the rows deleted.
pub fn shred_on_deprovision(
    conn: &mut dyn Connection,
    username: &str,
    user_id: Option<&str>,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    // The registry's id is the tenant's user. The application may rename its
    // users (another may carry this name now), so the name is asked only for
    // a tenant registered without an id, and never for an id another tenant
    // of the registry holds: another user's key must never go.
    let ids: Vec<String> = match user_id {
        Some(id) => vec![id.to_string()],
        None => match registry::user_id_of(conn, username)? {
            Some(id) if !id_of_another_tenant(conn, &id, username)? => vec![id],
            _ => Vec::new(),
        },
    };
    let mut deleted = 0;
    for id in &ids {
        deleted += conn.execute(
            "DELETE FROM pf_encryption_keys WHERE user_id = ?",
            &[Value::Text(id.clone())],
        )?;
    }
    if deleted > 0 {
        audit_key(
            conn,
            "key.shred",
            username,
            ids.first().map(String::as_str),
            started,
            None,
        )?;
    }
    Ok(deleted)
}

/// Whether a tenant other than `username`'s is registered with user id `id`.
fn id_of_another_tenant(
    conn: &mut dyn Connection,
    id: &str,
    username: &str,
) -> anyhow::Result<bool> {
    let rows = conn.query(
        "SELECT COUNT(*) FROM pf_tenants WHERE user_id = ? AND username <> ?",
        &[
            Value::Text(id.to_string()),
            Value::Text(username.to_string()),
        ],
    )?;
    Ok(rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0)
}

/// Key changes whose bytes no erasure has removed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingErasure {
    /// Audit rows of deletions (`key.shred`) and rotation batches (`key.rotate`).
    pub count: i64,
    /// When the oldest of them was written (UTC, as stored).
    pub since: String,
}

/// Keys deleted (`deprovision`, `keys shred`) or re-wrapped (`keys rotate`)
/// after the last erasure began, so perhaps still in the database's files;
/// None when there are none. Each `key.erase` row records in `covers` where
/// the audit log ended when that erasure began ([`audit_position`]): a key
/// change written by then was committed before the erasure, which waited for
/// it; one written later may have missed it. Read through the audit log's
/// indexes (the last erasure by action, the changes since by position), so
/// the cost does not grow with the history. A key deleted by hand, without
/// pathfinder-db, leaves no audit row and is not seen. Only the tool's own
/// erasure rows count (no user's, which the application may write, and none
/// stamped in the future): a forged one must not hide a pending erasure.
pub fn pending_erasure(sys: &mut dyn Connection) -> Result<Option<PendingErasure>, DbError> {
    let dialect = sys.dialect();
    let (position, bound) = audit_order(dialect);
    let last = sys.query(
        &format!(
            "SELECT details, {position} FROM pf_audit_log WHERE action = ? AND user_id IS NULL AND created_at <= {} ORDER BY {position} DESC {}",
            dialect.now_with_fraction(),
            first_rows(dialect, 1)
        ),
        &[Value::Text("key.erase".into())],
    )?;
    let covered = last.into_iter().next().and_then(|row| {
        let recorded = serde_json::from_str::<serde_json::Value>(&row[0].to_text())
            .ok()
            .and_then(|d| d.get("covers").cloned());
        match recorded {
            // The audit log was empty when it began: every change came after.
            Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_i64().map(Value::Int),
            Some(serde_json::Value::String(s)) => Some(Value::Text(s)),
            // Written before erasures recorded it: the row's own position.
            _ => row.into_iter().nth(1).filter(|v| *v != Value::Null),
        }
    });
    let mut sql =
        "SELECT COUNT(*), MIN(created_at) FROM pf_audit_log WHERE action IN (?, ?)".to_string();
    let mut binds = vec![
        Value::Text("key.shred".into()),
        Value::Text("key.rotate".into()),
    ];
    if let Some(covered) = covered {
        sql.push_str(&format!(" AND {position} > {bound}"));
        binds.push(covered);
    }
    let row = sys
        .query(&sql, &binds)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let count = row.first().and_then(|v| v.as_i64()).unwrap_or(0);
    Ok((count > 0).then(|| PendingErasure {
        count,
        since: row.get(1).map(|v| v.to_text()).unwrap_or_default(),
    }))
}

/// The order audit rows were written in, and the placeholder for a position
/// in it: by time where times have fractions (transactions one after the
/// other are stamped in order); on SQLite, whose stamps are whole seconds,
/// by rowid.
fn audit_order(dialect: Dialect) -> (&'static str, &'static str) {
    match dialect {
        Dialect::Sqlite => ("rowid", "?"),
        _ => ("created_at", dialect.timestamp_bind()),
    }
}

/// Where the audit log ends now, in [`audit_order`]: a number (SQLite), a
/// time as text, or null when it is empty (for `covers` in `details`).
fn audit_position(sys: &mut dyn Connection) -> Result<serde_json::Value, DbError> {
    let (position, _) = audit_order(sys.dialect());
    // A row stamped in the future (the application may write one) is not
    // where the log ends: taken as such, it would cover every later change.
    let rows = sys.query(
        &format!(
            "SELECT MAX({position}) FROM pf_audit_log WHERE created_at <= {}",
            sys.dialect().now_with_fraction()
        ),
        &[],
    )?;
    Ok(
        match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
            None | Some(Value::Null) => serde_json::Value::Null,
            Some(Value::Int(n)) => n.into(),
            Some(v) => v.to_text().into(),
        },
    )
}

/// What [`erase_deleted_keys`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    /// What the backend did; None where it offers nothing beyond the commit (Oracle).
    pub erased: Option<String>,
}

/// Erases the bytes that deleted and re-wrapped keys left in the database's
/// files (see [`Connection::erase_freed`]), after the deletes committed, and
/// audits it. Called by `deprovision`, `keys shred` and `keys rotate` once
/// their changes are committed, and by `keys erase` (the way forward when
/// that last step failed or the run was killed before it).
pub fn erase_deleted_keys(db: &Database) -> anyhow::Result<Erasure> {
    let started = Instant::now();
    let mut session = db.connect()?;
    let sys = session.system();
    let covers = audit_position(sys)?;
    let erased = sys.erase_freed("pf_encryption_keys").map_err(|e| {
        anyhow::Error::new(e).context(
            "the deleted or replaced key rows are gone from the table, but their bytes may still be in the database's files: run `pathfinder-db keys erase` (it only erases)",
        )
    })?;
    let what = erased
        .as_deref()
        .unwrap_or("nothing beyond the commit (the backend offers no erasure)");
    let mut entry = AuditEntry::new(
        "key.erase",
        "encryption_key",
        "pf_encryption_keys",
        AUDIT_COMMAND,
    );
    entry.started = started;
    let details = serde_json::json!({ "erased": what, "covers": covers }).to_string();
    let mut tx = crate::db::Tx::begin(sys)?;
    audit::write_details(&mut *tx, &entry, Some(&details))?;
    tx.commit()?;
    Ok(Erasure { erased })
}

/// `keys shred`: deletes the keys of deprovisioned users (those deprovisioned
/// with `--archive` or `--export` kept theirs). A user whose tenant is not
/// deprovisioned is refused: their data still needs the key. Returns, per
/// user, how many key rows were deleted.
pub fn shred_deprovisioned(
    session: &mut Session<'_>,
    users: &[Username],
) -> anyhow::Result<Vec<(String, u64)>> {
    let sys = session.system();
    let mut checked = Vec::new();
    for user in users {
        let record = registry::get(sys, user.as_str())?;
        match record.as_ref().map(|r| r.status) {
            Some(Status::Deprovisioned) => checked.push(record),
            Some(status) => {
                return Err(UsageError::new(format!(
                    "{user} is {status}: its data still needs its key; deprovision it first"
                ))
                .into());
            }
            None => {
                return Err(UsageError::new(format!(
                    "no tenant named {user}: `pathfinder-db tenants --all` lists them"
                ))
                .into());
            }
        }
    }
    let mut out = Vec::new();
    for (user, record) in users.iter().zip(checked) {
        let lock = Lock::Tenant(user.as_str());
        lock_before_begin(sys, &lock)?;
        let result = sys.lock(&lock).map_err(anyhow::Error::from).and_then(|()| {
            shred_on_deprovision(
                sys,
                user.as_str(),
                record.and_then(|r| r.user_id).as_deref(),
            )
        });
        let result = match result {
            Ok(n) => sys.commit().map(|()| n).map_err(anyhow::Error::from),
            Err(e) => {
                let _ = sys.rollback();
                Err(e)
            }
        };
        let _ = sys.unlock(&lock);
        out.push((user.as_str().to_string(), result?));
    }
    Ok(out)
}

/// For each username: None when it has no `pf_users` row, else whether it has
/// a key. (For the notes `provision` prints.)
pub fn key_presence(
    conn: &mut dyn Connection,
    usernames: &[&str],
) -> Result<Vec<(String, Option<bool>)>, DbError> {
    let mut found = std::collections::HashMap::new();
    for chunk in usernames.chunks(200) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let rows = conn.query(
            &format!(
                "SELECT u.username, CASE WHEN EXISTS (SELECT 1 FROM pf_encryption_keys k \
                 WHERE k.user_id = u.id) THEN 1 ELSE 0 END FROM pf_users u WHERE u.username IN ({marks})"
            ),
            &chunk
                .iter()
                .map(|u| Value::Text((*u).into()))
                .collect::<Vec<_>>(),
        )?;
        for r in rows {
            found.insert(r[0].to_text(), r[1].as_i64() == Some(1));
        }
    }
    Ok(usernames
        .iter()
        .map(|u| (u.to_string(), found.get(*u).copied()))
        .collect())
}

// ---------------------------------------------------------------------------
// keys ensure

/// A user `keys ensure` looks at, and what became of its key.
#[derive(Debug, Serialize)]
pub struct EnsureResult {
    pub username: String,
    #[serde(flatten)]
    pub outcome: EnsureOutcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EnsureOutcome {
    Created { master_key_id: MasterKeyId },
    Exists,
    NoUserRow,
    Failed { error: String },
}

/// The users `keys ensure` should look at: the named ones (each must be a
/// tenant that is not deprovisioned), or with `all` every live tenant without
/// a key.
pub fn ensure_targets(
    conn: &mut dyn Connection,
    wanted: &[Username],
    all: bool,
) -> anyhow::Result<Vec<String>> {
    if all {
        let rows = conn.query(
            "SELECT t.username FROM pf_tenants t \
             WHERE t.status NOT IN ('deprovisioning', 'deprovisioned') \
             AND NOT EXISTS (SELECT 1 FROM pf_users u JOIN pf_encryption_keys k ON k.user_id = u.id \
             WHERE u.username = t.username) ORDER BY t.username",
            &[],
        )?;
        return Ok(rows.iter().map(|r| r[0].to_text()).collect());
    }
    let mut out = Vec::new();
    for user in wanted {
        match registry::get(conn, user.as_str())? {
            None => {
                return Err(UsageError::new(format!(
                    "no tenant named {user}: `pathfinder-db tenants` lists them"
                ))
                .into());
            }
            // The import creates the key when it completes.
            Some(r) if r.status == Status::Importing => {
                return Err(UsageError::new(format!(
                    "{user} is being imported: its key is created when the import completes"
                ))
                .into());
            }
            Some(r) if matches!(r.status, Status::Deprovisioning | Status::Deprovisioned) => {
                return Err(UsageError::new(format!(
                    "{user} is {}: provision it again before creating its key",
                    r.status
                ))
                .into());
            }
            Some(_) => out.push(user.as_str().to_string()),
        }
    }
    Ok(out)
}

/// Waits for the tenant's lock, then begins a transaction (the caller takes
/// the lock again inside it, where PostgreSQL's lasts until the commit). On
/// SQLite and Oracle the lock outlives transactions, and waiting for it
/// inside one would hold SQLite's write lock, which the lock's holder may be
/// waiting for.
fn lock_before_begin(sys: &mut dyn Connection, lock: &Lock<'_>) -> Result<(), DbError> {
    sys.lock(lock)?;
    if let Err(e) = sys.begin() {
        let _ = sys.unlock(lock);
        return Err(e);
    }
    Ok(())
}

/// Creates `username`'s key if it has a `pf_users` row and no key yet, in its
/// own transaction under the tenant's lock (so it never races provisioning).
pub fn ensure_one(
    session: &mut Session<'_>,
    master: &MasterKey,
    username: &str,
) -> anyhow::Result<KeyCreation> {
    let sys = session.system();
    let lock = Lock::Tenant(username);
    lock_before_begin(sys, &lock)?;
    let result = ensure_locked(sys, &lock, master, username);
    let result = match result {
        Ok(outcome) => sys.commit().map(|()| outcome).map_err(Into::into),
        Err(e) => {
            let _ = sys.rollback();
            Err(e)
        }
    };
    let _ = sys.unlock(&lock);
    result
}

fn ensure_locked(
    sys: &mut dyn Connection,
    lock: &Lock<'_>,
    master: &MasterKey,
    username: &str,
) -> anyhow::Result<KeyCreation> {
    sys.lock(lock)?;
    match registry::user_id_of(sys, username)? {
        None => Ok(KeyCreation::NoUserRow),
        Some(user_id) => create_key_row(sys, master, username, &user_id),
    }
}

// ---------------------------------------------------------------------------
// keys status

#[derive(Debug, Clone, Serialize)]
pub struct MasterKeyCount {
    /// The master key the stored text names. None: text in no format this
    /// build reads (not written by pathfinder-db, or a later version).
    pub master_key_id: Option<String>,
    pub keys: i64,
    pub never_rotated: i64,
    pub oldest_last_rotated: Option<String>,
}

/// The characters of a stored key that name its format and master key.
const HEADER_LEN: usize = crypto::PREFIX.len() + 2 * crypto::MASTER_KEY_ID_LEN;

/// The condition on a `pf_encryption_keys` row that its master_key_id
/// column is not the id its v1 stored text names.
fn column_mismatch_sql() -> String {
    format!(
        "key_encrypted LIKE '{prefix}%' AND (master_key_id IS NULL OR master_key_id <> SUBSTR(key_encrypted, {at}, {len}))",
        prefix = crypto::PREFIX,
        at = crypto::PREFIX.len() + 1,
        len = 2 * crypto::MASTER_KEY_ID_LEN,
    )
}

/// Keys per stored header (format and master key id), with the never rotated,
/// the oldest rotation and the rows whose column disagrees.
fn status_sql() -> String {
    format!(
        "SELECT SUBSTR(key_encrypted, 1, {HEADER_LEN}), COUNT(*), \
         SUM(CASE WHEN last_rotated IS NULL THEN 1 ELSE 0 END), MIN(last_rotated), \
         SUM(CASE WHEN {} THEN 1 ELSE 0 END) \
         FROM pf_encryption_keys GROUP BY SUBSTR(key_encrypted, 1, {HEADER_LEN})",
        column_mismatch_sql()
    )
}

/// Keys per stored format version (`v1` for `pathfinder:v1:...`; `unknown`
/// for text in no pathfinder format): a reader may drop a version once no
/// key is left in it.
#[derive(Debug, Clone, Serialize)]
pub struct FormatCount {
    pub format: String,
    pub keys: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlgorithmCount {
    pub algorithm: Option<String>,
    pub keys: i64,
}

/// Usernames with a count: the list stops at the limit, the count does not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserList {
    pub count: i64,
    pub usernames: Vec<String>,
}

/// The key inventory: what says when an old master key can be retired.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub keys: i64,
    pub by_master_key: Vec<MasterKeyCount>,
    pub by_format: Vec<FormatCount>,
    pub by_algorithm: Vec<AlgorithmCount>,
    /// Keys whose master_key_id column is not the id in their stored text
    /// (damage or a hand edit): `keys verify` lists them, `keys rotate`
    /// refuses to start while there are any.
    pub column_mismatch: i64,
    pub never_rotated: i64,
    pub oldest_last_rotated: Option<String>,
    /// Live tenants whose `pf_users` row has no key (`keys ensure` creates them).
    pub without_key: UserList,
    /// Live tenants without a `pf_users` row (no key can be made for them yet).
    pub without_user_row: UserList,
}

fn user_list(rows: Vec<Row>, limit: usize) -> UserList {
    UserList {
        count: rows.len() as i64,
        usernames: rows.iter().take(limit).map(|r| r[0].to_text()).collect(),
    }
}

/// Counts keys per master key and algorithm (grouped queries on the indexed
/// column) and lists live tenants without a key.
pub fn status(conn: &mut dyn Connection, list_limit: usize) -> Result<KeyStatus, DbError> {
    // Counted by what the stored text says (format and master key id are its
    // first 30 characters, `pathfinder:v1:` and 16 hex digits): the text is
    // authenticated, the master_key_id column is an index that can disagree.
    let mut by_master_key: Vec<MasterKeyCount> = Vec::new();
    let mut by_format: Vec<FormatCount> = Vec::new();
    let mut column_mismatch = 0;
    for r in conn.query(&status_sql(), &[])? {
        let header = r[0].to_text();
        let format = crypto::format_version(&header).unwrap_or("unknown");
        let id = crypto::stored_master_key_id_prefix(&header).map(|id| id.to_string());
        let keys = r[1].as_i64().unwrap_or(0);
        let oldest = iso_utc(&r[3]);
        column_mismatch += r[4].as_i64().unwrap_or(0);
        match by_format.iter_mut().find(|f| f.format == format) {
            Some(f) => f.keys += keys,
            None => by_format.push(FormatCount {
                format: format.to_string(),
                keys,
            }),
        }
        match by_master_key.iter_mut().find(|m| m.master_key_id == id) {
            Some(m) => {
                m.keys += keys;
                m.never_rotated += r[2].as_i64().unwrap_or(0);
                m.oldest_last_rotated = [m.oldest_last_rotated.take(), oldest]
                    .into_iter()
                    .flatten()
                    .min();
            }
            None => by_master_key.push(MasterKeyCount {
                master_key_id: id,
                keys,
                never_rotated: r[2].as_i64().unwrap_or(0),
                oldest_last_rotated: oldest,
            }),
        }
    }
    by_master_key.sort_by(|a, b| a.master_key_id.cmp(&b.master_key_id));
    by_format.sort_by(|a, b| a.format.cmp(&b.format));
    let by_algorithm = conn
        .query(
            "SELECT algorithm, COUNT(*) FROM pf_encryption_keys GROUP BY algorithm ORDER BY algorithm",
            &[],
        )?
        .iter()
        .map(|r| AlgorithmCount {
            algorithm: opt_text(&r[0]),
            keys: r[1].as_i64().unwrap_or(0),
        })
        .collect();
    let without_key = conn.query(
        "SELECT t.username FROM pf_tenants t JOIN pf_users u ON u.username = t.username \
         WHERE t.status NOT IN ('deprovisioning', 'deprovisioned') \
         AND NOT EXISTS (SELECT 1 FROM pf_encryption_keys k WHERE k.user_id = u.id) ORDER BY t.username",
        &[],
    )?;
    let without_user_row = conn.query(
        "SELECT t.username FROM pf_tenants t WHERE t.status NOT IN ('deprovisioning', 'deprovisioned') \
         AND NOT EXISTS (SELECT 1 FROM pf_users u WHERE u.username = t.username) ORDER BY t.username",
        &[],
    )?;
    Ok(KeyStatus {
        keys: by_master_key.iter().map(|c| c.keys).sum(),
        never_rotated: by_master_key.iter().map(|c| c.never_rotated).sum(),
        oldest_last_rotated: by_master_key
            .iter()
            .filter_map(|c| c.oldest_last_rotated.clone())
            .min(),
        by_master_key,
        by_format,
        by_algorithm,
        column_mismatch,
        without_key: user_list(without_key, list_limit),
        without_user_row: user_list(without_user_row, list_limit),
    })
}

// ---------------------------------------------------------------------------
// keys verify

/// A key row that did not open, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeyFailure {
    pub username: Option<String>,
    pub user_id: String,
    pub master_key_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub checked: u64,
    pub ok: u64,
    pub failed: Vec<KeyFailure>,
}

/// One row of `pf_encryption_keys` with its user's name.
struct KeyRow {
    id: String,
    user_id: String,
    username: Option<String>,
    key_encrypted: String,
    key_salt: String,
    master_key_id: Option<String>,
}

const KEY_ROW_COLUMNS: &str =
    "k.id, k.user_id, u.username, k.key_encrypted, k.key_salt, k.master_key_id";

impl KeyRow {
    fn from_row(r: &Row) -> KeyRow {
        KeyRow {
            id: r[0].to_text(),
            user_id: r[1].to_text(),
            username: opt_text(&r[2]),
            key_encrypted: r[3].to_text(),
            key_salt: r[4].to_text(),
            master_key_id: opt_text(&r[5]),
        }
    }

    fn failure(&self, reason: impl Into<String>) -> KeyFailure {
        KeyFailure {
            username: self.username.clone(),
            user_id: self.user_id.clone(),
            master_key_id: self.master_key_id.clone(),
            reason: reason.into(),
        }
    }

    /// Opens the data key, also checking that the `master_key_id` column
    /// agrees with the stored text (status and rotation go by the column).
    fn open(&self, keyring: &Keyring) -> Result<DataKey, String> {
        let data_key = keyring
            .unwrap(&self.user_id, &self.key_encrypted, &self.key_salt)
            .map_err(|e| e.to_string())?;
        let named = crypto::stored_master_key_id(&self.key_encrypted).map_err(|e| e.to_string())?;
        if self.master_key_id.as_deref() != Some(named.as_str()) {
            return Err(format!(
                "the key opens, but its master_key_id column says {} while the stored key names {named}: set the column to {named} (the stored text is authenticated, the column is not); `keys rotate` refuses to start until then",
                self.master_key_id.as_deref().unwrap_or("nothing")
            ));
        }
        Ok(data_key)
    }
}

/// Opens every key (or the named users' keys) with the keyring. Reads in
/// pages, so memory stays flat however many users there are.
pub fn verify(
    conn: &mut dyn Connection,
    keyring: &Keyring,
    users: Option<&[Username]>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, DbError> {
    let mut report = VerifyReport::default();
    let check = |row: &KeyRow, report: &mut VerifyReport| {
        report.checked += 1;
        match row.open(keyring) {
            Ok(_data_key) => report.ok += 1,
            Err(reason) => report.failed.push(row.failure(reason)),
        }
    };
    match users {
        Some(users) => {
            for user in users {
                let rows = conn.query(
                    &format!(
                        "SELECT {KEY_ROW_COLUMNS} FROM pf_encryption_keys k JOIN pf_users u ON u.id = k.user_id \
                         WHERE u.username = ?"
                    ),
                    &[Value::Text(user.as_str().into())],
                )?;
                if rows.is_empty() {
                    let has_user = registry::user_id_of(conn, user.as_str())?;
                    report.failed.push(KeyFailure {
                        username: Some(user.as_str().into()),
                        user_id: has_user.clone().unwrap_or_default(),
                        master_key_id: None,
                        reason: if has_user.is_some() {
                            no_key(user.as_str())
                        } else {
                            "has no pf_users row, so no encryption key".into()
                        },
                    });
                    continue;
                }
                for r in &rows {
                    check(&KeyRow::from_row(r), &mut report);
                }
                progress(report.checked);
            }
        }
        None => {
            let page = first_rows(conn.dialect(), 1000);
            let select = format!(
                "SELECT {KEY_ROW_COLUMNS} FROM pf_encryption_keys k LEFT JOIN pf_users u ON u.id = k.user_id"
            );
            let mut after: Option<String> = None;
            loop {
                // Keyset paging; the first page has no lower bound (Oracle reads
                // an empty string as NULL, so '' cannot stand for "before all").
                let rows = match &after {
                    None => conn.query(&format!("{select} ORDER BY k.id {page}"), &[])?,
                    Some(after) => conn.query(
                        &format!("{select} WHERE k.id > ? ORDER BY k.id {page}"),
                        &[Value::Text(after.clone())],
                    )?,
                };
                let Some(last) = rows.last() else { break };
                after = Some(last[0].to_text());
                for r in &rows {
                    check(&KeyRow::from_row(r), &mut report);
                }
                progress(report.checked);
            }
            // A live tenant whose user has no key fails too: its key row may
            // be what a restore lost.
            let without = conn.query(
                "SELECT t.username, u.id FROM pf_tenants t JOIN pf_users u \
                   ON u.id = t.user_id OR (t.user_id IS NULL AND u.username = t.username) \
                 WHERE t.status NOT IN ('deprovisioning', 'deprovisioned') \
                 AND NOT EXISTS (SELECT 1 FROM pf_encryption_keys k WHERE k.user_id = u.id)",
                &[],
            )?;
            for r in &without {
                let user = r[0].to_text();
                report.failed.push(KeyFailure {
                    reason: no_key(&user),
                    username: Some(user),
                    user_id: r[1].to_text(),
                    master_key_id: None,
                });
            }
        }
    }
    report
        .failed
        .sort_by(|a, b| (&a.username, &a.user_id).cmp(&(&b.username, &b.user_id)));
    Ok(report)
}

/// Why a live tenant's user without a key fails `keys verify`, and both ways on.
fn no_key(user: &str) -> String {
    format!(
        "has no encryption key: if it had one (a restore that lost the row), restore that row from a backup; otherwise `pathfinder-db keys ensure {user}` makes one (a new key cannot open what an old one encrypted)"
    )
}

// ---------------------------------------------------------------------------
// keys rotate

#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Keys re-wrapped per transaction.
    pub batch_size: usize,
    /// Connections working in parallel.
    pub jobs: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RotateReport {
    pub new_master_key_id: String,
    /// Keys re-wrapped by this run.
    pub rotated: u64,
    /// Keys that were on the new master key before this run.
    pub already_rotated: u64,
    /// Keys another process changed between our read and our write (left to it).
    pub changed_concurrently: u64,
    /// Rows in no format of ours (no master key recorded): left alone.
    pub unknown_format: u64,
    pub batches: u64,
    pub failed: Vec<KeyFailure>,
}

/// The current master key is not the one the keys are wrapped by. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WrongMasterKey(pub String);

/// Counts of keys per master key id among those not on `new`.
fn pending_by_master_key(
    conn: &mut dyn Connection,
    new: &MasterKeyId,
) -> Result<Vec<(String, u64)>, DbError> {
    Ok(conn
        .query(
            "SELECT master_key_id, COUNT(*) FROM pf_encryption_keys \
             WHERE master_key_id IS NOT NULL AND master_key_id <> ? GROUP BY master_key_id ORDER BY master_key_id",
            &[Value::Text(new.as_str().into())],
        )?
        .iter()
        .map(|r| (r[0].to_text(), r[1].as_i64().unwrap_or(0) as u64))
        .collect())
}

/// How many keys a rotation to `new` would re-wrap (one grouped query).
pub fn pending_count(conn: &mut dyn Connection, new: &MasterKeyId) -> Result<u64, DbError> {
    Ok(pending_by_master_key(conn, new)?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

/// Re-wraps every key not yet on `new` under it, batch by batch, each batch
/// one transaction with its audit row. The data keys themselves never change.
/// Every master key the keys are wrapped by must be in `current`; this is
/// checked before anything is written. Safe to kill at any moment and to run
/// twice at once: each UPDATE is conditional on the value it read.
pub fn rotate(
    db: &Database,
    current: &Keyring,
    new: &MasterKey,
    options: &RotateOptions,
    on_batch: impl Fn(u64) + Sync,
) -> anyhow::Result<RotateReport> {
    let mut report = RotateReport {
        new_master_key_id: new.id().to_string(),
        ..Default::default()
    };
    let pending = {
        let mut session = db.connect()?;
        let sys = session.system();
        let pending = pending_by_master_key(sys, new.id())?;
        let rows = sys.query(
            "SELECT COUNT(*), SUM(CASE WHEN master_key_id IS NULL THEN 1 ELSE 0 END) FROM pf_encryption_keys \
             WHERE master_key_id IS NULL OR master_key_id = ?",
            &[Value::Text(new.id().as_str().into())],
        )?;
        let (both, unknown) = rows
            .first()
            .map(|r| (r[0].as_i64().unwrap_or(0), r[1].as_i64().unwrap_or(0)))
            .unwrap_or((0, 0));
        report.unknown_format = unknown as u64;
        report.already_rotated = (both - unknown) as u64;
        pending
    };
    if pending.is_empty() {
        return Ok(report);
    }
    // Rotation picks rows by the column; a row whose column names another key
    // than its text would be skipped or refused, and its old master key
    // retired while it still needs it.
    {
        let mut session = db.connect()?;
        let rows = session.system().query(
            &format!(
                "SELECT COUNT(*) FROM pf_encryption_keys WHERE {}",
                column_mismatch_sql()
            ),
            &[],
        )?;
        let mismatched = rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        if mismatched > 0 {
            return Err(WrongMasterKey(format!(
                "{mismatched} key(s) have a master_key_id column that is not the master key their stored text names: `pathfinder-db keys verify --all` lists them; set the column to the id in the text (the 16 characters after `{}`), then rotate; nothing was changed",
                crypto::PREFIX
            ))
            .into());
        }
    }
    if current.is_empty() {
        return Err(UsageError::new(format!(
            "{} key(s) are wrapped by master key {} and need the current master key to be re-wrapped: {MASTER_KEY_HINT}",
            pending.iter().map(|(_, n)| n).sum::<u64>(),
            pending[0].0
        ))
        .into());
    }
    // The id is derived from the key, so a wrong current key shows here,
    // before a single row is read or written.
    let unknown: Vec<String> = pending
        .iter()
        .filter(|(id, _)| MasterKeyId::parse(id).is_none_or(|id| current.get(&id).is_none()))
        .map(|(id, n)| format!("{n} key(s) are wrapped by master key {id}"))
        .collect();
    if !unknown.is_empty() {
        let given = current
            .ids()
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(WrongMasterKey(format!(
            "wrong master key: {}, but the master key given is {given}: set PATHFINDER_MASTER_KEY (or --master-key-file) to the key that wraps them; when keys are wrapped by more than one master key (a rotation left unfinished), bring them under one first: run `keys rotate` with each other master key as the master key and the one given here ({given}) as --new-master-key-file, then rotate on (a master key that is lost: only those keys' rows restored from a backup taken before the rotation open again); nothing was changed",
            unknown.join(", ")
        ))
        .into());
    }

    let state = RotationState {
        cursor: Mutex::new(Cursor {
            old_ids: pending.iter().map(|(id, _)| id.clone()).collect(),
            index: 0,
            after: None,
        }),
        stop: AtomicBool::new(false),
        rotated: AtomicU64::new(0),
        changed: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        failed: Mutex::new(Vec::new()),
        error: Mutex::new(None),
    };
    let batch_size = options.batch_size.max(1);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| {
                if let Err(e) = rotation_worker(db, current, new, batch_size, &state, &on_batch) {
                    state.stop.store(true, Ordering::Relaxed);
                    let mut error = state.error.lock().unwrap_or_else(|p| p.into_inner());
                    error.get_or_insert(e);
                }
            });
        }
    });
    report.rotated = state.rotated.load(Ordering::Relaxed);
    report.changed_concurrently = state.changed.load(Ordering::Relaxed);
    report.batches = state.batches.load(Ordering::Relaxed);
    report.failed = state.failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = state.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.context(format!(
            "rotation stopped after {} key(s); run the same command again: it re-wraps only the keys left",
            report.rotated
        )));
    }
    // The old wraps are gone from the table; erase what is left of them in
    // the files (a re-wrap is an update: SQLite overwrote the old row, but
    // its page images are in the write-ahead log; PostgreSQL keeps the old
    // row version until the table is rewritten).
    if report.rotated > 0 {
        erase_deleted_keys(db).map_err(|e| {
            e.context(format!(
                "{} key(s) were re-wrapped under master key {}",
                report.rotated,
                new.id()
            ))
        })?;
    }
    Ok(report)
}

/// Where a rotation is: the old master keys still to go through, and the
/// last key id handed out under the current one.
struct Cursor {
    old_ids: Vec<String>,
    index: usize,
    after: Option<String>,
}

struct RotationState {
    cursor: Mutex<Cursor>,
    stop: AtomicBool,
    rotated: AtomicU64,
    changed: AtomicU64,
    batches: AtomicU64,
    failed: Mutex<Vec<KeyFailure>>,
    error: Mutex<Option<anyhow::Error>>,
}

/// One worker: its own session; takes the next batch of keys not on the new
/// master key (in key id order), re-wraps them in one transaction, repeats.
fn rotation_worker(
    db: &Database,
    current: &Keyring,
    new: &MasterKey,
    batch_size: usize,
    state: &RotationState,
    on_batch: &(impl Fn(u64) + Sync),
) -> anyhow::Result<()> {
    let mut session = db.connect()?;
    let dialect = session.dialect();
    // One old master key at a time, in key id order: the index on
    // (master_key_id, id) serves each batch as a range scan, with no sort.
    let select = "SELECT k.id, k.user_id, k.key_encrypted, k.key_salt, k.master_key_id \
         FROM pf_encryption_keys k WHERE k.master_key_id = ?";
    let order = format!("ORDER BY k.id {}", first_rows(dialect, batch_size));
    let select_first = format!("{select} {order}");
    let select_after = format!("{select} AND k.id > ? {order}");
    let update = format!(
        "UPDATE pf_encryption_keys SET key_encrypted = ?, key_salt = ?, master_key_id = ?, \
         rotation_count = COALESCE(rotation_count, 0) + 1, last_rotated = {} \
         WHERE id = ? AND key_encrypted = ?",
        utc_now(dialect)
    );
    while !state.stop.load(Ordering::Relaxed) {
        let rows = {
            // Reading under the cursor's lock hands each batch to one worker.
            let mut cursor = state.cursor.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let Some(old) = cursor.old_ids.get(cursor.index).cloned() else {
                    break Vec::new();
                };
                let old = Value::Text(old);
                let rows = match cursor.after.take() {
                    None => session.system().query(&select_first, &[old])?,
                    Some(after) => session
                        .system()
                        .query(&select_after, &[old, Value::Text(after)])?,
                };
                match rows.last() {
                    Some(last) => {
                        cursor.after = Some(last[0].to_text());
                        break rows;
                    }
                    None => cursor.index += 1,
                }
            }
        };
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<KeyRow> = rows
            .iter()
            .map(|r| KeyRow {
                id: r[0].to_text(),
                user_id: r[1].to_text(),
                username: None,
                key_encrypted: r[2].to_text(),
                key_salt: r[3].to_text(),
                master_key_id: opt_text(&r[4]),
            })
            .collect();
        rotate_batch(&mut session, current, new, &update, &rows, state)?;
        on_batch(rows.len() as u64);
    }
    Ok(())
}

/// Re-wraps one batch in one transaction, with its audit row. A key that does
/// not open is listed and left as it is; a database error rolls the batch back.
fn rotate_batch(
    session: &mut Session<'_>,
    current: &Keyring,
    new: &MasterKey,
    update: &str,
    rows: &[KeyRow],
    state: &RotationState,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let sys = session.system();
    let mut failed = Vec::new();
    let mut rotated = 0;
    let mut changed = 0;
    sys.begin()?;
    let result = (|| -> anyhow::Result<()> {
        for row in rows {
            let wrapped = match row.open(current) {
                Ok(data_key) => crypto::wrap(new, &row.user_id, &data_key)?,
                Err(reason) => {
                    failed.push(row.failure(reason));
                    continue;
                }
            };
            let n = sys.execute(
                update,
                &[
                    Value::Text(wrapped.key_encrypted),
                    Value::Text(wrapped.key_salt),
                    Value::Text(wrapped.master_key_id.as_str().into()),
                    Value::Text(row.id.clone()),
                    Value::Text(row.key_encrypted.clone()),
                ],
            )?;
            if n == 1 {
                rotated += 1;
            } else {
                changed += 1;
            }
        }
        // Failures are rare: their usernames are looked up one by one.
        for f in failed.iter_mut() {
            f.username = username_of(sys, &f.user_id)?;
        }
        let note = (!failed.is_empty()).then(|| {
            format!(
                "{} key(s) did not open: {}",
                failed.len(),
                failed
                    .iter()
                    .map(|f| f.username.clone().unwrap_or_else(|| f.user_id.clone()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        audit_key(
            sys,
            "key.rotate",
            &format!("{rotated} key(s) to master key {}", new.id()),
            None,
            started,
            note.as_deref(),
        )?;
        Ok(())
    })();
    match result {
        Ok(()) => sys.commit()?,
        Err(e) => {
            let _ = sys.rollback();
            let message = crate::error::one_line(&e);
            let _ = audit_key(
                sys,
                "key.rotate",
                &format!("batch of {} key(s) to master key {}", rows.len(), new.id()),
                None,
                started,
                Some(&message),
            );
            let _ = sys.commit();
            return Err(e);
        }
    }
    state.rotated.fetch_add(rotated, Ordering::Relaxed);
    state.changed.fetch_add(changed, Ordering::Relaxed);
    state.batches.fetch_add(1, Ordering::Relaxed);
    state
        .failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(failed);
    Ok(())
}

/// The username of a `pf_users.id`, if any.
fn username_of(conn: &mut dyn Connection, user_id: &str) -> Result<Option<String>, DbError> {
    let rows = conn.query(
        "SELECT username FROM pf_users WHERE id = ?",
        &[Value::Text(user_id.into())],
    )?;
    Ok(rows.first().map(|r| r[0].to_text()))
}

/// The error a run ends with when some keys failed and others succeeded: exit 3.
pub fn partial_failure(total: usize, failed: &[KeyFailure]) -> PartialFailure {
    let names: Vec<String> = failed
        .iter()
        .map(|f| f.username.clone().unwrap_or_else(|| f.user_id.clone()))
        .collect();
    PartialFailure::new(total, &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inventory's statements parse in every dialect (Oracle has no server
    /// here: this is its check).
    #[test]
    fn status_statements_parse_in_every_dialect() {
        use sqlparser::dialect::{OracleDialect, PostgreSqlDialect, SQLiteDialect};
        use sqlparser::parser::Parser;
        let mismatch = format!(
            "SELECT COUNT(*) FROM pf_encryption_keys WHERE {}",
            column_mismatch_sql()
        );
        for sql in [status_sql(), mismatch] {
            assert!(!sql.trim_end().ends_with(';'), "{sql}");
            for parsed in [
                Parser::parse_sql(&OracleDialect {}, &sql),
                Parser::parse_sql(&PostgreSqlDialect {}, &sql),
                Parser::parse_sql(&SQLiteDialect {}, &sql),
            ] {
                assert_eq!(parsed.unwrap_or_else(|e| panic!("{e}: {sql}")).len(), 1);
            }
        }
        assert!(status_sql().contains("SUBSTR(key_encrypted, 15, 16)"));
    }
}
