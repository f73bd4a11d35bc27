//! SQLite through rusqlite's bundled library: WAL, a busy timeout, foreign keys on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::OnceLock;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ErrorCode, OpenFlags, params_from_iter};

use super::{
    CatalogColumn, CatalogConstraint, CatalogItem, Check, Connection, ConstraintKind, DbError,
    DbErrorKind, Definition, Lock, Open, Row, TableStats, Value,
};
use crate::db::dialect::Dialect;
use crate::error::UsageError;
use crate::schema::render::Statement;
use crate::schema::tenant::TenantKey;

/// `sqlite://pathfinder.db`, `sqlite:///abs/path.db`, `sqlite:file.db`.
pub fn path_of_url(url: &str) -> Result<PathBuf, UsageError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    // SQLite URLs take no options: refuse them by name rather than ignore a
    // misspelled one (its value is never shown: it may be a password).
    if let Some((path, _)) = rest.split_once('?') {
        let unknown = crate::db::redact::unknown_options(url, &[]);
        let named = if unknown.is_empty() {
            "an empty `?`".to_string()
        } else {
            format!("option(s) {} (values are not shown)", unknown.join(", "))
        };
        return Err(UsageError::new(format!(
            "the SQLite URL has {named}, but SQLite URLs take no options: use sqlite://{path}"
        )));
    }
    if rest.is_empty() {
        return Err(UsageError::new(
            "the SQLite URL names no file: use sqlite://pathfinder.db",
        ));
    }
    Ok(PathBuf::from(rest))
}

/// Tenants of `main.db` live in `main.db.tenants/<key>.db`: the folder is named
/// after the whole file name, so `prod.db` and `prod.sqlite` never share one.
pub fn tenant_dir_for(main: &Path) -> PathBuf {
    let name = main
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "pathfinder.db".into());
    main.with_file_name(format!("{name}.tenants"))
}

/// The first release kept tenants of `main.db` in `main.tenants/`.
fn legacy_tenant_dir_for(main: &Path) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "pathfinder".into());
    main.with_file_name(format!("{stem}.tenants"))
}

/// The table in each tenant file that says which registry owns it.
const OWNER_TABLE: &str = "pf_tenant_owner";

/// A SQLite database: the main file (system tables) and the folder of tenant files.
#[derive(Debug)]
pub struct SqliteTarget {
    pub main: PathBuf,
    pub tenant_dir: PathBuf,
    busy_timeout_ms: u64,
    /// `pf_deployment.id` of the main file, read once.
    deployment: OnceLock<String>,
}

/// The folder a SQLite member's stored URL names (`sqlite:///path` or a path).
pub fn member_folder(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url))
}

/// The file `databases add` puts in a SQLite member's folder: an empty
/// folder without it is a mount point whose disk is not mounted, not the
/// member.
pub const MEMBER_MARKER: &str = ".pathfinder-member";

/// What the marker of member `name`'s folder says (with the deployment,
/// when known: a re-run of an add killed before it recorded the member
/// recognises its own mark by it).
pub fn member_marker_text(name: &str, deployment: Option<&str>) -> String {
    match deployment {
        Some(id) => format!("pathfinder-db member {name} of deployment {id}\n"),
        None => format!("pathfinder-db member {name}\n"),
    }
}

/// Marks `folder` as member `name`'s (private, as every file of it).
pub fn mark_member_folder(
    name: &str,
    deployment: Option<&str>,
    folder: &Path,
) -> std::io::Result<()> {
    let path = folder.join(MEMBER_MARKER);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    std::io::Write::write_all(&mut file, member_marker_text(name, deployment).as_bytes())
}

/// Whether SQLite member `name`'s folder is there; missing, the member cannot
/// be reached (a disk not mounted), as a server that is down. So is an empty
/// folder without the member's marker: the mount point of a disk that is
/// not mounted, where a new tenant would land on the wrong disk. (A folder
/// holding files from before the marker existed gets it now.)
pub fn member_folder_present(name: &str, folder: &Path) -> Result<(), DbError> {
    if folder.is_dir() {
        if folder.join(MEMBER_MARKER).exists() {
            return Ok(());
        }
        let empty = std::fs::read_dir(folder)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            let _ = mark_member_folder(name, None, folder);
            return Ok(());
        }
        return Err(DbError::new(
            DbErrorKind::Connection,
            format!(
                "member {name} cannot be reached: its folder {} is empty and not marked as the member's (no {MEMBER_MARKER}): mount its disk, then run the same command again (if the folder is the member's and simply empty, create that file in it)",
                folder.display()
            ),
        ));
    }
    Err(DbError::new(
        DbErrorKind::Connection,
        format!(
            "member {name} cannot be reached: its folder {} is missing: mount its disk (or restore the folder), then run the same command again",
            folder.display()
        ),
    ))
}

impl Clone for SqliteTarget {
    fn clone(&self) -> Self {
        SqliteTarget {
            main: self.main.clone(),
            tenant_dir: self.tenant_dir.clone(),
            busy_timeout_ms: self.busy_timeout_ms,
            deployment: OnceLock::new(),
        }
    }
}

/// Creates `path` empty and readable by its owner only (0600, whatever the
/// umask) when it does not exist, before SQLite opens it: SQLite would make
/// it 0644 less the umask, and gives its `-wal` and `-shm` files the main
/// file's mode. An empty file is an empty database to SQLite.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => set_private(&file, 0o600),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the folder `dir` (and missing parents) readable by its owner
/// only (0700, whatever the umask); an existing one is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.is_dir()
    {
        return keep_private(dir, &meta);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An existing folder of tenant files must be the running user's (its owner
/// could rename, replace or delete every tenant file in it, whatever their
/// modes), and is made private if it is not.
fn keep_private(dir: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = crate::config::running_uid();
        if meta.uid() != me {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the folder {} belongs to user id {}, not to the user running pathfinder-db ({me}), who could then have its tenant files replaced: chown it to this user, or choose another folder",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, meta);
    Ok(())
}

/// Sets exactly `mode` on a file we just created (the umask can only have
/// taken bits away; this also restores the owner's own if it took those).
fn set_private(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (file, mode);
    Ok(())
}

/// Whether this process may write `path` (false when it exists read-only).
fn writable(path: &Path) -> bool {
    match std::fs::OpenOptions::new().append(true).open(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied,
    }
}

fn read_only_error(path: &Path, what: &str) -> DbError {
    DbError::new(
        DbErrorKind::ReadOnly,
        format!(
            "SQLite {}: {what} is read-only for this user: make it writable (chmod u+w) or run as its owner",
            path.display()
        ),
    )
}

impl SqliteTarget {
    pub fn from_url(url: &str, busy_timeout_ms: u64) -> Result<Self, UsageError> {
        let main = path_of_url(url)?;
        Ok(SqliteTarget {
            tenant_dir: tenant_dir_for(&main),
            main,
            busy_timeout_ms,
            deployment: OnceLock::new(),
        })
    }

    /// The same main file, with tenant files in `dir` (a SQLite member).
    pub fn with_tenant_dir(&self, dir: PathBuf) -> Self {
        SqliteTarget {
            main: self.main.clone(),
            tenant_dir: dir,
            busy_timeout_ms: self.busy_timeout_ms,
            deployment: OnceLock::new(),
        }
    }

    pub fn tenant_file(&self, key: &TenantKey) -> PathBuf {
        self.tenant_dir.join(format!("{key}.db"))
    }

    /// Everything that would make a write fail half-way, checked before the first.
    pub fn check_writable(&self) -> Result<(), DbError> {
        let legacy = legacy_tenant_dir_for(&self.main);
        if legacy != self.tenant_dir && legacy.is_dir() && !self.tenant_dir.exists() {
            return Err(DbError::new(
                DbErrorKind::Other,
                format!(
                    "the tenant files of {} are in {}, the folder of an older pathfinder-db: rename it to {} (the folder is now named after the whole file name, so two main files never share one)",
                    self.main.display(),
                    legacy.display(),
                    self.tenant_dir.display()
                ),
            ));
        }
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", self.main.display()));
            if path.exists() && !writable(&path) {
                let what = if suffix.is_empty() {
                    "the file".to_string()
                } else {
                    format!(
                        "{} (left behind while the database was read-only; remove it when no other process uses the database)",
                        path.display()
                    )
                };
                return Err(read_only_error(&self.main, &what));
            }
        }
        Ok(())
    }

    /// The main file. A read-only session never creates it, and opens a file
    /// it may not write as immutable: SQLite would otherwise leave `-shm` and
    /// `-wal` files with the file's read-only mode behind, and later writers
    /// would fail on them even after the file was made writable.
    pub fn open_main(&self, read_only: bool) -> Result<SqliteConnection, DbError> {
        if !read_only {
            let mut conn = SqliteConnection::open(&self.main, self.busy_timeout_ms)?;
            conn.lock_dir = Some(self.tenant_dir.clone());
            // Deleted and updated rows (encryption keys above all) are
            // overwritten with zeros, not left in free pages and free space:
            // deleting a key must erase it. A page split or merge moves rows
            // too, so this holds for every change to the main file.
            conn.conn
                .pragma_update(None, "secure_delete", "ON")
                .map_err(|e| classify(&e, &self.main))?;
            return Ok(conn);
        }
        if !self.main.exists() {
            return Err(DbError::new(
                DbErrorKind::Connection,
                format!("SQLite {}: the file does not exist", self.main.display()),
            ));
        }
        SqliteConnection::open_read_only(&self.main, self.busy_timeout_ms, !writable(&self.main))
    }

    /// `pf_deployment.id`: which registry this is (read once per run).
    pub fn deployment_id(&self, main: &mut dyn Connection) -> Result<String, DbError> {
        if let Some(id) = self.deployment.get() {
            return Ok(id.clone());
        }
        let rows = main.query("SELECT id FROM pf_deployment", &[])?;
        let id = rows.first().map(|r| r[0].to_text()).ok_or_else(|| {
            DbError::other(format!(
                "SQLite {}: pf_deployment is empty: run `pathfinder-db init`",
                self.main.display()
            ))
        })?;
        Ok(self.deployment.get_or_init(|| id).clone())
    }

    /// A tenant's file, checked to belong to this registry. With
    /// [`Open::Existing`] a missing file is None (never created).
    pub fn open_tenant(
        &self,
        key: &TenantKey,
        open: Open,
        owner: &str,
        read_only: bool,
    ) -> Result<Option<SqliteConnection>, DbError> {
        let path = self.tenant_file(key);
        let conn = match open {
            Open::Existing if !path.exists() => return Ok(None),
            Open::Existing if read_only => {
                SqliteConnection::open_read_only(&path, self.busy_timeout_ms, !writable(&path))?
            }
            Open::Existing => SqliteConnection::open_existing(&path, self.busy_timeout_ms)?,
            Open::Create => {
                create_private_dir(&self.tenant_dir).map_err(|e| {
                    DbError::new(
                        DbErrorKind::ReadOnly,
                        format!(
                            "cannot create the tenant folder {}: {e}",
                            self.tenant_dir.display()
                        ),
                    )
                })?;
                SqliteConnection::open(&path, self.busy_timeout_ms)?
            }
        };
        let mut conn = conn;
        conn.check_owner(key, owner, open == Open::Create)?;
        Ok(Some(conn))
    }
}

pub struct SqliteConnection {
    conn: rusqlite::Connection,
    path: PathBuf,
    /// Where tenant lock files live: the tenant folder (the main file's
    /// connection only).
    lock_dir: Option<PathBuf>,
    /// The tenant locks this connection holds: open lock files with an OS
    /// lock on them, which the kernel releases when the process dies.
    locks: HashMap<String, HeldLock>,
}

fn classify(err: &rusqlite::Error, path: &Path) -> DbError {
    let code = err.sqlite_error_code();
    let kind = match code {
        Some(ErrorCode::ReadOnly) => DbErrorKind::ReadOnly,
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => DbErrorKind::Busy,
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => DbErrorKind::Connection,
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => DbErrorKind::Corrupt,
        Some(ErrorCode::ConstraintViolation) if err.to_string().contains("UNIQUE") => {
            DbErrorKind::UniqueViolation
        }
        _ => {
            let text = err.to_string();
            if text.contains("already exists") {
                DbErrorKind::AlreadyExists
            } else if text.contains("no such table") {
                DbErrorKind::DoesNotExist
            } else {
                DbErrorKind::Other
            }
        }
    };
    let hint = match kind {
        DbErrorKind::ReadOnly => {
            ": the file or its directory is read-only; check the permissions or point --database-url at a writable file"
        }
        DbErrorKind::Busy => {
            ": another process holds the write lock; retry, or raise sqlite_busy_timeout_ms"
        }
        DbErrorKind::Connection => {
            ": check that the path is right and the file is a SQLite database"
        }
        DbErrorKind::Corrupt => {
            ": the file is damaged or not a SQLite database; restore it from a backup"
        }
        _ => "",
    };
    if let Some(full) = disk_full(code, path) {
        return DbError::new(kind, format!("SQLite {}: {full}", path.display()));
    }
    DbError::new(kind, format!("SQLite {}: {err}{hint}", path.display()))
}

/// Below this much free space, a write error means the disk is full.
const NEARLY_FULL: u64 = 8 << 20;

/// A write that failed for want of room, said as such: SQLITE_FULL, or a
/// "disk I/O error" on a disk with (almost) no space left, which is how a
/// full disk often shows through the write-ahead log.
fn disk_full(code: Option<ErrorCode>, path: &Path) -> Option<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let free = fs4::available_space(dir).ok();
    let full = match code {
        Some(ErrorCode::DiskFull) => true,
        Some(ErrorCode::SystemIoFailure) => free.is_some_and(|f| f < NEARLY_FULL),
        _ => return None,
    };
    let free_text = free
        .map(|f| format!(" ({f} bytes free)"))
        .unwrap_or_default();
    Some(if full {
        format!(
            "disk full: the disk holding {}{free_text} has no room to write: free space there (or move the database) and run again",
            dir.display()
        )
    } else {
        format!(
            "disk I/O error writing to {}{free_text}: check that the disk is not full or failing (the system log says which), then run again",
            dir.display()
        )
    })
}

fn to_sql_value(v: &Value) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Int(i) => ValueRef::Integer(*i),
        Value::Float(f) => ValueRef::Real(*f),
        Value::Text(s) => ValueRef::Text(s.as_bytes()),
        Value::TextBytes(b) => ValueRef::Text(b),
        Value::Blob(b) => ValueRef::Blob(b),
    })
}

/// Every value exactly as stored: text that is not UTF-8 and BLOBs keep their bytes.
fn from_sql_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Text(s.to_string()),
            Err(_) => Value::TextBytes(t.to_vec()),
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl SqliteConnection {
    /// Opens (creating if missing) a database for reading and writing.
    pub fn open(path: &Path, busy_timeout_ms: u64) -> Result<Self, DbError> {
        Self::open_with(
            path,
            busy_timeout_ms,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
    }

    /// Opens an existing database for reading and writing; never creates one.
    pub fn open_existing(path: &Path, busy_timeout_ms: u64) -> Result<Self, DbError> {
        Self::open_with(path, busy_timeout_ms, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens an existing database read-only. `immutable`: the file cannot
    /// change (we may not write it), so SQLite creates no `-shm`/`-wal`.
    pub fn open_read_only(
        path: &Path,
        busy_timeout_ms: u64,
        immutable: bool,
    ) -> Result<Self, DbError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let target = if immutable {
            PathBuf::from(format!("file:{}?immutable=1", uri_path(path)))
        } else {
            PathBuf::from(format!("file:{}", uri_path(path)))
        };
        let conn =
            rusqlite::Connection::open_with_flags(&target, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| classify(&e, path))?;
        conn.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(|e| classify(&e, path))?;
        Ok(SqliteConnection {
            conn,
            path: path.to_path_buf(),
            lock_dir: None,
            locks: HashMap::new(),
        })
    }

    fn open_with(path: &Path, busy_timeout_ms: u64, flags: OpenFlags) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(DbError::new(
                DbErrorKind::Connection,
                format!(
                    "SQLite {}: the directory {} does not exist; create it or fix --database-url",
                    path.display(),
                    dir.display()
                ),
            ));
        }
        // A new database file is private to its owner from its first byte.
        if flags.contains(OpenFlags::SQLITE_OPEN_CREATE) && path != Path::new(":memory:") {
            create_private_file(path).map_err(|e| {
                DbError::new(
                    DbErrorKind::ReadOnly,
                    format!("SQLite {}: cannot create the file: {e}", path.display()),
                )
            })?;
        }
        let conn =
            rusqlite::Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| classify(&e, path))?;
        conn.busy_timeout(Duration::from_millis(busy_timeout_ms))
            .map_err(|e| classify(&e, path))?;
        // WAL lets readers go on while one process writes; NORMAL sync is safe in WAL.
        // A damaged file or one that is not a database fails here, by name.
        // Two processes turning a new file to WAL at once can meet in the locks of
        // the rollback journal, where SQLite answers "busy" at once instead of
        // waiting (the wait could deadlock): try again within the busy timeout.
        let deadline = std::time::Instant::now() + Duration::from_millis(busy_timeout_ms);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(classify(&e, path)),
            }
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| classify(&e, path))?;
        Ok(SqliteConnection {
            conn,
            path: path.to_path_buf(),
            lock_dir: None,
            locks: HashMap::new(),
        })
    }

    /// A tenant file must say it belongs to this registry (`owner` is the main
    /// file's `pf_deployment.id`) and to this tenant key. A new, empty file is
    /// claimed when `claim` (provisioning); a file with tables and no owner
    /// record, or another owner, is refused.
    fn check_owner(&mut self, key: &TenantKey, owner: &str, claim: bool) -> Result<(), DbError> {
        if let Some(found) = self.owner_record()? {
            return self.compare_owner(found, key, owner);
        }
        if !claim {
            return self.refuse_unowned_tables();
        }
        // Two processes may claim a new file at once: under the write lock the
        // loser finds the winner's (same) record.
        self.begin()?;
        let claimed = (|| -> Result<(), DbError> {
            if let Some(found) = self.owner_record()? {
                return self.compare_owner(found, key, owner);
            }
            self.refuse_unowned_tables()?;
            self.conn
                .execute_batch(&format!(
                    "CREATE TABLE {OWNER_TABLE} (deployment_id TEXT NOT NULL, tenant_key TEXT NOT NULL)"
                ))
                .map_err(|e| classify(&e, &self.path))?;
            self.execute(
                &format!("INSERT INTO {OWNER_TABLE} (deployment_id, tenant_key) VALUES (?, ?)"),
                &[Value::Text(owner.into()), Value::Text(key.as_str().into())],
            )
            .map(|_| ())
        })();
        match claimed {
            Ok(()) => self.commit(),
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }

    /// The deployment a tenant file says it belongs to (None: no record),
    /// read without changing the file.
    pub fn file_owner(path: &Path) -> Result<Option<String>, DbError> {
        let mut conn = Self::open_read_only(path, 5_000, false)?;
        Ok(conn.owner_record()?.map(|(owner, _)| owner))
    }

    fn owner_record(&mut self) -> Result<Option<(String, String)>, DbError> {
        match self.query(
            &format!("SELECT deployment_id, tenant_key FROM {OWNER_TABLE}"),
            &[],
        ) {
            Ok(rows) => Ok(rows.first().map(|r| (r[0].to_text(), r[1].to_text()))),
            Err(e) if e.kind == DbErrorKind::DoesNotExist => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn compare_owner(
        &self,
        (have_owner, have_key): (String, String),
        key: &TenantKey,
        owner: &str,
    ) -> Result<(), DbError> {
        if have_owner == owner && have_key == key.as_str() {
            return Ok(());
        }
        let whose = if have_owner == owner {
            // This database's, but another tenant's (a file swapped or linked).
            format!("belongs to tenant {have_key} of this database, not to tenant {key}")
        } else {
            format!(
                "belongs to another pathfinder-db database (registry {have_owner}, tenant key {have_key}), not to this one"
            )
        };
        Err(DbError::new(
            DbErrorKind::Other,
            format!(
                "SQLite {}: this tenant file {whose}: it was copied or moved here; move it away and restore the right file",
                self.path.display()
            ),
        ))
    }

    fn refuse_unowned_tables(&mut self) -> Result<(), DbError> {
        let tables = self.query(
            &format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name <> '{OWNER_TABLE}'"),
            &[],
        )?;
        if tables.first().and_then(|r| r[0].as_i64()).unwrap_or(0) > 0 {
            return Err(DbError::new(
                DbErrorKind::Other,
                format!(
                    "SQLite {}: this file has tables but no record of the pathfinder-db database it belongs to: it was not created by this registry; move it away",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }
}

impl SqliteConnection {
    /// A tenant's lock: an OS lock (flock) on `<username>.lock` in the
    /// tenant folder, held until [`Connection::unlock`] or until the process
    /// dies, so a killed run never leaves a tenant locked, and a claim whose
    /// tenant lock someone else can take belongs to no live run. The file
    /// write lock cannot serve here: it lasts one transaction, and a tenant
    /// operation is several. The system schema needs none: its changes are
    /// one `BEGIN IMMEDIATE` transaction. The holder removes the file before
    /// it lets go ([`HeldLock`]), so lock files do not pile up for every user
    /// ever provisioned; a process that was waiting on the removed file sees,
    /// once it has the lock, that the name no longer leads to that file, and
    /// locks the name afresh. One another user created is opened read-only,
    /// which suffices for the lock. Already held by this connection: true at
    /// once, as on Oracle.
    fn file_lock(&mut self, name: &Lock<'_>, wait: bool) -> Result<bool, DbError> {
        let (Lock::Tenant(username), Some(dir)) = (name, &self.lock_dir) else {
            return Ok(true);
        };
        if self.locks.contains_key(*username) {
            return Ok(true);
        }
        let path = dir.join(format!("{username}.lock"));
        let failed = |e: std::io::Error| {
            DbError::new(
                DbErrorKind::Other,
                format!(
                    "cannot lock tenant {username} with {}: {e}: check that the folder is writable",
                    path.display()
                ),
            )
        };
        create_private_dir(dir).map_err(failed)?;
        // Each round waits for a holder that then removed the file: many
        // rounds mean the name never leads to the file we locked (a file
        // system whose file identities do not hold still), not contention.
        for _ in 0..LOCK_ROUNDS {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut options = std::fs::OpenOptions::new();
                    options.create(true).truncate(false).write(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt;
                        options.mode(0o600);
                    }
                    options.open(&path).map_err(failed)?
                }
                Err(e) => return Err(failed(e)),
            };
            if wait {
                file.lock().map_err(failed)?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
                    Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
                }
            }
            // The holder before us may have removed the file we waited on:
            // that lock guards nothing any more.
            if HeldLock::names(&path, &file) {
                self.locks
                    .insert(username.to_string(), HeldLock { path, _file: file });
                return Ok(true);
            }
        }
        Err(DbError::new(
            DbErrorKind::Other,
            format!(
                "cannot lock tenant {username} with {}: the file was gone or replaced each of the {LOCK_ROUNDS} times it was locked: keep the tenant folder on a local file system",
                path.display()
            ),
        ))
    }
}

/// How many times a tenant lock is taken again after its file was removed.
const LOCK_ROUNDS: usize = 1000;

/// A tenant lock this connection holds: the lock file, open and locked.
/// Dropping it removes the file, then closes it (which releases the lock):
/// removed while still locked, so no one can hold a lock on it by its name.
struct HeldLock {
    path: PathBuf,
    /// Never read: held for its OS lock, which closing it releases.
    _file: std::fs::File,
}

impl HeldLock {
    /// Whether `path` still names `file` (not removed, nor made anew).
    #[cfg(unix)]
    fn names(path: &Path, file: &std::fs::File) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(path), file.metadata()) {
            (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
            _ => false,
        }
    }

    /// Elsewhere an open file cannot be removed: lock files stay.
    #[cfg(not(unix))]
    fn names(_: &Path, _: &std::fs::File) -> bool {
        true
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // A file we cannot remove (a folder we may not write) stays, and is
        // locked again by the next holder: only tidiness is lost.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.path);
    }
}

impl SqliteConnection {
    /// Unique keys and our indexes (from the index lists) and foreign keys
    /// of the tables under `prefix`, and with `pk` the primary key (from the
    /// columns): rows as [`crate::db::constraints_from_rows`] takes them,
    /// ordered by table, name and position.
    fn key_rows(&mut self, prefix: &str, pk: bool) -> Result<Vec<Row>, DbError> {
        let pk_rows = if pk {
            "SELECT m.name, 'pk', 'p', c.name, c.pk, NULL, NULL \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND substr(m.name, 1, length(?1)) = ?1 AND c.pk > 0 \
             UNION ALL "
        } else {
            ""
        };
        self.query(
            &format!(
                "{pk_rows}SELECT m.name, l.name, CASE l.origin WHEN 'u' THEN 'u' ELSE 'i' END, i.name, i.seqno + 1, NULL, NULL \
             FROM sqlite_master m JOIN pragma_index_list(m.name) l JOIN pragma_index_info(l.name) i \
             WHERE m.type = 'table' AND substr(m.name, 1, length(?1)) = ?1 AND l.origin IN ('u', 'c') \
             UNION ALL \
             SELECT m.name, 'fk' || f.id, 'f', f.\"from\", f.seq + 1, f.\"table\", f.on_delete \
             FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' AND substr(m.name, 1, length(?1)) = ?1 \
             ORDER BY 1, 2, 5"
            ),
            &[Value::Text(prefix.to_string())],
        )
    }
}

/// The checks of the tables whose (name, statement) rows are given, in
/// their order: SQLite keeps them only in the statement.
fn checks(statements: &[Row]) -> Vec<CatalogConstraint> {
    let mut out = Vec::new();
    for r in statements {
        let table = r[0].to_text().to_ascii_lowercase();
        let Some((_, detail)) =
            crate::schema::shape::table_of_statement(&r[1].to_text(), Dialect::Sqlite)
        else {
            continue;
        };
        for (n, columns) in detail.checks.into_iter().enumerate() {
            out.push(CatalogConstraint {
                table: table.clone(),
                name: format!("check{n}"),
                kind: ConstraintKind::Check,
                columns,
                references: None,
                on_delete: None,
            });
        }
    }
    out
}

/// An identifier read from the catalog, quoted for SQLite.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A path as the path part of a `file:` URI.
fn uri_path(path: &Path) -> String {
    let text = path.display().to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

impl Connection for SqliteConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| classify(&e, &self.path))?;
        let n = stmt
            .execute(params_from_iter(params.iter().map(to_sql_value)))
            .map_err(|e| classify(&e, &self.path))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut out = Vec::new();
        self.query_each(sql, params, &mut |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let path = self.path.clone();
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| classify(&e, &path))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(params_from_iter(params.iter().map(to_sql_value)))
            .map_err(|e| classify(&e, &path))?;
        while let Some(row) = rows.next().map_err(|e| classify(&e, &path))? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(from_sql_value(
                    row.get_ref(i).map_err(|e| classify(&e, &path))?,
                ));
            }
            each(values)?;
        }
        Ok(())
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        for stmt in statements {
            self.conn
                .execute_batch(&stmt.sql)
                .map_err(|e| classify(&e, &self.path))?;
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| classify(&e, &self.path))
    }

    fn commit(&mut self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| classify(&e, &self.path))
    }

    fn rollback(&mut self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| classify(&e, &self.path))
    }

    fn erase_freed(&mut self, _table: &str) -> Result<Option<String>, DbError> {
        // (busy, frames in the log, frames checkpointed): busy = 1 when a
        // reader kept the checkpoint from finishing within the busy timeout,
        // or at once when another connection was checkpointing (two commands
        // ending together): that one is tried again for a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let busy = loop {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(|e| classify(&e, &self.path))?;
            if busy == 0 || std::time::Instant::now() >= deadline {
                break busy;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if busy != 0 {
            return Err(DbError::new(
                DbErrorKind::Busy,
                format!(
                    "SQLite {}: another process is reading, so the write-ahead log (which still holds the deleted keys) could not be emptied",
                    self.path.display()
                ),
            ));
        }
        Ok(Some(
            "deleted rows overwritten with zeros (secure_delete); write-ahead log checkpointed and truncated".into(),
        ))
    }

    fn lock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        self.file_lock(name, true).map(|_| ())
    }

    fn try_lock(&mut self, name: &Lock<'_>) -> Result<bool, DbError> {
        self.file_lock(name, false)
    }

    fn unlock(&mut self, name: &Lock<'_>) -> Result<(), DbError> {
        if let Lock::Tenant(username) = name {
            // Closing the file releases its lock.
            self.locks.remove(*username);
        }
        Ok(())
    }

    fn enable_row_hash(&mut self) -> Result<(), DbError> {
        use rusqlite::functions::FunctionFlags;
        use sha2::{Digest, Sha256};
        self.conn
            .create_scalar_function(
                "pf_row_hash",
                -1,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    // Each value with its storage class and length, so that
                    // no two different rows give the same bytes (`1` and
                    // `'1'`, `('a|', 'b')` and `('a', '|b')`).
                    let mut h = Sha256::new();
                    for i in 0..ctx.len() {
                        match ctx.get_raw(i) {
                            ValueRef::Null => h.update([0u8]),
                            ValueRef::Integer(v) => {
                                h.update([1u8]);
                                h.update(v.to_be_bytes());
                            }
                            ValueRef::Real(f) => {
                                h.update([2u8]);
                                h.update(f.to_bits().to_be_bytes());
                            }
                            ValueRef::Text(t) => {
                                h.update([3u8]);
                                h.update((t.len() as u64).to_be_bytes());
                                h.update(t);
                            }
                            ValueRef::Blob(b) => {
                                h.update([4u8]);
                                h.update((b.len() as u64).to_be_bytes());
                                h.update(b);
                            }
                        }
                    }
                    let digest = h.finalize();
                    let mut first = [0u8; 8];
                    first.copy_from_slice(&digest[..8]);
                    Ok(i64::from_be_bytes(first))
                },
            )
            .map_err(|e| classify(&e, &self.path))
    }

    fn table_stats(&mut self, prefix: &str) -> Result<Vec<TableStats>, DbError> {
        let tables: Vec<String> = self
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, length(?1)) = ?1 ORDER BY name",
                &[Value::Text(prefix.to_string())],
            )?
            .iter()
            .map(|r| r[0].to_text())
            .collect();
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        // Pages per table, its indexes included (dbstat's aggregate form: one
        // row per b-tree). A library built without dbstat gives no sizes.
        // CROSS JOIN keeps dbstat the outer loop: inside, it would walk the
        // file once per schema row.
        let sizes: std::collections::HashMap<String, i64> = self
            .query(
                "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat('main', 1) d \
                 CROSS JOIN sqlite_master m ON m.name = d.name \
                 WHERE substr(m.tbl_name, 1, length(?1)) = ?1 GROUP BY m.tbl_name",
                &[Value::Text(prefix.to_string())],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| (r[0].to_text(), r[1].as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        // Exact counts, all tables in one query (a tenant's file is small).
        let counts = self.query(
            &tables
                .iter()
                .enumerate()
                .map(|(i, t)| format!("SELECT {i}, COUNT(*) FROM {}", quote_ident(t)))
                .collect::<Vec<_>>()
                .join(" UNION ALL "),
            &[],
        )?;
        let mut rows = vec![None; tables.len()];
        for r in &counts {
            if let (Some(i), Some(n)) = (r[0].as_i64(), r[1].as_i64()) {
                rows[i as usize] = Some(n);
            }
        }
        Ok(tables
            .into_iter()
            .zip(rows)
            .map(|(table, rows)| TableStats {
                bytes: sizes.get(&table).map(|b| (*b).max(0) as u64),
                table,
                rows,
            })
            .collect())
    }

    fn analyze(&mut self, tables: &[String]) -> Result<(), DbError> {
        for t in tables {
            self.conn
                .execute_batch(&format!("ANALYZE {}", quote_ident(t)))
                .map_err(|e| classify(&e, &self.path))?;
        }
        // What SQLite recommends before a connection closes; after a fresh
        // ANALYZE it finds nothing more to do, but it also covers what
        // `tables` left out.
        self.conn
            .execute_batch("PRAGMA optimize")
            .map_err(|e| classify(&e, &self.path))
    }

    fn definitions(&mut self, prefix: &str) -> Result<Vec<Definition>, DbError> {
        let rows = self.query(
            "SELECT type, name, tbl_name, sql FROM sqlite_master \
             WHERE sql IS NOT NULL AND type IN ('table', 'index', 'trigger') \
               AND substr(tbl_name, 1, length(?1)) = ?1 \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name",
            &[Value::Text(prefix.to_string())],
        )?;
        Ok(rows
            .iter()
            .map(|r| Definition {
                kind: r[0].to_text(),
                name: r[1].to_text(),
                table: r[2].to_text(),
                sql: r[3].to_text(),
            })
            .collect())
    }

    fn preflight(&mut self) -> Result<Vec<Check>, DbError> {
        let version = self
            .query("SELECT sqlite_version()", &[])?
            .first()
            .map(|r| r[0].to_text())
            .unwrap_or_default();
        let mode = self
            .query("PRAGMA journal_mode", &[])?
            .first()
            .map(|r| r[0].to_text().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(vec![
            Check::ok("server", format!("SQLite {version} (bundled)")),
            if mode == "wal" {
                Check::ok(
                    "journal",
                    "WAL: readers and the one writer do not block each other",
                )
            } else {
                Check::fail(
                    "journal",
                    format!("{} is in journal mode {mode}, not WAL", self.path.display()),
                    "open it once with pathfinder-db as a user who may write it (it sets WAL), or run PRAGMA journal_mode = WAL",
                )
            },
        ])
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let rows = self.query(
            "SELECT m.name, c.name, lower(c.type), c.\"notnull\" = 0, c.cid + 1, c.dflt_value \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type IN ('table', 'view') AND substr(m.name, 1, length(?1)) = ?1 \
             ORDER BY m.name, c.cid",
            &[Value::Text(prefix.to_string())],
        )?;
        Ok(rows.iter().map(CatalogColumn::from_row).collect())
    }

    fn constraints(&mut self, prefix: &str) -> Result<Vec<CatalogConstraint>, DbError> {
        // The primary key from the columns (an INTEGER PRIMARY KEY has no
        // index), unique keys and our indexes from the index lists, foreign
        // keys from their pragma; checks only from the table's statement.
        let rows = self.key_rows(prefix, true)?;
        let mut out = crate::db::constraints_from_rows(&rows);
        let statements = self.query(
            "SELECT name, sql FROM sqlite_master \
             WHERE type = 'table' AND sql IS NOT NULL AND substr(name, 1, length(?1)) = ?1 ORDER BY name",
            &[Value::Text(prefix.to_string())],
        )?;
        out.extend(checks(&statements));
        Ok(out)
    }

    fn catalog_each(
        &mut self,
        prefix: &str,
        each: &mut dyn FnMut(CatalogItem) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        // What `columns`, `indexes` and `constraints` return, from three
        // statements instead of five: the primary key comes with the
        // columns, our indexes with the tables' statements (a tenant's file
        // is read once per command; each statement is prepared anew).
        let bind = [Value::Text(prefix.to_string())];
        let columns = self.query(
            "SELECT m.name, c.name, lower(c.type), c.\"notnull\" = 0, c.cid + 1, c.dflt_value, \
                    m.type = 'table' AND c.pk > 0, c.pk \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type IN ('table', 'view') AND substr(m.name, 1, length(?1)) = ?1 \
             ORDER BY m.name, c.cid",
            &bind,
        )?;
        let mut keys: Vec<Row> = Vec::new();
        for r in &columns {
            each(CatalogItem::Column(CatalogColumn::from_row(r)))?;
            if r[6].as_i64() == Some(1) {
                keys.push(vec![
                    r[0].clone(),
                    Value::Text("pk".into()),
                    Value::Text("p".into()),
                    r[1].clone(),
                    r[7].clone(),
                    Value::Null,
                    Value::Null,
                ]);
            }
        }
        keys.extend(self.key_rows(prefix, false)?);
        // As the union's ORDER BY 1, 2, 5 sorts them (SQLite's BINARY
        // collation compares bytes, as Rust's strings do).
        keys.sort_by(|a, b| {
            (a[0].to_text(), a[1].to_text(), a[4].as_i64()).cmp(&(
                b[0].to_text(),
                b[1].to_text(),
                b[4].as_i64(),
            ))
        });
        let mut master = self.query(
            // Only tables' statements are read (triggers' are long).
            "SELECT type, name, tbl_name, CASE type WHEN 'table' THEN sql END FROM sqlite_master \
             WHERE sql IS NOT NULL \
               AND ((type IN ('index', 'trigger') AND substr(tbl_name, 1, length(?1)) = ?1) \
                 OR (type = 'table' AND substr(name, 1, length(?1)) = ?1))",
            &bind,
        )?;
        for r in &master {
            match r[0].to_text().as_str() {
                "index" => each(CatalogItem::Index(r[2].to_text(), r[1].to_text()))?,
                "trigger" => each(CatalogItem::Trigger(r[2].to_text(), r[1].to_text()))?,
                _ => {}
            }
        }
        for k in crate::db::constraints_from_rows(&keys) {
            each(CatalogItem::Constraint(k))?;
        }
        master.retain(|r| r[0].to_text() == "table");
        master.sort_by_key(|r| r[1].to_text());
        let statements: Vec<Row> = master
            .into_iter()
            .map(|r| vec![r[1].clone(), r[3].clone()])
            .collect();
        for k in checks(&statements) {
            each(CatalogItem::Constraint(k))?;
        }
        Ok(())
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = self.query(
            "SELECT tbl_name, name FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL AND substr(tbl_name, 1, length(?1)) = ?1 \
             ORDER BY tbl_name, name",
            &[Value::Text(prefix.to_string())],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| (r[0].to_text(), r[1].to_text()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_connection(target: &SqliteTarget) -> SqliteConnection {
        target.open_main(false).expect("open main file")
    }

    #[test]
    fn tenant_locks_exclude_other_connections_until_released_or_closed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let target = SqliteTarget::from_url(&url, 1000).unwrap();
        let (mut a, mut b) = (main_connection(&target), main_connection(&target));
        let alice = Lock::Tenant("alice");
        assert!(a.try_lock(&alice).unwrap());
        // Held by this connection: granted again (as Oracle's DBMS_LOCK says 4).
        assert!(a.try_lock(&alice).unwrap());
        a.lock(&alice).unwrap();
        // Another connection (another run) cannot take it, nor another
        // tenant's lock stand in its way.
        assert!(!b.try_lock(&alice).unwrap());
        assert!(b.try_lock(&Lock::Tenant("bob")).unwrap());
        a.unlock(&alice).unwrap();
        assert!(b.try_lock(&alice).unwrap());
        // A connection that goes away (a killed process) leaves nothing locked.
        drop(b);
        assert!(a.try_lock(&alice).unwrap());
        let file = target.tenant_dir.join("alice.lock");
        assert!(file.is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the owner's only, whatever the umask");
        }
        // The system schema is guarded by BEGIN IMMEDIATE, not by a file.
        assert!(a.try_lock(&Lock::System).unwrap());
        // Let go, the lock file is gone: one per user ever provisioned
        // would pile up.
        a.unlock(&alice).unwrap();
        assert!(!file.exists());
        assert!(a.try_lock(&alice).unwrap());
        drop(a);
        assert!(!file.exists());
    }

    /// A process waiting on a lock file that its holder removes gets the
    /// lock on a file of that name, not on the removed one: two waiters
    /// never both hold the tenant.
    #[cfg(unix)]
    #[test]
    fn a_waiter_on_a_removed_lock_file_locks_the_name_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let target = SqliteTarget::from_url(&url, 1000).unwrap();
        let (mut a, mut b, mut c) = (
            main_connection(&target),
            main_connection(&target),
            main_connection(&target),
        );
        let alice = Lock::Tenant("alice");
        a.lock(&alice).unwrap();
        let file = target.tenant_dir.join("alice.lock");
        std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                b.lock(&alice).unwrap();
                b
            });
            // b opens the file and waits on it; a removes it and lets go.
            std::thread::sleep(Duration::from_millis(300));
            a.unlock(&alice).unwrap();
            let b = waiter.join().unwrap();
            // b holds the lock on a file the name leads to, so c is kept out.
            assert!(file.is_file());
            assert!(!c.try_lock(&alice).unwrap());
            drop(b);
            assert!(c.try_lock(&alice).unwrap());
        });
    }
}
