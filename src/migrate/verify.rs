//! `verify`: compares each tenant's tables in the catalog with what its
//! schema version should have, and lists the drift: tables, columns and
//! indexes by name, and beyond names each table's column types, NOT NULL,
//! defaults, keys (primary, unique, foreign with ON DELETE), checks and the
//! columns of each index in order.
//!
//! Which tables, columns and indexes a version has is learned by applying
//! that version's SQLite rendering to an in-memory database (the parity
//! tests prove the dialects create the same tables, columns and indexes),
//! once per version, and naming objects by their suffix. The rest is read
//! from the statements the version renders for the tenant's own dialect
//! ([`crate::shape`]). A few named tenants are read from the catalog by
//! their own prefix (an index serves it on PostgreSQL); many at once take
//! one catalog query for the fleet. On SQLite each tenant's file is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::db::{CatalogColumn, CatalogConstraint, Connection, Session};
use crate::dialect::Dialect;
use crate::registry::TenantRecord;
use crate::render::Renderer;
use crate::shape::{self, TableDetail};
use crate::tenant::{TENANT_OBJECT_SUFFIXES, TENANT_PREFIX, TenantKey};

/// Tables (by suffix) with their columns, indexes as (table, index)
/// suffixes, and each table's detail beyond names (by suffix; a table
/// without detail, such as a materialized view, is compared by names only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub tables: BTreeMap<String, Vec<String>>,
    pub indexes: BTreeSet<(String, String)>,
    pub detail: BTreeMap<String, TableDetail>,
}

/// Up to this many tenants are read from the catalog one by one (each by its
/// own prefix); more take one query for the whole fleet.
const ONE_BY_ONE: usize = 64;

/// One tenant's differences from its version.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub username: String,
    pub version: i64,
    pub problems: Vec<String>,
}

/// The shape of a tenant at `version`: names from the SQLite templates,
/// detail from `dialect`'s.
pub fn expected_shape(
    templates_dir: Option<&std::path::Path>,
    dialect: Dialect,
    version: u32,
) -> anyhow::Result<Shape> {
    let renderer = Renderer::new(Dialect::Sqlite, templates_dir)?;
    let key = TenantKey::parse("verify", Dialect::Sqlite)?;
    let mut conn =
        crate::db::sqlite::SqliteConnection::open(std::path::Path::new(":memory:"), 1000)?;
    conn.begin()?;
    crate::migrate::apply_tenant(&mut conn, &renderer, &key, Some(version), false)?;
    conn.commit()?;
    let columns = conn.columns(&key.prefix())?;
    let indexes = conn.indexes(&key.prefix())?;
    let mut shapes = group_by_tenant(Dialect::Sqlite, &columns, &indexes, &[], &[key.to_string()]);
    let mut shape = shapes.remove(key.as_str()).unwrap_or_default();
    shape.detail = expected_detail(templates_dir, dialect, version)?;
    Ok(shape)
}

/// Each table's detail (by suffix) at `version`, read from the statements
/// versions 1 to `version` render for `dialect`.
pub fn expected_detail(
    templates_dir: Option<&std::path::Path>,
    dialect: Dialect,
    version: u32,
) -> anyhow::Result<BTreeMap<String, TableDetail>> {
    let renderer = Renderer::new(dialect, templates_dir)?;
    let key = TenantKey::parse("verify", dialect)?;
    let statements: Vec<crate::render::Statement> = renderer
        .tenant_migrations(&key)?
        .into_iter()
        .filter(|m| m.version <= version)
        .flat_map(|m| m.statements)
        .collect();
    let only = HashMap::from([(key.as_str(), ())]);
    let rename = |name: &str| split_name(name, &only).map(|(_, s)| s.to_string());
    Ok(shape::expected_tables(&statements, dialect)
        .into_iter()
        .filter_map(|(table, detail)| Some((rename(&table)?, shape::by_suffix(detail, &rename))))
        .collect())
}

/// Splits `pf_user_<key>_<suffix>` into (key, suffix) for a known key and suffix.
pub fn split_name<'a>(name: &'a str, keys: &HashMap<&str, ()>) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(TENANT_PREFIX)?;
    rest.match_indices('_').find_map(|(i, _)| {
        let (key, suffix) = (&rest[..i], &rest[i + 1..]);
        (keys.contains_key(key) && TENANT_OBJECT_SUFFIXES.contains(&suffix))
            .then_some((key, suffix))
    })
}

/// Groups catalog rows by tenant key; objects of unknown tenants are ignored.
pub fn group_by_tenant(
    dialect: Dialect,
    columns: &[CatalogColumn],
    indexes: &[(String, String)],
    constraints: &[CatalogConstraint],
    keys: &[String],
) -> HashMap<String, Shape> {
    let key_set: HashMap<&str, ()> = keys.iter().map(|k| (k.as_str(), ())).collect();
    let mut out: HashMap<String, Shape> = HashMap::new();
    for col in columns {
        if let Some((key, table)) = split_name(&col.table, &key_set) {
            out.entry(key.to_string())
                .or_default()
                .tables
                .entry(table.to_string())
                .or_default()
                .push(col.column.clone());
        }
    }
    for (table, index) in indexes {
        if let (Some((key, t)), Some((_, i))) =
            (split_name(table, &key_set), split_name(index, &key_set))
        {
            out.entry(key.to_string())
                .or_default()
                .indexes
                .insert((t.to_string(), i.to_string()));
        }
    }
    for (table, detail) in shape::catalog_tables(dialect, columns, constraints) {
        let Some((key, suffix)) = split_name(&table, &key_set) else {
            continue;
        };
        // Parents and indexes by suffix when they are this tenant's.
        let only = HashMap::from([(key, ())]);
        let rename = |name: &str| split_name(name, &only).map(|(_, s)| s.to_string());
        out.entry(key.to_string())
            .or_default()
            .detail
            .insert(suffix.to_string(), shape::by_suffix(detail, &rename));
    }
    out
}

/// The differences between what a tenant has and what it should have.
/// Archive tables are the tenant's own business and are not compared.
pub fn compare(expected: &Shape, actual: &Shape) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, columns) in &expected.tables {
        match actual.tables.get(table) {
            None => problems.push(format!("missing table {table}")),
            Some(have) => {
                for c in columns.iter().filter(|c| !have.contains(c)) {
                    problems.push(format!("missing column {table}.{c}"));
                }
                for c in have.iter().filter(|c| !columns.contains(c)) {
                    problems.push(format!("extra column {table}.{c}"));
                }
            }
        }
    }
    for table in actual.tables.keys() {
        if !expected.tables.contains_key(table) && !table.ends_with("_archive") {
            problems.push(format!("extra table {table}"));
        }
    }
    for (table, index) in &expected.indexes {
        if !actual.indexes.contains(&(table.clone(), index.clone())) {
            problems.push(format!("missing index {index} on {table}"));
        }
    }
    for (table, index) in &actual.indexes {
        if expected.tables.contains_key(table)
            && !expected.indexes.contains(&(table.clone(), index.clone()))
        {
            problems.push(format!("extra index {index} on {table}"));
        }
    }
    problems.extend(compare_detail(expected, actual));
    problems
}

/// The differences beyond names, for every table both sides have and the
/// templates define with CREATE TABLE.
pub fn compare_detail(expected: &Shape, actual: &Shape) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, want) in &expected.detail {
        if let Some(have) = actual.detail.get(table) {
            problems.extend(shape::compare(table, want, have));
        }
    }
    problems
}

/// Verifies `tenants` (their registry rows); returns the drifted ones.
pub fn verify(
    session: &mut Session<'_>,
    templates_dir: Option<&std::path::Path>,
    tenants: &[TenantRecord],
) -> anyhow::Result<Vec<Drift>> {
    let dialect = session.dialect();
    let mut expected: HashMap<i64, Shape> = HashMap::new();
    for t in tenants {
        if let std::collections::hash_map::Entry::Vacant(e) = expected.entry(t.schema_version) {
            let shape = if t.schema_version > 0 {
                expected_shape(templates_dir, dialect, t.schema_version as u32)?
            } else {
                Shape::default()
            };
            e.insert(shape);
        }
    }
    let keys: Vec<String> = tenants.iter().map(|t| t.tenant_key.clone()).collect();
    // Tenants whose file is gone (SQLite): that, not each table, is the problem.
    let mut missing: HashMap<String, String> = HashMap::new();
    let mut actual: HashMap<String, Shape> = if session.tenants_apart() {
        let mut all = HashMap::new();
        for t in tenants {
            let key = TenantKey::parse(&t.tenant_key, dialect)?;
            let Some(mut conn) = session.tenant(&key, crate::db::Open::Existing)? else {
                let e = crate::operation::missing_tenant(session, &key, &t.username);
                missing.insert(t.tenant_key.clone(), e.to_string());
                continue;
            };
            all.extend(read_catalog(
                &mut *conn,
                &key.prefix(),
                std::slice::from_ref(&t.tenant_key),
            )?);
        }
        all
    } else if tenants.len() <= ONE_BY_ONE {
        // Each by its own prefix: a named tenant costs the same in a fleet of any size.
        let mut all = HashMap::new();
        for t in tenants {
            let key = TenantKey::parse(&t.tenant_key, dialect)?;
            all.extend(read_catalog(
                session.system(),
                &key.prefix(),
                std::slice::from_ref(&t.tenant_key),
            )?);
        }
        all
    } else {
        // One catalog query for the whole fleet.
        read_catalog(session.system(), TENANT_PREFIX, &keys)?
    };
    let mut drifted = Vec::new();
    for t in tenants {
        let have = actual.remove(&t.tenant_key).unwrap_or_default();
        let problems = match missing.remove(&t.tenant_key) {
            Some(gone) => vec![gone],
            None => compare(&expected[&t.schema_version], &have),
        };
        if !problems.is_empty() {
            drifted.push(Drift {
                username: t.username.clone(),
                version: t.schema_version,
                problems,
            });
        }
    }
    Ok(drifted)
}

/// The shapes of `keys`' tenants from the catalog of the tables under `prefix`.
pub fn read_catalog(
    conn: &mut dyn Connection,
    prefix: &str,
    keys: &[String],
) -> anyhow::Result<HashMap<String, Shape>> {
    let columns = conn.columns(prefix)?;
    let indexes = conn.indexes(prefix)?;
    let constraints = conn.constraints(prefix)?;
    Ok(group_by_tenant(
        conn.dialect(),
        &columns,
        &indexes,
        &constraints,
        keys,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Row, Value};

    /// Rows as Oracle's catalog queries return them for a tenant exactly at
    /// `version` (upper-case names, `number(p,0)`, `timestamp(6)`, NOT NULL
    /// columns as checks of their own), built from the Oracle rendering.
    fn oracle_catalog(key: &str, version: u32) -> (Vec<Row>, Vec<Row>) {
        let renderer = Renderer::new(Dialect::Oracle, None).unwrap();
        let key = TenantKey::parse(key, Dialect::Oracle).unwrap();
        let statements: Vec<crate::render::Statement> = renderer
            .tenant_migrations(&key)
            .unwrap()
            .into_iter()
            .filter(|m| m.version <= version)
            .flat_map(|m| m.statements)
            .collect();
        let text = |s: &str| Value::Text(s.to_string());
        let upper = |s: &str| text(&s.to_ascii_uppercase());
        let (mut columns, mut constraints) = (Vec::new(), Vec::new());
        for (table, t) in shape::expected_tables(&statements, Dialect::Oracle) {
            for (i, (name, c)) in t.columns.iter().enumerate() {
                let ty = match c.declared.as_str() {
                    "TIMESTAMP" => "timestamp(6)".to_string(),
                    d if d.starts_with("NUMBER(") && !d.contains(',') => {
                        format!("{},0)", d.trim_end_matches(')').to_lowercase())
                    }
                    d => d.to_lowercase(),
                };
                columns.push(vec![
                    upper(&table),
                    upper(name),
                    text(&ty),
                    Value::Int(if c.not_null { 0 } else { 1 }),
                    Value::Int(i as i64 + 1),
                    c.default.as_deref().map(text).unwrap_or(Value::Null),
                ]);
                if c.not_null {
                    constraints.push(vec![
                        upper(&table),
                        text(&format!("SYS_C00{i}")),
                        text("C"),
                        upper(name),
                        Value::Null,
                        Value::Null,
                        Value::Null,
                        text(&format!("\"{}\" IS NOT NULL", name.to_ascii_uppercase())),
                    ]);
                }
            }
            let mut add =
                |name: String, kind: &str, cols: &[String], parent: Value, rule: Value| {
                    for (i, c) in cols.iter().enumerate() {
                        constraints.push(vec![
                            upper(&table),
                            upper(&name),
                            text(kind),
                            upper(c),
                            Value::Int(i as i64 + 1),
                            parent.clone(),
                            rule.clone(),
                            Value::Null,
                        ]);
                    }
                };
            if let Some(pk) = &t.primary_key {
                add(format!("{table}_pk"), "P", pk, Value::Null, Value::Null);
            }
            for (n, u) in t.uniques.iter().enumerate() {
                add(format!("{table}_u{n}"), "U", u, Value::Null, Value::Null);
            }
            for (n, (cols, r)) in t.foreign_keys.iter().enumerate() {
                add(
                    format!("{table}_f{n}"),
                    "R",
                    cols,
                    upper(&r.table),
                    text(&r.on_delete),
                );
            }
            for (n, c) in t.checks.iter().enumerate() {
                add(format!("{table}_c{n}"), "C", c, Value::Null, Value::Null);
            }
            for (index, cols) in &t.indexes {
                add(index.clone(), "I", cols, Value::Null, Value::Null);
            }
        }
        (columns, constraints)
    }

    fn oracle_problems(columns: &[Row], constraints: &[Row], version: u32) -> Vec<String> {
        let columns: Vec<CatalogColumn> = columns.iter().map(CatalogColumn::from_row).collect();
        let constraints = crate::db::oracle::constraints_from_rows(constraints);
        let indexes: Vec<(String, String)> = constraints
            .iter()
            .filter(|k| k.kind == crate::db::ConstraintKind::Index)
            .map(|k| (k.table.clone(), k.name.clone()))
            .collect();
        let mut actual = group_by_tenant(
            Dialect::Oracle,
            &columns,
            &indexes,
            &constraints,
            &["alice".to_string()],
        );
        let expected = Shape {
            detail: expected_detail(None, Dialect::Oracle, version).unwrap(),
            ..Shape::default()
        };
        compare_detail(&expected, &actual.remove("alice").unwrap_or_default())
    }

    /// Oracle has no server in the tests: its catalog rows, as the queries
    /// return them, are compared with the Oracle rendering here.
    #[test]
    fn oracle_catalog_rows_compare_with_the_oracle_rendering() {
        let version = Renderer::new(Dialect::Oracle, None)
            .unwrap()
            .latest_version(crate::render::Scope::Tenant);
        let (columns, constraints) = oracle_catalog("alice", version);
        assert!(columns.len() > 60 && constraints.len() > 30);
        assert_eq!(
            oracle_problems(&columns, &constraints, version),
            Vec::<String>::new()
        );

        // A wrong type, a missing NOT NULL, a foreign key without its
        // cascade, a missing check, an index over other columns.
        let mut columns = columns;
        let mut constraints = constraints;
        let is = |r: &Row, i: usize, s: &str| r[i].to_text() == s;
        for r in columns.iter_mut() {
            if is(r, 0, "PF_USER_ALICE_SKILLS") && is(r, 1, "YEARS_OF_EXPERIENCE") {
                r[2] = Value::Text("number(10,0)".into());
            }
            if is(r, 0, "PF_USER_ALICE_SKILLS") && is(r, 1, "SKILL_NAME") {
                r[3] = Value::Int(1);
            }
        }
        constraints.retain(|r| {
            !(is(r, 0, "PF_USER_ALICE_EXPERIENCES") && is(r, 2, "C") && is(r, 3, "IS_CURRENT"))
        });
        for r in constraints.iter_mut() {
            if is(r, 0, "PF_USER_ALICE_CHAT_MESSAGES") && is(r, 2, "R") {
                r[6] = Value::Text("NO ACTION".into());
            }
            if is(r, 1, "PF_USER_ALICE_EXP_DATES_IX") {
                r[4] = Value::Int(3 - r[4].as_i64().unwrap());
            }
        }
        constraints.sort_by_key(|r| (r[0].to_text(), r[1].to_text(), r[4].as_i64()));
        let problems = oracle_problems(&columns, &constraints, version);
        for want in [
            "skills.years_of_experience: type NUMBER(10,0), expected NUMBER(3,1)",
            "skills.skill_name: nullable, expected NOT NULL",
            "chat_messages: foreign key (conversation_id) -> chat_conversations ON DELETE NO ACTION, expected chat_conversations ON DELETE CASCADE",
            "experiences: missing check on (is_current)",
            "index exp_dates_ix on experiences: columns (end_date, start_date), expected (start_date, end_date)",
        ] {
            assert!(problems.contains(&want.to_string()), "{want}: {problems:?}");
        }
        assert_eq!(problems.len(), 5, "{problems:?}");
    }
}
