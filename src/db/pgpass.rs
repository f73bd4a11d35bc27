//! The PostgreSQL password file (`~/.pgpass`, or the file `PGPASSFILE`
//! names), read as libpq reads it, so that a DBA's existing file serves
//! pathfinder-db's connections (the catalog's and every member's) too.
//!
//! Each line is `hostname:port:database:username:password`; `*` matches
//! anything, `\` escapes `:` and `\`, lines starting with `#` are comments,
//! and the first matching line wins. A Unix-socket connection matches the
//! host name `localhost`. Like libpq, a file that its group or others may
//! read is ignored (with a warning): it would be a password for anyone.

use std::path::PathBuf;

/// What a connection is made to, as the password file matches it.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password file's path: `PGPASSFILE`, else `~/.pgpass`.
fn path() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("PGPASSFILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".pgpass"))
}

/// The password the file gives for `target`, if any.
pub fn lookup(target: &Target<'_>) -> Option<String> {
    let path = path()?;
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            // Said once per run, however many connections are opened.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "warning: password file {} is readable by group or others and is ignored: chmod 0600 it",
                    path.display()
                )
            });
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    find(&text, target)
}

/// The first line of `text` that matches `target`: its password.
fn find(text: &str, target: &Target<'_>) -> Option<String> {
    let port = target.port.to_string();
    let wanted = [target.host, port.as_str(), target.database, target.user];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .filter_map(fields)
        .find(|f| {
            f[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|f| f[4].clone())
}

/// A line's five fields, unescaped (None when it has fewer: libpq skips it).
/// As in libpq, the password ends at the next unescaped colon.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.trim_end_matches(['\r', '\n']).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("one field").push(next);
                }
            }
            ':' if out.len() == 5 => break,
            ':' => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Target<'a> {
        Target {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "# comment\n\
                    db1.example:5432:cat:owner:first\n\
                    *:5433:*:owner:on\\:port\\\\5433\n\
                    *:*:*:owner:fallback:ignored\n";
        assert_eq!(
            find(file, &target("db1.example", 5432, "cat", "owner")).as_deref(),
            Some("first")
        );
        assert_eq!(
            find(file, &target("db2.example", 5433, "m1", "owner")).as_deref(),
            Some("on:port\\5433")
        );
        assert_eq!(
            find(file, &target("db2.example", 5432, "m1", "owner")).as_deref(),
            Some("fallback")
        );
        assert_eq!(find(file, &target("db1.example", 5432, "cat", "app")), None);
    }

    #[test]
    fn short_lines_are_skipped() {
        assert_eq!(
            find(
                "host:5432:db:user\nhost:5432:db:user:pw\n",
                &target("host", 5432, "db", "user")
            )
            .as_deref(),
            Some("pw")
        );
    }
}
