//! The full shape of a tenant's tables, beyond their names: column types,
//! NOT NULL, defaults, primary, unique and foreign keys (with their ON
//! DELETE), CHECK constraints and the columns of each index, in order.
//!
//! What a version should have is read from the statements the templates
//! render for the tenant's own dialect (our statement shapes, parsed here);
//! what a tenant has comes from the catalog ([`crate::db::Connection::columns`]
//! and [`crate::db::Connection::constraints`]). Both sides are normalised per
//! dialect so that the catalog's words (`character varying(36)`,
//! `number(10,0)`) compare equal to the statement's (`VARCHAR(36)`,
//! `NUMBER(10)`). SQLite keeps any declared type as written but acts on its
//! affinity, so there the affinity is compared. Keys and checks are compared
//! by what they cover, not by name: a key the seed left unnamed is the same key.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::dialect::Dialect;
use crate::db::{CatalogColumn, CatalogConstraint, ConstraintKind};

/// One column beyond its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDetail {
    /// The type as compared (normalised; on SQLite the affinity).
    pub ty: String,
    /// The type as declared or as the catalog names it, for messages.
    pub declared: String,
    pub not_null: bool,
    /// Normalised default expression.
    pub default: Option<String>,
}

/// A foreign key's target (table suffix, or the full name of a table not
/// the tenant's) and its ON DELETE action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub table: String,
    pub on_delete: String,
}

/// One table's columns, keys, checks and indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDetail {
    pub columns: BTreeMap<String, ColumnDetail>,
    pub primary_key: Option<Vec<String>>,
    pub uniques: BTreeSet<Vec<String>>,
    /// By the key's columns, in order.
    pub foreign_keys: BTreeMap<Vec<String>, Reference>,
    /// Each check by the columns it reads (sorted).
    pub checks: BTreeSet<Vec<String>>,
    /// Tenant-named indexes (by suffix) and their columns, in order.
    pub indexes: BTreeMap<String, Vec<String>>,
}

// ---------------------------------------------------------------------------
// Normalising what both sides say.

/// `raw` (a declared type or the catalog's name for it) in the form compared.
pub fn normalize_type(dialect: Dialect, raw: &str) -> String {
    let upper = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
        .replace(", ", ",")
        .replace(" (", "(");
    match dialect {
        Dialect::Sqlite => sqlite_affinity(&upper).to_string(),
        Dialect::Postgres => {
            let (base, args) = match upper.split_once('(') {
                Some((b, rest)) => {
                    let (args, tail) = rest.split_once(')').unwrap_or((rest, ""));
                    (format!("{b}{}", tail), Some(args.to_string()))
                }
                None => (upper.clone(), None),
            };
            let base = match base.trim() {
                "CHARACTER VARYING" => "VARCHAR",
                "CHARACTER" | "BPCHAR" => "CHAR",
                "INT" | "INT4" => "INTEGER",
                "INT2" => "SMALLINT",
                "INT8" => "BIGINT",
                "DECIMAL" => "NUMERIC",
                "BOOL" => "BOOLEAN",
                "TIMESTAMP WITHOUT TIME ZONE" => "TIMESTAMP",
                "TIMESTAMP WITH TIME ZONE" => "TIMESTAMPTZ",
                other => other,
            }
            .to_string();
            match args {
                // 6 is the default precision of a PostgreSQL timestamp.
                Some(a) if a == "6" && base.starts_with("TIMESTAMP") => base,
                Some(a) => format!("{base}({a})"),
                None => base,
            }
        }
        Dialect::Oracle => {
            if upper == "TIMESTAMP" {
                return "TIMESTAMP(6)".into();
            }
            if upper == "INTEGER" || upper == "INT" || upper == "SMALLINT" {
                return "NUMBER".into();
            }
            let upper = upper.replace(" CHAR)", ")").replace(" BYTE)", ")");
            match upper
                .strip_prefix("NUMBER(")
                .and_then(|r| r.strip_suffix(",0)"))
            {
                Some(p) => format!("NUMBER({p})"),
                None => upper,
            }
        }
    }
}

/// SQLite's rules for a declared type's affinity (in their order).
fn sqlite_affinity(declared: &str) -> &'static str {
    if declared.contains("INT") {
        "INTEGER"
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|w| declared.contains(w))
    {
        "TEXT"
    } else if declared.is_empty() || declared.contains("BLOB") {
        "BLOB"
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|w| declared.contains(w))
    {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// A default expression in the form compared: outer parentheses and
/// PostgreSQL's `::type` casts dropped, words in upper case, literals kept.
pub fn normalize_default(raw: &str) -> Option<String> {
    let tokens = tokenize(raw)?;
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Tok::Punct(':') if matches!(tokens.get(i + 1), Some(Tok::Punct(':'))) => {
                // `::character varying`: skip the cast's words.
                i += 2;
                while let Some(Tok::Word(_)) = tokens.get(i) {
                    i += 1;
                }
                continue;
            }
            Tok::Word(w) => out.push(w.to_ascii_uppercase()),
            Tok::Str(s) => out.push(format!("'{}'", s.replace('\'', "''"))),
            Tok::Punct(c) => out.push(c.to_string()),
        }
        i += 1;
    }
    let mut text = out.join(" ");
    while text.starts_with("( ") && text.ends_with(" )") && balanced(&text[2..text.len() - 2]) {
        text = text[2..text.len() - 2].to_string();
    }
    (!text.is_empty() && text != "NULL").then_some(text)
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// ON DELETE in the words both sides use.
pub fn normalize_action(raw: Option<&str>) -> String {
    let action = raw
        .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
        .to_ascii_uppercase();
    if action.is_empty() {
        "NO ACTION".into()
    } else {
        action
    }
}

// ---------------------------------------------------------------------------
// Reading our statements.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
}

/// Splits a statement into words, string literals and punctuation; None for
/// text we never write (an unterminated literal).
fn tokenize(sql: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '-' && chars.peek() == Some(&'-') {
            for n in chars.by_ref() {
                if n == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '\'' {
            let mut s = String::new();
            let mut closed = false;
            while let Some(n) = chars.next() {
                if n == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        s.push('\'');
                    } else {
                        closed = true;
                        break;
                    }
                } else {
                    s.push(n);
                }
            }
            if !closed {
                return None;
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c == '"' {
            // A quoted identifier (SQLite keeps hand-made statements as written).
            let mut s = String::new();
            for n in chars.by_ref() {
                if n == '"' {
                    break;
                }
                s.push(n);
            }
            out.push(Tok::Word(s));
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            let mut w = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' || n == '$' || n == '#' || n == '.' {
                    w.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(w));
            continue;
        }
        out.push(Tok::Punct(c));
    }
    Some(out)
}

fn is_word(t: Option<&Tok>, word: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn word(t: Option<&Tok>) -> Option<String> {
    match t {
        Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
        _ => None,
    }
}

/// The items of the parenthesised list starting at `toks[*i]` (a `(`),
/// split at top-level commas; `*i` ends after the `)`.
fn list<'a>(toks: &'a [Tok], i: &mut usize) -> Option<Vec<&'a [Tok]>> {
    if toks.get(*i) != Some(&Tok::Punct('(')) {
        return None;
    }
    *i += 1;
    let (mut depth, mut start, mut items) = (0usize, *i, Vec::new());
    while let Some(t) = toks.get(*i) {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') if depth == 0 => {
                items.push(&toks[start..*i]);
                *i += 1;
                return Some(items);
            }
            Tok::Punct(')') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                items.push(&toks[start..*i]);
                start = *i + 1;
            }
            _ => {}
        }
        *i += 1;
    }
    None
}

/// The column names of a `(a, b)` list (ASC dropped).
fn name_list(toks: &[Tok], i: &mut usize) -> Option<Vec<String>> {
    list(toks, i)?
        .into_iter()
        .map(|item| match item {
            [Tok::Word(w)] => Some(w.to_ascii_lowercase()),
            [Tok::Word(w), Tok::Word(asc)] if asc.eq_ignore_ascii_case("ASC") => {
                Some(w.to_ascii_lowercase())
            }
            _ => Some(render(item).to_ascii_lowercase()),
        })
        .collect()
}

fn render(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words that end a column's DEFAULT expression.
const OPTION_WORDS: &[&str] = &[
    "NOT",
    "NULL",
    "CONSTRAINT",
    "CHECK",
    "PRIMARY",
    "UNIQUE",
    "REFERENCES",
    "DEFAULT",
    "COLLATE",
];

/// `REFERENCES t [(cols)] [ON DELETE action]` from `toks[*i]` (after REFERENCES).
fn references(toks: &[Tok], i: &mut usize) -> Option<(String, String)> {
    let table = word(toks.get(*i))?;
    *i += 1;
    if toks.get(*i) == Some(&Tok::Punct('(')) {
        name_list(toks, i)?;
    }
    let mut action = None;
    while is_word(toks.get(*i), "ON") {
        let delete = is_word(toks.get(*i + 1), "DELETE");
        *i += 2;
        // CASCADE, RESTRICT, NO ACTION, SET NULL, SET DEFAULT.
        let mut words = Vec::new();
        if let Some(first) = word(toks.get(*i)) {
            *i += 1;
            words.push(first.to_ascii_uppercase());
            if first == "set" || first == "no" {
                words.extend(word(toks.get(*i)).map(|w| w.to_ascii_uppercase()));
                *i += 1;
            }
        }
        if delete {
            action = Some(words.join(" "));
        }
    }
    Some((table, normalize_action(action.as_deref())))
}

/// Constraints found in a CREATE TABLE: checks carry their expression's
/// words until the table's columns are known.
#[derive(Default)]
struct Parsed {
    detail: TableDetail,
    check_words: Vec<Vec<String>>,
}

fn constraint(p: &mut Parsed, toks: &[Tok], i: &mut usize, column: Option<&str>) -> Option<()> {
    let own = || column.map(|c| vec![c.to_string()]);
    if is_word(toks.get(*i), "PRIMARY") {
        *i += 2;
        let cols = if toks.get(*i) == Some(&Tok::Punct('(')) {
            name_list(toks, i)?
        } else {
            own()?
        };
        p.detail.primary_key = Some(cols);
    } else if is_word(toks.get(*i), "UNIQUE") {
        *i += 1;
        let cols = if toks.get(*i) == Some(&Tok::Punct('(')) {
            name_list(toks, i)?
        } else {
            own()?
        };
        p.detail.uniques.insert(cols);
    } else if is_word(toks.get(*i), "FOREIGN") {
        *i += 2;
        let cols = name_list(toks, i)?;
        if !is_word(toks.get(*i), "REFERENCES") {
            return None;
        }
        *i += 1;
        let (table, on_delete) = references(toks, i)?;
        p.detail
            .foreign_keys
            .insert(cols, Reference { table, on_delete });
    } else if is_word(toks.get(*i), "REFERENCES") {
        *i += 1;
        let (table, on_delete) = references(toks, i)?;
        p.detail
            .foreign_keys
            .insert(own()?, Reference { table, on_delete });
    } else if is_word(toks.get(*i), "CHECK") {
        *i += 1;
        let start = *i + 1;
        list(toks, i)?;
        let words = toks[start..*i - 1]
            .iter()
            .filter_map(|t| word(Some(t)))
            .collect();
        p.check_words.push(words);
    } else {
        return None;
    }
    Some(())
}

/// Parses a CREATE TABLE's parenthesised body into `p` (for `dialect`'s types).
fn create_table(p: &mut Parsed, toks: &[Tok], i: &mut usize, dialect: Dialect) -> Option<()> {
    for item in list(toks, i)? {
        let mut j = 0;
        if is_word(item.first(), "CONSTRAINT") {
            j = 2;
        }
        if j > 0
            || ["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]
                .iter()
                .any(|w| is_word(item.first(), w))
        {
            constraint(p, item, &mut j, None)?;
            continue;
        }
        column(p, item, dialect)?;
    }
    Some(())
}

/// One column definition: name, type, options.
fn column(p: &mut Parsed, item: &[Tok], dialect: Dialect) -> Option<()> {
    let name = word(item.first())?;
    let mut j = 1;
    let mut declared = Vec::new();
    while let Some(Tok::Word(w)) = item.get(j) {
        if OPTION_WORDS.contains(&w.to_ascii_uppercase().as_str()) {
            break;
        }
        declared.push(w.clone());
        j += 1;
    }
    let mut declared = declared.join(" ");
    if item.get(j) == Some(&Tok::Punct('(')) {
        let args = list(item, &mut j)?;
        declared.push_str(&format!(
            "({})",
            args.iter().map(|a| render(a)).collect::<Vec<_>>().join(",")
        ));
        // `TIMESTAMP(6) WITH TIME ZONE`
        while let Some(Tok::Word(w)) = item.get(j) {
            if OPTION_WORDS.contains(&w.to_ascii_uppercase().as_str()) {
                break;
            }
            declared.push(' ');
            declared.push_str(w);
            j += 1;
        }
    }
    let mut detail = ColumnDetail {
        ty: normalize_type(dialect, &declared),
        declared: declared.to_ascii_uppercase(),
        ..ColumnDetail::default()
    };
    while j < item.len() {
        if is_word(item.get(j), "NOT") && is_word(item.get(j + 1), "NULL") {
            detail.not_null = true;
            j += 2;
        } else if is_word(item.get(j), "NULL") {
            j += 1;
        } else if is_word(item.get(j), "DEFAULT") {
            j += 1;
            let start = j;
            let mut depth = 0usize;
            while let Some(t) = item.get(j) {
                match t {
                    Tok::Punct('(') => depth += 1,
                    Tok::Punct(')') => depth = depth.saturating_sub(1),
                    Tok::Word(w)
                        if depth == 0
                            && j > start
                            && OPTION_WORDS.contains(&w.to_ascii_uppercase().as_str()) =>
                    {
                        break;
                    }
                    _ => {}
                }
                j += 1;
            }
            detail.default = normalize_default(&render(&item[start..j]));
        } else if is_word(item.get(j), "CONSTRAINT") || is_word(item.get(j), "COLLATE") {
            // A name follows: the constraint's (compared by what it covers) or the collation's.
            j += 2;
        } else {
            if is_word(item.get(j), "PRIMARY") {
                // An inline primary key: NOT NULL on the server dialects.
                if dialect != Dialect::Sqlite {
                    detail.not_null = true;
                }
            }
            let before = j;
            if constraint(p, item, &mut j, Some(&name)).is_none() {
                // A clause with nothing to compare (GENERATED, ...): skipped.
                j = before + 1;
            }
            // `PRIMARY KEY AUTOINCREMENT`, `ASC`: nothing to compare.
            while let Some(Tok::Word(w)) = item.get(j) {
                if OPTION_WORDS.contains(&w.to_ascii_uppercase().as_str()) {
                    break;
                }
                j += 1;
            }
        }
    }
    p.detail.columns.insert(name, detail);
    Some(())
}

impl Parsed {
    /// Turns each check's words into the columns it reads.
    fn finish(mut self) -> TableDetail {
        for words in self.check_words.drain(..) {
            let mut cols: Vec<String> = words
                .into_iter()
                .filter(|w| self.detail.columns.contains_key(w))
                .collect();
            cols.sort();
            cols.dedup();
            self.detail.checks.insert(cols);
        }
        self.detail
    }
}

/// The detail a CREATE TABLE statement gives its table (None for any other
/// statement or a shape this parser does not know).
pub fn table_of_statement(sql: &str, dialect: Dialect) -> Option<(String, TableDetail)> {
    let toks = tokenize(sql)?;
    let mut i = 0;
    if !is_word(toks.first(), "CREATE") {
        return None;
    }
    i += 1;
    while is_word(toks.get(i), "TEMP") || is_word(toks.get(i), "TEMPORARY") {
        i += 1;
    }
    if !is_word(toks.get(i), "TABLE") {
        return None;
    }
    i += 1;
    if is_word(toks.get(i), "IF") {
        i += 3;
    }
    let name = word(toks.get(i))?;
    i += 1;
    let mut p = Parsed::default();
    create_table(&mut p, &toks, &mut i, dialect)?;
    Some((name, p.finish()))
}

/// The detail, by table name, that `statements` (in order) create:
/// CREATE TABLE, ALTER TABLE ... ADD column, CREATE INDEX. Names are kept
/// as written.
pub fn expected_tables(
    statements: &[crate::schema::render::Statement],
    dialect: Dialect,
) -> BTreeMap<String, TableDetail> {
    let mut tables: BTreeMap<String, TableDetail> = BTreeMap::new();
    for stmt in statements.iter().filter(|s| !s.plsql) {
        if let Some((name, detail)) = table_of_statement(&stmt.sql, dialect) {
            tables.insert(name, detail);
            continue;
        }
        let Some(toks) = tokenize(&stmt.sql) else {
            continue;
        };
        if is_word(toks.first(), "ALTER") && is_word(toks.get(1), "TABLE") {
            let (Some(table), true) = (word(toks.get(2)), is_word(toks.get(3), "ADD")) else {
                continue;
            };
            let mut rest = &toks[4..];
            if is_word(rest.first(), "COLUMN") {
                rest = &rest[1..];
            }
            if let Some(detail) = tables.get_mut(&table) {
                let mut p = Parsed {
                    detail: std::mem::take(detail),
                    check_words: Vec::new(),
                };
                if column(&mut p, rest, dialect).is_some() {
                    *detail = p.finish();
                } else {
                    *detail = p.detail;
                }
            }
        } else if is_word(toks.first(), "CREATE") {
            let mut i = 1;
            if is_word(toks.get(i), "UNIQUE") {
                i += 1;
            }
            if !is_word(toks.get(i), "INDEX") {
                continue;
            }
            let (Some(index), true, Some(table)) = (
                word(toks.get(i + 1)),
                is_word(toks.get(i + 2), "ON"),
                word(toks.get(i + 3)),
            ) else {
                continue;
            };
            let mut j = i + 4;
            if let (Some(cols), Some(detail)) = (name_list(&toks, &mut j), tables.get_mut(&table)) {
                detail.indexes.insert(index, cols);
            }
        }
    }
    tables
}

/// The detail the catalog gives each table (by name): `columns` and
/// `constraints` as the backend returns them.
pub fn catalog_tables(
    dialect: Dialect,
    columns: &[CatalogColumn],
    constraints: &[CatalogConstraint],
) -> BTreeMap<String, TableDetail> {
    let mut tables: BTreeMap<String, TableDetail> = BTreeMap::new();
    for c in columns {
        tables.entry(c.table.clone()).or_default().columns.insert(
            c.column.clone(),
            ColumnDetail {
                ty: normalize_type(dialect, &c.data_type),
                declared: c.data_type.to_ascii_uppercase(),
                not_null: !c.nullable,
                default: c.default.as_deref().and_then(normalize_default),
            },
        );
    }
    for k in constraints {
        let Some(t) = tables.get_mut(&k.table) else {
            continue;
        };
        match k.kind {
            ConstraintKind::PrimaryKey => t.primary_key = Some(k.columns.clone()),
            ConstraintKind::Unique => {
                t.uniques.insert(k.columns.clone());
            }
            ConstraintKind::ForeignKey => {
                t.foreign_keys.insert(
                    k.columns.clone(),
                    Reference {
                        table: k.references.clone().unwrap_or_default(),
                        on_delete: normalize_action(k.on_delete.as_deref()),
                    },
                );
            }
            ConstraintKind::Check => {
                let mut cols = k.columns.clone();
                cols.sort();
                cols.dedup();
                t.checks.insert(cols);
            }
            ConstraintKind::Index => {
                t.indexes.insert(k.name.clone(), k.columns.clone());
            }
        }
    }
    tables
}

/// Renames tables, referenced tables and indexes from full names to the
/// suffix `rename` gives (None: not the tenant's, name kept).
pub fn by_suffix(detail: TableDetail, rename: &dyn Fn(&str) -> Option<String>) -> TableDetail {
    TableDetail {
        foreign_keys: detail
            .foreign_keys
            .into_iter()
            .map(|(cols, r)| {
                (
                    cols,
                    Reference {
                        table: rename(&r.table).unwrap_or(r.table),
                        on_delete: r.on_delete,
                    },
                )
            })
            .collect(),
        indexes: detail
            .indexes
            .into_iter()
            .filter_map(|(i, cols)| rename(&i).map(|s| (s, cols)))
            .collect(),
        ..detail
    }
}

fn cols(c: &[String]) -> String {
    format!("({})", c.join(", "))
}

/// What differs between the table `table` as expected and as it is, one
/// line each. Columns missing on either side are reported elsewhere.
pub fn compare(table: &str, expected: &TableDetail, actual: &TableDetail) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in &expected.columns {
        let Some(have) = actual.columns.get(name) else {
            continue;
        };
        let at = format!("{table}.{name}");
        if want.ty != have.ty {
            out.push(format!(
                "{at}: type {}, expected {}",
                have.declared, want.declared
            ));
        }
        if want.not_null != have.not_null {
            out.push(if want.not_null {
                format!("{at}: nullable, expected NOT NULL")
            } else {
                format!("{at}: NOT NULL, expected nullable")
            });
        }
        if want.default != have.default {
            let show = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
            out.push(format!(
                "{at}: default {}, expected {}",
                show(&have.default),
                show(&want.default)
            ));
        }
    }
    match (&expected.primary_key, &actual.primary_key) {
        (Some(w), None) => out.push(format!("{table}: no primary key, expected {}", cols(w))),
        (None, Some(h)) => out.push(format!("{table}: primary key {}, expected none", cols(h))),
        (Some(w), Some(h)) if w != h => out.push(format!(
            "{table}: primary key {}, expected {}",
            cols(h),
            cols(w)
        )),
        _ => {}
    }
    for u in expected.uniques.difference(&actual.uniques) {
        out.push(format!("{table}: missing unique key {}", cols(u)));
    }
    for u in actual.uniques.difference(&expected.uniques) {
        out.push(format!("{table}: extra unique key {}", cols(u)));
    }
    let show = |r: &Reference| format!("{} ON DELETE {}", r.table, r.on_delete);
    for (c, want) in &expected.foreign_keys {
        match actual.foreign_keys.get(c) {
            None => out.push(format!(
                "{table}: missing foreign key {} -> {}",
                cols(c),
                show(want)
            )),
            Some(have) if have != want => out.push(format!(
                "{table}: foreign key {} -> {}, expected {}",
                cols(c),
                show(have),
                show(want)
            )),
            _ => {}
        }
    }
    for (c, have) in &actual.foreign_keys {
        if !expected.foreign_keys.contains_key(c) {
            out.push(format!(
                "{table}: extra foreign key {} -> {}",
                cols(c),
                show(have)
            ));
        }
    }
    for c in expected.checks.difference(&actual.checks) {
        out.push(format!("{table}: missing check on {}", cols(c)));
    }
    for c in actual.checks.difference(&expected.checks) {
        out.push(format!("{table}: extra check on {}", cols(c)));
    }
    for (index, want) in &expected.indexes {
        if let Some(have) = actual.indexes.get(index).filter(|h| *h != want) {
            out.push(format!(
                "index {index} on {table}: columns {}, expected {}",
                cols(have),
                cols(want)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_normalise_per_dialect() {
        let pg = |s| normalize_type(Dialect::Postgres, s);
        assert_eq!(pg("character varying(36)"), pg("VARCHAR(36)"));
        assert_eq!(pg("numeric(3,1)"), pg("NUMERIC(3, 1)"));
        assert_eq!(pg("timestamp without time zone"), pg("TIMESTAMP"));
        assert_eq!(pg("timestamp(6) without time zone"), pg("TIMESTAMP"));
        assert_ne!(pg("timestamp(3) without time zone"), pg("TIMESTAMP"));
        assert_ne!(pg("integer"), pg("NUMERIC(3,1)"));
        assert_ne!(pg("integer"), pg("BIGINT"));
        let ora = |s| normalize_type(Dialect::Oracle, s);
        assert_eq!(ora("number(10,0)"), ora("NUMBER(10)"));
        assert_eq!(ora("timestamp(6)"), ora("TIMESTAMP"));
        assert_eq!(ora("varchar2(36)"), ora("VARCHAR2(36)"));
        assert_ne!(ora("number(3,1)"), ora("NUMBER(3)"));
        let lite = |s| normalize_type(Dialect::Sqlite, s);
        assert_eq!(lite("VARCHAR(36)"), "TEXT");
        assert_eq!(lite("NUMERIC(3,1)"), "NUMERIC");
        assert_eq!(lite("DECIMAL(3,1)"), "NUMERIC");
        assert_eq!(lite("INTEGER"), "INTEGER");
    }

    #[test]
    fn defaults_normalise() {
        assert_eq!(
            normalize_default("'gpt-4'::character varying"),
            normalize_default("'gpt-4'")
        );
        assert_eq!(
            normalize_default("CURRENT_TIMESTAMP "),
            normalize_default("current_timestamp")
        );
        assert_eq!(normalize_default("(0)"), Some("0".into()));
        assert_eq!(normalize_default("NULL"), None);
    }

    #[test]
    fn a_create_table_gives_its_whole_shape() {
        let sql = "CREATE TABLE pf_user_a_skills (
            id VARCHAR2(36) NOT NULL,
            experience_id VARCHAR2(36),
            years NUMBER(3,1),
            is_primary NUMBER(1) DEFAULT 0 CONSTRAINT pf_user_a_skl_primary_ck CHECK (is_primary IN (0, 1)),
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            CONSTRAINT pf_user_a_skl_pk PRIMARY KEY (id),
            CONSTRAINT pf_user_a_skl_uq UNIQUE (years, id),
            CONSTRAINT pf_user_a_skl_exp_fk FOREIGN KEY (experience_id) REFERENCES pf_user_a_experiences (id) ON DELETE CASCADE
        )";
        let (name, t) = table_of_statement(sql, Dialect::Oracle).unwrap();
        assert_eq!(name, "pf_user_a_skills");
        assert_eq!(t.columns["years"].ty, "NUMBER(3,1)");
        assert!(t.columns["id"].not_null);
        assert_eq!(t.columns["is_primary"].default.as_deref(), Some("0"));
        assert_eq!(
            t.columns["created_at"].default.as_deref(),
            Some("CURRENT_TIMESTAMP")
        );
        assert_eq!(t.primary_key, Some(vec!["id".to_string()]));
        assert!(
            t.uniques
                .contains(&vec!["years".to_string(), "id".to_string()])
        );
        assert_eq!(
            t.foreign_keys[&vec!["experience_id".to_string()]],
            Reference {
                table: "pf_user_a_experiences".into(),
                on_delete: "CASCADE".into()
            }
        );
        assert!(t.checks.contains(&vec!["is_primary".to_string()]));
        // Inline keys, as a hand-made table writes them.
        let (_, t) = table_of_statement(
            "CREATE TABLE x (id TEXT PRIMARY KEY, p TEXT REFERENCES y (id), r TEXT NOT NULL CHECK (r IN ('a')) UNIQUE)",
            Dialect::Sqlite,
        )
        .unwrap();
        assert_eq!(t.primary_key, Some(vec!["id".to_string()]));
        assert_eq!(
            t.foreign_keys[&vec!["p".to_string()]].on_delete,
            "NO ACTION"
        );
        assert!(t.checks.contains(&vec!["r".to_string()]));
        assert!(t.uniques.contains(&vec!["r".to_string()]));
        let (_, t) = table_of_statement(
            "CREATE TABLE x (p TEXT NOT NULL, q TEXT, FOREIGN KEY (p) REFERENCES y (id) ON UPDATE CASCADE ON DELETE SET NULL, \
             CONSTRAINT k FOREIGN KEY (q) REFERENCES z ON DELETE NO ACTION)",
            Dialect::Sqlite,
        )
        .unwrap();
        assert_eq!(t.foreign_keys[&vec!["p".to_string()]].on_delete, "SET NULL");
        assert_eq!(
            t.foreign_keys[&vec!["q".to_string()]].on_delete,
            "NO ACTION"
        );
        assert!(t.columns["p"].not_null);
    }

    #[test]
    fn differences_are_named() {
        let (_, want) = table_of_statement(
            "CREATE TABLE t (id VARCHAR(36) NOT NULL, y NUMERIC(3,1), CONSTRAINT k PRIMARY KEY (id))",
            Dialect::Postgres,
        )
        .unwrap();
        let (_, have) = table_of_statement(
            "CREATE TABLE t (id VARCHAR(36), y INTEGER)",
            Dialect::Postgres,
        )
        .unwrap();
        let d = compare("skills", &want, &have);
        assert!(
            d.contains(&"skills.y: type INTEGER, expected NUMERIC(3,1)".to_string()),
            "{d:?}"
        );
        assert!(d.contains(&"skills.id: nullable, expected NOT NULL".to_string()));
        assert!(d.contains(&"skills: no primary key, expected (id)".to_string()));
        assert!(compare("skills", &want, &want).is_empty());
    }
}
