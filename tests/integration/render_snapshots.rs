//! Snapshots of the rendered DDL: the tenant `alice` and the system schema, in
//! each dialect. A snapshot IS the DDL a DBA would run, so a change to a template
//! shows up here as a reviewable diff (`cargo insta review`). In CI (`CI=true`)
//! a missing or different snapshot fails the test.

use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::schema::render::{Migration, Renderer, script};
use pathfinder_db::schema::tenant::TenantKey;

/// Every migration as one script, each introduced by a `-- <name>` line, the
/// way `pathfinder-db render` prints it.
fn concat(migrations: &[Migration], dialect: Dialect) -> String {
    let mut out = String::new();
    for m in migrations {
        out.push_str(&format!("-- {}\n", m.name));
        out.push_str(&script(&m.statements, dialect));
    }
    out
}

fn tenant_ddl(dialect: Dialect) -> String {
    let renderer = Renderer::new(dialect, None).expect("built-in templates load");
    let key = TenantKey::parse("alice", dialect).expect("alice is a valid key");
    let migrations = renderer.tenant_migrations(&key).expect("tenant renders");
    assert!(!migrations.is_empty(), "no tenant migration for {dialect}");
    concat(&migrations, dialect)
}

fn system_ddl(dialect: Dialect) -> String {
    let renderer = Renderer::new(dialect, None).expect("built-in templates load");
    let migrations = renderer.system_migrations().expect("system schema renders");
    assert!(!migrations.is_empty(), "no system migration for {dialect}");
    concat(&migrations, dialect)
}

#[test]
fn tenant_alice_oracle() {
    insta::assert_snapshot!("tenant_alice_oracle", tenant_ddl(Dialect::Oracle));
}

#[test]
fn tenant_alice_postgres() {
    insta::assert_snapshot!("tenant_alice_postgres", tenant_ddl(Dialect::Postgres));
}

#[test]
fn tenant_alice_sqlite() {
    insta::assert_snapshot!("tenant_alice_sqlite", tenant_ddl(Dialect::Sqlite));
}

#[test]
fn system_oracle() {
    insta::assert_snapshot!("system_oracle", system_ddl(Dialect::Oracle));
}

#[test]
fn system_postgres() {
    insta::assert_snapshot!("system_postgres", system_ddl(Dialect::Postgres));
}

#[test]
fn system_sqlite() {
    insta::assert_snapshot!("system_sqlite", system_ddl(Dialect::Sqlite));
}

/// A statement never contains a blank line: SQL*Plus (SQLBLANKLINES OFF, its
/// default) ends a statement at one, so the Oracle script would not run as is.
#[test]
fn no_blank_line_inside_a_statement() {
    for dialect in Dialect::ALL {
        let renderer = Renderer::new(dialect, None).unwrap();
        let key = TenantKey::parse("alice", dialect).unwrap();
        let mut statements = Vec::new();
        for m in renderer.tenant_migrations(&key).unwrap() {
            statements.extend(m.statements);
        }
        for m in renderer.system_migrations().unwrap() {
            statements.extend(m.statements);
        }
        statements.extend(renderer.refresh_career_summary(&key).unwrap());
        statements.extend(renderer.drop_tenant(&key).unwrap());
        for stmt in &statements {
            assert!(
                !stmt.sql.lines().any(|l| l.trim().is_empty()),
                "{dialect}: blank line inside a statement:\n{}",
                stmt.sql
            );
        }
    }
}
