//! `verify`: compares each tenant's tables, columns and indexes in the catalog
//! with what its schema version should have, and lists the drift.
//!
//! What a version should have is learned by applying that version's SQLite
//! rendering to an in-memory database (the parity tests prove the dialects
//! create the same tables, columns and indexes), once per version, and naming
//! objects by their suffix. On PostgreSQL and Oracle one catalog query serves
//! every tenant; on SQLite each tenant's file is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::db::{CatalogColumn, Connection, Session};
use crate::dialect::Dialect;
use crate::registry::TenantRecord;
use crate::render::Renderer;
use crate::tenant::{TENANT_OBJECT_SUFFIXES, TENANT_PREFIX, TenantKey};

/// Tables (by suffix) with their columns, and indexes as (table, index) suffixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub tables: BTreeMap<String, Vec<String>>,
    pub indexes: BTreeSet<(String, String)>,
}

/// One tenant's differences from its version.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub username: String,
    pub version: i64,
    pub problems: Vec<String>,
}

/// The shape of a tenant at `version`, from the SQLite templates.
pub fn expected_shape(
    templates_dir: Option<&std::path::Path>,
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
    let mut shapes = group_by_tenant(&columns, &indexes, &[key.to_string()]);
    Ok(shapes.remove(key.as_str()).unwrap_or_default())
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
    columns: &[CatalogColumn],
    indexes: &[(String, String)],
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
                expected_shape(templates_dir, t.schema_version as u32)?
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
            let columns = conn.columns(&key.prefix())?;
            let indexes = conn.indexes(&key.prefix())?;
            all.extend(group_by_tenant(
                &columns,
                &indexes,
                std::slice::from_ref(&t.tenant_key),
            ));
        }
        all
    } else {
        // One catalog query for the whole fleet.
        let conn = session.system();
        let columns = conn.columns(TENANT_PREFIX)?;
        let indexes = conn.indexes(TENANT_PREFIX)?;
        group_by_tenant(&columns, &indexes, &keys)
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
