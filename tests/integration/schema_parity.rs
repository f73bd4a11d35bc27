//! The three dialects create the same tables with the same columns.
//!
//! - SQLite: the render of tenant `alice` runs in a fresh database; tables and
//!   columns come from `pragma_table_info`.
//! - PostgreSQL (when `PATHFINDER_TEST_POSTGRES_URL` is set): the render runs in a
//!   fresh database; columns come from `pg_attribute` (materialized views too).
//! - Oracle (no server): the CREATE TABLE / ALTER TABLE statements are parsed
//!   with sqlparser's OracleDialect, the view's
//!   columns are the aliases of its query.
//!
//! Compared: table names (9 tables + career_summary), column names in order,
//! NOT NULL-ness, and a coarse type family (text-like or numeric; SQLite keeps
//! dates and timestamps as TEXT, so those count as text-like everywhere).
//! Also: two tenants side by side in one database, with no name collision.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::{Renderer, Statement, script};
use pathfinder_db::schema::tenant::{CAREER_SUMMARY, TENANT_TABLES, TenantKey};
use sqlparser::ast::{
    AlterTableOperation, ColumnOption, SelectItem, SetExpr, Statement as Ast, TableConstraint,
};
use sqlparser::dialect::OracleDialect;
use sqlparser::parser::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Text,
    Numeric,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// None where the catalog is not known (the Oracle materialized view).
    not_null: Option<bool>,
    family: Option<Family>,
    /// The type as the dialect spells it, for messages.
    declared: String,
}

/// Table name without the tenant prefix -> columns in order.
type Schema = BTreeMap<String, Vec<Column>>;

fn family_of(type_name: &str) -> Family {
    let t = type_name.to_ascii_lowercase();
    let numeric = ["number", "numeric", "smallint", "integer", "bigint", "int"];
    let text = [
        "varchar2",
        "character varying",
        "varchar",
        "clob",
        "text",
        "date",
        "timestamp",
    ];
    if numeric.iter().any(|n| t.starts_with(n)) {
        Family::Numeric
    } else if text.iter().any(|n| t.starts_with(n)) {
        Family::Text
    } else {
        panic!("unexpected column type {type_name}")
    }
}

fn tenant_statements(dialect: Dialect, key: &TenantKey) -> Vec<Statement> {
    let r = Renderer::new(dialect, None).expect("templates load");
    let mut out = Vec::new();
    for m in r.tenant_migrations(key).expect("tenant renders") {
        out.extend(m.statements);
    }
    out
}

fn tenant_script(dialect: Dialect, name: &str) -> String {
    let key = TenantKey::parse(name, dialect).unwrap();
    script(&tenant_statements(dialect, &key), dialect)
}

fn strip<'a>(table: &'a str, prefix: &str) -> &'a str {
    table
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{table} lacks the prefix {prefix}"))
}

/// The Oracle schema, read from the DDL itself.
fn oracle_schema(statements: &[Statement], prefix: &str) -> Schema {
    let mut schema = Schema::new();
    for stmt in statements {
        // PL/SQL, and the application context of row-level security: no table.
        if stmt.plsql || stmt.sql.starts_with("CREATE OR REPLACE CONTEXT ") {
            continue;
        }
        if let Some(rest) = stmt.sql.strip_prefix("CREATE MATERIALIZED VIEW ") {
            // sqlparser cannot parse Oracle's BUILD/REFRESH clause: drop it.
            let (name, rest) = rest.split_once('\n').unwrap();
            let query = rest
                .strip_prefix("BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS")
                .expect("Oracle view clause");
            let sql = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            let Ok(Ast::CreateView(view)) = parse_one(&sql) else {
                panic!("not a view: {sql}")
            };
            let SetExpr::Select(select) = *view.query.body else {
                panic!("view is not a plain SELECT")
            };
            let columns = select
                .projection
                .iter()
                .map(|item| match item {
                    SelectItem::ExprWithAlias { alias, .. } => Column {
                        name: alias.value.clone(),
                        not_null: None,
                        family: None,
                        declared: "(view)".into(),
                    },
                    other => panic!("view column without an alias: {other}"),
                })
                .collect();
            schema.insert(strip(name, prefix).to_string(), columns);
            continue;
        }
        match parse_one(&stmt.sql).unwrap_or_else(|e| panic!("{e}\n{}", stmt.sql)) {
            Ast::CreateTable(t) => {
                let pk: Vec<String> = t
                    .constraints
                    .iter()
                    .filter_map(|c| match c {
                        TableConstraint::PrimaryKey(pk) => Some(
                            pk.columns
                                .iter()
                                .map(|c| c.column.expr.to_string())
                                .collect::<Vec<_>>(),
                        ),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let columns = t
                    .columns
                    .iter()
                    .map(|c| {
                        let name = c.name.value.clone();
                        let explicit = c
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull));
                        Column {
                            // Oracle: a primary key column is NOT NULL.
                            not_null: Some(explicit || pk.contains(&name)),
                            family: Some(family_of(&c.data_type.to_string())),
                            declared: c.data_type.to_string(),
                            name,
                        }
                    })
                    .collect();
                let table = t.name.to_string();
                schema.insert(strip(&table, prefix).to_string(), columns);
            }
            Ast::AlterTable(alter) => {
                let table = alter.name.to_string();
                let columns = schema
                    .get_mut(strip(&table, prefix))
                    .unwrap_or_else(|| panic!("ALTER of unknown table {table}"));
                for op in alter.operations {
                    if let AlterTableOperation::AddColumn { column_def: c, .. } = op {
                        let not_null = c
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull));
                        columns.push(Column {
                            name: c.name.value.clone(),
                            not_null: Some(not_null),
                            family: Some(family_of(&c.data_type.to_string())),
                            declared: c.data_type.to_string(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    schema
}

fn parse_one(sql: &str) -> Result<Ast, String> {
    let mut v = Parser::parse_sql(&OracleDialect {}, sql).map_err(|e| e.to_string())?;
    assert_eq!(v.len(), 1, "{sql}");
    Ok(v.remove(0))
}

/// The SQLite schema of the objects starting with `prefix`, from the catalog.
fn sqlite_schema(conn: &rusqlite::Connection, prefix: &str) -> Schema {
    let mut stmt = conn
        .prepare(
            "SELECT m.name, c.name, c.type, c.\"notnull\" \
             FROM sqlite_master m JOIN pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND substr(m.name, 1, length(?1)) = ?1 \
             ORDER BY m.name, c.cid",
        )
        .unwrap();
    let rows = stmt
        .query_map([prefix], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        let (table, name, ty, not_null) = row.unwrap();
        schema
            .entry(strip(&table, prefix).to_string())
            .or_default()
            .push(Column {
                name,
                not_null: Some(not_null == 1),
                family: Some(family_of(&ty)),
                declared: ty,
            });
    }
    schema
}

/// The PostgreSQL schema of tables and materialized views starting with `prefix`.
fn postgres_schema(client: &mut postgres::Client, prefix: &str) -> Schema {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm') \
               AND left(c.relname, length($1)) = $1 \
             ORDER BY c.relname, a.attnum",
            &[&prefix],
        )
        .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        let table: String = row.get(0);
        let ty: String = row.get(2);
        schema
            .entry(strip(&table, prefix).to_string())
            .or_default()
            .push(Column {
                name: row.get(1),
                not_null: Some(row.get(3)),
                family: Some(family_of(&ty)),
                declared: ty,
            });
    }
    schema
}

fn expected_tables() -> Vec<String> {
    let mut t: Vec<String> = TENANT_TABLES.iter().map(|s| s.to_string()).collect();
    t.push(CAREER_SUMMARY.to_string());
    t.sort();
    t
}

/// Same tables, same columns in the same order, same NOT NULL-ness and type
/// family wherever both sides know it.
fn assert_same(a_name: &str, a: &Schema, b_name: &str, b: &Schema) {
    let ta: Vec<_> = a.keys().collect();
    let tb: Vec<_> = b.keys().collect();
    assert_eq!(ta, tb, "{a_name} and {b_name} create different tables");
    for (table, ca) in a {
        let cb = &b[table];
        let na: Vec<_> = ca.iter().map(|c| c.name.as_str()).collect();
        let nb: Vec<_> = cb.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            na, nb,
            "{table}: columns differ between {a_name} and {b_name}"
        );
        for (x, y) in ca.iter().zip(cb) {
            if let (Some(p), Some(q)) = (x.not_null, y.not_null) {
                assert_eq!(
                    p, q,
                    "{table}.{}: NOT NULL on {a_name} is {p}, on {b_name} {q}",
                    x.name
                );
            }
            if let (Some(p), Some(q)) = (x.family, y.family) {
                assert_eq!(
                    p, q,
                    "{table}.{}: {a_name} {} vs {b_name} {}",
                    x.name, x.declared, y.declared
                );
            }
        }
    }
}

fn sqlite_alice() -> Schema {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(&tenant_script(Dialect::Sqlite, "alice"))
        .expect("the SQLite render runs");
    sqlite_schema(&conn, "pf_user_alice_")
}

fn oracle_alice() -> Schema {
    let key = TenantKey::parse("alice", Dialect::Oracle).unwrap();
    oracle_schema(&tenant_statements(Dialect::Oracle, &key), &key.prefix())
}

#[test]
fn sqlite_creates_the_ten_tenant_objects() {
    let sqlite = sqlite_alice();
    assert_eq!(
        sqlite.keys().cloned().collect::<Vec<_>>(),
        expected_tables()
    );
    let experiences = &sqlite["experiences"];
    assert_eq!(experiences[0].name, "id");
    assert_eq!(experiences[0].not_null, Some(true));
    // Every table has a key column `id` except the summary.
    for (table, cols) in &sqlite {
        if table != CAREER_SUMMARY {
            assert_eq!(cols[0].name, "id", "{table}");
        }
    }
}

#[test]
fn oracle_and_sqlite_create_the_same_tables_and_columns() {
    let oracle = oracle_alice();
    assert_eq!(
        oracle.keys().cloned().collect::<Vec<_>>(),
        expected_tables()
    );
    assert_same("oracle", &oracle, "sqlite", &sqlite_alice());
}

/// The system schema too: the same tables and columns in Oracle and SQLite.
#[test]
fn system_schema_is_the_same_in_oracle_and_sqlite() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let r = Renderer::new(Dialect::Sqlite, None).unwrap();
    for m in r.system_migrations().unwrap() {
        conn.execute_batch(&m.script(Dialect::Sqlite))
            .expect("the SQLite system render runs");
    }
    let sqlite = sqlite_schema(&conn, "pf_");
    let r = Renderer::new(Dialect::Oracle, None).unwrap();
    let mut statements = Vec::new();
    for m in r.system_migrations().unwrap() {
        statements.extend(m.statements);
    }
    let oracle = oracle_schema(&statements, "pf_");
    assert!(oracle.contains_key("tenants"), "{:?}", oracle.keys());
    assert_eq!(oracle.len(), system_table_count(), "{:?}", oracle.keys());
    assert_same("oracle", &oracle, "sqlite", &sqlite);
}

#[test]
fn postgres_matches_sqlite_and_oracle() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::PgDatabase::create(&url, "parity");
    let mut client = db.client();
    client
        .batch_execute(&tenant_script(Dialect::Postgres, "alice"))
        .expect("the PostgreSQL render runs");
    let pg = postgres_schema(&mut client, "pf_user_alice_");
    assert_eq!(pg.keys().cloned().collect::<Vec<_>>(), expected_tables());
    assert_same("postgres", &pg, "sqlite", &sqlite_alice());
    assert_same("postgres", &pg, "oracle", &oracle_alice());
    // Finer than the family: Oracle and PostgreSQL agree on lengths and scales.
    let oracle = oracle_alice();
    for (table, cols) in &oracle {
        for (o, p) in cols.iter().zip(&pg[table]) {
            if o.family.is_none() {
                continue;
            }
            let expected = match o.declared.as_str() {
                "CLOB" => "text".to_string(),
                "DATE" => "date".to_string(),
                "TIMESTAMP" => "timestamp without time zone".to_string(),
                d if d.starts_with("VARCHAR2(") => {
                    format!("character varying{}", &d["VARCHAR2".len()..])
                }
                d if d.contains(',') => format!("numeric{}", d["NUMBER".len()..].replace(' ', "")),
                d => {
                    let digits: u32 = d["NUMBER(".len()..d.len() - 1].parse().unwrap();
                    match digits {
                        0..=4 => "smallint",
                        5..=9 => "integer",
                        _ => "bigint",
                    }
                    .to_string()
                }
            };
            assert_eq!(
                p.declared, expected,
                "{table}.{}: oracle {}",
                o.name, o.declared
            );
        }
    }
}

/// The system schema on PostgreSQL matches Oracle's.
#[test]
fn postgres_system_schema_matches_oracle() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::PgDatabase::create(&url, "parity_sys");
    let mut client = db.client();
    let r = Renderer::new(Dialect::Postgres, None).unwrap();
    for m in r.system_migrations().unwrap() {
        client
            .batch_execute(&m.script(Dialect::Postgres))
            .expect("the PostgreSQL system render runs");
    }
    let pg = postgres_schema(&mut client, "pf_");
    let r = Renderer::new(Dialect::Oracle, None).unwrap();
    let mut statements = Vec::new();
    for m in r.system_migrations().unwrap() {
        statements.extend(m.statements);
    }
    assert_eq!(pg.len(), system_table_count(), "{:?}", pg.keys());
    assert_same(
        "postgres",
        &pg,
        "oracle",
        &oracle_schema(&statements, "pf_"),
    );
}

/// How many tables the system migrations create (each version may add some).
fn system_table_count() -> usize {
    Renderer::new(Dialect::Sqlite, None)
        .unwrap()
        .system_migrations()
        .unwrap()
        .iter()
        .flat_map(|m| &m.statements)
        .filter_map(|s| s.sql.strip_prefix("CREATE TABLE pf_"))
        // A table built again (SQLite changes a constraint that way) counts once.
        .filter_map(|rest| rest.split_whitespace().next())
        .collect::<BTreeSet<_>>()
        .len()
}

fn sqlite_object_count(conn: &rusqlite::Connection, prefix: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE substr(name, 1, length(?1)) = ?1 \
            OR substr(name, 1, length('sqlite_autoindex_' || ?1)) = 'sqlite_autoindex_' || ?1",
        [prefix],
        |r| r.get(0),
    )
    .unwrap()
}

fn run_sqlite(conn: &rusqlite::Connection, statements: &[Statement]) {
    conn.execute_batch(&script(statements, Dialect::Sqlite))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Two tenants in one SQLite file: no collision, twice the objects; dropping one
/// leaves the other whole.
#[test]
fn two_tenants_in_one_sqlite_file() {
    let dir = common::tempdir();
    let conn = rusqlite::Connection::open(dir.path().join("two.db")).unwrap();
    let r = Renderer::new(Dialect::Sqlite, None).unwrap();
    let alice = TenantKey::parse("alice", Dialect::Sqlite).unwrap();
    let bob = TenantKey::parse("bob", Dialect::Sqlite).unwrap();
    run_sqlite(&conn, &tenant_statements(Dialect::Sqlite, &alice));
    let one = sqlite_object_count(&conn, "pf_user_");
    assert!(one >= 10 + 6, "{one} objects for one tenant");
    run_sqlite(&conn, &tenant_statements(Dialect::Sqlite, &bob));
    assert_eq!(sqlite_object_count(&conn, "pf_user_"), 2 * one);
    assert_eq!(sqlite_object_count(&conn, &bob.prefix()), one);
    assert_eq!(
        sqlite_schema(&conn, &alice.prefix()).len(),
        sqlite_schema(&conn, &bob.prefix()).len()
    );
    // The refresh runs for both; the drop of alice removes exactly her objects,
    // and a second drop (a killed deprovisioning, re-run) succeeds.
    run_sqlite(&conn, &r.refresh_career_summary(&alice).unwrap());
    run_sqlite(&conn, &r.refresh_career_summary(&bob).unwrap());
    run_sqlite(&conn, &r.drop_tenant(&alice).unwrap());
    run_sqlite(&conn, &r.drop_tenant(&alice).unwrap());
    assert_eq!(sqlite_object_count(&conn, &alice.prefix()), 0);
    assert_eq!(sqlite_object_count(&conn, &bob.prefix()), one);
}

fn pg_object_count(client: &mut postgres::Client, prefix: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm', 'i') \
               AND left(c.relname, length($1)) = $1",
            &[&prefix],
        )
        .unwrap()
        .get(0)
}

fn pg_constraint_count(client: &mut postgres::Client, prefix: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE left(conname, length($1)) = $1",
            &[&prefix],
        )
        .unwrap()
        .get(0)
}

/// Two tenants in one PostgreSQL database (one schema): no collision of table,
/// index or constraint names, twice the objects; dropping one leaves the other.
#[test]
fn two_tenants_in_one_postgres_database() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::PgDatabase::create(&url, "parity2");
    let mut client = db.client();
    let r = Renderer::new(Dialect::Postgres, None).unwrap();
    let alice = TenantKey::parse("alice", Dialect::Postgres).unwrap();
    let bob = TenantKey::parse("bob", Dialect::Postgres).unwrap();
    let run = |client: &mut postgres::Client, stmts: &[Statement]| {
        client
            .batch_execute(&script(stmts, Dialect::Postgres))
            .unwrap_or_else(|e| panic!("{e:?}"))
    };
    run(&mut client, &tenant_statements(Dialect::Postgres, &alice));
    let one = pg_object_count(&mut client, "pf_user_");
    let constraints = pg_constraint_count(&mut client, "pf_user_");
    // 9 tables + 1 view + 9 keys + 1 unique + 6 indexes = 26 with V1 alone.
    assert!(one >= 26, "{one} relations for one tenant");
    assert!(
        constraints >= 16,
        "{constraints} constraints for one tenant"
    );
    run(&mut client, &tenant_statements(Dialect::Postgres, &bob));
    assert_eq!(pg_object_count(&mut client, "pf_user_"), 2 * one);
    assert_eq!(
        pg_constraint_count(&mut client, "pf_user_"),
        2 * constraints
    );
    assert_eq!(pg_object_count(&mut client, &bob.prefix()), one);
    run(&mut client, &r.refresh_career_summary(&alice).unwrap());
    run(&mut client, &r.refresh_career_summary(&bob).unwrap());
    run(&mut client, &r.drop_tenant(&alice).unwrap());
    run(&mut client, &r.drop_tenant(&alice).unwrap());
    assert_eq!(pg_object_count(&mut client, &alice.prefix()), 0);
    assert_eq!(pg_object_count(&mut client, &bob.prefix()), one);
    assert_eq!(pg_constraint_count(&mut client, &bob.prefix()), constraints);
}
