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

use pathfinder_db::dialect::Dialect;
use pathfinder_db::render::{Renderer, Statement};
use pathfinder_db::tenant::{TenantKey, max_key_len};
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
const UNPARSABLE: &[&str] = &[
    "CREATE MATERIALIZED VIEW ... BUILD IMMEDIATE",
    "PL/SQL BEGIN ... END;",
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
        if stmt.plsql {
            check_plsql_block(&stmt.sql);
            seen_unparsable.insert(UNPARSABLE[1]);
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
        3 * 10 + 10,
        "3 x (9 tables + summary) + 10 system tables (V4 added pf_audit_log_archive)"
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
        if stmt.plsql {
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
        if stmt.plsql || is_materialized_view(stmt) {
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
