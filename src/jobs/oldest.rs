//! The oldest value of each age column of a SQLite tenant file, and a memory
//! of it that stays valid while the file is unchanged.
//!
//! On SQLite a retention sweep must look into every tenant file to learn that
//! nothing is due, and opening a file costs the parse of its whole schema
//! (about 1.5 ms: the value-check triggers alone are 36 KB of SQL). What a
//! sweep needs to know of a file is the oldest value of each age column:
//! a row is due exactly when the oldest is before the cutoff, and while the
//! file does not change, only the cutoffs move. So a sweep remembers, per
//! tenant, those oldest values with the file's identity (device, inode,
//! size, modification and change times of the file and of its `-wal`), in
//! `retention-oldest.json` in the tenant folder, and the next sweep opens
//! only the files whose identity differs. Any write changes the times (the
//! change time cannot be set back by a program), and a file is remembered
//! only when it had not changed for [`QUIET`] before it was read, so a write
//! landing in the same clock tick as the read cannot go unseen. The file is a
//! cache: deleting it costs one slower sweep, and an unreadable one is
//! ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::db::Value;

/// The cache's name in the tenant folder.
pub const FILE_NAME: &str = "retention-oldest.json";

/// How long a file must have been unchanged, before it is read, to be remembered.
pub const QUIET: Duration = Duration::from_secs(2);

/// The oldest value of an age column, as SQLite orders it: numbers before
/// text, text byte by byte; a column holding only NULLs or blobs has none
/// that a text cutoff could follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oldest {
    None,
    Number,
    Text(String),
}

impl Oldest {
    /// From `MIN(column)` as SQLite returns it.
    pub fn of(min: &Value) -> Oldest {
        match min {
            Value::Int(_) | Value::Float(_) => Oldest::Number,
            Value::Text(s) => Oldest::Text(s.clone()),
            // Not UTF-8: kept as its bytes would compare, conservatively "due".
            Value::TextBytes(_) => Oldest::Number,
            Value::Null | Value::Blob(_) => Oldest::None,
        }
    }

    /// Whether a row holds a value before `cutoff` (bound as text), exactly
    /// as SQLite compares `column < cutoff`: any number is less than any
    /// text, text compares by bytes (the BINARY collation), blobs are greater.
    pub fn before(&self, cutoff: &str) -> bool {
        match self {
            Oldest::None => false,
            Oldest::Number => true,
            Oldest::Text(s) => s.as_bytes() < cutoff.as_bytes(),
        }
    }
}

/// What identifies one state of a file: any write changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// A tenant file and its `-wal` as they are now (None: missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    db: Option<FileState>,
    wal: Option<FileState>,
}

impl Identity {
    #[cfg(unix)]
    pub fn of(path: &Path) -> Identity {
        use std::os::unix::fs::MetadataExt;
        let state = |p: &Path| {
            std::fs::metadata(p).ok().map(|m| FileState {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            })
        };
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        // An empty `-wal` holds nothing (a reader creates one). SQLite sets
        // a `-wal`'s mode whenever it opens one, which moves its change time:
        // a write to it moves the modification time and, but for a restart,
        // the size.
        let wal = state(Path::new(&wal))
            .filter(|s| s.size > 0)
            .map(|s| FileState { ctime_ns: 0, ..s });
        Identity {
            db: state(path),
            wal,
        }
    }

    /// Without the times of a Unix file system nothing is remembered.
    #[cfg(not(unix))]
    pub fn of(_path: &Path) -> Identity {
        Identity {
            db: None,
            wal: None,
        }
    }

    /// Whether the file existed and neither it nor its `-wal` changed since `before`.
    pub fn quiet_since(&self, before: SystemTime) -> bool {
        let Ok(at) = before.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let at = at.as_nanos() as i128;
        self.db.is_some()
            && [&self.db, &self.wal]
                .into_iter()
                .flatten()
                .all(|s| s.mtime_ns < at && s.ctime_ns < at)
    }
}

/// What a sweep learnt of one tenant file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub identity: Identity,
    /// `table.column` → its oldest value.
    pub oldest: HashMap<String, Oldest>,
}

/// The remembered tenant files of a tenant folder, by tenant key. (A file
/// of another folder or deployment has another device or inode.)
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    pub tenants: HashMap<String, Entry>,
}

impl Cache {
    pub fn path(tenant_dir: &Path) -> PathBuf {
        tenant_dir.join(FILE_NAME)
    }

    /// The cache, or an empty one (missing, unreadable).
    pub fn load(tenant_dir: &Path) -> Cache {
        std::fs::read(Self::path(tenant_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Cache>(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written whole to a temporary file, then renamed over the old one: a
    /// kill leaves the old cache or the new one.
    pub fn save(&self, tenant_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut temp = tempfile::NamedTempFile::new_in(tenant_dir)?;
        serde_json::to_writer(std::io::BufWriter::new(temp.as_file_mut()), self)?;
        temp.as_file_mut().flush()?;
        temp.persist(Self::path(tenant_dir)).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_compares_as_sqlite_does() {
        let cutoff = "2025-12-06 03:47:28.395216";
        assert!(Oldest::of(&Value::Text("2025-12-06 03:47:28".into())).before(cutoff));
        assert!(!Oldest::of(&Value::Text("2025-12-06 03:47:28.4".into())).before(cutoff));
        assert!(!Oldest::of(&Value::Text(cutoff.into())).before(cutoff));
        assert!(Oldest::of(&Value::Text("2025-12-06".into())).before(cutoff));
        assert!(!Oldest::of(&Value::Text("2025-12-06T00:00:00".into())).before(cutoff));
        assert!(Oldest::of(&Value::Int(20991231)).before(cutoff));
        assert!(Oldest::of(&Value::Float(1.5)).before(cutoff));
        assert!(!Oldest::of(&Value::Null).before(cutoff));
        assert!(!Oldest::of(&Value::Blob(vec![0])).before(cutoff));
    }

    #[test]
    fn a_write_changes_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        std::fs::write(&path, b"one").unwrap();
        let first = Identity::of(&path);
        assert_eq!(first, Identity::of(&path));
        assert!(!first.quiet_since(SystemTime::UNIX_EPOCH));
        assert!(first.quiet_since(SystemTime::now() + Duration::from_secs(1)));
        // Same size, and the modification time set back: the change time moves.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_ne!(first, Identity::of(&path));
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let before_wal = Identity::of(&path);
        std::fs::write(&wal, b"").unwrap();
        assert_eq!(
            before_wal,
            Identity::of(&path),
            "an empty -wal holds nothing"
        );
        std::fs::write(&wal, b"frame").unwrap();
        assert_ne!(before_wal, Identity::of(&path));
        assert!(!Identity::of(&dir.path().join("missing.db")).quiet_since(SystemTime::now()));
    }

    #[test]
    fn an_unreadable_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::load(dir.path());
        cache.tenants.insert(
            "alice".into(),
            Entry {
                identity: Identity::of(&dir.path().join("alice.db")),
                oldest: HashMap::from([("t.c".to_string(), Oldest::Text("2020".into()))]),
            },
        );
        cache.save(dir.path()).unwrap();
        assert_eq!(Cache::load(dir.path()).tenants.len(), 1);
        std::fs::write(Cache::path(dir.path()), b"{not json").unwrap();
        assert!(Cache::load(dir.path()).tenants.is_empty());
    }
}
