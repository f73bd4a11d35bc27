//! Deciding whether a failed Oracle DDL step was in fact done before.
//!
//! Every Oracle DDL commits, so a killed run leaves some objects behind and the
//! next run meets "name already used" (ORA-00955) and friends. An error code is
//! not proof that the object is the one the statement defines: ORA-00955 may
//! come from a table where a materialized view belongs, ORA-01408 means the
//! named index was not created at all, ORA-01430 hides a column of another type,
//! ORA-02264 means the table was not created. So a step counts as done only when
//! the catalog shows the object as the statement defines it.
//!
//! Everything here is pure: [`parse`] reads our own statement shapes,
//! [`lookup_for`] says which catalog facts settle an error, the `*_from_rows`
//! functions turn catalog rows into [`Facts`], and [`decide`] gives the verdict.
//! The connection only runs the queries.

use std::fmt;

use crate::db::{Row, Value};

/// What a statement does, as far as the catalog check needs to know. Names are
/// as written in the statement (our templates write them in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ddl {
    /// `CREATE TABLE name (columns and constraints)`; `columns` is None for
    /// `CREATE TABLE name AS SELECT ...`, whose columns the statement does not spell out.
    CreateTable {
        name: String,
        columns: Option<Vec<Column>>,
    },
    /// `CREATE [UNIQUE] INDEX name ON table (columns)`.
    CreateIndex {
        name: String,
        table: String,
        unique: bool,
        columns: Vec<String>,
    },
    /// `ALTER TABLE table ADD column type ...`.
    AddColumn { table: String, column: Column },
    /// `CREATE MATERIALIZED VIEW name ...`.
    CreateMaterializedView { name: String },
    /// `DROP TABLE|INDEX|MATERIALIZED VIEW name ...`.
    Drop { kind: Kind, name: String },
    /// PL/SQL blocks, DML, and any shape we do not know: an error always stands.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Table,
    Index,
    MaterializedView,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Table => "a table",
            Kind::Index => "an index",
            Kind::MaterializedView => "a materialized view",
        }
    }
}

/// A column as a statement declares it or the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub name: String,
    pub ty: OraType,
}

/// An Oracle column type in the terms USER_TAB_COLUMNS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OraType {
    Varchar2(u32),
    NVarchar2(u32),
    Char(u32),
    NChar(u32),
    /// NUMBER(p,s): `NUMBER` is (None, None), `INTEGER` is (None, Some(0)).
    Number {
        precision: Option<u32>,
        scale: Option<i32>,
    },
    Float(u32),
    Date,
    Timestamp(u32),
    Clob,
    NClob,
    Blob,
    /// Anything else, by the catalog's upper-case name (`TIMESTAMP(6) WITH TIME ZONE`).
    Other(String),
}

impl fmt::Display for OraType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OraType::Varchar2(n) => write!(f, "VARCHAR2({n})"),
            OraType::NVarchar2(n) => write!(f, "NVARCHAR2({n})"),
            OraType::Char(n) => write!(f, "CHAR({n})"),
            OraType::NChar(n) => write!(f, "NCHAR({n})"),
            OraType::Number {
                precision: None,
                scale: None,
            } => f.write_str("NUMBER"),
            OraType::Number {
                precision: None,
                scale: Some(0),
            } => f.write_str("INTEGER"),
            OraType::Number {
                precision: None,
                scale: Some(s),
            } => write!(f, "NUMBER(*,{s})"),
            OraType::Number {
                precision: Some(p),
                scale: None | Some(0),
            } => write!(f, "NUMBER({p})"),
            OraType::Number {
                precision: Some(p),
                scale: Some(s),
            } => write!(f, "NUMBER({p},{s})"),
            OraType::Float(b) => write!(f, "FLOAT({b})"),
            OraType::Date => f.write_str("DATE"),
            OraType::Timestamp(p) => write!(f, "TIMESTAMP({p})"),
            OraType::Clob => f.write_str("CLOB"),
            OraType::NClob => f.write_str("NCLOB"),
            OraType::Blob => f.write_str("BLOB"),
            OraType::Other(t) => f.write_str(t),
        }
    }
}

impl OraType {
    /// The type a declaration such as `VARCHAR2(255)`, `NUMBER(3,1)` or
    /// `TIMESTAMP` creates. `name` is the type word(s), `args` what stands in
    /// the parentheses (numbers, `*`, `BYTE`/`CHAR`), `suffix` any words after
    /// them (`WITH TIME ZONE`).
    fn declared(name: &str, args: &[String], suffix: &[String]) -> OraType {
        let name = name.to_ascii_uppercase();
        let nums: Vec<Option<i64>> = args
            .iter()
            .filter(|a| !a.eq_ignore_ascii_case("BYTE") && !a.eq_ignore_ascii_case("CHAR"))
            .map(|a| a.parse::<i64>().ok())
            .collect();
        let size = |default: Option<u32>| match nums.as_slice() {
            [] => default,
            [Some(n)] => u32::try_from(*n).ok(),
            _ => None,
        };
        let canonical = || {
            let mut text = name.clone();
            if !args.is_empty() {
                text.push('(');
                text.push_str(&args.join(","));
                text.push(')');
            }
            for word in suffix {
                text.push(' ');
                text.push_str(&word.to_ascii_uppercase());
            }
            OraType::Other(text)
        };
        if !suffix.is_empty() {
            return canonical();
        }
        let sized = |make: fn(u32) -> OraType, default: Option<u32>| {
            size(default).map(make).unwrap_or_else(canonical)
        };
        match name.as_str() {
            "VARCHAR2" | "VARCHAR" => sized(OraType::Varchar2, None),
            "NVARCHAR2" => sized(OraType::NVarchar2, None),
            "CHAR" => sized(OraType::Char, Some(1)),
            "NCHAR" => sized(OraType::NChar, Some(1)),
            "NUMBER" => {
                let star = args.first().is_some_and(|a| a == "*");
                match (star, nums.as_slice()) {
                    (false, []) => OraType::Number {
                        precision: None,
                        scale: None,
                    },
                    (true, [None]) => OraType::Number {
                        precision: None,
                        scale: None,
                    },
                    (true, [None, Some(s)]) => OraType::Number {
                        precision: None,
                        scale: i32::try_from(*s).ok(),
                    },
                    (false, [Some(p)]) => OraType::Number {
                        precision: u32::try_from(*p).ok(),
                        scale: Some(0),
                    },
                    (false, [Some(p), Some(s)]) => OraType::Number {
                        precision: u32::try_from(*p).ok(),
                        scale: i32::try_from(*s).ok(),
                    },
                    _ => canonical(),
                }
            }
            "INTEGER" | "INT" | "SMALLINT" if args.is_empty() => OraType::Number {
                precision: None,
                scale: Some(0),
            },
            "FLOAT" => sized(OraType::Float, Some(126)),
            "DATE" if args.is_empty() => OraType::Date,
            "TIMESTAMP" => sized(OraType::Timestamp, Some(6)),
            "CLOB" if args.is_empty() => OraType::Clob,
            "NCLOB" if args.is_empty() => OraType::NClob,
            "BLOB" if args.is_empty() => OraType::Blob,
            _ => canonical(),
        }
    }

    /// The type a USER_TAB_COLUMNS row describes.
    pub(crate) fn from_catalog(
        data_type: &str,
        char_length: Option<i64>,
        precision: Option<i64>,
        scale: Option<i64>,
    ) -> OraType {
        let data_type = data_type.trim().to_ascii_uppercase();
        let length = char_length.and_then(|n| u32::try_from(n).ok());
        let by_length = |make: fn(u32) -> OraType| {
            length
                .map(make)
                .unwrap_or_else(|| OraType::Other(data_type.clone()))
        };
        match data_type.as_str() {
            "VARCHAR2" => by_length(OraType::Varchar2),
            "NVARCHAR2" => by_length(OraType::NVarchar2),
            "CHAR" => by_length(OraType::Char),
            "NCHAR" => by_length(OraType::NChar),
            "NUMBER" => OraType::Number {
                precision: precision.and_then(|p| u32::try_from(p).ok()),
                scale: scale.and_then(|s| i32::try_from(s).ok()),
            },
            "FLOAT" => OraType::Float(precision.and_then(|p| u32::try_from(p).ok()).unwrap_or(126)),
            "DATE" => OraType::Date,
            "CLOB" => OraType::Clob,
            "NCLOB" => OraType::NClob,
            "BLOB" => OraType::Blob,
            other => other
                .strip_prefix("TIMESTAMP(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|digits| digits.parse().ok())
                .map(OraType::Timestamp)
                .unwrap_or_else(|| OraType::Other(other.to_string())),
        }
    }
}

// ---------------------------------------------------------------------------
// A small parser of the statement shapes we generate.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word (keyword or identifier) or a number, as written.
    Word(String),
    Punct(char),
    /// A string literal; its content never matters here.
    Str,
}

/// Splits a statement into tokens; None for text we never generate (quoted
/// identifiers, unterminated literals).
fn tokenize(sql: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '-' && chars.peek().is_some_and(|(_, n)| *n == '-') {
            for (_, n) in chars.by_ref() {
                if n == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '\'' {
            let mut closed = false;
            while let Some((_, n)) = chars.next() {
                if n == '\'' {
                    if chars.peek().is_some_and(|(_, m)| *m == '\'') {
                        chars.next();
                    } else {
                        closed = true;
                        break;
                    }
                }
            }
            if !closed {
                return None;
            }
            out.push(Tok::Str);
            continue;
        }
        if c == '"' {
            return None;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' || n == '$' || n == '#' {
                    end = j + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(sql[i..end].to_string()));
            continue;
        }
        out.push(Tok::Punct(c));
    }
    Some(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(toks: &'a [Tok]) -> Self {
        Parser { toks, pos: 0 }
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    /// Consumes `keyword` if it comes next.
    fn keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    fn keywords(&mut self, keywords: &[&str]) -> bool {
        let start = self.pos;
        if keywords.iter().all(|k| self.keyword(k)) {
            true
        } else {
            self.pos = start;
            false
        }
    }

    fn punct(&mut self, c: char) -> bool {
        let found = self.peek() == Some(&Tok::Punct(c));
        if found {
            self.pos += 1;
        }
        found
    }

    /// An unqualified, unquoted name (a `schema.name` is not one of our shapes).
    fn name(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) if !w.starts_with(|c: char| c.is_ascii_digit()) => {
                self.pos += 1;
                if self.peek() == Some(&Tok::Punct('.')) {
                    return None;
                }
                Some(w.clone())
            }
            _ => None,
        }
    }

    /// The tokens between a `(` (consumed here) and its `)`, split at the
    /// top-level commas.
    fn parenthesized(&mut self) -> Option<Vec<&'a [Tok]>> {
        if !self.punct('(') {
            return None;
        }
        let mut depth = 0usize;
        let mut items = Vec::new();
        let mut start = self.pos;
        while let Some(tok) = self.peek() {
            match tok {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') if depth == 0 => {
                    items.push(&self.toks[start..self.pos]);
                    self.pos += 1;
                    return Some(items);
                }
                Tok::Punct(')') => depth -= 1,
                Tok::Punct(',') if depth == 0 => {
                    items.push(&self.toks[start..self.pos]);
                    start = self.pos + 1;
                }
                _ => {}
            }
            self.pos += 1;
        }
        None
    }

    /// A column type: its word(s), optional `(args)`, and `WITH [LOCAL] TIME ZONE`.
    fn column_type(&mut self) -> Option<OraType> {
        let Some(Tok::Word(name)) = self.peek() else {
            return None;
        };
        self.pos += 1;
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::Punct('(')) {
            for item in self.parenthesized()? {
                match item {
                    [Tok::Word(w)] => args.push(w.to_ascii_uppercase()),
                    [Tok::Punct('*')] => args.push("*".into()),
                    [Tok::Word(n), Tok::Word(unit)] => {
                        args.push(n.clone());
                        args.push(unit.to_ascii_uppercase());
                    }
                    _ => return None,
                }
            }
        }
        let mut suffix = Vec::new();
        let start = self.pos;
        if self.keyword("WITH") {
            suffix.push("WITH".to_string());
            if self.keyword("LOCAL") {
                suffix.push("LOCAL".into());
            }
            if self.keywords(&["TIME", "ZONE"]) {
                suffix.push("TIME".into());
                suffix.push("ZONE".into());
            } else {
                self.pos = start;
                suffix.clear();
            }
        }
        Some(OraType::declared(name, &args, &suffix))
    }
}

/// Words that start a table constraint rather than a column in CREATE TABLE.
const TABLE_CONSTRAINT_WORDS: &[&str] = &[
    "CONSTRAINT",
    "PRIMARY",
    "UNIQUE",
    "FOREIGN",
    "CHECK",
    "SUPPLEMENTAL",
];

fn column_definition(element: &[Tok]) -> Option<Column> {
    let mut p = Parser::new(element);
    let name = p.name()?;
    let ty = p.column_type()?;
    Some(Column { name, ty })
}

/// Reads one of our statement shapes; [`Ddl::Other`] for anything else.
pub(crate) fn parse(sql: &str) -> Ddl {
    tokenize(sql)
        .and_then(|tokens| parse_tokens(&tokens))
        .unwrap_or(Ddl::Other)
}

fn parse_tokens(tokens: &[Tok]) -> Option<Ddl> {
    let mut p = Parser::new(tokens);
    if p.keyword("CREATE") {
        if p.keyword("TABLE") {
            let name = p.name()?;
            if p.keyword("AS") {
                return Some(Ddl::CreateTable {
                    name,
                    columns: None,
                });
            }
            let mut columns = Vec::new();
            for element in p.parenthesized()? {
                let first = match element.first() {
                    Some(Tok::Word(w)) => w.to_ascii_uppercase(),
                    _ => return None,
                };
                if TABLE_CONSTRAINT_WORDS.contains(&first.as_str()) {
                    continue;
                }
                columns.push(column_definition(element)?);
            }
            if columns.is_empty() {
                return None;
            }
            return Some(Ddl::CreateTable {
                name,
                columns: Some(columns),
            });
        }
        if p.keywords(&["MATERIALIZED", "VIEW"]) {
            return Some(Ddl::CreateMaterializedView { name: p.name()? });
        }
        let unique = p.keyword("UNIQUE");
        if p.keyword("INDEX") {
            let name = p.name()?;
            if !p.keyword("ON") {
                return None;
            }
            let table = p.name()?;
            let mut columns = Vec::new();
            for element in p.parenthesized()? {
                let mut e = Parser::new(element);
                let column = e.name()?;
                e.keyword("ASC");
                if !e.at_end() {
                    // DESC and expressions make function-based indexes, whose
                    // catalog columns are system names: not a shape we compare.
                    return None;
                }
                columns.push(column);
            }
            return Some(Ddl::CreateIndex {
                name,
                table,
                unique,
                columns,
            });
        }
        return None;
    }
    if p.keywords(&["ALTER", "TABLE"]) {
        let table = p.name()?;
        if !p.keyword("ADD") {
            return None;
        }
        let column = if p.peek() == Some(&Tok::Punct('(')) {
            match p.parenthesized()?.as_slice() {
                [one] => column_definition(one)?,
                _ => return None,
            }
        } else {
            if TABLE_CONSTRAINT_WORDS.iter().any(|w| p.peek_keyword(w)) {
                return None;
            }
            let name = p.name()?;
            let ty = p.column_type()?;
            Column { name, ty }
        };
        return Some(Ddl::AddColumn { table, column });
    }
    if p.keyword("DROP") {
        let kind = if p.keyword("TABLE") {
            Kind::Table
        } else if p.keyword("INDEX") {
            Kind::Index
        } else if p.keywords(&["MATERIALIZED", "VIEW"]) {
            Kind::MaterializedView
        } else {
            return None;
        };
        return Some(Ddl::Drop {
            kind,
            name: p.name()?,
        });
    }
    None
}

// ---------------------------------------------------------------------------
// Which catalog facts settle an error, and the verdict.

/// The catalog facts to fetch after an error (names in catalog case: upper).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// USER_OBJECTS.OBJECT_TYPE of every object with this name.
    pub object: Option<String>,
    /// USER_TAB_COLUMNS of this table.
    pub columns_of: Option<String>,
    /// USER_INDEXES and USER_IND_COLUMNS of the index named `.0` and of every
    /// index on the table `.1`.
    pub indexes: Option<(String, String)>,
}

/// What the catalog said, in catalog case (upper).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub object_types: Vec<String>,
    pub columns: Vec<Column>,
    pub indexes: Vec<IndexFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFacts {
    pub name: String,
    pub table: String,
    pub unique: bool,
    pub columns: Vec<String>,
}

/// The outcome of a failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The catalog shows the object as the statement defines it (or, for a
    /// DROP, gone): the step was done before.
    Done,
    /// One line naming the conflict and the fix.
    Conflict(String),
}

/// The error codes after which the catalog may show that the step was done
/// before: "name in use" for creations, "does not exist" for drops. Any other
/// error stands as it is.
fn confirmable(ddl: &Ddl, code: i32) -> bool {
    let codes: &[i32] = match ddl {
        // 955 name in use; 2260/2261/2275 key already there; 2264 constraint
        // name in use (these three leave the table uncreated).
        Ddl::CreateTable { .. } => &[955, 2260, 2261, 2264, 2275],
        // 955 index name in use; 1408 column list already indexed (by another index).
        Ddl::CreateIndex { .. } => &[955, 1408],
        // 1430 column already exists (perhaps with another type).
        Ddl::AddColumn { .. } => &[1430],
        // 955 name in use; 12006 materialized view already exists.
        Ddl::CreateMaterializedView { .. } => &[955, 12006],
        // "does not exist" for each kind. Never 904 (invalid identifier).
        Ddl::Drop {
            kind: Kind::Table, ..
        } => &[942],
        Ddl::Drop {
            kind: Kind::Index, ..
        } => &[1418],
        Ddl::Drop {
            kind: Kind::MaterializedView,
            ..
        } => &[12003],
        Ddl::Other => &[],
    };
    codes.contains(&code)
}

/// The catalog facts that decide whether `ddl`, failed with ORA-`code`, was done
/// before; None when the error stands without looking.
pub(crate) fn lookup_for(ddl: &Ddl, code: Option<i32>) -> Option<Lookup> {
    let code = code?;
    if !confirmable(ddl, code) {
        return None;
    }
    let upper = |s: &str| s.to_ascii_uppercase();
    Some(match ddl {
        Ddl::CreateTable { name, columns } => Lookup {
            object: Some(upper(name)),
            columns_of: columns.as_ref().map(|_| upper(name)),
            indexes: None,
        },
        Ddl::CreateIndex { name, table, .. } => Lookup {
            indexes: Some((upper(name), upper(table))),
            ..Lookup::default()
        },
        Ddl::AddColumn { table, .. } => Lookup {
            columns_of: Some(upper(table)),
            ..Lookup::default()
        },
        Ddl::CreateMaterializedView { name } | Ddl::Drop { name, .. } => Lookup {
            object: Some(upper(name)),
            ..Lookup::default()
        },
        Ddl::Other => return None,
    })
}

/// Object types that live in the namespace of tables (a table, a view, a
/// synonym, ... cannot share a name; indexes, triggers and constraints can).
fn in_table_namespace(object_type: &str) -> bool {
    !(object_type.starts_with("INDEX")
        || object_type.starts_with("LOB")
        || object_type.ends_with("PARTITION")
        || matches!(
            object_type,
            "TRIGGER" | "PACKAGE BODY" | "TYPE BODY" | "DATABASE LINK" | "JOB" | "PROGRAM"
        ))
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| lower(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "a view", "an index", "a materialized view": for messages.
fn with_article(object_type: &str) -> String {
    let t = object_type.to_ascii_lowercase();
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {t}")
    } else {
        format!("a {t}")
    }
}

/// The message for an object the failed statement did not create.
fn not_created(name: &str, error: &str) -> String {
    format!(
        "{name} was not created ({error}): drop or rename the object that holds the conflicting name, then re-run"
    )
}

/// How the catalog's table differs from the declared columns (empty: it matches).
fn column_differences(declared: &[Column], catalog: &[Column]) -> Vec<String> {
    let mut out = Vec::new();
    for want in declared {
        match catalog
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&want.name))
        {
            None => out.push(format!("column {} is missing", lower(&want.name))),
            Some(got) if got.ty != want.ty => out.push(format!(
                "column {} is {} instead of {}",
                lower(&want.name),
                got.ty,
                want.ty
            )),
            Some(_) => {}
        }
    }
    for got in catalog {
        if !declared
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(&got.name))
        {
            out.push(format!(
                "it has a column {} it should not have",
                lower(&got.name)
            ));
        }
    }
    out
}

fn summarize(differences: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = differences
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if differences.len() > SHOWN {
        text.push_str(&format!(" (and {} more)", differences.len() - SHOWN));
    }
    text
}

/// Whether `ddl`, which failed with `error` (Oracle's one-line message), was
/// done before, given what the catalog says about its object.
pub(crate) fn decide(ddl: &Ddl, facts: &Facts, error: &str) -> Verdict {
    let conflict = |message: String| Verdict::Conflict(message);
    let table_like: Vec<&str> = facts
        .object_types
        .iter()
        .map(String::as_str)
        .filter(|t| in_table_namespace(t))
        .collect();
    let has = |t: &str| table_like.contains(&t);
    match ddl {
        Ddl::CreateTable { name, columns } => {
            if has("MATERIALIZED VIEW") {
                conflict(format!(
                    "{name} exists as a materialized view, not a table: drop it or rename it, then re-run"
                ))
            } else if has("TABLE") {
                let Some(declared) = columns else {
                    return Verdict::Done;
                };
                let differences = column_differences(declared, &facts.columns);
                if differences.is_empty() {
                    Verdict::Done
                } else {
                    conflict(format!(
                        "{name} exists but not as defined: {}: drop it or rename it, then re-run",
                        summarize(&differences)
                    ))
                }
            } else if let Some(other) = table_like.first() {
                conflict(format!(
                    "{name} exists as {}, not a table: drop it or rename it, then re-run",
                    with_article(other)
                ))
            } else {
                conflict(not_created(name, error))
            }
        }
        Ddl::CreateIndex {
            name,
            table,
            unique,
            columns,
        } => {
            let want: Vec<String> = columns.iter().map(|c| c.to_ascii_uppercase()).collect();
            let same_columns = |ix: &IndexFacts| ix.columns == want;
            match facts
                .indexes
                .iter()
                .find(|ix| ix.name.eq_ignore_ascii_case(name))
            {
                Some(ix) if !ix.table.eq_ignore_ascii_case(table) => conflict(format!(
                    "{name} exists but indexes {} ({}) instead of {table} ({}): drop it or rename it, then re-run",
                    lower(&ix.table),
                    list(&ix.columns),
                    list(&want)
                )),
                Some(ix) if !same_columns(ix) => conflict(format!(
                    "{name} exists but indexes ({}) instead of ({}): drop it or rename it, then re-run",
                    list(&ix.columns),
                    list(&want)
                )),
                Some(ix) if ix.unique != *unique => conflict(format!(
                    "{name} exists but is {} on ({}), where the definition wants {}: drop it or rename it, then re-run",
                    if ix.unique {
                        "a unique index"
                    } else {
                        "a non-unique index"
                    },
                    list(&want),
                    if *unique {
                        "a unique one"
                    } else {
                        "a non-unique one"
                    }
                )),
                Some(_) => Verdict::Done,
                None => match facts
                    .indexes
                    .iter()
                    .find(|ix| ix.table.eq_ignore_ascii_case(table) && same_columns(ix))
                {
                    Some(other) => conflict(format!(
                        "{name} was not created: {} already indexes {table} ({}) ({error}): drop {} or rename it to {name}, then re-run",
                        lower(&other.name),
                        list(&want),
                        lower(&other.name)
                    )),
                    None => conflict(not_created(name, error)),
                },
            }
        }
        Ddl::AddColumn { table, column } => match facts
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&column.name))
        {
            Some(got) if got.ty == column.ty => Verdict::Done,
            Some(got) => conflict(format!(
                "{table}.{} exists as {} instead of {}: drop or rename that column, then re-run",
                column.name, got.ty, column.ty
            )),
            None => conflict(format!(
                "{table}.{} was not added ({error}): check the table, then re-run",
                column.name
            )),
        },
        Ddl::CreateMaterializedView { name } => {
            if has("MATERIALIZED VIEW") {
                Verdict::Done
            } else if let Some(other) = table_like.first() {
                conflict(format!(
                    "{name} exists as {}, not a materialized view: drop it or rename it, then re-run",
                    with_article(other)
                ))
            } else {
                conflict(not_created(name, error))
            }
        }
        Ddl::Drop { kind, name } => {
            let same_kind = match kind {
                Kind::Table => has("TABLE") && !has("MATERIALIZED VIEW"),
                Kind::Index => facts.object_types.iter().any(|t| t == "INDEX"),
                Kind::MaterializedView => has("MATERIALIZED VIEW"),
            };
            let other = match kind {
                // An index does not share its name with tables and views.
                Kind::Index => None,
                _ => table_like
                    .iter()
                    .find(|t| **t == "MATERIALIZED VIEW")
                    .or_else(|| table_like.first()),
            };
            if same_kind {
                conflict(format!(
                    "{name} still exists after {error}: check the privileges on it, then re-run"
                ))
            } else if let Some(other) = other {
                conflict(format!(
                    "{name} exists as {}, not {}: drop it by hand or rename it, then re-run",
                    with_article(other),
                    kind.noun()
                ))
            } else {
                Verdict::Done
            }
        }
        Ddl::Other => conflict(error.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Catalog rows into facts (the rows of the queries in `oracle.rs`).

fn text(v: &Value) -> String {
    v.to_text()
}

fn number(v: &Value) -> Option<i64> {
    if v.is_null() { None } else { v.as_i64() }
}

/// Rows of `SELECT object_type FROM user_objects WHERE object_name = ?`.
pub(crate) fn object_types_from_rows(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r.first())
        .map(|v| text(v).to_ascii_uppercase())
        .collect()
}

/// Rows of `SELECT column_name, data_type, char_length, data_precision,
/// data_scale FROM user_tab_columns WHERE table_name = ?`.
pub(crate) fn columns_from_rows(rows: &[Row]) -> Vec<Column> {
    rows.iter()
        .filter(|r| r.len() >= 5)
        .map(|r| Column {
            name: text(&r[0]),
            ty: OraType::from_catalog(&text(&r[1]), number(&r[2]), number(&r[3]), number(&r[4])),
        })
        .collect()
}

/// Rows of `SELECT index_name, table_name, uniqueness, column_name` ordered by
/// index and column position: one [`IndexFacts`] per index.
pub(crate) fn indexes_from_rows(rows: &[Row]) -> Vec<IndexFacts> {
    let mut out: Vec<IndexFacts> = Vec::new();
    for r in rows.iter().filter(|r| r.len() >= 4) {
        let name = text(&r[0]);
        let column = text(&r[3]);
        match out.last_mut() {
            Some(last) if last.name == name => last.columns.push(column),
            _ => out.push(IndexFacts {
                name,
                table: text(&r[1]),
                unique: text(&r[2]).eq_ignore_ascii_case("UNIQUE"),
                columns: vec![column],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dialect::Dialect;
    use crate::schema::render::{Renderer, Statement};
    use crate::schema::tenant::TenantKey;

    fn col(name: &str, ty: OraType) -> Column {
        Column {
            name: name.into(),
            ty,
        }
    }

    /// A declared type from its text alone.
    fn parse_type(text: &str) -> Option<OraType> {
        let tokens = tokenize(text)?;
        let mut p = Parser::new(&tokens);
        let ty = p.column_type()?;
        p.at_end().then_some(ty)
    }

    fn varchar(n: u32) -> OraType {
        OraType::Varchar2(n)
    }

    fn number(p: u32, s: i32) -> OraType {
        OraType::Number {
            precision: Some(p),
            scale: Some(s),
        }
    }

    // --- parser -----------------------------------------------------------

    #[test]
    fn parses_a_create_table_with_constraints() {
        let sql = "CREATE TABLE pf_user_alice_skills (\n    id VARCHAR2(36) NOT NULL,\n    years NUMBER(3,1),\n    \
                   n NUMBER(5),\n    note CLOB,\n    at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n    d DATE,\n    \
                   flag NUMBER(1) DEFAULT 0 CONSTRAINT pf_user_alice_x_ck CHECK (flag IN (0, 1)),\n    \
                   role VARCHAR2(20) NOT NULL CONSTRAINT r_ck CHECK (role IN ('user', 'a,b')),\n    \
                   CONSTRAINT pf_user_alice_skl_pk PRIMARY KEY (id),\n    \
                   CONSTRAINT fk FOREIGN KEY (id) REFERENCES t (id) ON DELETE CASCADE\n)";
        assert_eq!(
            parse(sql),
            Ddl::CreateTable {
                name: "pf_user_alice_skills".into(),
                columns: Some(vec![
                    col("id", varchar(36)),
                    col("years", number(3, 1)),
                    col("n", number(5, 0)),
                    col("note", OraType::Clob),
                    col("at", OraType::Timestamp(6)),
                    col("d", OraType::Date),
                    col("flag", number(1, 0)),
                    col("role", varchar(20)),
                ]),
            }
        );
    }

    #[test]
    fn parses_create_table_as_select_without_columns() {
        assert_eq!(
            parse(
                "CREATE TABLE pf_user_a_skills_archive AS SELECT s.*, CURRENT_TIMESTAMP AS archived_at FROM pf_user_a_skills s WHERE 1 = 0"
            ),
            Ddl::CreateTable {
                name: "pf_user_a_skills_archive".into(),
                columns: None
            }
        );
    }

    #[test]
    fn parses_indexes() {
        assert_eq!(
            parse(
                "CREATE INDEX pf_user_alice_exp_dates_ix ON pf_user_alice_experiences (start_date, end_date)"
            ),
            Ddl::CreateIndex {
                name: "pf_user_alice_exp_dates_ix".into(),
                table: "pf_user_alice_experiences".into(),
                unique: false,
                columns: vec!["start_date".into(), "end_date".into()],
            }
        );
        assert_eq!(
            parse("CREATE UNIQUE INDEX a_uq ON a_archive (id)"),
            Ddl::CreateIndex {
                name: "a_uq".into(),
                table: "a_archive".into(),
                unique: true,
                columns: vec!["id".into()],
            }
        );
        // Function-based and descending indexes are not a shape we compare.
        assert_eq!(parse("CREATE INDEX i ON t (UPPER(x))"), Ddl::Other);
        assert_eq!(parse("CREATE INDEX i ON t (x DESC)"), Ddl::Other);
    }

    #[test]
    fn parses_add_column_in_both_forms_and_catalog_type_spellings() {
        let expected = Ddl::AddColumn {
            table: "t".into(),
            column: col("deleted_at", OraType::Timestamp(6)),
        };
        assert_eq!(parse("ALTER TABLE t ADD deleted_at TIMESTAMP"), expected);
        assert_eq!(parse("ALTER TABLE t ADD (deleted_at TIMESTAMP)"), expected);
        assert_eq!(parse("ALTER TABLE t ADD deleted_at timestamp(6)"), expected);
        assert_eq!(
            parse("ALTER TABLE t ADD n number(10,0)"),
            Ddl::AddColumn {
                table: "t".into(),
                column: col("n", number(10, 0)),
            }
        );
        assert_eq!(
            parse("ALTER TABLE t ADD CONSTRAINT c UNIQUE (x)"),
            Ddl::Other
        );
        assert_eq!(parse("ALTER TABLE t DROP COLUMN x"), Ddl::Other);
    }

    #[test]
    fn parses_materialized_views_drops_and_leaves_the_rest() {
        assert_eq!(
            parse(
                "CREATE MATERIALIZED VIEW v\nBUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS\nSELECT 1 FROM dual"
            ),
            Ddl::CreateMaterializedView { name: "v".into() }
        );
        assert_eq!(
            parse("DROP TABLE t PURGE"),
            Ddl::Drop {
                kind: Kind::Table,
                name: "t".into()
            }
        );
        assert_eq!(
            parse("DROP INDEX i"),
            Ddl::Drop {
                kind: Kind::Index,
                name: "i".into()
            }
        );
        assert_eq!(
            parse("DROP MATERIALIZED VIEW v"),
            Ddl::Drop {
                kind: Kind::MaterializedView,
                name: "v".into()
            }
        );
        assert_eq!(
            parse("BEGIN\n    DBMS_MVIEW.REFRESH('X', method => 'C');\nEND;"),
            Ddl::Other
        );
        assert_eq!(parse("INSERT INTO t (a) VALUES (1)"), Ddl::Other);
        assert_eq!(parse("CREATE TABLE s.t (a NUMBER)"), Ddl::Other);
        assert_eq!(parse("CREATE TABLE \"T\" (a NUMBER)"), Ddl::Other);
        assert_eq!(parse("CREATE VIEW v AS SELECT 1 FROM dual"), Ddl::Other);
    }

    #[test]
    fn declared_types_cover_the_oracle_spellings() {
        let cases = [
            ("VARCHAR2(255)", varchar(255)),
            ("varchar2(36 BYTE)", varchar(36)),
            ("VARCHAR2(10 CHAR)", varchar(10)),
            (
                "NUMBER",
                OraType::Number {
                    precision: None,
                    scale: None,
                },
            ),
            (
                "NUMBER(*,2)",
                OraType::Number {
                    precision: None,
                    scale: Some(2),
                },
            ),
            (
                "INTEGER",
                OraType::Number {
                    precision: None,
                    scale: Some(0),
                },
            ),
            ("NUMBER(1)", number(1, 0)),
            ("NUMBER(3,1)", number(3, 1)),
            ("FLOAT", OraType::Float(126)),
            ("CHAR", OraType::Char(1)),
            ("TIMESTAMP(3)", OraType::Timestamp(3)),
            ("DATE", OraType::Date),
            ("CLOB", OraType::Clob),
            (
                "TIMESTAMP WITH TIME ZONE",
                OraType::Other("TIMESTAMP WITH TIME ZONE".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_type(text), Some(want), "{text}");
        }
        assert_eq!(parse_type("VARCHAR2(10) junk"), None);
    }

    /// What USER_TAB_COLUMNS reports for a declared type, written out by hand
    /// from Oracle's documented behaviour (not derived from our parser).
    fn as_oracle_reports(declared: &str) -> (String, Option<i64>, Option<i64>, Option<i64>) {
        let upper = declared.to_ascii_uppercase();
        let inner = |s: &str| -> Vec<i64> {
            s.split_once('(')
                .map(|(_, r)| r.trim_end_matches(')'))
                .unwrap_or("")
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        };
        if upper.starts_with("VARCHAR2") {
            ("VARCHAR2".into(), Some(inner(&upper)[0]), None, None)
        } else if upper.starts_with("NUMBER") {
            let n = inner(&upper);
            match n.as_slice() {
                [] => ("NUMBER".into(), Some(0), None, None),
                [p] => ("NUMBER".into(), Some(0), Some(*p), Some(0)),
                [p, s] => ("NUMBER".into(), Some(0), Some(*p), Some(*s)),
                _ => panic!("{declared}"),
            }
        } else if upper == "TIMESTAMP" {
            ("TIMESTAMP(6)".into(), Some(0), None, Some(6))
        } else if upper == "DATE" || upper == "CLOB" {
            (upper, Some(0), None, None)
        } else {
            panic!("add {declared} to as_oracle_reports")
        }
    }

    /// The declared type text of each column of a CREATE TABLE, read naively.
    fn declared_type_texts(sql: &str) -> Vec<(String, String)> {
        let body = &sql[sql.find('(').unwrap() + 1..sql.rfind(')').unwrap()];
        body.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("CONSTRAINT"))
            .map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next().unwrap().to_string();
                let ty = words.next().unwrap().trim_end_matches(',').to_string();
                (name, ty)
            })
            .collect()
    }

    fn rendered() -> Vec<Statement> {
        let r = Renderer::new(Dialect::Oracle, None).unwrap();
        let mut out = Vec::new();
        for name in ["alice", "bob_smith"] {
            let key = TenantKey::parse(name, Dialect::Oracle).unwrap();
            for m in r.tenant_migrations(&key).unwrap() {
                out.extend(m.statements);
            }
            out.extend(r.drop_tenant(&key).unwrap());
            out.extend(r.drop_tenant_keeping_archives(&key).unwrap());
            out.extend(r.refresh_career_summary(&key).unwrap());
        }
        for m in r.system_migrations().unwrap() {
            out.extend(m.statements);
        }
        out
    }

    /// Every statement the templates render for Oracle parses into the shape
    /// its first words announce, and a catalog that holds exactly what a
    /// CREATE TABLE declares counts as done.
    #[test]
    fn every_rendered_oracle_statement_parses_into_its_shape() {
        let statements = rendered();
        assert!(statements.len() > 60, "{}", statements.len());
        let mut seen = std::collections::BTreeSet::new();
        for stmt in &statements {
            let head: Vec<&str> = stmt.sql.split_whitespace().take(3).collect();
            let ddl = parse(&stmt.sql);
            match (head.as_slice(), &ddl) {
                (
                    ["CREATE", "TABLE", name],
                    Ddl::CreateTable {
                        name: n,
                        columns: Some(cols),
                    },
                ) => {
                    assert_eq!(n, name);
                    let texts = declared_type_texts(&stmt.sql);
                    assert_eq!(cols.len(), texts.len(), "{}", stmt.sql);
                    let catalog: Vec<Column> = texts
                        .iter()
                        .map(|(c, t)| {
                            let (dt, len, p, s) = as_oracle_reports(t);
                            let len = if dt == "VARCHAR2" { len } else { Some(0) };
                            Column {
                                name: c.to_ascii_uppercase(),
                                ty: OraType::from_catalog(&dt, len, p, s),
                            }
                        })
                        .collect();
                    let facts = Facts {
                        object_types: vec!["TABLE".into()],
                        columns: catalog,
                        indexes: vec![],
                    };
                    assert_eq!(
                        decide(&ddl, &facts, "ORA-00955"),
                        Verdict::Done,
                        "{}",
                        stmt.sql
                    );
                    seen.insert("create table");
                }
                (
                    ["CREATE", "INDEX", name],
                    Ddl::CreateIndex {
                        name: n, columns, ..
                    },
                ) => {
                    assert_eq!(n, name);
                    assert!(!columns.is_empty());
                    seen.insert("create index");
                }
                (
                    ["CREATE", "UNIQUE", "INDEX"],
                    Ddl::CreateIndex {
                        columns,
                        unique: true,
                        ..
                    },
                ) => {
                    assert!(!columns.is_empty());
                    seen.insert("create index");
                }
                (["CREATE", "MATERIALIZED", "VIEW"], Ddl::CreateMaterializedView { .. }) => {
                    seen.insert("create materialized view");
                }
                (["ALTER", "TABLE", _], Ddl::AddColumn { column, .. }) => {
                    // ALTER TABLE <table> ADD <column> <type>
                    let declared = stmt.sql.split_whitespace().nth(5).unwrap();
                    let (dt, len, p, s) = as_oracle_reports(declared);
                    let len = if dt == "VARCHAR2" { len } else { Some(0) };
                    assert_eq!(
                        column.ty,
                        OraType::from_catalog(&dt, len, p, s),
                        "{}",
                        stmt.sql
                    );
                    seen.insert("add column");
                }
                (
                    ["DROP", "TABLE", name],
                    Ddl::Drop {
                        kind: Kind::Table,
                        name: n,
                    },
                ) => {
                    assert_eq!(n, name);
                    seen.insert("drop table");
                }
                (
                    ["DROP", "MATERIALIZED", "VIEW"],
                    Ddl::Drop {
                        kind: Kind::MaterializedView,
                        ..
                    },
                ) => {
                    seen.insert("drop materialized view");
                }
                (["BEGIN", ..], Ddl::Other) => {
                    assert!(stmt.plsql);
                    seen.insert("plsql");
                }
                // Row-level security (system version 6): the application
                // context and its stored PL/SQL units. CREATE OR REPLACE
                // never meets "name in use": an error always stands.
                (["CREATE", "OR", "REPLACE"], Ddl::Other) => {
                    let unit = stmt.sql.split_whitespace().nth(3).unwrap();
                    assert_eq!(stmt.plsql, unit != "CONTEXT", "{}", stmt.sql);
                    assert!(lookup_for(&ddl, Some(955)).is_none());
                    seen.insert("create or replace");
                }
                // Data rows of a migration (the deployment id, the counts of
                // version 8): no DDL check applies.
                (["INSERT", "INTO", _] | ["UPDATE", _, "SET"], Ddl::Other) => {}
                _ => panic!("unexpected shape {ddl:?} for:\n{}", stmt.sql),
            }
        }
        assert_eq!(seen.len(), 8, "{seen:?}");
    }

    /// The statements other modules send through `run_statements` on Oracle:
    /// refinery's history table and rows, the archive tables of deprovision.
    #[test]
    fn parses_the_statements_built_outside_the_templates() {
        use crate::migrate::engine::{HistoryTable, OracleHistory};
        let history = OracleHistory::create_query("pf_user_alice_schema_history").unwrap();
        assert_eq!(
            parse(&history),
            Ddl::CreateTable {
                name: "pf_user_alice_schema_history".into(),
                columns: Some(vec![
                    col("version", number(10, 0)),
                    col("name", varchar(255)),
                    col("applied_on", varchar(255)),
                    col("checksum", varchar(255)),
                ]),
            }
        );
        assert_eq!(
            parse(
                "INSERT INTO h (version, name, applied_on, checksum) VALUES (1, 'V1__x', '2024-01-01T00:00:00Z', '42')"
            ),
            Ddl::Other
        );
    }

    // --- decisions --------------------------------------------------------

    fn facts_with_types(types: &[&str]) -> Facts {
        Facts {
            object_types: types.iter().map(|t| t.to_string()).collect(),
            ..Facts::default()
        }
    }

    fn experiences_table() -> Ddl {
        parse(
            "CREATE TABLE pf_user_alice_experiences (id VARCHAR2(36) NOT NULL, title VARCHAR2(255), start_date DATE, CONSTRAINT pk PRIMARY KEY (id))",
        )
    }

    #[test]
    fn only_name_in_use_codes_are_looked_up_and_never_904() {
        let table = experiences_table();
        assert!(lookup_for(&table, Some(955)).is_some());
        assert!(lookup_for(&table, Some(2264)).is_some());
        assert!(lookup_for(&table, Some(1430)).is_none());
        assert!(lookup_for(&table, Some(54)).is_none());
        assert!(lookup_for(&table, None).is_none());
        let drop = parse("DROP TABLE t PURGE");
        assert!(lookup_for(&drop, Some(942)).is_some());
        assert!(lookup_for(&drop, Some(904)).is_none());
        assert!(lookup_for(&parse("ALTER TABLE t ADD c DATE"), Some(1430)).is_some());
        assert!(lookup_for(&parse("CREATE INDEX i ON t (c)"), Some(1408)).is_some());
        assert!(lookup_for(&parse("BEGIN x; END;"), Some(955)).is_none());
        assert_eq!(
            lookup_for(&parse("CREATE INDEX i ON t (c)"), Some(955)),
            Some(Lookup {
                indexes: Some(("I".into(), "T".into())),
                ..Lookup::default()
            })
        );
        assert_eq!(
            lookup_for(&table, Some(955)),
            Some(Lookup {
                object: Some("PF_USER_ALICE_EXPERIENCES".into()),
                columns_of: Some("PF_USER_ALICE_EXPERIENCES".into()),
                indexes: None,
            })
        );
    }

    #[test]
    fn a_table_is_done_only_when_its_columns_match() {
        let table = experiences_table();
        let mut facts = facts_with_types(&["TABLE", "INDEX"]);
        facts.columns = vec![
            col("ID", varchar(36)),
            col("TITLE", varchar(255)),
            col("START_DATE", OraType::Date),
        ];
        assert_eq!(decide(&table, &facts, "ORA-00955"), Verdict::Done);

        facts.columns[1].ty = varchar(100);
        facts.columns.remove(2);
        facts.columns.push(col("EXTRA", OraType::Clob));
        let Verdict::Conflict(msg) = decide(&table, &facts, "ORA-00955") else {
            panic!("a different table counted as done");
        };
        assert_eq!(
            msg,
            "pf_user_alice_experiences exists but not as defined: column title is VARCHAR2(100) instead of VARCHAR2(255); \
             column start_date is missing; it has a column extra it should not have: drop it or rename it, then re-run"
        );
    }

    #[test]
    fn a_table_where_another_object_is_conflicts() {
        let table = experiences_table();
        let Verdict::Conflict(msg) = decide(
            &table,
            &facts_with_types(&["TABLE", "MATERIALIZED VIEW"]),
            "ORA-00955",
        ) else {
            panic!()
        };
        assert!(
            msg.starts_with("pf_user_alice_experiences exists as a materialized view, not a table"),
            "{msg}"
        );
        let Verdict::Conflict(msg) = decide(&table, &facts_with_types(&["VIEW"]), "ORA-00955")
        else {
            panic!()
        };
        assert!(msg.contains("exists as a view, not a table"), "{msg}");
        // An index of the same name lives in another namespace: not a conflict
        // of its own, so the table is reported as not created.
        let Verdict::Conflict(msg) = decide(
            &table,
            &facts_with_types(&["INDEX"]),
            "ORA-02264: name already used by an existing constraint",
        ) else {
            panic!()
        };
        assert_eq!(
            msg,
            "pf_user_alice_experiences was not created (ORA-02264: name already used by an existing constraint): \
             drop or rename the object that holds the conflicting name, then re-run"
        );
    }

    #[test]
    fn create_table_as_select_needs_only_a_table() {
        let ctas = parse("CREATE TABLE a_archive AS SELECT s.* FROM a s WHERE 1 = 0");
        assert_eq!(
            decide(&ctas, &facts_with_types(&["TABLE"]), "ORA-00955"),
            Verdict::Done
        );
        assert!(matches!(
            decide(&ctas, &facts_with_types(&["SYNONYM"]), "ORA-00955"),
            Verdict::Conflict(m) if m.contains("exists as a synonym, not a table")
        ));
    }

    fn index(name: &str, table: &str, unique: bool, columns: &[&str]) -> IndexFacts {
        IndexFacts {
            name: name.into(),
            table: table.into(),
            unique,
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn an_index_is_done_only_with_its_table_columns_and_uniqueness() {
        let ddl = parse(
            "CREATE INDEX pf_user_alice_exp_dates_ix ON pf_user_alice_experiences (start_date, end_date)",
        );
        let facts = |ix: IndexFacts| Facts {
            indexes: vec![ix],
            ..Facts::default()
        };
        let t = "PF_USER_ALICE_EXPERIENCES";
        let n = "PF_USER_ALICE_EXP_DATES_IX";
        assert_eq!(
            decide(
                &ddl,
                &facts(index(n, t, false, &["START_DATE", "END_DATE"])),
                "ORA-00955"
            ),
            Verdict::Done
        );
        assert_eq!(
            decide(&ddl, &facts(index(n, t, false, &["COMPANY"])), "ORA-00955"),
            Verdict::Conflict(
                "pf_user_alice_exp_dates_ix exists but indexes (company) instead of (start_date, end_date): drop it or rename it, then re-run".into()
            )
        );
        assert_eq!(
            decide(&ddl, &facts(index(n, t, false, &["END_DATE", "START_DATE"])), "ORA-00955"),
            Verdict::Conflict(
                "pf_user_alice_exp_dates_ix exists but indexes (end_date, start_date) instead of (start_date, end_date): drop it or rename it, then re-run".into()
            )
        );
        assert!(matches!(
            decide(&ddl, &facts(index(n, "PF_USER_BOB_EXPERIENCES", false, &["START_DATE", "END_DATE"])), "ORA-00955"),
            Verdict::Conflict(m) if m.contains("indexes pf_user_bob_experiences (start_date, end_date) instead of pf_user_alice_experiences")
        ));
        assert!(matches!(
            decide(&ddl, &facts(index(n, t, true, &["START_DATE", "END_DATE"])), "ORA-00955"),
            Verdict::Conflict(m) if m.contains("is a unique index")
        ));
    }

    #[test]
    fn ora_01408_means_the_named_index_is_missing() {
        let ddl =
            parse("CREATE INDEX pf_user_alice_skl_exp_ix ON pf_user_alice_skills (experience_id)");
        let facts = Facts {
            indexes: vec![
                index(
                    "PF_USER_ALICE_SKL_NAME_IX",
                    "PF_USER_ALICE_SKILLS",
                    false,
                    &["SKILL_NAME"],
                ),
                index(
                    "HAND_MADE_IX",
                    "PF_USER_ALICE_SKILLS",
                    false,
                    &["EXPERIENCE_ID"],
                ),
            ],
            ..Facts::default()
        };
        assert_eq!(
            decide(&ddl, &facts, "ORA-01408: such column list already indexed"),
            Verdict::Conflict(
                "pf_user_alice_skl_exp_ix was not created: hand_made_ix already indexes pf_user_alice_skills (experience_id) \
                 (ORA-01408: such column list already indexed): drop hand_made_ix or rename it to pf_user_alice_skl_exp_ix, then re-run".into()
            )
        );
        assert!(matches!(
            decide(&ddl, &Facts::default(), "ORA-01408: such column list already indexed"),
            Verdict::Conflict(m) if m.starts_with("pf_user_alice_skl_exp_ix was not created")
        ));
    }

    #[test]
    fn an_added_column_is_done_only_with_its_type() {
        let ddl = parse("ALTER TABLE pf_user_alice_chat_messages ADD deleted_at TIMESTAMP");
        let facts = |ty: OraType| Facts {
            columns: vec![col("ID", varchar(36)), col("DELETED_AT", ty)],
            ..Facts::default()
        };
        assert_eq!(
            decide(&ddl, &facts(OraType::Timestamp(6)), "ORA-01430"),
            Verdict::Done
        );
        assert_eq!(
            decide(&ddl, &facts(varchar(10)), "ORA-01430"),
            Verdict::Conflict(
                "pf_user_alice_chat_messages.deleted_at exists as VARCHAR2(10) instead of TIMESTAMP(6): drop or rename that column, then re-run".into()
            )
        );
        assert!(matches!(
            decide(&ddl, &Facts::default(), "ORA-01430"),
            Verdict::Conflict(m) if m.contains("was not added")
        ));
    }

    #[test]
    fn a_materialized_view_is_done_only_as_one() {
        let ddl = parse(
            "CREATE MATERIALIZED VIEW pf_user_alice_career_summary\nBUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS\nSELECT 1 FROM dual",
        );
        // Oracle lists a materialized view and its container table.
        assert_eq!(
            decide(
                &ddl,
                &facts_with_types(&["TABLE", "MATERIALIZED VIEW"]),
                "ORA-00955"
            ),
            Verdict::Done
        );
        assert_eq!(
            decide(&ddl, &facts_with_types(&["TABLE"]), "ORA-00955"),
            Verdict::Conflict(
                "pf_user_alice_career_summary exists as a table, not a materialized view: drop it or rename it, then re-run".into()
            )
        );
        assert!(matches!(
            decide(&ddl, &facts_with_types(&[]), "ORA-00955"),
            Verdict::Conflict(m) if m.contains("was not created")
        ));
    }

    #[test]
    fn a_drop_is_done_only_when_nothing_of_that_name_is_left() {
        let drop_table = parse("DROP TABLE pf_user_alice_skills PURGE");
        assert_eq!(
            decide(&drop_table, &facts_with_types(&[]), "ORA-00942"),
            Verdict::Done
        );
        // An index of the same name is no table.
        assert_eq!(
            decide(&drop_table, &facts_with_types(&["INDEX"]), "ORA-00942"),
            Verdict::Done
        );
        assert!(matches!(
            decide(&drop_table, &facts_with_types(&["VIEW"]), "ORA-00942"),
            Verdict::Conflict(m) if m == "pf_user_alice_skills exists as a view, not a table: drop it by hand or rename it, then re-run"
        ));
        let drop_view = parse("DROP MATERIALIZED VIEW pf_user_alice_career_summary");
        assert_eq!(
            decide(&drop_view, &facts_with_types(&[]), "ORA-12003"),
            Verdict::Done
        );
        assert!(matches!(
            decide(&drop_view, &facts_with_types(&["TABLE"]), "ORA-12003"),
            Verdict::Conflict(m) if m.contains("exists as a table, not a materialized view")
        ));
        let drop_index = parse("DROP INDEX i");
        assert_eq!(
            decide(&drop_index, &facts_with_types(&["TABLE"]), "ORA-01418"),
            Verdict::Done
        );
        assert!(matches!(
            decide(&drop_index, &facts_with_types(&["INDEX"]), "ORA-01418"),
            Verdict::Conflict(m) if m.contains("still exists")
        ));
    }

    // --- catalog rows -----------------------------------------------------

    #[test]
    fn catalog_rows_become_facts() {
        let t = |s: &str| Value::Text(s.into());
        let rows = vec![
            vec![
                t("ID"),
                t("VARCHAR2"),
                Value::Int(36),
                Value::Null,
                Value::Null,
            ],
            vec![
                t("YEARS"),
                t("NUMBER"),
                Value::Int(0),
                Value::Int(3),
                Value::Int(1),
            ],
            vec![t("N"), t("NUMBER"), Value::Int(0), Value::Null, Value::Null],
            vec![
                t("AT"),
                t("TIMESTAMP(6)"),
                Value::Int(0),
                Value::Null,
                Value::Int(6),
            ],
            vec![
                t("TZ"),
                t("TIMESTAMP(6) WITH TIME ZONE"),
                Value::Int(0),
                Value::Null,
                Value::Int(6),
            ],
        ];
        assert_eq!(
            columns_from_rows(&rows),
            vec![
                col("ID", varchar(36)),
                col("YEARS", number(3, 1)),
                col(
                    "N",
                    OraType::Number {
                        precision: None,
                        scale: None
                    }
                ),
                col("AT", OraType::Timestamp(6)),
                col("TZ", OraType::Other("TIMESTAMP(6) WITH TIME ZONE".into())),
            ]
        );
        let rows = vec![
            vec![t("A_IX"), t("T"), t("NONUNIQUE"), t("X")],
            vec![t("A_IX"), t("T"), t("NONUNIQUE"), t("Y")],
            vec![t("B_UQ"), t("T"), t("UNIQUE"), t("ID")],
        ];
        assert_eq!(
            indexes_from_rows(&rows),
            vec![
                index("A_IX", "T", false, &["X", "Y"]),
                index("B_UQ", "T", true, &["ID"])
            ]
        );
        assert_eq!(
            object_types_from_rows(&[vec![t("TABLE")], vec![t("materialized view")]]),
            vec!["TABLE".to_string(), "MATERIALIZED VIEW".to_string()]
        );
    }
}
