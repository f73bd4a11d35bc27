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
//! ([`crate::schema::shape`]). A few named tenants are read from the catalog by
//! their own prefix (an index serves it on PostgreSQL); many at once take
//! one catalog query for the fleet. On SQLite each tenant's file is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::catalog::registry::TenantRecord;
use crate::db::dialect::Dialect;
use crate::db::{CatalogColumn, CatalogConstraint, Connection, Session};
use crate::schema::render::Renderer;
use crate::schema::shape::{self, TableDetail};
use crate::schema::tenant::{TENANT_OBJECT_SUFFIXES, TENANT_PREFIX, TenantKey};
use crate::tenants::TenantFailure;

/// Tables (by suffix) with their columns, indexes as (table, index)
/// suffixes, each table's detail beyond names (by suffix; a table without
/// detail, such as a materialized view, is compared by names only), and
/// SQLite's value-check triggers as (table, trigger) suffixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub tables: BTreeMap<String, Vec<String>>,
    pub indexes: BTreeSet<(String, String)>,
    pub detail: BTreeMap<String, TableDetail>,
    pub triggers: BTreeSet<(String, String)>,
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
    // Only SQLite checks values with triggers (the others with constraints,
    // compared in the detail).
    if dialect == Dialect::Sqlite {
        let only = HashMap::from([(key.as_str(), ())]);
        shape.triggers = conn
            .definitions(&key.prefix())?
            .into_iter()
            .filter(|d| d.kind == "trigger")
            .filter_map(|d| {
                let (_, table) = split_name(&d.table, &only)?;
                let (_, trigger) = split_name(&d.name, &only)?;
                Some((table.to_string(), trigger.to_string()))
            })
            .collect();
    }
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
    let statements: Vec<crate::schema::render::Statement> = renderer
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
        (keys.contains_key(key) && is_object_suffix(suffix)).then_some((key, suffix))
    })
}

/// [`split_name`] for a table's name, which also takes a name of `keys`'
/// that no template gives (a table a DBA made, `pf_user_bob_notes`): the
/// longest key it begins with, unless some tenant could own the name as one
/// of its objects (`pf_user_bob_x_skills` is tenant `bob_x`'s skills, and
/// `pf_user_fa_chat_messages` tenant `fa`'s chat_messages, whichever of
/// them are among `keys`).
fn table_owner<'a>(name: &'a str, keys: &HashMap<&str, ()>) -> Option<(&'a str, &'a str)> {
    if let Some(split) = split_name(name, keys) {
        return Some(split);
    }
    let rest = name.strip_prefix(TENANT_PREFIX)?;
    let splits = || {
        rest.match_indices('_')
            .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
    };
    if splits().any(|(_, suffix)| is_object_suffix(suffix)) {
        return None;
    }
    splits().rfind(|(key, suffix)| !suffix.is_empty() && keys.contains_key(key))
}

/// Whether `suffix` names a tenant object (a fleet's catalog asks once per row).
fn is_object_suffix(suffix: &str) -> bool {
    static SUFFIXES: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    SUFFIXES
        .get_or_init(|| TENANT_OBJECT_SUFFIXES.iter().copied().collect())
        .contains(suffix)
}

/// What [`split_name`] gives for `name` with `key` alone: its suffix when
/// `name` is `pf_user_<key>_<suffix>` with a known suffix.
fn own_suffix<'a>(name: &'a str, key: &str) -> Option<&'a str> {
    let suffix = name
        .strip_prefix(TENANT_PREFIX)?
        .strip_prefix(key)?
        .strip_prefix('_')?;
    is_object_suffix(suffix).then_some(suffix)
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
    group_by_key_set(dialect, columns, indexes, constraints, &key_set)
}

/// [`group_by_tenant`] with the keys already in a set.
fn group_by_key_set(
    dialect: Dialect,
    columns: &[CatalogColumn],
    indexes: &[(String, String)],
    constraints: &[CatalogConstraint],
    key_set: &HashMap<&str, ()>,
) -> HashMap<String, Shape> {
    let mut out: HashMap<String, Shape> = HashMap::new();
    for col in columns {
        if let Some((key, table)) = table_owner(&col.table, key_set) {
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
            (split_name(table, key_set), split_name(index, key_set))
        {
            out.entry(key.to_string())
                .or_default()
                .indexes
                .insert((t.to_string(), i.to_string()));
        }
    }
    for (table, detail) in shape::catalog_tables(dialect, columns, constraints) {
        let Some((key, suffix)) = split_name(&table, key_set) else {
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
    // SQLite's value checks (expected on SQLite only): without them the
    // tenant takes values its version refuses.
    for (table, trigger) in expected.triggers.difference(&actual.triggers) {
        problems.push(format!(
            "missing trigger {trigger} on {table} (its value checks)"
        ));
    }
    for (table, trigger) in actual.triggers.difference(&expected.triggers) {
        if expected.tables.contains_key(table) {
            problems.push(format!("extra trigger {trigger} on {table}"));
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

/// Verifies `tenants` (their registry rows); returns the drifted ones, and
/// apart those that could not be read (their member unreachable).
pub fn verify(
    session: &mut Session<'_>,
    templates_dir: Option<&std::path::Path>,
    tenants: &[TenantRecord],
) -> anyhow::Result<(Vec<Drift>, Vec<TenantFailure>)> {
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
    let mut drifted = Vec::new();
    // Tenants on a member that cannot be reached: not verified, not drift.
    let mut failed: Vec<TenantFailure> = Vec::new();
    let mut unread = |t: &TenantRecord, e: &dyn std::fmt::Display| {
        failed.push(TenantFailure {
            username: t.username.clone(),
            error: e.to_string(),
        })
    };
    let mut report = |t: &TenantRecord, problems: Vec<String>| {
        if !problems.is_empty() {
            drifted.push(Drift {
                username: t.username.clone(),
                version: t.schema_version,
                problems,
            });
        }
    };
    let mut compared = Compared::new(dialect);
    // One set of strings for all tenants, so that their rows compare.
    let mut catalog = Catalog::default();
    if session.tenants_apart() || tenants.len() <= ONE_BY_ONE {
        // Each by its own prefix (an index serves it on PostgreSQL), so a
        // named tenant costs the same in a fleet of any size; on SQLite each
        // tenant's file. Tenants whose file is gone (SQLite): that, not each
        // table, is the problem.
        for t in tenants {
            let key = TenantKey::parse(&t.tenant_key, dialect)?;
            let only = HashMap::from([(key.as_str(), ())]);
            let top: Option<i64> = if session.tenants_apart() {
                // A member that cannot be reached: said for each of its
                // tenants, as for a server member below; the rest go on.
                let mut conn = match session.tenant(&key, crate::db::Open::Existing) {
                    Ok(Some(conn)) => conn,
                    Ok(None) => {
                        let e =
                            crate::tenants::operation::missing_tenant(session, &key, &t.username);
                        report(t, vec![e.to_string()]);
                        continue;
                    }
                    // A damaged file (SQLite) fails its tenant alone.
                    Err(e) => {
                        unread(t, &e);
                        continue;
                    }
                };
                if let Err(e) = catalog.read(&mut *conn, &key.prefix(), &only) {
                    unread(t, &e);
                    continue;
                }
                history_top(&mut *conn, &key)
            } else {
                let conn = match session.database_connection(&t.database) {
                    Ok(conn) => conn,
                    Err(e) => {
                        unread(t, &e);
                        continue;
                    }
                };
                catalog.read(conn, &key.prefix(), &only)?;
                history_top(conn, &key)
            };
            let rows = catalog.take(key.as_str());
            let mut problems =
                compared.problems(&expected[&t.schema_version], t, &catalog, rows, &only);
            if let Some(top) = top.filter(|v| *v < t.schema_version) {
                problems.insert(
                    0,
                    format!(
                        "its own history is at version {top}, the registry says {} (restored from an older backup?): `pathfinder-db migrate {}` brings it up",
                        t.schema_version, t.username
                    ),
                );
            }
            report(t, problems);
        }
    } else {
        // One catalog read per member database, kept per tenant in compact
        // form; tenants whose catalog is the same (all of a healthy fleet)
        // are compared once. A member that cannot be reached: each of its
        // tenants is reported with the reason.
        for ((_, member), group) in crate::fleet::by_member(tenants) {
            let keys: HashMap<&str, ()> =
                group.iter().map(|t| (t.tenant_key.as_str(), ())).collect();
            let conn = match session.database_connection(member) {
                Ok(conn) => conn,
                Err(e) => {
                    for t in group {
                        unread(t, &e);
                    }
                    continue;
                }
            };
            catalog.read(conn, TENANT_PREFIX, &keys)?;
            for t in group {
                let rows = catalog.take(&t.tenant_key);
                let problems =
                    compared.problems(&expected[&t.schema_version], t, &catalog, rows, &keys);
                report(t, problems);
            }
        }
    }
    Ok((drifted, failed))
}

/// The highest version in a tenant's own history (None when it cannot be
/// read: the shape comparison names a missing table).
fn history_top(conn: &mut dyn Connection, key: &TenantKey) -> Option<i64> {
    crate::migrate::engine::applied_versions(conn, &key.object("schema_history"))
        .ok()?
        .iter()
        .map(|(v, _, _)| i64::from(*v))
        .max()
}

/// The shapes of `keys`' tenants from the catalog of the tables under `prefix`.
pub fn read_catalog(
    conn: &mut dyn Connection,
    prefix: &str,
    keys: &[String],
) -> anyhow::Result<HashMap<String, Shape>> {
    let key_set: HashMap<&str, ()> = keys.iter().map(|k| (k.as_str(), ())).collect();
    let mut catalog = Catalog::default();
    catalog.read(conn, prefix, &key_set)?;
    let dialect = conn.dialect();
    let mut out = HashMap::new();
    for key in keys {
        let rows = catalog.take(key);
        out.extend(catalog.shape(dialect, key, &rows, &key_set));
    }
    Ok(out)
}

/// Strings of a catalog, each kept once: every tenant repeats the same
/// column names, types and defaults.
#[derive(Default)]
struct Strings {
    ids: HashMap<String, u32>,
    all: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.all.len() as u32;
        self.all.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    fn get(&self, id: u32) -> &str {
        &self.all[id as usize]
    }
}

/// A name in one tenant's catalog: one of the tenant's own objects, by its
/// suffix; another name that has the tenant's prefix inside (SQLite names a
/// unique key's index `sqlite_autoindex_<table>_1`), with [`MARK`] in its
/// place, when the tenant's catalog is read on its own; or any other name
/// in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Name {
    Own(u32),
    Marked(u32),
    Other(u32),
}

/// Stands for `pf_user_<key>_` in a [`Name::Marked`] (a name that has this
/// character of its own is kept in full).
const MARK: char = '\u{1}';

/// A [`CatalogColumn`] of a tenant's table (by suffix).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ColumnRow {
    table: u32,
    position: i64,
    column: u32,
    data_type: u32,
    nullable: bool,
    default: Option<u32>,
}

/// A [`CatalogConstraint`] of a tenant's table (by suffix).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstraintRow {
    table: u32,
    name: Name,
    kind: crate::db::ConstraintKind,
    columns: Vec<u32>,
    references: Option<Name>,
    on_delete: Option<u32>,
}

/// One tenant's catalog rows, in a form that no longer names the tenant:
/// two tenants with equal rows have the same shape (see [`Compared`]).
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct TenantRows {
    columns: Vec<ColumnRow>,
    /// (table suffix, index)
    indexes: Vec<(u32, Name)>,
    constraints: Vec<ConstraintRow>,
    /// (table suffix, trigger)
    triggers: Vec<(u32, Name)>,
}

/// Catalog rows as they arrive, grouped by tenant key (only the keys given;
/// objects of others are dropped, as [`group_by_tenant`] ignores them).
#[derive(Default)]
struct Catalog {
    strings: Strings,
    tenants: HashMap<String, TenantRows>,
}

impl Catalog {
    /// Reads the catalog of the tables under `prefix` from `conn`, for `keys`.
    fn read(
        &mut self,
        conn: &mut dyn Connection,
        prefix: &str,
        keys: &HashMap<&str, ()>,
    ) -> Result<(), crate::db::DbError> {
        conn.catalog_each(prefix, &mut |item| {
            self.add(item, keys);
            Ok(())
        })
    }

    fn rows(&mut self, key: &str) -> &mut TenantRows {
        if !self.tenants.contains_key(key) {
            self.tenants.insert(key.to_string(), TenantRows::default());
        }
        self.tenants.get_mut(key).expect("inserted above")
    }

    /// `name` in a tenant's rows. Only a constraint's own name (`marks`),
    /// which no difference ever shows, is marked, and only when `key` is the
    /// only key: such a name never splits to it (that makes it no name of
    /// its own), while with other keys about it might split to one of them.
    fn name(&mut self, key: &str, name: &str, marks: bool, keys: &HashMap<&str, ()>) -> Name {
        if let Some(suffix) = own_suffix(name, key) {
            return Name::Own(self.strings.id(suffix));
        }
        let prefix = format!("{TENANT_PREFIX}{key}_");
        if marks && keys.len() == 1 && name.contains(&prefix) && !name.contains(MARK) {
            return Name::Marked(self.strings.id(&name.replace(&prefix, &MARK.to_string())));
        }
        Name::Other(self.strings.id(name))
    }

    fn add(&mut self, item: crate::db::CatalogItem, keys: &HashMap<&str, ()>) {
        use crate::db::CatalogItem;
        match item {
            CatalogItem::Column(c) => {
                let Some((key, suffix)) = table_owner(&c.table, keys) else {
                    return;
                };
                let row = ColumnRow {
                    table: self.strings.id(suffix),
                    position: c.position,
                    column: self.strings.id(&c.column),
                    data_type: self.strings.id(&c.data_type),
                    nullable: c.nullable,
                    default: c.default.as_deref().map(|d| self.strings.id(d)),
                };
                self.rows(key).columns.push(row);
            }
            CatalogItem::Index(table, index) => {
                let (Some((key, suffix)), Some(_)) =
                    (split_name(&table, keys), split_name(&index, keys))
                else {
                    return;
                };
                let row = (self.strings.id(suffix), self.name(key, &index, false, keys));
                self.rows(key).indexes.push(row);
            }
            CatalogItem::Constraint(k) => {
                let Some((key, suffix)) = split_name(&k.table, keys) else {
                    return;
                };
                let row = ConstraintRow {
                    table: self.strings.id(suffix),
                    name: self.name(key, &k.name, true, keys),
                    kind: k.kind,
                    columns: k.columns.iter().map(|c| self.strings.id(c)).collect(),
                    references: k
                        .references
                        .as_deref()
                        .map(|r| self.name(key, r, false, keys)),
                    on_delete: k.on_delete.as_deref().map(|a| self.strings.id(a)),
                };
                self.rows(key).constraints.push(row);
            }
            CatalogItem::Trigger(table, trigger) => {
                let (Some((key, suffix)), Some(_)) =
                    (split_name(&table, keys), split_name(&trigger, keys))
                else {
                    return;
                };
                let row = (
                    self.strings.id(suffix),
                    self.name(key, &trigger, false, keys),
                );
                self.rows(key).triggers.push(row);
            }
        }
    }

    /// Takes `key`'s rows out (empty when it has none): each table's columns
    /// by position (the catalog may hand them over in any order), indexes
    /// sorted, constraints as they came.
    fn take(&mut self, key: &str) -> TenantRows {
        let mut rows = self.tenants.remove(key).unwrap_or_default();
        rows.columns.sort_by_key(|c| (c.table, c.position));
        rows.indexes.sort();
        rows.triggers.sort();
        rows
    }

    /// The rows with their names in full again, exactly as the catalog gave
    /// them (a name is `pf_user_<key>_<suffix>` where it was split so).
    fn full(
        &self,
        key: &str,
        rows: &TenantRows,
    ) -> (
        Vec<CatalogColumn>,
        Vec<(String, String)>,
        Vec<CatalogConstraint>,
    ) {
        let own = |suffix: u32| format!("{TENANT_PREFIX}{key}_{}", self.strings.get(suffix));
        let name = |n: Name| match n {
            Name::Own(suffix) => own(suffix),
            Name::Marked(id) => self
                .strings
                .get(id)
                .replace(MARK, &format!("{TENANT_PREFIX}{key}_")),
            Name::Other(id) => self.strings.get(id).to_string(),
        };
        let text = |id: u32| self.strings.get(id).to_string();
        let columns = rows
            .columns
            .iter()
            .map(|c| CatalogColumn {
                table: own(c.table),
                column: text(c.column),
                data_type: text(c.data_type),
                nullable: c.nullable,
                position: c.position,
                default: c.default.map(text),
            })
            .collect();
        let indexes = rows
            .indexes
            .iter()
            .map(|(table, index)| (own(*table), name(*index)))
            .collect();
        let constraints = rows
            .constraints
            .iter()
            .map(|k| CatalogConstraint {
                table: own(k.table),
                name: name(k.name),
                kind: k.kind,
                columns: k.columns.iter().map(|c| text(*c)).collect(),
                references: k.references.map(name),
                on_delete: k.on_delete.map(text),
            })
            .collect();
        (columns, indexes, constraints)
    }

    /// `key`'s shape from its rows (none when it has no objects), the
    /// names split by `keys` as they were read.
    fn shape(
        &self,
        dialect: Dialect,
        key: &str,
        rows: &TenantRows,
        keys: &HashMap<&str, ()>,
    ) -> HashMap<String, Shape> {
        let (columns, indexes, constraints) = self.full(key, rows);
        let mut shapes = group_by_key_set(dialect, &columns, &indexes, &constraints, keys);
        let triggers = rows
            .triggers
            .iter()
            .filter_map(|(table, trigger)| match trigger {
                Name::Own(suffix) => Some((
                    self.strings.get(*table).to_string(),
                    self.strings.get(*suffix).to_string(),
                )),
                _ => None,
            });
        let triggers: BTreeSet<(String, String)> = triggers.collect();
        if !triggers.is_empty() {
            shapes.entry(key.to_string()).or_default().triggers = triggers;
        }
        shapes
    }
}

/// The comparisons made so far, by version and catalog rows: a tenant whose
/// rows equal another's at the same version has the same differences (the
/// rows name the tenant's own objects by suffix, and the differences only
/// ever name suffixes and others' names), so a fleet built from the same
/// templates is compared once per distinct shape, not once per tenant.
struct Compared {
    dialect: Dialect,
    done: HashMap<(i64, TenantRows), Vec<String>>,
}

impl Compared {
    fn new(dialect: Dialect) -> Self {
        Compared {
            dialect,
            done: HashMap::new(),
        }
    }

    /// The differences of tenant `t` (its `rows`, read into `catalog` for
    /// `keys`) from `expected`.
    fn problems(
        &mut self,
        expected: &Shape,
        t: &TenantRecord,
        catalog: &Catalog,
        rows: TenantRows,
        keys: &HashMap<&str, ()>,
    ) -> Vec<String> {
        let key = t.tenant_key.as_str();
        // Another key that is this one's beginning up to a `_` could claim
        // some of its names (`pf_user_a_b_...` may split as `a`): such a
        // tenant's rows are not the whole story, and it is compared alone.
        let alone = key
            .match_indices('_')
            .any(|(i, _)| keys.contains_key(&key[..i]));
        let compare_rows = |rows: &TenantRows| {
            let have = catalog
                .shape(self.dialect, key, rows, keys)
                .remove(key)
                .unwrap_or_default();
            compare(expected, &have)
        };
        if alone {
            return compare_rows(&rows);
        }
        let entry = (t.schema_version, rows);
        if let Some(problems) = self.done.get(&entry) {
            return problems.clone();
        }
        let problems = compare_rows(&entry.1);
        self.done.insert(entry, problems.clone());
        problems
    }
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
        let statements: Vec<crate::schema::render::Statement> = renderer
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

    /// A tenant's rows, kept without its name, give back exactly the names
    /// they were read with; two tenants with the same objects have equal rows.
    #[test]
    fn a_table_no_template_makes_belongs_to_the_longest_key_unless_another_tenant_could_own_it() {
        let keys = HashMap::from([("bob", ()), ("bob_x", ())]);
        assert_eq!(
            table_owner("pf_user_bob_skills", &keys),
            Some(("bob", "skills"))
        );
        assert_eq!(
            table_owner("pf_user_bob_notes", &keys),
            Some(("bob", "notes"))
        );
        assert_eq!(
            table_owner("pf_user_bob_x_notes", &keys),
            Some(("bob_x", "notes"))
        );
        let bob = HashMap::from([("bob", ())]);
        // `bob_y`'s table (a known suffix after a part of a longer key).
        assert_eq!(table_owner("pf_user_bob_y_skills", &bob), None);
        assert_eq!(table_owner("pf_user_bob_y_skills_archive", &bob), None);
        assert_eq!(table_owner("pf_user_bob_", &bob), None);
        assert_eq!(table_owner("pf_user_carol_notes", &bob), None);
        assert_eq!(table_owner("pf_users", &bob), None);
        // Tenant `fa`'s chat_messages, not an extra table of `fa_chat`'s.
        let fa_chat = HashMap::from([("fa_chat", ())]);
        assert_eq!(table_owner("pf_user_fa_chat_messages", &fa_chat), None);
        assert_eq!(
            table_owner("pf_user_fa_chat_notes", &fa_chat),
            Some(("fa_chat", "notes"))
        );
    }

    #[test]
    fn catalog_rows_give_back_the_names_they_were_read_with() {
        use crate::db::{CatalogItem, ConstraintKind};
        let column = |table: &str, name: &str, position| CatalogColumn {
            table: table.into(),
            column: name.into(),
            data_type: "text".into(),
            nullable: true,
            position,
            default: None,
        };
        let key = |table: &str, name: &str, kind, references: Option<&str>| CatalogConstraint {
            table: table.into(),
            name: name.into(),
            kind,
            columns: vec!["a".into()],
            references: references.map(str::to_string),
            on_delete: None,
        };
        let items = |u: &str| {
            let t = format!("pf_user_{u}_skills");
            vec![
                CatalogItem::Column(column(&t, "b", 2)),
                CatalogItem::Column(column(&t, "a", 1)),
                CatalogItem::Column(column("pf_user_zed_skills", "a", 1)),
                CatalogItem::Index(t.clone(), format!("pf_user_{u}_exp_dates_ix")),
                CatalogItem::Constraint(key(
                    &t,
                    &format!("sqlite_autoindex_pf_user_{u}_skills_1"),
                    ConstraintKind::Unique,
                    None,
                )),
                CatalogItem::Constraint(key(
                    &t,
                    "fk0",
                    ConstraintKind::ForeignKey,
                    Some(&format!("pf_user_{u}_experiences")),
                )),
                CatalogItem::Constraint(key(
                    &t,
                    "fk1",
                    ConstraintKind::ForeignKey,
                    Some("pf_user_zed_experiences"),
                )),
            ]
        };
        let mut catalog = Catalog::default();
        let mut read = |u: &str| {
            let keys = HashMap::from([(u, ())]);
            for item in items(u) {
                catalog.add(item, &keys);
            }
            catalog.take(u)
        };
        let (alice, bob) = (read("alice"), read("bob"));
        assert_eq!(alice, bob);
        assert!(matches!(alice.constraints[0].name, Name::Marked(_)));
        let (columns, indexes, constraints) = catalog.full("alice", &alice);
        // Another tenant's table is not alice's; columns by position.
        assert_eq!(
            columns
                .iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(columns.iter().all(|c| c.table == "pf_user_alice_skills"));
        assert_eq!(
            indexes,
            [(
                "pf_user_alice_skills".to_string(),
                "pf_user_alice_exp_dates_ix".to_string()
            )]
        );
        let expected: Vec<CatalogConstraint> = items("alice")
            .into_iter()
            .filter_map(|i| match i {
                CatalogItem::Constraint(k) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(constraints, expected);
    }

    /// Oracle has no server in the tests: its catalog rows, as the queries
    /// return them, are compared with the Oracle rendering here.
    #[test]
    fn oracle_catalog_rows_compare_with_the_oracle_rendering() {
        let version = Renderer::new(Dialect::Oracle, None)
            .unwrap()
            .latest_version(crate::schema::render::Scope::Tenant);
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
