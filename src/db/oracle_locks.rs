//! DBMS_LOCK names and return codes.
//!
//! DBMS_LOCK names are database-wide, so two deployments in one database (a
//! staging and a production schema in one Autonomous Database) would block each
//! other if they used the same names: every name is scoped by the current
//! schema. Pure functions; the connection runs the PL/SQL.

use std::fmt::Write as _;

/// DBMS_LOCK.ALLOCATE_UNIQUE accepts lock names of up to 128 bytes.
pub(crate) const MAX_LOCK_NAME_BYTES: usize = 128;

/// FNV-1a, 64 bits: a hash that is the same in every build and on every
/// machine (std's hasher makes no such promise), so every process derives the
/// same lock name.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix_within(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The database-wide name of `lock` (our `Lock` as text) for the schema
/// `schema`: `SCHEMA:lock`. A name over 128 bytes keeps as much of the schema
/// as fits, then a hash of the full name, then the lock, so it stays unique,
/// the same in every process, and readable.
pub(crate) fn scoped_lock_name(schema: &str, lock: &str) -> String {
    let full = format!("{schema}:{lock}");
    if full.len() <= MAX_LOCK_NAME_BYTES {
        return full;
    }
    let mut tag = String::new();
    let _ = write!(tag, "~{:016x}", fnv1a64(full.as_bytes()));
    let tail = format!("{tag}:{lock}");
    if tail.len() < MAX_LOCK_NAME_BYTES {
        let schema_part = prefix_within(schema, MAX_LOCK_NAME_BYTES - tail.len());
        return format!("{schema_part}{tail}");
    }
    // A lock name that alone does not fit: keep its start and the hash.
    let head = prefix_within(&full, MAX_LOCK_NAME_BYTES - tag.len());
    format!("{head}{tag}")
}

/// What DBMS_LOCK.REQUEST's return value means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// 0: granted; 4: this session holds it already.
    Granted,
    /// 1: another session holds it and the timeout passed.
    Busy,
    /// 5: the handle is not (or no longer) valid; allocate it again.
    IllegalHandle,
    /// 2 (deadlock), 3 (parameter error) and anything undocumented.
    Failed(String),
}

pub(crate) fn request_outcome(code: i64) -> Request {
    match code {
        0 | 4 => Request::Granted,
        1 => Request::Busy,
        5 => Request::IllegalHandle,
        2 => Request::Failed("DBMS_LOCK.REQUEST returned 2 (deadlock)".into()),
        3 => Request::Failed("DBMS_LOCK.REQUEST returned 3 (parameter error)".into()),
        other => Request::Failed(format!("DBMS_LOCK.REQUEST returned {other}")),
    }
}

/// DBMS_LOCK.RELEASE's return value: Ok for 0 (released) and 4 (this session
/// does not hold it: there is nothing left to release, e.g. the lock was never
/// granted to this session or went with an earlier session); an error for
/// 3 (parameter error), 5 (illegal handle) and anything else.
pub(crate) fn release_outcome(code: i64) -> Result<(), String> {
    match code {
        0 | 4 => Ok(()),
        3 => Err("DBMS_LOCK.RELEASE returned 3 (parameter error)".into()),
        5 => Err("DBMS_LOCK.RELEASE returned 5 (illegal lock handle)".into()),
        other => Err(format!("DBMS_LOCK.RELEASE returned {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_schema() {
        assert_eq!(
            scoped_lock_name("PF_PROD", "pathfinder-db tenant alice"),
            "PF_PROD:pathfinder-db tenant alice"
        );
        assert_ne!(
            scoped_lock_name("PF_STAGING", "pathfinder-db tenant alice"),
            scoped_lock_name("PF_PROD", "pathfinder-db tenant alice")
        );
    }

    #[test]
    fn long_names_fit_128_bytes_and_stay_distinct_and_stable() {
        let user50 = "a".repeat(50);
        let lock = format!("pathfinder-db tenant {user50}");
        let schema_a = format!("{}A", "S".repeat(127));
        let schema_b = format!("{}B", "S".repeat(127));
        let a = scoped_lock_name(&schema_a, &lock);
        let b = scoped_lock_name(&schema_b, &lock);
        assert!(a.len() <= MAX_LOCK_NAME_BYTES, "{}", a.len());
        assert!(b.len() <= MAX_LOCK_NAME_BYTES, "{}", b.len());
        assert_ne!(
            a, b,
            "schemas differing only at the end must not share a lock"
        );
        assert!(a.ends_with(&format!(":{lock}")), "{a}");
        assert_eq!(a, scoped_lock_name(&schema_a, &lock), "not deterministic");
        // A pinned value: the name must not change between builds.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);

        // Exactly at the limit: unchanged.
        let schema = "S".repeat(MAX_LOCK_NAME_BYTES - 1 - lock.len());
        assert_eq!(scoped_lock_name(&schema, &lock), format!("{schema}:{lock}"));
        // One byte over: hashed.
        let schema = format!("{schema}X");
        let name = scoped_lock_name(&schema, &lock);
        assert_eq!(name.len(), MAX_LOCK_NAME_BYTES);
        assert!(name.contains('~'));
    }

    #[test]
    fn multibyte_schemas_are_cut_on_a_character_boundary() {
        let schema = "É".repeat(64); // 128 bytes
        let name = scoped_lock_name(&schema, "pathfinder-db system schema");
        assert!(name.len() <= MAX_LOCK_NAME_BYTES);
        assert!(name.starts_with('É'));
    }

    #[test]
    fn a_lock_name_that_alone_is_too_long_is_still_bounded() {
        let lock = "x".repeat(200);
        let name = scoped_lock_name("PF", &lock);
        assert_eq!(name.len(), MAX_LOCK_NAME_BYTES);
        assert_ne!(name, scoped_lock_name("PF2", &lock));
    }

    #[test]
    fn request_codes() {
        assert_eq!(request_outcome(0), Request::Granted);
        assert_eq!(request_outcome(4), Request::Granted);
        assert_eq!(request_outcome(1), Request::Busy);
        assert_eq!(request_outcome(5), Request::IllegalHandle);
        assert!(matches!(request_outcome(2), Request::Failed(m) if m.contains("deadlock")));
        assert!(matches!(request_outcome(3), Request::Failed(m) if m.contains("parameter")));
        assert!(matches!(request_outcome(9), Request::Failed(_)));
    }

    #[test]
    fn release_codes() {
        assert_eq!(release_outcome(0), Ok(()));
        assert_eq!(release_outcome(4), Ok(()));
        assert!(release_outcome(3).unwrap_err().contains("parameter error"));
        assert!(
            release_outcome(5)
                .unwrap_err()
                .contains("illegal lock handle")
        );
        assert!(release_outcome(7).is_err());
    }
}
