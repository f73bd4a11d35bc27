//! A static check of every Oracle statement pathfinder-db renders (tenant
//! migrations, system migrations, the career-summary refresh and the tenant drop),
//! run by every `cargo test`: no Oracle server needed.
//!
//! Two layers:
//! 1. Parsing with sqlparser's `OracleDialect`, which accepts the Oracle types
//!    we use (VARCHAR2, CLOB, NUMBER(p,s)) and `DROP TABLE ... PURGE`. The kinds it
//!    cannot parse are listed in [`UNPARSABLE`] and get targeted checks instead.
//! 2. The project's own lint: identifier length, unique index/constraint names,
//!    statement terminators, no 23ai-only syntax, no PostgreSQL/SQLite types,
//!    DEFAULT before inline constraints.
//!
//! Identifiers and keywords are found with sqlparser's tokenizer rather than a
//! regex, so words inside string literals ('AES-256-GCM', 'draft') never count.

use std::collections::{BTreeMap, BTreeSet};

use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::{Renderer, Statement};
use pathfinder_db::schema::tenant::{TenantKey, max_key_len};
use sqlparser::ast::{ColumnOption, DataType, Statement as Ast};
use sqlparser::dialect::OracleDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

const ORACLE: Dialect = Dialect::Oracle;

/// Statement kinds sqlparser's OracleDialect cannot parse, with the
/// targeted check each gets instead:
/// - `CREATE MATERIALIZED VIEW x BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS q`:
///   sqlparser knows `CREATE MATERIALIZED VIEW x AS q` but not Oracle's build and
///   refresh clauses. Checked by [`check_materialized_view`]: exactly that clause,
///   then a query that parses.
/// - PL/SQL anonymous blocks `BEGIN ... END;`: sqlparser reads `BEGIN` as the
///   start of a transaction. Checked by [`check_plsql_block`]: `BEGIN`, calls that
///   parse as `CALL pkg.proc(...)` or `EXECUTE IMMEDIATE '<ALTER TABLE>'` whose
///   text parses, inner blocks that let one named ORA- error through, `END;`.
/// - `CREATE OR REPLACE CONTEXT name USING package` (row-level security,
///   system version 6): no dialect of sqlparser knows application contexts.
///   Checked by [`check_context`]: exactly that shape, two plain names.
/// - Stored PL/SQL units `CREATE OR REPLACE PACKAGE [BODY] | FUNCTION ... END
///   name;` (the context's package, the VPD policy function). Checked by
///   [`check_plsql_unit`]: the header, balanced blocks and IFs, and every
///   call, condition and returned expression parsing as SQL.
/// - `CREATE OR REPLACE TRIGGER name AFTER ... ON table FOR EACH ROW WHEN
///   (cond) BEGIN dml; END;` (the registry's count per member, system version
///   8). Checked by [`check_trigger`]: that shape, the condition parsing as a
///   WHERE clause and the body as one UPDATE.
const UNPARSABLE: &[&str] = &[
    "CREATE MATERIALIZED VIEW ... BUILD IMMEDIATE",
    "PL/SQL BEGIN ... END;",
    "CREATE OR REPLACE CONTEXT ... USING",
    "CREATE OR REPLACE PACKAGE | FUNCTION ... END name;",
    "CREATE OR REPLACE TRIGGER ... FOR EACH ROW",
];

const MV_CLAUSE: &str = "BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS";

fn renderer() -> Renderer {
    Renderer::new(ORACLE, None).expect("built-in templates load")
}

fn key(name: &str) -> TenantKey {
    TenantKey::parse(name, ORACLE).expect("valid Oracle key")
}

/// The longest key Oracle accepts (`max_key_len(Oracle)` letters).
fn long_key() -> TenantKey {
    let name: String = "abcdefghij"
        .chars()
        .cycle()
        .take(max_key_len(ORACLE))
        .collect();
    key(&name)
}

fn tenant_statements(key: &TenantKey) -> Vec<Statement> {
    let r = renderer();
    let mut out = Vec::new();
    for m in r.tenant_migrations(key).expect("tenant renders") {
        out.extend(m.statements);
    }
    out
}

fn system_statements() -> Vec<Statement> {
    let mut out = Vec::new();
    for m in renderer().system_migrations().expect("system renders") {
        out.extend(m.statements);
    }
    out
}

/// Everything Oracle is ever sent for `key`: migrations, refresh, drop.
fn all_tenant_statements(key: &TenantKey) -> Vec<Statement> {
    let r = renderer();
    let mut out = tenant_statements(key);
    out.extend(r.refresh_career_summary(key).expect("refresh renders"));
    out.extend(r.drop_tenant(key).expect("drop renders"));
    out
}

/// Every statement under test: tenants `alice` and the longest key, the system schema.
fn every_statement() -> Vec<Statement> {
    let mut out = all_tenant_statements(&key("alice"));
    out.extend(all_tenant_statements(&long_key()));
    out.extend(system_statements());
    assert!(out.len() > 30, "suspiciously few statements: {}", out.len());
    out
}

fn tokens(sql: &str) -> Vec<Token> {
    Tokenizer::new(&OracleDialect {}, sql)
        .tokenize()
        .unwrap_or_else(|e| panic!("cannot tokenize {sql}: {e}"))
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect()
}

/// The unquoted words (identifiers and keywords) of a statement, upper-cased
/// (Oracle folds unquoted names), string literals excluded.
fn words(sql: &str) -> Vec<String> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => {
                assert!(
                    w.quote_style.is_none(),
                    "quoted identifier {w} in {sql}: we never quote names"
                );
                Some(w.value.to_ascii_uppercase())
            }
            _ => None,
        })
        .collect()
}

fn is_materialized_view(stmt: &Statement) -> bool {
    stmt.sql.starts_with("CREATE MATERIALIZED VIEW ")
}

fn parse_one(sql: &str) -> Ast {
    let mut parsed = Parser::parse_sql(&OracleDialect {}, sql)
        .unwrap_or_else(|e| panic!("sqlparser refuses this Oracle statement: {e}\n{sql}"));
    assert_eq!(parsed.len(), 1, "not exactly one statement:\n{sql}");
    parsed.remove(0)
}

/// `CREATE MATERIALIZED VIEW <name>\nBUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS\n<query>`:
/// returns the view name after checking the clause and parsing the query.
fn check_materialized_view(sql: &str) -> String {
    let rest = sql
        .strip_prefix("CREATE MATERIALIZED VIEW ")
        .expect("starts with CREATE MATERIALIZED VIEW");
    let (name, rest) = rest.split_once('\n').expect("name on the first line");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "view name {name:?}"
    );
    let query = rest
        .strip_prefix(MV_CLAUSE)
        .unwrap_or_else(|| panic!("materialized view without `{MV_CLAUSE}`:\n{sql}"))
        .trim_start();
    // The same view without Oracle's clauses is something sqlparser can parse.
    match parse_one(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")) {
        Ast::CreateView(view) if view.materialized => assert!(
            view.query.to_string().starts_with("SELECT"),
            "view body is not a query"
        ),
        other => panic!("not a materialized view: {other}"),
    }
    name.to_string()
}

/// A PL/SQL block: `BEGIN`, one or more `pkg.proc(args);` calls or
/// `EXECUTE IMMEDIATE '<ALTER TABLE ...>';` (optionally in an inner block
/// that lets one named error through), `END;`. Each call must parse as `CALL
/// pkg.proc(args)`, each dynamic statement as itself. Returns them.
fn check_plsql_block(sql: &str) -> Vec<String> {
    let lines: Vec<&str> = sql.lines().map(str::trim).collect();
    assert_eq!(
        lines.first(),
        Some(&"BEGIN"),
        "block must start with BEGIN:\n{sql}"
    );
    assert_eq!(
        lines.last(),
        Some(&"END;"),
        "block must end with END;:\n{sql}"
    );
    let body = &lines[1..lines.len() - 1];
    assert!(!body.is_empty(), "empty PL/SQL block");
    body.iter()
        .filter(|line| !EXCEPTION_GUARD.contains(line) && !is_sqlcode_test(line))
        .map(|line| {
            if let Some(literal) = line
                .strip_prefix("EXECUTE IMMEDIATE '")
                .and_then(|l| l.strip_suffix("';"))
            {
                // The statement inside the string parses like any other.
                let ddl = literal.replace("''", "'");
                return match parse_one(&ddl) {
                    Ast::AlterTable { .. } => ddl,
                    other => panic!("not an ALTER TABLE: {other}"),
                };
            }
            let call = line
                .strip_suffix(';')
                .unwrap_or_else(|| panic!("PL/SQL call without `;`: {line}"));
            match parse_one(&format!("CALL {call}")) {
                Ast::Call(_) => call.to_string(),
                other => panic!("not a procedure call: {other}"),
            }
        })
        .collect()
}

/// The lines of an inner block that lets one expected error through (a
/// re-run after a kill): `BEGIN`, the statement, `EXCEPTION WHEN OTHERS THEN
/// IF SQLCODE != -n THEN RAISE; END IF; END;`.
const EXCEPTION_GUARD: &[&str] = &[
    "BEGIN",
    "EXCEPTION",
    "WHEN OTHERS THEN",
    "RAISE;",
    "END IF;",
    "END;",
];

/// `IF SQLCODE != -2443 THEN`: a guard naming one ORA- error code.
fn is_sqlcode_test(line: &str) -> bool {
    line.strip_prefix("IF SQLCODE != -")
        .and_then(|l| l.strip_suffix(" THEN"))
        .is_some_and(|code| !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()))
}

/// 1. Every statement parses, or is one of the [`UNPARSABLE`] kinds and passes
///    its targeted check.
#[test]
fn every_statement_parses_or_passes_its_targeted_check() {
    let mut seen_unparsable = BTreeSet::new();
    for stmt in every_statement() {
        if stmt.plsql && is_trigger(&stmt) {
            check_trigger(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[4]);
        } else if stmt.plsql && is_plsql_unit(&stmt) {
            check_plsql_unit(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[3]);
        } else if stmt.plsql {
            check_plsql_block(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[1]);
        } else if is_context(&stmt) {
            check_context(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[2]);
        } else if is_materialized_view(&stmt) {
            check_materialized_view(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[0]);
        } else {
            // Parse errors panic inside parse_one with the statement.
            let ast = parse_one(&stmt.sql);
            assert!(
                matches!(
                    ast,
                    Ast::CreateTable(_)
                        | Ast::CreateIndex(_)
                        | Ast::AlterTable { .. }
                        | Ast::Drop { .. }
                        | Ast::Insert(_)
                        | Ast::Update { .. }
                ),
                "unexpected statement kind in Oracle DDL: {}",
                stmt.sql
            );
        }
    }
    // If a kind disappears from the templates, the allow-list must shrink with it.
    assert_eq!(
        seen_unparsable.len(),
        UNPARSABLE.len(),
        "{seen_unparsable:?}"
    );
}

/// The refresh is `DBMS_MVIEW.REFRESH` of exactly the view that V1 created,
/// named the way Oracle's catalog stores it (upper case), with a complete refresh.
#[test]
fn refresh_refreshes_the_tenants_own_view() {
    for key in [key("alice"), long_key()] {
        let views: Vec<String> = tenant_statements(&key)
            .iter()
            .filter(|s| is_materialized_view(s))
            .map(|s| check_materialized_view(&s.sql))
            .collect();
        assert_eq!(views, vec![key.object("career_summary")]);
        let refresh = renderer().refresh_career_summary(&key).unwrap();
        assert_eq!(refresh.len(), 1, "{refresh:?}");
        assert!(refresh[0].plsql, "the refresh is a PL/SQL block");
        let calls = check_plsql_block(&refresh[0].sql);
        assert_eq!(
            calls,
            vec![format!(
                "DBMS_MVIEW.REFRESH('{}', method => 'C')",
                views[0].to_ascii_uppercase()
            )]
        );
    }
}

/// Oracle (12.2+, 19c, 23ai) refuses identifiers over 128 bytes.
#[test]
fn every_identifier_fits_128_bytes() {
    assert_eq!(ORACLE.max_identifier_bytes(), Some(128));
    let longest = lint_identifier_length(&every_statement());
    // The long key really is exercised: its names are the longest seen.
    assert!(
        longest.starts_with(&long_key().prefix().to_ascii_uppercase()),
        "{longest}"
    );
}

/// Panics on an identifier over Oracle's limit; returns the longest one.
fn lint_identifier_length(statements: &[Statement]) -> String {
    let limit = ORACLE.max_identifier_bytes().unwrap();
    let mut longest = String::new();
    for stmt in statements {
        for word in words(&stmt.sql) {
            assert!(
                word.len() <= limit,
                "identifier {word} is {} bytes (> {limit}) in:\n{}",
                word.len(),
                stmt.sql
            );
            if word.len() > longest.len() {
                longest = word;
            }
        }
    }
    longest
}

/// Names declared by `CONSTRAINT x` and `CREATE [UNIQUE] INDEX x`, and the
/// tables/views created (`CREATE TABLE x`, `CREATE MATERIALIZED VIEW x`).
#[derive(Default)]
struct Declared {
    constraints: Vec<String>,
    indexes: Vec<String>,
    relations: Vec<String>,
}

fn declared(statements: &[Statement]) -> Declared {
    let mut out = Declared::default();
    for stmt in statements {
        let w = words(&stmt.sql);
        for (i, word) in w.iter().enumerate() {
            let next = || w.get(i + 1).cloned().expect("a name follows");
            match word.as_str() {
                "CONSTRAINT" => out.constraints.push(next()),
                "INDEX" if i >= 1 && (w[i - 1] == "CREATE" || w[i - 1] == "UNIQUE") => {
                    out.indexes.push(next())
                }
                "TABLE" if i == 1 && w[0] == "CREATE" => out.relations.push(next()),
                "VIEW" if i == 2 && w[0] == "CREATE" => out.relations.push(next()),
                _ => {}
            }
        }
    }
    out
}

fn assert_unique(kind: &str, names: &[String]) {
    let mut seen = BTreeMap::new();
    for n in names {
        *seen.entry(n).or_insert(0) += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "duplicate {kind} names: {dups:?}");
}

/// Index and constraint names are per schema on Oracle: two tenants and the
/// system schema in one schema must not share one (trap 2 of the seed schema).
#[test]
fn index_and_constraint_names_are_unique_across_tenants_and_system() {
    let mut statements = tenant_statements(&key("alice"));
    statements.extend(tenant_statements(&key("bob")));
    statements.extend(tenant_statements(&long_key()));
    statements.extend(system_statements());
    let d = declared(&statements);
    // 3 tenants x (9 PKs + at least 3 FKs ...) + system: far from empty.
    assert!(
        d.constraints.len() >= 3 * 16 + 20,
        "{}",
        d.constraints.len()
    );
    assert!(d.indexes.len() >= 3 * 6 + 7, "{}", d.indexes.len());
    assert_eq!(
        d.relations.len(),
        3 * 10 + 11,
        "3 x (9 tables + summary) + 11 system tables (V4 added pf_audit_log_archive, V7 pf_databases)"
    );
    assert_unique("constraint", &d.constraints);
    assert_unique("index", &d.indexes);
    // Tables and views share one namespace on Oracle.
    assert_unique("table/view", &d.relations);
    // Every tenant object carries its tenant's prefix.
    for k in [key("alice"), key("bob"), long_key()] {
        let prefix = k.prefix().to_ascii_uppercase();
        let d = declared(&tenant_statements(&k));
        for name in d.constraints.iter().chain(&d.indexes).chain(&d.relations) {
            assert!(name.starts_with(&prefix), "{name} lacks {prefix}");
        }
    }
}

/// Oracle refuses a trailing `;` on a plain statement (ORA-00933/ORA-00911),
/// while a PL/SQL block must end with `END;`.
#[test]
fn statement_terminators() {
    let blocks = lint_terminators(&every_statement());
    assert!(blocks >= 2, "the refresh blocks were not checked");
}

/// Returns the number of PL/SQL blocks seen.
fn lint_terminators(statements: &[Statement]) -> usize {
    let mut blocks = 0;
    for stmt in statements {
        let sql = stmt.sql.trim_end();
        if is_trigger(stmt) {
            assert!(sql.ends_with("\nEND;"), "trigger without END;:\n{sql}");
        } else if stmt.plsql && is_plsql_unit(stmt) {
            // A stored unit ends with `END <its name>;`.
            let (_, name) = unit_header(sql);
            assert!(
                sql.ends_with(&format!("\nEND {name};")),
                "PL/SQL unit without END {name};:\n{sql}"
            );
        } else if stmt.plsql {
            blocks += 1;
            assert!(
                sql.starts_with("BEGIN") || sql.starts_with("DECLARE"),
                "{sql}"
            );
            assert!(sql.ends_with("END;"), "PL/SQL block without END;:\n{sql}");
        } else {
            assert!(!sql.ends_with(';'), "plain statement ends with ';':\n{sql}");
            // No `;` at all outside literals: the driver sends one statement.
            assert!(
                !tokens(sql).contains(&Token::SemiColon),
                "';' inside a plain statement:\n{sql}"
            );
            assert!(
                !sql.ends_with('/'),
                "SQL*Plus '/' inside a statement:\n{sql}"
            );
        }
    }
    blocks
}

/// Oracle 19c must run everything: no 23ai-only syntax.
#[test]
fn no_23ai_only_syntax() {
    lint_no_23ai(&every_statement());
}

fn lint_no_23ai(statements: &[Statement]) {
    for stmt in statements {
        let w = words(&stmt.sql);
        for pair in w.windows(2) {
            assert!(
                pair != ["IF", "EXISTS"],
                "IF EXISTS is 23ai-only:\n{}",
                stmt.sql
            );
        }
        for triple in w.windows(3) {
            assert!(
                triple != ["IF", "NOT", "EXISTS"],
                "IF NOT EXISTS is 23ai-only:\n{}",
                stmt.sql
            );
        }
        for ty in ["BOOLEAN", "JSON", "VECTOR"] {
            assert!(
                !w.iter().any(|x| x == ty),
                "{ty} type is 23ai-only:\n{}",
                stmt.sql
            );
        }
    }
}

/// No PostgreSQL or SQLite type names: they either fail on Oracle or mean
/// something else (Oracle's INTEGER is NUMBER(38)).
#[test]
fn no_postgres_or_sqlite_types() {
    lint_no_foreign_types(&every_statement());
}

fn lint_no_foreign_types(statements: &[Statement]) {
    for stmt in statements {
        let toks = tokens(&stmt.sql);
        for (i, t) in toks.iter().enumerate() {
            let Token::Word(w) = t else { continue };
            let word = w.value.to_ascii_uppercase();
            assert!(
                !["TEXT", "SMALLINT", "INTEGER", "BIGINT", "NUMERIC", "SERIAL"]
                    .contains(&word.as_str()),
                "{word} is not an Oracle type:\n{}",
                stmt.sql
            );
            assert!(
                !(word == "VARCHAR" && toks.get(i + 1) == Some(&Token::LParen)),
                "VARCHAR( instead of VARCHAR2(:\n{}",
                stmt.sql
            );
        }
    }
}

/// Whitelist of column types: what `Dialect::Oracle` produces and nothing else.
fn is_oracle_column_type(ty: &DataType) -> bool {
    let text = ty.to_string();
    let args_ok = |inner: &str| {
        inner
            .split(',')
            .all(|n| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()))
    };
    match text.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').unwrap_or("x");
            matches!(name, "VARCHAR2" | "NUMBER") && args_ok(inner)
        }
        None => matches!(text.as_str(), "CLOB" | "DATE" | "TIMESTAMP"),
    }
}

/// Every column, of every table and every ALTER TABLE ADD, has an Oracle type,
/// and its DEFAULT comes before its inline constraints: Oracle's grammar is
/// `column type [DEFAULT expr] [inline_constraint ...]`, so `NOT NULL DEFAULT 0`
/// or `CHECK (...) DEFAULT 0` is ORA-00907.
#[test]
fn column_types_and_default_before_constraints() {
    let (columns, defaults, defaults_with_check) = lint_columns(&every_statement());
    assert!(columns > 100, "{columns} columns checked");
    assert!(defaults > 20, "{defaults} defaults checked");
    assert!(
        defaults_with_check >= 3,
        "{defaults_with_check} flags checked"
    );
}

/// Returns (columns, columns with a DEFAULT, of which with a CHECK too).
fn lint_columns(statements: &[Statement]) -> (usize, usize, usize) {
    let mut columns = 0;
    let mut defaults = 0;
    let mut defaults_with_check = 0;
    for stmt in statements {
        if stmt.plsql || is_materialized_view(stmt) || is_context(stmt) {
            continue;
        }
        let defs = match parse_one(&stmt.sql) {
            Ast::CreateTable(t) => t.columns,
            Ast::AlterTable(alter) => alter
                .operations
                .into_iter()
                .filter_map(|op| match op {
                    sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } => {
                        Some(column_def)
                    }
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        for col in defs {
            columns += 1;
            assert!(
                is_oracle_column_type(&col.data_type),
                "column {} has type {} in:\n{}",
                col.name,
                col.data_type,
                stmt.sql
            );
            let position = |pred: &dyn Fn(&ColumnOption) -> bool| {
                col.options.iter().position(|o| pred(&o.option))
            };
            if let Some(d) = position(&|o| matches!(o, ColumnOption::Default(_))) {
                defaults += 1;
                assert_eq!(
                    d, 0,
                    "DEFAULT of column {} is not placed before its constraints:\n{}",
                    col.name, stmt.sql
                );
                if position(&|o| matches!(o, ColumnOption::Check(_))).is_some() {
                    defaults_with_check += 1;
                }
            }
        }
    }
    (columns, defaults, defaults_with_check)
}

/// Oracle stores unquoted names upper-case and compares them that way: two
/// names differing only in case would be one name. We never quote, so every
/// name must be lower case in the templates (the catalog lookups rely on it).
#[test]
fn names_are_lower_case_in_the_templates() {
    for stmt in &every_statement() {
        for t in tokens(&stmt.sql) {
            if let Token::Word(w) = t
                && w.value.starts_with("pf_")
            {
                assert_eq!(w.value, w.value.to_ascii_lowercase(), "{}", stmt.sql);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Row-level security (system version 6): the application context, its
// package, the VPD policy function and the policies.

fn is_context(stmt: &Statement) -> bool {
    !stmt.plsql && stmt.sql.starts_with("CREATE OR REPLACE CONTEXT ")
}

fn is_plsql_unit(stmt: &Statement) -> bool {
    stmt.plsql && stmt.sql.starts_with("CREATE OR REPLACE ") && !is_trigger(stmt)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `CREATE OR REPLACE CONTEXT <name> USING <package>`: returns (name, package).
fn check_context(sql: &str) -> (String, String) {
    let words: Vec<&str> = sql.split_whitespace().collect();
    match words.as_slice() {
        ["CREATE", "OR", "REPLACE", "CONTEXT", name, "USING", package]
            if is_plain_name(name) && is_plain_name(package) =>
        {
            (name.to_string(), package.to_string())
        }
        _ => panic!("not `CREATE OR REPLACE CONTEXT name USING package`:\n{sql}"),
    }
}

/// ("PACKAGE" | "PACKAGE BODY" | "FUNCTION", name) of a stored unit's first line.
fn unit_header(sql: &str) -> (String, String) {
    let first = sql.lines().next().unwrap_or("");
    let rest = first
        .strip_prefix("CREATE OR REPLACE ")
        .unwrap_or_else(|| panic!("not CREATE OR REPLACE:\n{sql}"));
    let (kind, rest) = if let Some(r) = rest.strip_prefix("PACKAGE BODY ") {
        ("PACKAGE BODY", r)
    } else if let Some(r) = rest.strip_prefix("PACKAGE ") {
        ("PACKAGE", r)
    } else if let Some(r) = rest.strip_prefix("FUNCTION ") {
        ("FUNCTION", r)
    } else {
        panic!("unknown PL/SQL unit:\n{sql}")
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(is_plain_name(&name), "unit name {name:?} in:\n{sql}");
    (kind.to_string(), name)
}

/// Parameters `p_x IN VARCHAR2, p_y IN VARCHAR2`: each a plain name, IN, an
/// Oracle type (parsed as a column of that type).
fn check_parameters(params: &str, sql: &str) {
    for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let words: Vec<&str> = param.split_whitespace().collect();
        match words.as_slice() {
            [name, "IN", ty] if is_plain_name(name) => {
                parse_one(&format!("CREATE TABLE t ({name} {ty})"));
            }
            _ => panic!("parameter {param:?} in:\n{sql}"),
        }
    }
}

/// `name(params)` or `name`: the name, after checking the parameters.
fn signature(text: &str, sql: &str) -> String {
    match text.split_once('(') {
        Some((name, rest)) => {
            let params = rest
                .strip_suffix(')')
                .unwrap_or_else(|| panic!("parameters of {text:?} in:\n{sql}"));
            check_parameters(params, sql);
            name.to_string()
        }
        None => text.to_string(),
    }
}

/// A stored PL/SQL unit as we write them: the package spec (procedure
/// declarations), the package body (procedures of calls), the policy
/// function (IF ... THEN RETURN ...; END IF; RETURN ...). Blocks and IFs
/// balance, every call parses as `CALL ...`, every condition as a WHERE
/// clause, every returned expression as a SELECT list. Returns the unit's
/// (kind, name).
fn check_plsql_unit(sql: &str) -> (String, String) {
    let (kind, name) = unit_header(sql);
    let lines: Vec<&str> = sql.lines().map(str::trim).collect();
    assert_eq!(
        lines.last().copied(),
        Some(format!("END {name};").as_str()),
        "{sql}"
    );
    let header = lines[0];
    let mut body = &lines[1..lines.len() - 1];
    match kind.as_str() {
        "PACKAGE" | "PACKAGE BODY" => assert!(
            header.ends_with(&format!("{name} AS")),
            "`... {name} AS` expected:\n{sql}"
        ),
        _ => {
            let after = header.strip_prefix("CREATE OR REPLACE FUNCTION ").unwrap();
            assert_eq!(signature(after, sql), name);
            assert_eq!(&body[..3], ["RETURN VARCHAR2", "IS", "BEGIN"], "{sql}");
            body = &body[3..];
        }
    }
    // Blocks opened (a procedure's IS ... BEGIN, an IF) must close in order.
    let mut open: Vec<String> = Vec::new();
    for line in body {
        if let Some(spec) = line.strip_prefix("PROCEDURE ") {
            if let Some(decl) = spec.strip_suffix(';') {
                assert_eq!(kind, "PACKAGE", "a declaration outside a spec:\n{sql}");
                signature(decl, sql);
            } else {
                let decl = spec
                    .strip_suffix(" IS")
                    .unwrap_or_else(|| panic!("{line:?} in:\n{sql}"));
                open.push(format!("END {};", signature(decl, sql)));
            }
        } else if *line == "BEGIN" {
            assert!(
                open.last().is_some_and(|e| e.starts_with("END ")),
                "BEGIN outside a procedure:\n{sql}"
            );
        } else if let Some(cond) = line
            .strip_prefix("IF ")
            .and_then(|l| l.strip_suffix(" THEN"))
        {
            parse_one(&format!("SELECT 1 FROM dual WHERE {cond}"));
            open.push("END IF;".into());
        } else if line.starts_with("END ") {
            assert_eq!(
                open.pop().as_deref(),
                Some(*line),
                "unbalanced {line:?} in:\n{sql}"
            );
        } else if let Some(expr) = line
            .strip_prefix("RETURN ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert_eq!(kind, "FUNCTION", "RETURN outside a function:\n{sql}");
            parse_one(&format!("SELECT {expr} FROM dual"));
        } else if let Some(call) = line.strip_suffix(';') {
            match parse_one(&format!("CALL {call}")) {
                Ast::Call(_) => {}
                other => panic!("not a procedure call: {other}"),
            }
        } else {
            panic!("unexpected line {line:?} in:\n{sql}");
        }
    }
    assert!(open.is_empty(), "not closed: {open:?} in:\n{sql}");
    (kind, name)
}

fn is_trigger(stmt: &Statement) -> bool {
    stmt.plsql && stmt.sql.starts_with("CREATE OR REPLACE TRIGGER ")
}

/// A row trigger as we write them: `CREATE OR REPLACE TRIGGER name`, `AFTER
/// <INSERT | DELETE | UPDATE OF cols, joined by OR> ON table`, `FOR EACH
/// ROW`, `WHEN (cond)` (OLD and NEW without colons, as Oracle wants them
/// there), `BEGIN`, one UPDATE using `:OLD` and `:NEW`, `END;`. Returns
/// (name, table).
fn check_trigger(sql: &str) -> (String, String) {
    let lines: Vec<&str> = sql.lines().map(str::trim).collect();
    let name = lines[0]
        .strip_prefix("CREATE OR REPLACE TRIGGER ")
        .filter(|n| is_plain_name(n) && n.len() <= 30)
        .unwrap_or_else(|| panic!("trigger name in:\n{sql}"));
    let (events, table) = lines[1]
        .strip_prefix("AFTER ")
        .and_then(|l| l.rsplit_once(" ON "))
        .unwrap_or_else(|| panic!("`AFTER events ON table` in:\n{sql}"));
    assert!(is_plain_name(table), "{sql}");
    for event in events.split(" OR ") {
        match event.strip_prefix("UPDATE OF ") {
            Some(cols) => assert!(cols.split(", ").all(is_plain_name), "{event:?} in:\n{sql}"),
            None => assert!(matches!(event, "INSERT" | "DELETE"), "{event:?} in:\n{sql}"),
        }
    }
    assert_eq!(lines[2], "FOR EACH ROW", "{sql}");
    let cond = lines[3]
        .strip_prefix("WHEN (")
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`WHEN (cond)` in:\n{sql}"));
    assert!(!cond.contains(':'), "no colons in a WHEN clause:\n{sql}");
    parse_one(&format!("SELECT 1 FROM dual WHERE {cond}"));
    assert_eq!(lines[4], "BEGIN", "{sql}");
    assert_eq!(lines.last().copied(), Some("END;"), "{sql}");
    let body = lines[5..lines.len() - 1].join(" ");
    let body = body
        .strip_suffix(';')
        .unwrap_or_else(|| panic!("one statement in the body of:\n{sql}"));
    // The row's values, as plain references for the parser.
    let body = body
        .replace(":OLD.", "old_row.")
        .replace(":NEW.", "new_row.");
    assert!(!body.contains(';') && !body.contains(':'), "{sql}");
    match parse_one(&body) {
        Ast::Update { .. } => {}
        other => panic!("the body is not one UPDATE: {other}"),
    }
    (name.to_string(), table.to_string())
}

/// The registry's trigger (system version 8) is on pf_tenants and fires on
/// each change that can move a count.
#[test]
fn the_member_count_trigger_is_on_the_registry() {
    let triggers: Vec<(String, String)> = every_statement()
        .iter()
        .filter(|s| is_trigger(s))
        .map(|s| check_trigger(&s.sql))
        .collect();
    assert_eq!(
        triggers,
        vec![("pf_tenants_count_trg".to_string(), "pf_tenants".to_string())]
    );
}

/// The statements of system version 6.
fn v6_statements() -> Vec<Statement> {
    renderer()
        .system_migrations()
        .unwrap()
        .into_iter()
        .filter(|m| m.version == 6)
        .flat_map(|m| m.statements)
        .collect()
}

/// The context is bound to the package version 6 creates, only that package
/// sets it (the application cannot set it by itself), the application role
/// is granted EXECUTE on that package, and every table of `OWN_ROWS` gets
/// exactly one policy whose function is the one version 6 creates, on every
/// statement type, checked on insert and update.
#[test]
fn vpd_context_package_and_policies_fit_together() {
    use pathfinder_db::security::grants::{
        ORACLE_CONTEXT, ORACLE_CONTEXT_PACKAGE, ORACLE_POLICY_FUNCTION, OWN_ROWS, policy_name,
    };
    let v6 = v6_statements();
    let contexts: Vec<(String, String)> = v6
        .iter()
        .filter(|s| is_context(s))
        .map(|s| check_context(&s.sql))
        .collect();
    assert_eq!(
        contexts,
        vec![(
            ORACLE_CONTEXT.to_string(),
            ORACLE_CONTEXT_PACKAGE.to_string()
        )]
    );
    let units: Vec<(String, String)> = v6
        .iter()
        .filter(|s| is_plsql_unit(s))
        .map(|s| check_plsql_unit(&s.sql))
        .collect();
    assert_eq!(
        units,
        vec![
            ("PACKAGE".into(), ORACLE_CONTEXT_PACKAGE.into()),
            ("PACKAGE BODY".into(), ORACLE_CONTEXT_PACKAGE.into()),
            ("FUNCTION".into(), ORACLE_POLICY_FUNCTION.into()),
        ]
    );
    // Only the package body sets the context, and only ours.
    for stmt in every_statement() {
        if stmt.sql.contains("DBMS_SESSION.SET_CONTEXT") {
            assert!(
                stmt.sql.starts_with(&format!(
                    "CREATE OR REPLACE PACKAGE BODY {ORACLE_CONTEXT_PACKAGE} AS"
                )),
                "the context is set outside its package:\n{}",
                stmt.sql
            );
            assert!(
                stmt.sql.contains(&format!(
                    "DBMS_SESSION.SET_CONTEXT('{ORACLE_CONTEXT}', 'user_id', p_user_id)"
                )),
                "{}",
                stmt.sql
            );
        }
    }
    // One policy per table, through the policy function.
    let mut tables = Vec::new();
    for stmt in v6.iter().filter(|s| s.plsql && !is_plsql_unit(s)) {
        let calls = check_plsql_block(&stmt.sql);
        assert_eq!(calls.len(), 1, "{}", stmt.sql);
        let call = &calls[0];
        let arg = |name: &str| {
            let start = call
                .find(&format!("{name} => "))
                .unwrap_or_else(|| panic!("no {name} in {call}"))
                + name.len()
                + 4;
            let rest = &call[start..];
            let end = match rest.strip_prefix('\'') {
                Some(quoted) => quoted.find('\'').unwrap() + 2,
                None => rest.find([',', ')']).unwrap(),
            };
            rest[..end].trim_matches('\'').to_string()
        };
        assert!(call.starts_with("DBMS_RLS.ADD_POLICY("), "{call}");
        let table = arg("object_name").to_ascii_lowercase();
        assert_eq!(arg("policy_name"), policy_name(&table).to_ascii_uppercase());
        assert_eq!(
            arg("policy_function"),
            ORACLE_POLICY_FUNCTION.to_ascii_uppercase()
        );
        assert_eq!(arg("statement_types"), "SELECT, INSERT, UPDATE, DELETE");
        assert_eq!(arg("update_check"), "TRUE");
        assert_eq!(arg("policy_type"), "DBMS_RLS.CONTEXT_SENSITIVE");
        // A re-run meets the policy it made: ORA-28101 lets it through.
        assert!(
            stmt.sql.contains("IF SQLCODE != -28101 THEN"),
            "{}",
            stmt.sql
        );
        tables.push(table);
    }
    let want: Vec<String> = OWN_ROWS.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(tables, want);
}

/// What the policy function returns, run line by line as Oracle would:
/// `session_user` and `schema` (the table's owner) decide whether the owner
/// is exempt, `user` is the context's value (None: not set).
fn run_policy_function(
    sql: &str,
    session_user: &str,
    schema: &str,
    object: &str,
    user: Option<&str>,
) -> Option<String> {
    let lines: Vec<&str> = sql.lines().map(str::trim).collect();
    let start = lines.iter().position(|l| *l == "BEGIN").unwrap() + 1;
    let body = &lines[start..lines.len() - 1];
    // A value of the function's world (None: NULL).
    let value = |expr: &str| -> Option<String> {
        let e = expr.trim();
        let upper = e.to_ascii_uppercase();
        if upper == "SYS_CONTEXT('USERENV', 'SESSION_USER')" {
            Some(session_user.to_string())
        } else if upper == "SYS_CONTEXT('PATHFINDER_CTX', 'USER_ID')" {
            user.map(str::to_string)
        } else if e == "p_schema" {
            Some(schema.to_string())
        } else if e == "p_object" {
            Some(object.to_string())
        } else if upper == "NULL" {
            None
        } else if let Some(literal) = e.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
            Some(literal.replace("''", "'"))
        } else {
            panic!("the policy function uses {e:?}, which this test cannot evaluate")
        }
    };
    // `a = b` (NULL is never equal) or `a IS NULL`.
    let holds = |cond: &str| -> bool {
        if let Some(operand) = cond.strip_suffix(" IS NULL") {
            value(operand).is_none()
        } else if let Some((a, b)) = cond.split_once(" = ") {
            matches!((value(a), value(b)), (Some(a), Some(b)) if a == b)
        } else {
            panic!("condition {cond:?}")
        }
    };
    let mut i = 0;
    while i < body.len() {
        let line = body[i];
        if let Some(cond) = line
            .strip_prefix("IF ")
            .and_then(|l| l.strip_suffix(" THEN"))
        {
            let end = i + body[i..].iter().position(|l| *l == "END IF;").unwrap();
            if holds(cond) {
                let inner = &body[i + 1..end];
                let expr = match inner {
                    [only] => only
                        .strip_prefix("RETURN ")
                        .and_then(|l| l.strip_suffix(';')),
                    _ => None,
                }
                .unwrap_or_else(|| panic!("only one RETURN inside an IF: {inner:?}"));
                return value(expr);
            }
            i = end + 1;
        } else if let Some(expr) = line
            .strip_prefix("RETURN ")
            .and_then(|l| l.strip_suffix(';'))
        {
            return value(expr);
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    panic!("the function ends without RETURN (ORA-06503)")
}

/// The policy function's logic: the owner's own sessions get no predicate
/// (its jobs see every row), a session without a user gets `1 = 0`, a
/// session serving user u1 gets its table's key column compared with the
/// context, an unknown table `1 = 0`. Each predicate is then run on rows of
/// u1, u2 and of no user (SQLite, the context's value bound): the
/// application sees only u1's rows, never the ones without a user.
#[test]
fn the_policy_function_returns_the_predicate_for_set_and_unset_contexts() {
    use pathfinder_db::security::grants::{ORACLE_POLICY_FUNCTION, OWN_ROWS};
    let function = v6_statements()
        .into_iter()
        .find(|s| {
            s.sql.starts_with(&format!(
                "CREATE OR REPLACE FUNCTION {ORACLE_POLICY_FUNCTION}("
            ))
        })
        .expect("version 6 creates the policy function")
        .sql;
    let context = "SYS_CONTEXT('pathfinder_ctx', 'user_id')";
    for (table, column) in OWN_ROWS {
        let object = table.to_ascii_uppercase();
        let run = |session_user: &str, user: Option<&str>| {
            run_policy_function(&function, session_user, "PATHFINDER", &object, user)
        };
        assert_eq!(run("PATHFINDER", None), None, "the owner is exempt");
        assert_eq!(run("PATHFINDER", Some("u1")), None, "the owner is exempt");
        assert_eq!(run("APP_USER", None).as_deref(), Some("1 = 0"));
        let predicate = run("APP_USER", Some("u1")).unwrap();
        assert_eq!(predicate, format!("{column} = {context}"));

        // On rows: only u1's.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE {table} (n INTEGER, {column} TEXT); \
             INSERT INTO {table} VALUES (1, 'u1'), (2, 'u2'), (3, NULL), (4, 'u1');"
        ))
        .unwrap();
        let rows = |predicate: &str| -> Vec<i64> {
            let sql = format!(
                "SELECT n FROM {table} WHERE {} ORDER BY n",
                predicate.replace(context, "?1")
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            let binds: &[&str] = if sql.contains("?1") { &["u1"] } else { &[] };
            stmt.query_map(rusqlite::params_from_iter(binds), |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(rows(&predicate), [1, 4], "{table}");
        assert_eq!(rows("1 = 0"), Vec::<i64>::new());
        // Each predicate is Oracle SQL too.
        parse_one(&format!("SELECT * FROM {table} WHERE {predicate}"));
    }
    assert_eq!(
        run_policy_function(
            &function,
            "APP_USER",
            "PATHFINDER",
            "PF_TENANTS",
            Some("u1")
        )
        .as_deref(),
        Some("1 = 0"),
        "a table the function does not know shows nothing"
    );
}

/// What `grants apply` sends to Oracle: PL/SQL blocks of `EXECUTE IMMEDIATE
/// 'GRANT ... ON <object> TO <role>'` (one object per GRANT, as Oracle
/// wants), REVOKEs, the policies of version 6 restored; every GRANT and
/// REVOKE inside parses as Oracle SQL, and the blocks pass the static checks
/// of every other statement.
#[test]
fn grants_apply_sends_oracle_grants_and_policies() {
    use pathfinder_db::security::grants::{Problem, plan};
    let privileges = |p: &[&str]| p.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    let mut problems: Vec<Problem> = (0..120)
        .map(|i| Problem::MissingGrant {
            object: format!("pf_user_t{i}_skills"),
            kind: "table".into(),
            privileges: privileges(&["SELECT", "INSERT", "UPDATE", "DELETE"]),
        })
        .collect();
    problems.extend([
        Problem::MissingGrant {
            object: "pf_request_context".into(),
            kind: "package".into(),
            privileges: privileges(&["EXECUTE"]),
        },
        Problem::ExtraPrivilege {
            object: "pf_audit_log".into(),
            kind: "table".into(),
            privileges: privileges(&["DELETE"]),
            via: "role".into(),
            grant_option: false,
        },
        Problem::ExtraPrivilege {
            object: "pf_encryption_keys".into(),
            kind: "table".into(),
            privileges: privileges(&["SELECT"]),
            via: "role".into(),
            grant_option: true,
        },
        Problem::PolicyMissing {
            table: "pf_users".into(),
            policy: "pf_users_own_rows".into(),
        },
        Problem::PolicyDisabled {
            table: "pf_audit_log".into(),
            policy: "pf_audit_log_own_rows".into(),
        },
        Problem::PolicyChanged {
            table: "pf_user_sessions".into(),
            policy: "pf_user_sessions_own_rows".into(),
            found: "function x on SELECT".into(),
        },
    ]);
    let plan = plan(&renderer(), "pathfinder_app", &problems).unwrap();
    assert!(plan.unfixable.is_empty(), "{:?}", plan.unfixable);
    let statements: Vec<Statement> = plan
        .changes
        .iter()
        .flat_map(|c| c.statements.clone())
        .collect();
    let mut dynamic = Vec::new();
    for stmt in &statements {
        assert!(stmt.plsql, "{}", stmt.sql);
        if stmt.sql.contains("EXECUTE IMMEDIATE") {
            for line in stmt.sql.lines().map(str::trim) {
                if let Some(literal) = line
                    .strip_prefix("EXECUTE IMMEDIATE '")
                    .and_then(|l| l.strip_suffix("';"))
                {
                    let inner = literal.replace("''", "'");
                    match parse_one(&inner) {
                        Ast::Grant { .. } | Ast::Revoke { .. } => dynamic.push(inner),
                        other => panic!("not a GRANT or REVOKE: {other}"),
                    }
                } else {
                    assert!(
                        matches!(line, "BEGIN" | "END;"),
                        "{line:?} in:\n{}",
                        stmt.sql
                    );
                }
            }
        } else {
            check_plsql_block(&stmt.sql);
        }
    }
    lint_identifier_length(&statements);
    assert_eq!(
        dynamic
            .iter()
            .filter(|s| s.starts_with("GRANT SELECT, INSERT, UPDATE, DELETE ON pf_user_t"))
            .count(),
        120,
        "one object per GRANT"
    );
    for want in [
        "GRANT EXECUTE ON pf_request_context TO pathfinder_app",
        "REVOKE DELETE ON pf_audit_log FROM pathfinder_app",
        // No REVOKE GRANT OPTION on Oracle: revoked, then granted again.
        "REVOKE SELECT ON pf_encryption_keys FROM pathfinder_app",
        "GRANT SELECT ON pf_encryption_keys TO pathfinder_app",
    ] {
        assert!(
            dynamic.iter().any(|s| s == want),
            "{want} not in {dynamic:#?}"
        );
    }
    let sql: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    let has = |needle: &str| sql.iter().any(|s| s.contains(needle));
    assert!(has("DBMS_RLS.ADD_POLICY(object_name => 'PF_USERS'"));
    assert!(has(
        "DBMS_RLS.ENABLE_POLICY(object_name => 'PF_AUDIT_LOG', policy_name => 'PF_AUDIT_LOG_OWN_ROWS', enable => TRUE)"
    ));
    assert!(has(
        "DBMS_RLS.DROP_POLICY(object_name => 'PF_USER_SESSIONS', policy_name => 'PF_USER_SESSIONS_OWN_ROWS')"
    ));
    assert!(has("DBMS_RLS.ADD_POLICY(object_name => 'PF_USER_SESSIONS'"));
    // The role itself.
    let create =
        pathfinder_db::security::grants::create_role_statement(ORACLE, "pathfinder_app").unwrap();
    assert!(matches!(parse_one(&create.sql), Ast::CreateRole { .. }));
}

#[test]
#[should_panic(expected = "not closed")]
fn targeted_check_catches_an_unclosed_if() {
    check_plsql_unit(
        "CREATE OR REPLACE FUNCTION f(p IN VARCHAR2)\nRETURN VARCHAR2\nIS\nBEGIN\n    IF p IS NULL THEN\n        RETURN NULL;\nEND f;",
    );
}

#[test]
#[should_panic(expected = "not `CREATE OR REPLACE CONTEXT name USING package`")]
fn targeted_check_catches_a_global_context() {
    check_context("CREATE OR REPLACE CONTEXT c USING p ACCESSED GLOBALLY");
}

#[test]
#[should_panic(expected = "this test cannot evaluate")]
fn the_policy_function_runner_refuses_what_it_does_not_know() {
    run_policy_function(
        "CREATE OR REPLACE FUNCTION f(p_schema IN VARCHAR2, p_object IN VARCHAR2)\nRETURN VARCHAR2\nIS\nBEGIN\n    IF SYS_CONTEXT('USERENV', 'CLIENT_IDENTIFIER') IS NULL THEN\n        RETURN NULL;\n    END IF;\n    RETURN '1 = 0';\nEND f;",
        "A",
        "B",
        "PF_USERS",
        None,
    );
}

// The lints above must be able to fail: each is fed one bad statement here.

fn plain(sql: &str) -> Vec<Statement> {
    vec![Statement {
        sql: sql.to_string(),
        plsql: false,
    }]
}

#[test]
#[should_panic(expected = "is not placed before its constraints")]
fn lint_catches_default_after_not_null() {
    lint_columns(&plain("CREATE TABLE t (x NUMBER(1) NOT NULL DEFAULT 0)"));
}

#[test]
#[should_panic(expected = "is not placed before its constraints")]
fn lint_catches_default_after_check() {
    lint_columns(&plain(
        "CREATE TABLE t (x NUMBER(1) CONSTRAINT t_ck CHECK (x IN (0, 1)) DEFAULT 0)",
    ));
}

#[test]
#[should_panic(expected = "has type")]
fn lint_catches_a_postgres_type_in_a_column() {
    lint_columns(&plain("CREATE TABLE t (x VARCHAR(10))"));
}

#[test]
#[should_panic(expected = "is not an Oracle type")]
fn lint_catches_text() {
    lint_no_foreign_types(&plain("CREATE TABLE t (x TEXT)"));
}

#[test]
#[should_panic(expected = "VARCHAR( instead of VARCHAR2(")]
fn lint_catches_varchar() {
    lint_no_foreign_types(&plain("ALTER TABLE t ADD x VARCHAR(5)"));
}

#[test]
#[should_panic(expected = "IF NOT EXISTS is 23ai-only")]
fn lint_catches_if_not_exists() {
    lint_no_23ai(&plain("CREATE TABLE IF NOT EXISTS t (x NUMBER(1))"));
}

#[test]
#[should_panic(expected = "IF EXISTS is 23ai-only")]
fn lint_catches_if_exists() {
    lint_no_23ai(&plain("DROP TABLE IF EXISTS t"));
}

#[test]
#[should_panic(expected = "BOOLEAN type is 23ai-only")]
fn lint_catches_boolean() {
    lint_no_23ai(&plain("CREATE TABLE t (x BOOLEAN)"));
}

#[test]
#[should_panic(expected = "plain statement ends with ';'")]
fn lint_catches_a_trailing_semicolon() {
    lint_terminators(&plain("DROP TABLE t;"));
}

#[test]
#[should_panic(expected = "PL/SQL block without END;")]
fn lint_catches_a_block_without_end() {
    lint_terminators(&[Statement {
        sql: "BEGIN\n    NULL;\nEND".into(),
        plsql: true,
    }]);
}

#[test]
#[should_panic(expected = "bytes (> 128)")]
fn lint_catches_a_long_identifier() {
    lint_identifier_length(&plain(&format!(
        "CREATE TABLE {} (x DATE)",
        "t".repeat(129)
    )));
}

#[test]
#[should_panic(expected = "duplicate index names")]
fn lint_catches_a_shared_index_name() {
    // The seed schema's trap: every user's index called idx_exp_dates.
    let mut stmts = plain("CREATE INDEX idx_exp_dates ON pf_user_a_experiences (start_date)");
    stmts.extend(plain(
        "CREATE INDEX idx_exp_dates ON pf_user_b_experiences (start_date)",
    ));
    assert_unique("index", &declared(&stmts).indexes);
}

#[test]
#[should_panic(expected = "without `BUILD IMMEDIATE")]
fn targeted_check_catches_a_postgres_style_view() {
    check_materialized_view("CREATE MATERIALIZED VIEW v\nAS SELECT 1 FROM dual");
}
