//! Tenant names: property tests of the identifier budget and of the refusal of
//! unsafe names, plus a check that the templates name nothing outside the
//! budget (`TENANT_OBJECT_SUFFIXES`).

use std::collections::BTreeSet;

use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::Renderer;
use pathfinder_db::schema::tenant::{
    MAX_NAME_LEN, NameError, TENANT_OBJECT_SUFFIXES, TENANT_PREFIX, TenantKey, Username,
    max_key_len,
};
use proptest::prelude::*;
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Valid names: a letter, then words of `[a-z0-9]` joined by single `_`, cut to
/// 50 characters (a cut can leave a trailing `_`, which is trimmed).
fn valid_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,8}(_[a-z0-9]{1,8}){0,5}".prop_map(|s| {
        let cut: String = s.chars().take(MAX_NAME_LEN).collect();
        cut.trim_end_matches('_').to_string()
    })
}

/// Every identifier the tenant will ever get.
fn identifiers(key: &TenantKey) -> BTreeSet<String> {
    TENANT_OBJECT_SUFFIXES
        .iter()
        .map(|s| key.object(s))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) An accepted name yields identifiers within the dialect's limit; and
    /// the budget is exact: a name fits exactly when it is no longer than
    /// `max_key_len(dialect)`.
    #[test]
    fn accepted_names_fit_every_dialect(name in valid_name()) {
        prop_assert!(Username::parse(&name).is_ok(), "valid name refused: {name}");
        for dialect in Dialect::ALL {
            let fits = name.len() <= max_key_len(dialect);
            match TenantKey::parse(&name, dialect) {
                Ok(key) => {
                    prop_assert!(fits, "{name} ({} bytes) accepted for {dialect}", name.len());
                    prop_assert_eq!(key.as_str(), name.as_str());
                    prop_assert!(key.prefix().starts_with(TENANT_PREFIX));
                    if let Some(limit) = dialect.max_identifier_bytes() {
                        for id in identifiers(&key) {
                            prop_assert!(
                                id.len() <= limit,
                                "{id} is {} bytes, over {dialect}'s {limit}", id.len()
                            );
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(!fits, "{name} refused for {dialect}: {e}");
                    let is_too_long = matches!(e, NameError::TooLongForDialect { .. });
                    prop_assert!(is_too_long, "{e}");
                }
            }
        }
    }

    /// (b) Two distinct accepted names never share an identifier, in any
    /// dialect where both are accepted.
    #[test]
    fn distinct_names_have_disjoint_identifiers(a in valid_name(), b in valid_name()) {
        prop_assume!(a != b);
        assert_disjoint(&a, &b)?;
    }

    /// (b) The dangerous case, generated on purpose: one name extends the other
    /// with `_` and the start of a suffix (`x` and `x_skills`, `x_chat`...).
    #[test]
    fn a_name_and_its_extension_have_disjoint_identifiers(
        a in valid_name(),
        i in 0..TENANT_OBJECT_SUFFIXES.len(),
        words in 1usize..4,
    ) {
        let suffix_start: Vec<&str> = TENANT_OBJECT_SUFFIXES[i].split('_').take(words).collect();
        let b = format!("{a}_{}", suffix_start.join("_"));
        prop_assume!(b.len() <= MAX_NAME_LEN);
        assert_disjoint(&a, &b)?;
    }

    /// (c) Names with a forbidden character anywhere are refused.
    #[test]
    fn names_with_a_forbidden_character_are_refused(
        name in valid_name(),
        position in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![
            '\'', '"', '`', ' ', '\t', '\n', ';', '-', '.', ',', '(', ')', '*', '%', '/',
            '\\', '$', '#', '@', '=', 'A', 'Z', 'Q', 'é', 'ß', 'ж', 'ı', 'İ', '０', 'ａ',
            '\u{0}', '\u{200b}',
        ]),
    ) {
        let mut chars: Vec<char> = name.chars().collect();
        let at = position.index(chars.len() + 1);
        chars.insert(at, bad);
        let bad_name: String = chars.into_iter().collect();
        assert_refused(&bad_name)?;
    }

    /// (c) Upper case is refused, never folded (`Alice` is not `alice`).
    #[test]
    fn upper_case_is_refused(name in valid_name()) {
        let upper = name.to_ascii_uppercase();
        prop_assume!(upper != name);
        assert_refused(&upper)?;
        let mut capitalised = name.clone();
        capitalised[..1].make_ascii_uppercase();
        assert_refused(&capitalised)?;
    }

    /// (c) A name must start with a letter: not a digit, not `_`.
    #[test]
    fn a_leading_digit_or_underscore_is_refused(name in valid_name(), d in 0u8..10) {
        assert_refused(&format!("{d}{name}"))?;
        assert_refused(&format!("_{name}"))?;
    }

    /// (c) `__` anywhere and a trailing `_` are refused (they would make
    /// `a__b` and `a_` + `_b` ambiguous).
    #[test]
    fn double_and_trailing_underscores_are_refused(name in valid_name(), cut in any::<prop::sample::Index>()) {
        let at = 1 + cut.index(name.len());
        assert_refused(&format!("{}__{}", &name[..at], &name[at..]))?;
        assert_refused(&format!("{name}_"))?;
    }

    /// (c) Over 50 characters is refused everywhere; over `max_key_len(Postgres)`
    /// is refused as a PostgreSQL key, with the way out (`--tenant-key`).
    #[test]
    fn over_long_names_are_refused(name in valid_name(), extra in "[a-z0-9]{1,60}") {
        let long = format!("{name}{extra}");
        if long.len() > MAX_NAME_LEN {
            assert_refused(&long)?;
        }
        let pg_max = max_key_len(Dialect::Postgres);
        let pg_long: String = long.chars().cycle().take(pg_max + 1 + extra.len() % 10).collect();
        let pg_long = pg_long.trim_end_matches('_');
        if pg_long.len() > pg_max && pg_long.len() <= MAX_NAME_LEN {
            let err = TenantKey::parse(pg_long, Dialect::Postgres).unwrap_err();
            let is_too_long = matches!(err, NameError::TooLongForDialect { .. });
            prop_assert!(is_too_long, "{err}");
            let msg = err.to_string();
            prop_assert!(msg.contains("--tenant-key") && msg.contains("63"), "{msg}");
            // The same name is a fine username, and fits Oracle and SQLite.
            prop_assert!(Username::parse(pg_long).is_ok());
            prop_assert!(TenantKey::parse(pg_long, Dialect::Oracle).is_ok());
            prop_assert!(TenantKey::parse(pg_long, Dialect::Sqlite).is_ok());
        }
    }
}

fn assert_disjoint(a: &str, b: &str) -> Result<(), TestCaseError> {
    for dialect in Dialect::ALL {
        let (Ok(ka), Ok(kb)) = (TenantKey::parse(a, dialect), TenantKey::parse(b, dialect)) else {
            continue;
        };
        let (ia, ib) = (identifiers(&ka), identifiers(&kb));
        prop_assert_eq!(ia.len(), TENANT_OBJECT_SUFFIXES.len());
        let shared: Vec<_> = ia.intersection(&ib).collect();
        prop_assert!(
            shared.is_empty(),
            "{a} and {b} share {shared:?} on {dialect}"
        );
    }
    Ok(())
}

/// Refused by `Username::parse` and by `TenantKey::parse` in every dialect, with
/// a message that names the rule.
fn assert_refused(name: &str) -> Result<(), TestCaseError> {
    let err = Username::parse(name);
    prop_assert!(err.is_err(), "username {name:?} accepted");
    let msg = err.unwrap_err().to_string();
    prop_assert!(
        msg.contains("not a safe identifier") || msg.contains("is empty"),
        "{msg}"
    );
    for dialect in Dialect::ALL {
        prop_assert!(
            TenantKey::parse(name, dialect).is_err(),
            "tenant key {name:?} accepted for {dialect}"
        );
    }
    Ok(())
}

#[test]
fn fixed_examples_are_refused() {
    for name in [
        "",
        "alice; DROP TABLE pf_users",
        "o'brien",
        "a\"b",
        "john doe",
        "john-doe",
        "john.doe",
        "Alice",
        "jösé",
        "1alice",
        "_alice",
        "a__b",
        "alice_",
        &"a".repeat(MAX_NAME_LEN + 1),
    ] {
        assert_refused(name).unwrap();
    }
    let pg = "a".repeat(max_key_len(Dialect::Postgres) + 1);
    assert!(TenantKey::parse(&pg, Dialect::Postgres).is_err());
    assert!(TenantKey::parse(&pg[1..], Dialect::Postgres).is_ok());
}

/// Identifiers (unquoted words) of a piece of SQL, string literals excluded.
/// sqlparser's tokenizer does what a regex `\b[A-Za-z_][A-Za-z0-9_]*\b` would,
/// but knows where string literals and comments are (there is no `regex`
/// crate among the dependencies).
fn sql_identifiers(sql: &str) -> Vec<String> {
    Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .unwrap_or_else(|e| panic!("cannot tokenize: {e}\n{sql}"))
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value),
            _ => None,
        })
        .collect()
}

/// Every object the templates create for a tenant is covered by the identifier
/// budget: each identifier beginning with `pf_user_<key>_` ends with a suffix of
/// `TENANT_OBJECT_SUFFIXES`, and fits the dialect's limit. Checked for an
/// ordinary key and for the longest PostgreSQL key (valid in all three).
#[test]
fn templates_name_nothing_outside_the_budget() {
    let long: String = "k".repeat(max_key_len(Dialect::Postgres));
    for name in ["alice", "a", long.as_str()] {
        for dialect in Dialect::ALL {
            let key = TenantKey::parse(name, dialect).expect("valid key");
            let renderer = Renderer::new(dialect, None).expect("templates load");
            let mut sql = String::new();
            for m in renderer.tenant_migrations(&key).unwrap() {
                for s in m.statements {
                    sql.push_str(&s.sql);
                    sql.push('\n');
                }
            }
            for s in renderer.refresh_career_summary(&key).unwrap() {
                sql.push_str(&s.sql);
                sql.push('\n');
            }
            for s in renderer.drop_tenant(&key).unwrap() {
                sql.push_str(&s.sql);
                sql.push('\n');
            }
            let prefix = key.prefix();
            let mut seen = BTreeSet::new();
            for id in sql_identifiers(&sql) {
                if let Some(limit) = dialect.max_identifier_bytes() {
                    assert!(
                        id.len() <= limit,
                        "{dialect}: {id} is {} bytes, over {limit}",
                        id.len()
                    );
                }
                if id.starts_with(TENANT_PREFIX) {
                    let suffix = id.strip_prefix(&prefix).unwrap_or_else(|| {
                        panic!("{dialect}: {id} is a tenant-style name not of tenant {key}")
                    });
                    assert!(
                        TENANT_OBJECT_SUFFIXES.contains(&suffix),
                        "{dialect}: {id} has suffix {suffix:?}, which is not in TENANT_OBJECT_SUFFIXES"
                    );
                    seen.insert(suffix.to_string());
                }
            }
            // The 9 tables + summary, and at least the 16 constraints and 6 indexes of V1.
            assert!(seen.len() >= 10 + 6, "{dialect}: only {seen:?}");
            for table in pathfinder_db::schema::tenant::TENANT_TABLES {
                assert!(seen.contains(table), "{dialect}: no {table} in the DDL");
            }
        }
    }
}
