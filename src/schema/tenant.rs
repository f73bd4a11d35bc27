//! Tenant names: the only way to obtain an identifier for a tenant's objects.
//!
//! A username goes into table names, so it is validated, never folded or rewritten:
//! `john.doe` and `john_doe` must not silently become the same tenant. The tenant
//! key is the name that actually appears in identifiers; it equals the username
//! unless the DBA chose a shorter one with `--tenant-key` (kept in the registry).

use std::fmt;

use crate::db::dialect::Dialect;

/// The column `pf_users.username` is VARCHAR(50); a tenant key is held to the same.
pub const MAX_NAME_LEN: usize = 50;

/// Every tenant object is named `pf_user_<key>_<suffix>`.
pub const TENANT_PREFIX: &str = "pf_user_";

/// A tenant table and the abbreviation its constraint and index names use
/// (`pf_user_<key>_exp_pk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TableDef {
    pub name: &'static str,
    pub short: &'static str,
}

/// The nine tenant tables with their abbreviations, in creation order (parents
/// before children). The templates get this list too (`tables`), so the code
/// and the SQL never disagree about which tables a tenant has.
pub const TABLES: [TableDef; 9] = [
    TableDef {
        name: "experiences",
        short: "exp",
    },
    TableDef {
        name: "skills",
        short: "skl",
    },
    TableDef {
        name: "profile_summary",
        short: "psum",
    },
    TableDef {
        name: "quick_summary",
        short: "qsum",
    },
    TableDef {
        name: "chat_conversations",
        short: "conv",
    },
    TableDef {
        name: "chat_messages",
        short: "msg",
    },
    TableDef {
        name: "career_analytics",
        short: "ana",
    },
    TableDef {
        name: "skills_progression",
        short: "sprog",
    },
    TableDef {
        name: "pert_responses",
        short: "pert",
    },
];

/// The nine tenant table names, in creation order (parents before children).
pub const TENANT_TABLES: [&str; 9] = {
    let mut out = [""; 9];
    let mut i = 0;
    while i < TABLES.len() {
        out[i] = TABLES[i].name;
        i += 1;
    }
    out
};

/// The tables children first: the order in which rows are moved or tables
/// dropped, so no foreign key ever points at a row that is already gone.
pub fn tables_children_first() -> impl Iterator<Item = &'static TableDef> {
    TABLES.iter().rev()
}

/// The definition of a tenant table, by name.
pub fn table_def(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

/// The summary object: a materialized view on Oracle and PostgreSQL, a table on SQLite.
pub const CAREER_SUMMARY: &str = "career_summary";

/// The tenant's own migration history table (refinery).
pub const SCHEMA_HISTORY: &str = "schema_history";

/// Every suffix a tenant object will ever carry: tables, the summary, the history
/// table, archive tables, and every named index and constraint. The identifier
/// budget is computed from this list, and a test checks that the templates name
/// nothing outside it. Keep constraint and index suffixes short.
pub const TENANT_OBJECT_SUFFIXES: &[&str] = &[
    // tables and the summary object
    "experiences",
    "skills",
    "profile_summary",
    "quick_summary",
    "chat_conversations",
    "chat_messages",
    "career_analytics",
    "skills_progression",
    "pert_responses",
    "career_summary",
    "schema_history",
    // PostgreSQL names the history table's key itself (refinery's DDL)
    "schema_history_pkey",
    // archive tables (retention and `deprovision --archive`)
    "experiences_archive",
    "skills_archive",
    "profile_summary_archive",
    "quick_summary_archive",
    "chat_conversations_archive",
    "chat_messages_archive",
    "career_analytics_archive",
    "skills_progression_archive",
    "pert_responses_archive",
    // archive keys: (id, archived_at); `_arch_uq` on (id) alone is the first
    // release's, replaced when an archive table is next used
    "exp_arch_pk",
    "skl_arch_pk",
    "psum_arch_pk",
    "qsum_arch_pk",
    "conv_arch_pk",
    "msg_arch_pk",
    "ana_arch_pk",
    "sprog_arch_pk",
    "pert_arch_pk",
    "exp_arch_uq",
    "skl_arch_uq",
    "psum_arch_uq",
    "qsum_arch_uq",
    "conv_arch_uq",
    "msg_arch_uq",
    "ana_arch_uq",
    "sprog_arch_uq",
    "pert_arch_uq",
    // primary keys
    "exp_pk",
    "skl_pk",
    "psum_pk",
    "qsum_pk",
    "conv_pk",
    "msg_pk",
    "ana_pk",
    "sprog_pk",
    "pert_pk",
    // foreign keys, unique and check constraints
    "skl_exp_fk",
    "msg_conv_fk",
    "pert_exp_fk",
    "ana_date_type_uq",
    "exp_current_ck",
    "skl_primary_ck",
    "msg_role_ck",
    // indexes
    "exp_dates_ix",
    "exp_company_ix",
    "skl_name_ix",
    "skl_category_ix",
    "conv_updated_ix",
    "msg_conv_ix",
    "pert_status_ix",
    "skl_exp_ix",
    "pert_exp_ix",
    // retention's age columns (V4)
    "msg_created_ix",
    "msg_deleted_ix",
    "conv_deleted_ix",
    // SQLite value-check triggers (V3), BEFORE INSERT and BEFORE UPDATE
    "exp_ins_tg",
    "exp_upd_tg",
    "skl_ins_tg",
    "skl_upd_tg",
    "psum_ins_tg",
    "psum_upd_tg",
    "qsum_ins_tg",
    "qsum_upd_tg",
    "conv_ins_tg",
    "conv_upd_tg",
    "msg_ins_tg",
    "msg_upd_tg",
    "ana_ins_tg",
    "ana_upd_tg",
    "sprog_ins_tg",
    "sprog_upd_tg",
    "pert_ins_tg",
    "pert_upd_tg",
];

/// Length in bytes of the longest suffix (with its separating underscore).
pub fn longest_suffix_len() -> usize {
    TENANT_OBJECT_SUFFIXES
        .iter()
        .map(|s| s.len() + 1)
        .max()
        .unwrap_or(0)
}

/// Longest tenant key that fits `dialect`, if the dialect has a limit.
pub fn max_key_len(dialect: Dialect) -> usize {
    match dialect.max_identifier_bytes() {
        Some(max) => (max - TENANT_PREFIX.len() - longest_suffix_len()).min(MAX_NAME_LEN),
        None => MAX_NAME_LEN,
    }
}

/// Why a name was refused. Each message names the rule and, where it helps, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty: give a name such as 'alice' or 'john_doe'")]
    Empty { what: &'static str },
    #[error(
        "{what} {name:?} is not a safe identifier: {rule}; allowed is a lowercase ASCII letter, then a-z, 0-9 and single underscores, at most {MAX_NAME_LEN} characters"
    )]
    Unsafe {
        what: &'static str,
        name: String,
        rule: String,
    },
    #[error(
        "{what} {name:?} is too long for {dialect}: its longest identifier {longest:?} would be {bytes} bytes, over the {limit}-byte limit (names of at most {max_key} bytes fit); provision it with an explicit short key: --tenant-key KEY"
    )]
    TooLongForDialect {
        what: &'static str,
        name: String,
        dialect: Dialect,
        longest: String,
        bytes: usize,
        limit: usize,
        max_key: usize,
    },
}

impl NameError {
    /// The error as a usage error, with the length that fits `dialect` added, so the
    /// message names both the rule broken and the limit that applies.
    pub fn usage(self, dialect: Option<Dialect>) -> crate::error::UsageError {
        match (self, dialect) {
            (err @ NameError::Unsafe { .. }, Some(d)) => crate::error::UsageError::new(format!(
                "{err}; on {d}, names of at most {} bytes fit without --tenant-key",
                max_key_len(d)
            )),
            (err, _) => crate::error::UsageError::new(err.to_string()),
        }
    }
}

/// Checks the identifier rules shared by usernames and tenant keys.
fn check_safe(what: &'static str, name: &str) -> Result<(), NameError> {
    let unsafe_because = |rule: String| NameError::Unsafe {
        what,
        name: name.to_string(),
        rule,
    };
    let Some(first) = name.chars().next() else {
        return Err(NameError::Empty { what });
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        let rule = if bad.is_ascii_uppercase() {
            format!("it contains the upper-case letter '{bad}' (names are never folded)")
        } else if bad.is_whitespace() {
            "it contains white space".to_string()
        } else if bad.is_ascii_graphic() && bad != '\'' {
            format!("it contains the character '{bad}'")
        } else if bad == '\'' {
            "it contains the character \"'\"".to_string()
        } else if bad.is_ascii() {
            format!("it contains the character {bad:?}")
        } else {
            format!("it contains the non-ASCII character {bad:?}")
        };
        return Err(unsafe_because(rule));
    }
    if !first.is_ascii_lowercase() {
        return Err(unsafe_because(format!(
            "it starts with {first:?}, not a letter"
        )));
    }
    if name.contains("__") {
        return Err(unsafe_because("it contains '__'".into()));
    }
    if name.ends_with('_') {
        return Err(unsafe_because("it ends with '_'".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(unsafe_because(format!(
            "it is {} characters long",
            name.len()
        )));
    }
    Ok(())
}

/// A validated username, as stored in `pf_users.username` and the tenant registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check_safe("username", name)?;
        Ok(Username(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name that appears in a tenant's identifiers, checked against a dialect's
/// identifier limit. Every tenant identifier is built through [`TenantKey::object`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantKey {
    key: String,
}

impl TenantKey {
    /// Validates `key` and checks that every identifier it yields fits `dialect`.
    pub fn parse(key: &str, dialect: Dialect) -> Result<Self, NameError> {
        Self::parse_as("tenant key", key, dialect)
    }

    /// The key of a user who has no explicit key: the username itself.
    pub fn for_username(user: &Username, dialect: Dialect) -> Result<Self, NameError> {
        Self::parse_as("username", user.as_str(), dialect)
    }

    fn parse_as(what: &'static str, key: &str, dialect: Dialect) -> Result<Self, NameError> {
        check_safe(what, key)?;
        if let Some(limit) = dialect.max_identifier_bytes() {
            let longest = TENANT_OBJECT_SUFFIXES
                .iter()
                .max_by_key(|s| s.len())
                .map(|s| format!("{TENANT_PREFIX}{key}_{s}"))
                .unwrap_or_default();
            if longest.len() > limit {
                return Err(NameError::TooLongForDialect {
                    what,
                    name: key.to_string(),
                    dialect,
                    bytes: longest.len(),
                    longest,
                    limit,
                    max_key: max_key_len(dialect),
                });
            }
        }
        Ok(TenantKey {
            key: key.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// `pf_user_<key>_`: the prefix of every object of this tenant.
    pub fn prefix(&self) -> String {
        format!("{TENANT_PREFIX}{}_", self.key)
    }

    /// The identifier of one of this tenant's objects. `suffix` must be one of
    /// [`TENANT_OBJECT_SUFFIXES`], which is what the identifier budget was checked
    /// against; anything else is a bug in the caller.
    pub fn object(&self, suffix: &str) -> String {
        assert!(
            TENANT_OBJECT_SUFFIXES.contains(&suffix),
            "tenant object suffix {suffix:?} is not in TENANT_OBJECT_SUFFIXES"
        );
        format!("{TENANT_PREFIX}{}_{suffix}", self.key)
    }
}

impl fmt::Display for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suffix list is the identifier budget: it must name every table,
    /// archive table and archive key the table list implies.
    #[test]
    fn suffixes_cover_the_table_list() {
        for t in TABLES {
            for suffix in [
                t.name.to_string(),
                format!("{}_archive", t.name),
                format!("{}_pk", t.short),
                format!("{}_arch_pk", t.short),
                format!("{}_arch_uq", t.short),
                format!("{}_ins_tg", t.short),
                format!("{}_upd_tg", t.short),
            ] {
                assert!(
                    TENANT_OBJECT_SUFFIXES.contains(&suffix.as_str()),
                    "{suffix} is missing from TENANT_OBJECT_SUFFIXES"
                );
            }
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in ["alice", "john_doe", "a1", "x_1_y"] {
            assert!(Username::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_unsafe_names_with_the_rule() {
        let cases = [
            ("", "empty"),
            ("John", "upper-case"),
            ("john.doe", "'.'"),
            ("alice; DROP TABLE pf_users", "';'"),
            ("1alice", "starts with"),
            ("_alice", "starts with"),
            ("a__b", "'__'"),
            ("alice_", "ends with '_'"),
            ("jösé", "non-ASCII"),
            ("a b", "white space"),
        ];
        for (name, rule) in cases {
            let err = Username::parse(name).unwrap_err().to_string();
            assert!(err.contains(rule), "{name:?}: {err}");
        }
    }

    #[test]
    fn postgres_budget_is_enforced_with_the_way_out() {
        let max = max_key_len(Dialect::Postgres);
        assert!((20..=30).contains(&max), "postgres key budget {max}");
        let fits = "a".repeat(max);
        assert!(TenantKey::parse(&fits, Dialect::Postgres).is_ok());
        let too_long = "a".repeat(max + 1);
        let err = TenantKey::parse(&too_long, Dialect::Postgres)
            .unwrap_err()
            .to_string();
        assert!(err.contains("63-byte limit"), "{err}");
        assert!(err.contains("--tenant-key"), "{err}");
        assert!(TenantKey::parse(&too_long, Dialect::Oracle).is_ok());
        assert!(TenantKey::parse(&too_long, Dialect::Sqlite).is_ok());
    }

    /// Two distinct keys can only share an identifier if one suffix ends with
    /// `_` + another suffix (`pf_user_a_x_s` = `pf_user_a_x` + `_s`). Ruling that out
    /// here proves that distinct tenants never collide.
    #[test]
    fn no_suffix_ends_with_another() {
        for a in TENANT_OBJECT_SUFFIXES {
            for b in TENANT_OBJECT_SUFFIXES {
                assert!(
                    a == b || !a.ends_with(&format!("_{b}")),
                    "suffix {a} ends with _{b}: tenants could collide"
                );
            }
        }
        let mut sorted = TENANT_OBJECT_SUFFIXES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            TENANT_OBJECT_SUFFIXES.len(),
            "duplicate suffix"
        );
    }
}
