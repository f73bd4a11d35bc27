//! Where `export` and `fingerprint` write their files: checked before the
//! first query, so a path that cannot be written is refused before any work.
//! `--force` replaces an earlier file of the same kind, never anything else
//! (the database itself, a tenant file, a key file given by mistake).

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

/// Checks that `path` can take a new `what` (an "export", a "fingerprint")
/// whose documents say `"format": "<format>"`: its folder exists, it is no
/// folder, and it does not exist unless `force` and it is an earlier file of
/// the same kind (or empty).
pub fn check(path: &Path, force: bool, what: &str, format: &str) -> Result<(), UsageError> {
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
    match kind_of(path, format) {
        Kind::Same | Kind::Empty => Ok(()),
        Kind::Other(looks_like) => Err(UsageError::new(format!(
            "{} is {looks_like}, not an earlier {what}: --force replaces only an earlier {what}; choose another path",
            path.display()
        ))),
    }
}

enum Kind {
    Same,
    Empty,
    Other(&'static str),
}

/// What the file at `path` holds, from its first 4 KB.
fn kind_of(path: &Path, format: &str) -> Kind {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    if read.is_err() {
        return Kind::Other("a file that cannot be read");
    }
    if head.is_empty() {
        return Kind::Empty;
    }
    if head.starts_with(b"SQLite format 3\0") {
        return Kind::Other("a SQLite database");
    }
    let text: String = String::from_utf8_lossy(&head)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if text.contains(&format!("\"format\":\"{format}\"")) {
        Kind::Same
    } else {
        Kind::Other("another kind of file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_replaces_only_an_earlier_file_of_the_same_kind() {
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
        let pretty = file(
            "f.json",
            b"{\n  \"format\": \"pathfinder-db-fingerprint\"\n}\n",
        );
        let db = file("x.db", b"SQLite format 3\0rest");
        let key = file(
            "master.key",
            b"X9NqB5w7yYoxBs8xeSIdckrdh207oYIGkb6yeXuCqKE=\n",
        );
        let empty = file("empty", b"");
        let e = "pathfinder-db-export";
        assert!(check(&export, true, "export", e).is_ok());
        assert!(check(&export, false, "export", e).is_err());
        assert!(check(&empty, true, "export", e).is_ok());
        assert!(check(&pretty, true, "fingerprint", "pathfinder-db-fingerprint").is_ok());
        assert!(check(&pretty, true, "export", e).is_err());
        let refused = check(&db, true, "export", e).unwrap_err().to_string();
        assert!(refused.contains("SQLite database"), "{refused}");
        let refused = check(&key, true, "export", e).unwrap_err().to_string();
        assert!(!refused.contains("X9Nq"), "{refused}");
        assert!(check(&dir.path().join("new"), false, "export", e).is_ok());
        assert!(check(&dir.path().join("no/new"), false, "export", e).is_err());
        assert!(check(dir.path(), true, "export", e).is_err());
    }
}
