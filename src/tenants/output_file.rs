//! Where `export` and `fingerprint` write their files: checked before the
//! first query, so a path that cannot be written is refused before any work.
//! `--force` replaces an existing file, but never one of the database's own
//! (a SQLite database, its `-wal`/`-shm`/`-journal`) nor a master key file:
//! a path mistyped there would destroy what no export can bring back.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::UsageError;

/// The folder `path` goes in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `path` can take a new `what` (an "export", a
/// "fingerprint"): its folder exists, it is no folder, and it does not
/// exist unless `force` and it is none of the files [`precious`] names.
pub fn check(path: &Path, force: bool, what: &str) -> Result<(), UsageError> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(UsageError::new(format!(
            "cannot write the {what} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(UsageError::new(format!(
            "cannot write the {what} {}: it is a folder; give a file name",
            path.display()
        )));
    }
    if !path.exists() {
        return Ok(());
    }
    if !force {
        return Err(UsageError::new(format!(
            "the {what} file {} exists already: choose another path, or pass --force to replace it",
            path.display()
        )));
    }
    match precious(path) {
        Some(is) => Err(UsageError::new(format!(
            "{} is {is}: --force never replaces it; choose another path",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// What the file at `path` is when it is one no `--force` may replace: a
/// SQLite database or one of its journals, or a master key (one line of
/// base64 of 32 bytes). Read from its first 4 KB.
fn precious(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy();
    if ["-wal", "-shm", "-journal"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Some("a SQLite journal");
    }
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    if read.is_err() {
        return Some("a file that cannot be read");
    }
    if head.starts_with(b"SQLite format 3\0") {
        return Some("a SQLite database");
    }
    let text = String::from_utf8_lossy(&head);
    let one_line = text.trim().lines().count() == 1;
    if one_line && crate::security::crypto::MasterKey::from_base64(&text).is_ok() {
        return Some("a master key file");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_never_replaces_a_database_or_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let export = file(
            "a.jsonl",
            b"{\"header\":{\"format\":\"pathfinder-db-export\"}}\n",
        );
        let text = file("notes.txt", b"precious\n");
        let db = file("x.db", b"SQLite format 3\0rest");
        let wal = file("x.db-wal", b"anything");
        let key = file(
            "master.key",
            b"X9NqB5w7yYoxBs8xeSIdckrdh207oYIGkb6yeXuCqKE=\n",
        );
        assert!(check(&export, true, "export").is_ok());
        assert!(check(&export, false, "export").is_err());
        assert!(check(&text, true, "export").is_ok());
        for (path, is) in [
            (&db, "SQLite database"),
            (&wal, "journal"),
            (&key, "master key"),
        ] {
            let refused = check(path, true, "export").unwrap_err().to_string();
            assert!(refused.contains(is), "{refused}");
            assert!(!refused.contains("X9Nq"), "{refused}");
        }
        assert!(check(&dir.path().join("new"), false, "export").is_ok());
        assert!(check(&dir.path().join("no/new"), false, "export").is_err());
        assert!(check(dir.path(), true, "export").is_err());
    }
}
