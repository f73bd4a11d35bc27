//! What each command sends to Oracle, checked statically (no Oracle server
//! runs here). The commands run on a `Database::with_connector` whose
//! connection speaks Oracle, records every statement in the form Oracle
//! would get it (`:n` binds), and answers queries plausibly (a registry
//! row, a tenant's catalog from its rendered schema, a key to re-wrap), so
//! that each command goes its whole way. Every recorded statement must then
//! parse with sqlparser's OracleDialect, or be a PL/SQL block or a
//! materialized view that passes its targeted check, and pass the lint:
//! no `?` left, no trailing `;` outside PL/SQL, nothing PostgreSQL- or
//! SQLite-only. The statements the Oracle connection sends of its own
//! (session setup, locks, catalog queries) are checked the same way.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::common;

use pathfinder_db::catalog::registry::{Status, TenantRecord};
use pathfinder_db::db::dialect::Dialect;
use pathfinder_db::db::{
    CatalogColumn, CatalogConstraint, Connection, Database, DbError, Lock, Row, Session, Value,
    bind_placeholders,
};
use pathfinder_db::schema::render::{Renderer, Statement};
use pathfinder_db::schema::tenant::{TenantKey, Username};
use sqlparser::dialect::OracleDialect;
use sqlparser::parser::Parser;

const ORACLE: Dialect = Dialect::Oracle;

/// A query's canned answer: the first rule whose needle the SQL contains.
#[derive(Clone)]
struct Rule {
    needle: String,
    rows: Vec<Row>,
    /// Answer once, then nothing (a batch loop ends).
    once: bool,
}

#[derive(Default)]
struct Shared {
    sent: Vec<Statement>,
    rules: Vec<Rule>,
    /// A tenant whose catalog appears once its tables were created (import).
    created_later: Option<String>,
    /// Rows inserted per table: a read-back of the table returns them.
    inserted: std::collections::HashMap<String, Vec<Row>>,
    /// The catalog: columns and constraints of the tables the tenant has.
    columns: Vec<CatalogColumn>,
    constraints: Vec<CatalogConstraint>,
    /// The application role the database has (grants follow what is created).
    app_role: Option<String>,
}

struct Recorder(Arc<Mutex<Shared>>);

impl Recorder {
    fn record(&self, sql: &str, plsql: bool) {
        self.0.lock().unwrap().sent.push(Statement {
            sql: sql.to_string(),
            plsql,
        });
    }
}

impl Connection for Recorder {
    fn dialect(&self) -> Dialect {
        ORACLE
    }

    fn execute(&mut self, sql: &str, _params: &[Value]) -> Result<u64, DbError> {
        let sql = bind_placeholders(sql, ORACLE);
        self.record(&sql, sql.starts_with("BEGIN") || sql.starts_with("DECLARE"));
        Ok(1)
    }

    fn query(&mut self, sql: &str, _params: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = bind_placeholders(sql, ORACLE);
        self.record(&sql, false);
        let mut shared = self.0.lock().unwrap();
        if let Some(rows) = sql
            .rsplit_once(" FROM ")
            .and_then(|(_, table)| shared.inserted.get(table))
        {
            return Ok(rows.clone());
        }
        let Some(i) = shared.rules.iter().position(|r| sql.contains(&r.needle)) else {
            return Ok(Vec::new());
        };
        let rule = shared.rules[i].clone();
        if rule.once {
            shared.rules[i].rows.clear();
        }
        Ok(rule.rows)
    }

    fn run_statements(&mut self, statements: &[Statement]) -> Result<(), DbError> {
        for s in statements {
            self.record(&s.sql, s.plsql);
        }
        let later = self.0.lock().unwrap().created_later.clone();
        if let Some(user) = later
            && statements.iter().any(|s| {
                s.sql
                    .starts_with(&format!("CREATE TABLE pf_user_{user}_experiences"))
            })
        {
            tenant_catalog(&self.0, &user, true, false);
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), DbError> {
        Ok(())
    }
    fn commit(&mut self) -> Result<(), DbError> {
        Ok(())
    }
    fn rollback(&mut self) -> Result<(), DbError> {
        Ok(())
    }
    // The Oracle connection's lock blocks are among its own statements.
    fn lock(&mut self, _name: &Lock<'_>) -> Result<(), DbError> {
        Ok(())
    }
    fn try_lock(&mut self, _name: &Lock<'_>) -> Result<bool, DbError> {
        Ok(true)
    }
    fn unlock(&mut self, _name: &Lock<'_>) -> Result<(), DbError> {
        Ok(())
    }

    /// As the Oracle connection does: one row per statement.
    fn insert_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<u64, DbError> {
        let inserted = pathfinder_db::db::oracle::insert_one_by_one(self, table, columns, rows)?;
        self.0
            .lock()
            .unwrap()
            .inserted
            .entry(table.to_string())
            .or_default()
            .extend(rows.iter().cloned());
        Ok(inserted)
    }

    fn app_role(&mut self) -> Result<Option<String>, DbError> {
        Ok(self.0.lock().unwrap().app_role.clone())
    }

    fn columns(&mut self, prefix: &str) -> Result<Vec<CatalogColumn>, DbError> {
        let shared = self.0.lock().unwrap();
        Ok(shared
            .columns
            .iter()
            .filter(|c| c.table.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn indexes(&mut self, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
        let shared = self.0.lock().unwrap();
        Ok(shared
            .constraints
            .iter()
            .filter(|k| k.table.starts_with(prefix))
            .filter(|k| k.kind == pathfinder_db::db::ConstraintKind::Index)
            .map(|k| (k.table.clone(), k.name.clone()))
            .collect())
    }

    fn constraints(&mut self, prefix: &str) -> Result<Vec<CatalogConstraint>, DbError> {
        let shared = self.0.lock().unwrap();
        Ok(shared
            .constraints
            .iter()
            .filter(|k| k.table.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// A database of recorders sharing one log and one script.
fn recorded() -> (Database, Arc<Mutex<Shared>>) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let for_connector = shared.clone();
    let db = Database::with_connector(
        ORACLE,
        Arc::new(move || Ok(Box::new(Recorder(for_connector.clone())) as Box<dyn Connection>)),
    );
    (db, shared)
}

fn rule(needle: &str, rows: Vec<Row>) -> Rule {
    Rule {
        needle: needle.into(),
        rows,
        once: false,
    }
}

fn once(needle: &str, rows: Vec<Row>) -> Rule {
    Rule {
        once: true,
        ..rule(needle, rows)
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn renderer() -> Renderer {
    Renderer::new(ORACLE, None).unwrap()
}

fn latest() -> i64 {
    renderer().latest_version(pathfinder_db::schema::render::Scope::Tenant) as i64
}

/// A registry row (the columns `registry` reads, in order).
fn tenant_row(user: &str, status: &str, version: i64) -> Row {
    vec![
        text(user),
        text(user),
        text("u-1"),
        Value::Int(version),
        text(status),
        Value::Null,
        Value::Null,
        text("2026-01-01 00:00:00"),
        text("2026-01-01 00:00:00"),
    ]
}

fn record(user: &str, status: Status, version: i64) -> TenantRecord {
    TenantRecord {
        username: user.into(),
        tenant_key: user.into(),
        user_id: Some("u-1".into()),
        schema_version: version,
        status,
        last_error: None,
        claimed_by: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        database: "catalog".into(),
    }
}

/// The catalog of `user`'s tenant at the latest version, as Oracle would
/// describe it: its rendered tables (the career summary too, with
/// `summary`), columns, keys, checks and indexes.
fn tenant_catalog(shared: &Arc<Mutex<Shared>>, user: &str, summary: bool, archives: bool) {
    let key = TenantKey::parse(user, ORACLE).unwrap();
    let statements: Vec<Statement> = renderer()
        .tenant_migrations(&key)
        .unwrap()
        .into_iter()
        .flat_map(|m| m.statements)
        .collect();
    let tables = pathfinder_db::schema::shape::expected_tables(&statements, ORACLE);
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    for (table, detail) in &tables {
        for (i, (name, c)) in detail.columns.iter().enumerate() {
            columns.push(CatalogColumn {
                table: table.clone(),
                column: name.clone(),
                data_type: c.declared.to_lowercase(),
                nullable: !c.not_null,
                position: i as i64 + 1,
                default: c.default.clone(),
            });
        }
        let mut add = |name: String,
                       kind,
                       cols: Vec<String>,
                       references: Option<String>,
                       on_delete: Option<String>| {
            constraints.push(CatalogConstraint {
                table: table.clone(),
                name,
                kind,
                columns: cols,
                references,
                on_delete,
            })
        };
        use pathfinder_db::db::ConstraintKind as K;
        if let Some(pk) = &detail.primary_key {
            add(format!("{table}_pk"), K::PrimaryKey, pk.clone(), None, None);
        }
        for (n, u) in detail.uniques.iter().enumerate() {
            add(format!("{table}_uq{n}"), K::Unique, u.clone(), None, None);
        }
        for (n, (cols, r)) in detail.foreign_keys.iter().enumerate() {
            add(
                format!("{table}_fk{n}"),
                K::ForeignKey,
                cols.clone(),
                Some(r.table.clone()),
                Some(r.on_delete.clone()),
            );
        }
        for (n, c) in detail.checks.iter().enumerate() {
            add(format!("{table}_ck{n}"), K::Check, c.clone(), None, None);
        }
        for (index, cols) in &detail.indexes {
            add(index.clone(), K::Index, cols.clone(), None, None);
        }
    }
    if archives {
        let live: Vec<CatalogColumn> = columns.clone();
        for c in live {
            let archive = format!("{}_archive", c.table);
            if c.position == 1 {
                columns.push(CatalogColumn {
                    table: archive.clone(),
                    column: "archived_at".into(),
                    data_type: "timestamp(6)".into(),
                    nullable: false,
                    position: 1000,
                    default: None,
                });
            }
            columns.push(CatalogColumn {
                table: archive,
                ..c
            });
        }
    }
    if summary {
        for (i, c) in [
            "total_positions",
            "total_companies",
            "career_start_date",
            "total_years_experience",
        ]
        .iter()
        .enumerate()
        {
            columns.push(CatalogColumn {
                table: key.object("career_summary"),
                column: c.to_string(),
                data_type: "number".into(),
                nullable: true,
                position: i as i64 + 1,
                default: None,
            });
        }
    }
    columns.sort();
    let mut s = shared.lock().unwrap();
    s.columns = columns;
    s.constraints = constraints;
}

/// Runs `command` on a fresh recorded database with `rules`; returns what
/// it sent. The command must succeed: it went its whole way.
fn sent_by<T: std::fmt::Debug>(
    what: &str,
    rules: Vec<Rule>,
    catalog: Option<(&str, bool, bool)>,
    command: impl FnOnce(&Database, &mut Session<'_>) -> anyhow::Result<T>,
) -> Vec<Statement> {
    let (db, shared) = recorded();
    shared.lock().unwrap().rules = rules;
    if let Some((user, summary, archives)) = catalog {
        tenant_catalog(&shared, user, summary, archives);
    }
    let mut session = db.connect().unwrap();
    let outcome = command(&db, &mut session);
    assert!(outcome.is_ok(), "{what}: {outcome:?}");
    drop(session);
    std::mem::take(&mut shared.lock().unwrap().sent)
}

// ---------------------------------------------------------------------------
// The static checks.

fn parse_one(sql: &str) -> Result<(), String> {
    let parsed = Parser::parse_sql(&OracleDialect {}, sql).map_err(|e| e.to_string())?;
    if parsed.len() != 1 {
        return Err(format!("{} statements", parsed.len()));
    }
    Ok(())
}

/// A PL/SQL block of the shapes we send: `[DECLARE decls] BEGIN stmts END;`
/// where each statement is a call (`pkg.proc(args)`), an assignment
/// (`:x := expr`, `x := expr`), `COMMIT`, `EXECUTE IMMEDIATE 'ALTER
/// SESSION SET name = value'`, or `EXECUTE IMMEDIATE 'GRANT ...'` / `'REVOKE
/// ...'` (Oracle grants one object per statement: a block runs many); each
/// call, expression, GRANT and REVOKE must parse.
fn check_plsql(sql: &str) -> Result<(), String> {
    let sql = sql.trim();
    let body = sql
        .strip_suffix("END;")
        .ok_or("a block ends with END;")?
        .trim_end();
    let (declare, body) = match body.split_once("BEGIN") {
        Some((d, b)) => (d.trim(), b.trim()),
        None => return Err("no BEGIN".into()),
    };
    if !declare.is_empty() {
        let decls = declare.strip_prefix("DECLARE").ok_or("text before BEGIN")?;
        for d in decls.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let ok = d == "PRAGMA AUTONOMOUS_TRANSACTION"
                || d.split_whitespace().count() == 2
                    && parse_one(&format!("CREATE TABLE t ({})", d.replace(":=", "DEFAULT")))
                        .is_ok();
            if !ok {
                return Err(format!("declaration {d:?}"));
            }
        }
    }
    // Statements end at `;` outside string literals.
    let mut statements = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in body.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => statements.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        return Err(format!("statement without `;`: {current}"));
    }
    for s in statements.iter().map(|s| s.trim()) {
        if s == "COMMIT" {
            continue;
        }
        if let Some(literal) = s.strip_prefix("EXECUTE IMMEDIATE '") {
            let inner = literal
                .strip_suffix('\'')
                .ok_or("EXECUTE IMMEDIATE of one literal")?
                .replace("''", "'");
            if inner.starts_with("GRANT ") || inner.starts_with("REVOKE ") {
                parse_one(&inner).map_err(|e| format!("{inner}: {e}"))?;
                continue;
            }
            let setting = inner
                .strip_prefix("ALTER SESSION SET ")
                .ok_or(format!("EXECUTE IMMEDIATE {inner:?}"))?;
            let (name, value) = setting.split_once(" = ").ok_or("name = value")?;
            if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                return Err(format!("session parameter {name:?}"));
            }
            parse_one(&format!("SELECT {value} FROM dual"))?;
            continue;
        }
        if let Some((target, expr)) = s.split_once(":=") {
            let target = target.trim();
            let target = target.strip_prefix(':').unwrap_or(target);
            if !target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!("assignment to {target:?}"));
            }
            parse_one(&format!("SELECT {} FROM dual", expr.trim()))?;
            continue;
        }
        parse_one(&format!("CALL {s}")).map_err(|e| format!("{s}: {e}"))?;
    }
    Ok(())
}

/// `CREATE MATERIALIZED VIEW x BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS q`.
fn check_materialized_view(sql: &str) -> Result<(), String> {
    let rest = sql
        .strip_prefix("CREATE MATERIALIZED VIEW ")
        .ok_or("not a materialized view")?;
    let (_, rest) = rest.split_once('\n').ok_or("name on the first line")?;
    let query = rest
        .strip_prefix("BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS")
        .ok_or("BUILD IMMEDIATE REFRESH COMPLETE ON DEMAND AS")?;
    parse_one(query.trim())
}

/// What Oracle refuses or reads otherwise, outside string literals.
fn lint(sql: &str) -> Result<(), String> {
    let mut bare = String::new();
    let mut quoted = false;
    for c in sql.chars() {
        if c == '\'' {
            quoted = !quoted;
        } else if !quoted {
            bare.push(c);
        }
    }
    let upper = bare.to_ascii_uppercase();
    let words: BTreeSet<&str> = upper
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    if bare.contains('?') {
        return Err("a `?` placeholder left".into());
    }
    if bare.contains("::") {
        return Err("a PostgreSQL cast".into());
    }
    for word in [
        "LIMIT",
        "ILIKE",
        "BOOLEAN",
        "TEXT",
        "SERIAL",
        "BIGSERIAL",
        "JSONB",
        "RETURNING",
        "AUTOINCREMENT",
        "NOW",
        "STRFTIME",
        "GLOB",
    ] {
        if words.contains(word) {
            return Err(format!("{word} is not Oracle"));
        }
    }
    if upper.contains("IF NOT EXISTS") || upper.contains("IF EXISTS") {
        return Err("IF [NOT] EXISTS is 23ai only".into());
    }
    if upper.contains("ON CONFLICT") {
        return Err("ON CONFLICT is not Oracle".into());
    }
    for word in upper.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')) {
        if word.len() > 128 {
            return Err(format!("identifier over 128 bytes: {word}"));
        }
    }
    Ok(())
}

/// The check every statement sent to Oracle passes.
fn check(stmt: &Statement) -> Result<(), String> {
    let sql = stmt.sql.trim();
    lint(sql)?;
    if stmt.plsql || sql.starts_with("BEGIN") || sql.starts_with("DECLARE") {
        return check_plsql(sql);
    }
    if sql.ends_with(';') {
        return Err("a trailing `;` outside PL/SQL (ORA-00933)".into());
    }
    if sql.starts_with("CREATE MATERIALIZED VIEW ") {
        return check_materialized_view(sql);
    }
    // sqlparser knows no `ALTER TABLE t READ ONLY | READ WRITE`: exactly that shape.
    if let Some(table) = sql.strip_prefix("ALTER TABLE ").and_then(|rest| {
        rest.strip_suffix(" READ ONLY")
            .or_else(|| rest.strip_suffix(" READ WRITE"))
    }) {
        return table
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            .then_some(())
            .ok_or(format!("table name {table:?}"));
    }
    parse_one(sql)
}

fn check_all(what: &str, sent: &[Statement]) {
    let failures: Vec<String> = sent
        .iter()
        .filter_map(|s| check(s).err().map(|e| format!("{e}\n    {}", s.sql)))
        .collect();
    assert!(
        failures.is_empty(),
        "{what}: {} of {} statements fail the Oracle checks:\n{}",
        failures.len(),
        sent.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The commands.

fn username(user: &str) -> Username {
    Username::parse(user).unwrap()
}

#[test]
fn provision_sends_only_oracle_sql() {
    let sent = sent_by("provision", vec![], None, |_, session| {
        pathfinder_db::tenants::provision::provision(
            session,
            &renderer(),
            &pathfinder_db::tenants::provision::ProvisionRequest {
                username: username("alice"),
                tenant_key: None,
                target_version: None,
                master_key: None,
                database: None,
                take_archives: false,
            },
        )
    });
    assert!(
        sent.iter()
            .any(|s| s.sql.starts_with("CREATE TABLE pf_user_alice_experiences")),
        "the tenant's tables are among them"
    );
    check_all("provision", &sent);
}

/// With an application role in the database, provisioning grants it the
/// tenant's tables: PL/SQL blocks of GRANTs, one object each, that pass the
/// checks; so does the grant of an archive a retention restore creates.
#[test]
fn provision_with_an_app_role_sends_only_oracle_sql() {
    let (db, shared) = recorded();
    shared.lock().unwrap().app_role = Some("pathfinder_app".into());
    let mut session = db.connect().unwrap();
    pathfinder_db::tenants::provision::provision(
        &mut session,
        &renderer(),
        &pathfinder_db::tenants::provision::ProvisionRequest {
            username: username("alice"),
            tenant_key: None,
            target_version: None,
            master_key: None,
            database: None,
            take_archives: false,
        },
    )
    .unwrap();
    drop(session);
    let sent = std::mem::take(&mut shared.lock().unwrap().sent);
    let grants: Vec<&Statement> = sent
        .iter()
        .filter(|s| s.sql.contains("EXECUTE IMMEDIATE 'GRANT "))
        .collect();
    assert_eq!(grants.len(), 1, "one block for the tenant: {grants:#?}");
    for table in pathfinder_db::schema::tenant::TABLES {
        assert!(
            grants[0].sql.contains(&format!(
                "EXECUTE IMMEDIATE 'GRANT SELECT, INSERT, UPDATE, DELETE ON pf_user_alice_{} TO pathfinder_app';",
                table.name
            )),
            "{}",
            grants[0].sql
        );
    }
    assert!(grants[0].sql.contains(
        "EXECUTE IMMEDIATE 'GRANT SELECT ON pf_user_alice_career_summary TO pathfinder_app';"
    ));
    assert!(
        sent.iter()
            .any(|s| s.sql.starts_with("INSERT INTO pf_audit_log") && s.sql.contains("details")),
        "the grant is audited"
    );
    check_all("provision with an app role", &sent);
}

#[test]
fn the_oracle_connections_own_statements_pass() {
    let own = pathfinder_db::db::oracle::own_statements();
    assert!(own.len() > 10);
    let statements: Vec<Statement> = own
        .into_iter()
        .map(|(sql, plsql)| Statement {
            sql: bind_placeholders(&sql, ORACLE),
            plsql,
        })
        .collect();
    check_all("the Oracle connection", &statements);
    // The checks bite: what PostgreSQL or SQLite would take is refused.
    for bad in [
        "SELECT id FROM t LIMIT :1",
        "SELECT id FROM t WHERE a = ?",
        "CREATE TABLE IF NOT EXISTS t (id NUMBER)",
        "DELETE FROM t WHERE id = :1;",
        "SELECT 'a'::text FROM dual",
        "BEGIN EXECUTE IMMEDIATE 'DROP TABLE t'; END;",
    ] {
        let stmt = Statement {
            sql: bad.into(),
            plsql: bad.starts_with("BEGIN"),
        };
        assert!(check(&stmt).is_err(), "accepted: {bad}");
    }
}

#[test]
fn deprovision_sends_only_oracle_sql() {
    let rules = vec![rule(
        "FROM pf_tenants",
        vec![tenant_row("bob", "active", latest())],
    )];
    let sent = sent_by(
        "deprovision",
        rules,
        Some(("bob", true, false)),
        |_, session| {
            let options = pathfinder_db::tenants::provision::DeprovisionOptions {
                archive: false,
                export: None,
                force: false,
                templates_dir: None,
            };
            let plan = pathfinder_db::tenants::provision::plan_deprovision(
                session,
                &username("bob"),
                &options,
            )?
            .expect("a plan");
            pathfinder_db::tenants::provision::deprovision(session, &renderer(), &plan, &options)
        },
    );
    assert!(
        sent.iter()
            .any(|s| s.sql.contains("DROP TABLE pf_user_bob_experiences")),
        "the tenant's tables are dropped"
    );
    check_all("deprovision", &sent);
}

#[test]
fn adopt_with_repair_sends_only_oracle_sql() {
    let sent = sent_by(
        "adopt",
        vec![],
        Some(("carol", false, false)),
        |_, session| {
            let expectations = pathfinder_db::tenants::adopt::Expectations::new(None, ORACLE)?;
            pathfinder_db::tenants::adopt::adopt(
                session,
                &renderer(),
                &expectations,
                &username("carol"),
                &TenantKey::parse("carol", ORACLE).unwrap(),
                pathfinder_db::tenants::adopt::Options {
                    repair: true,
                    ..Default::default()
                },
            )
        },
    );
    assert!(
        sent.iter().any(|s| s
            .sql
            .starts_with("CREATE MATERIALIZED VIEW pf_user_carol_career_summary")),
        "the repair creates the career summary"
    );
    assert!(
        sent.iter().any(|s| s
            .sql
            .starts_with("INSERT INTO pf_user_carol_schema_history")),
        "the history is baselined"
    );
    check_all("adopt", &sent);
}

#[test]
fn stats_and_doctor_send_only_oracle_sql() {
    // A named tenant's figures come from the connection's own catalog query
    // (TABLE_STATS, among its own statements): nothing else is sent.
    let sent = sent_by(
        "stats",
        vec![],
        Some(("dave", true, false)),
        |_, session| {
            let (stats, failed) = pathfinder_db::tenants::stats::collect(
                session,
                &[record("dave", Status::Active, latest())],
                false,
                false,
            )?;
            assert!(failed.is_empty() && stats.len() == 1, "{failed:?}");
            anyhow::Ok(stats)
        },
    );
    check_all("stats", &sent);

    let history: Vec<Row> = renderer()
        .system_migrations()
        .unwrap()
        .iter()
        .map(|m| {
            vec![
                Value::Int(m.version.into()),
                text(&m.name),
                text(&pathfinder_db::migrate::engine::checksum(m, ORACLE).to_string()),
            ]
        })
        .collect();
    let rules = vec![
        rule("refinery_schema_history", history),
        rule(
            "FROM pf_tenants",
            vec![tenant_row("dave", "active", latest())],
        ),
    ];
    let sent = sent_by("doctor", rules, Some(("dave", true, false)), |db, _| {
        let report = pathfinder_db::doctor::check_database(
            db,
            None,
            pathfinder_db::doctor::Report {
                checks: Vec::new(),
                failed_tenants: Vec::new(),
            },
        );
        let names: Vec<String> = report.checks.iter().map(|c| c.check.clone()).collect();
        assert!(
            names.contains(&"registry".to_string()) || names.len() > 3,
            "{names:?}"
        );
        anyhow::Ok(report.checks)
    });
    check_all("doctor", &sent);
}

#[test]
fn fingerprint_sends_only_oracle_sql() {
    // The tenant's nine tables and their archives (the career summary is
    // left out): one query with a part per table, answered with a row each.
    let answer: Vec<Row> = (0..18)
        .map(|i| vec![Value::Int(i), Value::Int(2), text("18446744073709551617")])
        .collect();
    let sent = sent_by(
        "fingerprint",
        vec![rule("STANDARD_HASH", answer)],
        Some(("dave", true, true)),
        |_, session| {
            let print = pathfinder_db::tenants::fingerprint::fingerprint_tenant(
                session,
                &record("dave", Status::Active, latest()),
            )?;
            assert_eq!(print.tables.len(), 18, "{print:?}");
            assert!(
                print
                    .tables
                    .iter()
                    .all(|t| t.rows == 2 && t.checksum == "0000000000000001")
            );
            assert!(!print.tables.iter().any(|t| t.table == "career_summary"));
            anyhow::Ok(print)
        },
    );
    let query: Vec<&Statement> = sent
        .iter()
        .filter(|s| s.sql.contains("STANDARD_HASH"))
        .collect();
    assert_eq!(query.len(), 1, "one query for the tenant: {sent:?}");
    let sql = &query[0].sql;
    for part in [
        "FROM pf_user_dave_skills_archive",
        "DBMS_CRYPTO.HASH(description, 2)",
        "TO_CHAR(start_date, 'YYYY-MM-DD HH24:MI:SS')",
        "TO_CHAR(years_of_experience, 'TM9', 'NLS_NUMERIC_CHARACTERS=''.,''')",
    ] {
        assert!(sql.contains(part), "{part} in {sql}");
    }
    assert!(!sql.contains("career_summary"), "{sql}");
    check_all("fingerprint", &sent);
}

#[test]
fn import_sends_only_oracle_sql() {
    // An export written by the SQLite backend, with a row in a table.
    let env = common::Env::sqlite();
    env.ok(&["init"]);
    env.ok(&["provision", "erin"]);
    env.tenant_exec(
        "erin",
        "INSERT INTO pf_user_erin_experiences (id, title, company, start_date) VALUES ('e1', 'Engineer', 'Acme', '2020-01-01')",
    );
    let file = env.path().join("erin.pfx");
    env.ok(&["export", "erin", "--out", file.to_str().unwrap()]);
    let (db, shared) = recorded();
    shared.lock().unwrap().created_later = Some("erin".into());
    let mut session = db.connect().unwrap();
    let outcome = (|session: &mut Session<'_>| {
        let plan = pathfinder_db::tenants::import::plan(
            session,
            &renderer(),
            None,
            &pathfinder_db::tenants::import::ImportRequest {
                path: file.clone(),
                username: None,
                tenant_key: None,
                database: None,
            },
        )?;
        pathfinder_db::tenants::import::import(session, &renderer(), &plan, None)
    })(&mut session);
    assert!(outcome.is_ok(), "import: {outcome:?}");
    drop(session);
    let sent = std::mem::take(&mut shared.lock().unwrap().sent);
    assert!(
        sent.iter()
            .any(|s| s.sql.starts_with("INSERT INTO pf_user_erin_experiences")),
        "the rows are loaded"
    );
    check_all("import", &sent);
}

#[test]
fn key_rotation_sends_only_oracle_sql() {
    use pathfinder_db::security::crypto::{DataKey, Keyring, MasterKey, wrap};
    let old = MasterKey::generate().unwrap();
    let new = MasterKey::generate().unwrap();
    let wrapped = wrap(&old, "u-1", &DataKey::generate().unwrap()).unwrap();
    let old_id = old.id().to_string();
    let rules = vec![
        rule(
            "SELECT master_key_id, COUNT(*) FROM pf_encryption_keys",
            vec![vec![text(&old_id), Value::Int(1)]],
        ),
        rule(
            "SELECT COUNT(*), SUM(",
            vec![vec![Value::Int(0), Value::Int(0)]],
        ),
        once(
            "FROM pf_encryption_keys k WHERE k.master_key_id = :1",
            vec![vec![
                text("k-1"),
                text("u-1"),
                text(&wrapped.key_encrypted),
                text(&wrapped.key_salt),
                text(&old_id),
            ]],
        ),
    ];
    let mut keyring = Keyring::new();
    keyring.add(old);
    let sent = sent_by("keys rotate", rules, None, |db, _| {
        let report = pathfinder_db::security::keys::rotate(
            db,
            &keyring,
            &new,
            &pathfinder_db::security::keys::RotateOptions {
                batch_size: 10,
                jobs: 1,
            },
            |_| {},
        )?;
        assert_eq!(report.rotated, 1, "{report:?}");
        anyhow::Ok(report)
    });
    assert!(
        sent.iter().any(|s| s
            .sql
            .starts_with("UPDATE pf_encryption_keys SET key_encrypted")),
        "the key is re-wrapped"
    );
    check_all("keys rotate", &sent);
}

#[test]
fn sessions_purge_sends_only_oracle_sql() {
    let rules = vec![once("FROM pf_user_sessions s", vec![vec![text("s1")]])];
    let sent = sent_by("sessions purge", rules, None, |_, session| {
        pathfinder_db::jobs::sessions::purge(session, 100, false)
    });
    assert!(
        sent.iter()
            .any(|s| s.sql.starts_with("DELETE FROM pf_user_sessions")),
        "expired sessions are deleted"
    );
    check_all("sessions purge", &sent);
}

#[test]
fn retention_restore_sends_only_oracle_sql() {
    let rules = vec![
        rule(
            "FROM pf_tenants",
            vec![tenant_row("fay", "active", latest())],
        ),
        rule(
            "SELECT id FROM pf_user_fay_experiences_archive",
            vec![vec![text("e1")]],
        ),
    ];
    let sent = sent_by(
        "retention restore",
        rules,
        Some(("fay", true, true)),
        |_, session| {
            let experiences = pathfinder_db::schema::tenant::TABLES
                .iter()
                .find(|t| t.name == "experiences")
                .unwrap();
            pathfinder_db::jobs::retention::restore(
                session,
                &renderer(),
                &record("fay", Status::Active, latest()),
                &[experiences],
                &pathfinder_db::jobs::retention::Selection::Ids(vec!["e1".into()]),
                100,
            )
        },
    );
    assert!(
        sent.iter()
            .any(|s| s.sql.starts_with("INSERT INTO pf_user_fay_experiences (")),
        "the rows go back"
    );
    check_all("retention restore", &sent);
}
